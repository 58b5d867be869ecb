"""The placement plan for 0, 1 and 2 GPUs, computed without GPUs; actor names; output anchoring."""

from __future__ import annotations

from pathlib import Path

import pytest

from halo_ray.errors import ConfigError
from halo_ray.home import anchor_job_outputs, anchored, halo_ray_home, run_directory
from halo_ray.placement import actor_name, plan_placement
from halo_ray.sections import BenchmarkJobConfig, LearnerConfig, LoggingConfig, RaftJobConfig, RolloutConfig

CPU_BOX = {"CPU": 4.0, "memory": 8e9}
ONE_GPU = {"CPU": 8.0, "GPU": 1.0}
TWO_GPUS = {"CPU": 16.0, "GPU": 2.0}
ON_GPU = dict(rollout=RolloutConfig(num_gpus=1), learner=LearnerConfig(num_gpus_per_rank=1))


def test_no_gpu_puts_everything_on_cpu_bundles():
    plan = plan_placement(RolloutConfig(num_engines=2), LearnerConfig(num_ranks=2), CPU_BOX)
    assert plan.rollout == ({"CPU": 1.0}, {"CPU": 1.0}) and plan.learner == ({"CPU": 1.0}, {"CPU": 1.0})
    assert plan.total("GPU") == 0 and not plan.colocated


def test_no_gpu_but_gpus_asked_for_names_the_keys():
    with pytest.raises(ConfigError, match=r"needs 2 GPUs .*rollout.num_gpus.*learner.num_gpus_per_rank.* has 0"):
        plan_placement(**ON_GPU, resources=CPU_BOX)


def test_too_few_cpus_is_a_config_error():
    with pytest.raises(ConfigError, match=r"needs 5 CPUs .* has 4"):
        plan_placement(RolloutConfig(num_engines=3), LearnerConfig(num_ranks=2), CPU_BOX)


def test_two_gpu_box_puts_rollout_on_one_card_and_learner_on_the_other():
    plan = plan_placement(**ON_GPU, resources=TWO_GPUS)
    assert plan.rollout == ({"CPU": 1.0, "GPU": 1.0},) and plan.learner == ({"CPU": 1.0, "GPU": 1.0},)
    assert plan.bundles == [{"CPU": 1.0, "GPU": 1.0}, {"CPU": 1.0, "GPU": 1.0}]  # two separate whole cards
    assert (plan.rollout_gpus, plan.learner_gpus, plan.colocated) == (1.0, 1.0, False)


def test_one_gpu_without_colocate_suggests_it():
    with pytest.raises(ConfigError, match=r"needs 2 GPUs .* has 1: set cluster.colocate=true"):
        plan_placement(**ON_GPU, resources=ONE_GPU)


def test_one_gpu_colocated_shares_one_bundle():
    plan = plan_placement(**ON_GPU, resources=ONE_GPU, colocate=True)
    assert plan.colocated and plan.rollout == ()
    assert plan.learner == ({"CPU": 2.0, "GPU": 1.0},)  # the engine's and the rank's CPUs, one GPU
    assert plan.rollout_gpus == plan.learner_gpus == 0.5
    assert plan.total("GPU") == 1.0


def test_colocate_on_cpus_shares_the_cores_of_one_bundle():
    plan = plan_placement(RolloutConfig(), LearnerConfig(), CPU_BOX, colocate=True)
    assert plan.colocated and plan.rollout == () and plan.learner == ({"CPU": 2.0},)
    assert plan.rollout_gpus == plan.learner_gpus == 0


def test_colocate_needs_both_on_gpus_or_cpus_and_one_engine_per_rank():
    with pytest.raises(ConfigError, match=r"both on GPUs or both on CPUs \(rollout.num_gpus=0, learner.num_gpus_per_rank=1\)"):
        plan_placement(RolloutConfig(), LearnerConfig(num_gpus_per_rank=1), ONE_GPU, colocate=True)
    with pytest.raises(ConfigError, match=r"num_engines \(2\) must equal learner.num_ranks \(1\)"):
        plan_placement(RolloutConfig(num_engines=2, num_gpus=1), LearnerConfig(num_gpus_per_rank=1), ONE_GPU,
                       colocate=True)


def test_tensor_parallel_engine_takes_its_shards_gpus():
    plan = plan_placement(RolloutConfig(num_gpus=1), LearnerConfig(num_gpus_per_rank=1), {"CPU": 8, "GPU": 3},
                          tensor_parallel_size=2)
    assert plan.rollout == ({"CPU": 1.0, "GPU": 2.0},) and plan.total("GPU") == 3
    with pytest.raises(ConfigError, match=r"needs 3 GPUs .* 1 x 1 x 2 "):
        plan_placement(RolloutConfig(num_gpus=1), LearnerConfig(num_gpus_per_rank=1), TWO_GPUS, tensor_parallel_size=2)


def test_actor_names():
    assert actor_name("raft-1", "rollout", 0) == "raft-1/rollout-0"
    assert actor_name("", "learner", 1) is None


def test_relative_outputs_land_under_halo_ray_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HALO_RAY_HOME", str(tmp_path / "home"))
    assert halo_ray_home() == tmp_path / "home"
    assert anchored("runs") == str(tmp_path / "home" / "runs")
    assert anchored("/abs/runs") == "/abs/runs" and anchored("") == ""
    config = anchor_job_outputs(RaftJobConfig(logging=LoggingConfig(name="r1")), "raft")
    assert run_directory(config) == tmp_path / "home" / "runs" / "r1"
    unnamed = anchor_job_outputs(RaftJobConfig(), "raft")
    assert unnamed.logging.name.startswith("raft-")  # named now, so the job can print its path up front
    bench = anchor_job_outputs(BenchmarkJobConfig(), "benchmark")
    assert bench.benchmark.output == str(tmp_path / "home" / "results.json")
    assert bench.benchmark.problems == ""  # inputs stay relative to the working dir


def test_default_home_is_under_the_users_home(monkeypatch):
    monkeypatch.delenv("HALO_RAY_HOME", raising=False)
    assert halo_ray_home() == Path.home() / "halo-ray"


def test_colocate_loads_from_the_config():
    from halo_ray.config import load_config
    from halo_ray.sections import RaftJobConfig

    assert load_config(RaftJobConfig, None, ["cluster.colocate=true"]).cluster.colocate


def test_a_role_left_out_gets_no_bundles():
    """``generate`` plans engines only, SFT a learner only; each is checked against the cluster alone."""
    engines = plan_placement(RolloutConfig(num_engines=2), None, CPU_BOX)
    assert engines.rollout == ({"CPU": 1.0}, {"CPU": 1.0}) and engines.learner == ()
    ranks = plan_placement(None, LearnerConfig(num_ranks=2, num_gpus_per_rank=1), TWO_GPUS)
    assert ranks.rollout == () and ranks.learner == ({"CPU": 1.0, "GPU": 1.0},) * 2 and ranks.learner_gpus == 1.0
    with pytest.raises(ConfigError, match=r"needs 3 GPUs"):
        plan_placement(None, LearnerConfig(num_ranks=3, num_gpus_per_rank=1), TWO_GPUS)


def test_pack_strategy_packs_one_node_when_one_holds_every_bundle():
    from halo_ray.placement import pack_strategy

    two_gpu_box = {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}}
    one_gpu_node = {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}}
    bundles = plan_placement(**ON_GPU, resources=TWO_GPUS).bundles
    assert pack_strategy(bundles, [two_gpu_box]) == "STRICT_PACK"
    assert pack_strategy(bundles, [one_gpu_node, one_gpu_node]) == "PACK"  # one card per node: spread
    assert pack_strategy(bundles, [dict(two_gpu_box, Alive=False), one_gpu_node]) == "PACK"
