"""Collective weight transfer on CPU: a real learner rank (DeepSpeed, gloo) broadcasts its weights to real
vLLM RolloutActors through vLLM's weight-transfer API (the ``gloo`` engine registered in vLLM's factory),
bucketed; the GPU path (``nccl``) is the same code with vLLM's NCCL engine and packed broadcast.

The engines' parameters must then equal, exactly, those of an engine that loaded the learner's state dict
by object ref (``reload_weights``), and versions advance. An engine Ray restarts is healed by ref from the
learner and rejoins the group at the next sync.
"""

from __future__ import annotations

import pytest

from halo_ray.sections import LearnerConfig, ModelConfig, ObjectiveConfig, RolloutConfig

PROMPTS = [{"prompt_id": f"p{i}", "prompt": f"def f{i}(x):\n    return x"} for i in range(4)]


def _engine_parameters(actor):
    """A ref to the engine's parameters (vLLM's fused names), read inside its worker (``collective_rpc``).
    The functions are local, so that Ray pickles them by value (the actor cannot import this module)."""

    def named_parameters(worker) -> dict:
        return {k: v.detach().clone() for k, v in worker.model_runner.get_model().named_parameters()}

    def read(rollout_actor) -> dict:
        return rollout_actor.engine.llm.collective_rpc(named_parameters)[0]

    return actor.__ray_call__.remote(read)


def _wait_restarted(actor, timeout_s: float = 900.0) -> None:
    """Until the killed engine is back from Ray's restart (it reports version -1 until healed)."""
    import time

    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ray.get(actor.version.remote()) == -1:
                return
        except ray.exceptions.RayActorError:  # dying, or restarting: ask again
            pass
        time.sleep(0.5)
    raise AssertionError("the killed engine did not come back")


def _same(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _examples(path: str, k: int) -> list[dict]:
    from transformers import AutoTokenizer

    from halo_ray.objectives import tokenize_pair

    tok = AutoTokenizer.from_pretrained(path)
    return [tokenize_pair(tok, f"def f{i}(x):\n    return x", f" * {i + k}\n") for i in range(8)]


@pytest.mark.slow  # about 100 s on two cores: a learner rank and two vLLM engines, three syncs and a restart
def test_learner_broadcasts_weights_to_engines_over_gloo(ray_session, tiny_model):
    import ray

    from halo_ray import driver
    from halo_ray.actors.learner import LearnerGroup

    model = ModelConfig(path=tiny_model, max_model_len=256)
    engines = RolloutConfig(num_engines=2, num_cpus=1, kv_cache_gib=1, max_new_tokens=24, max_num_seqs=64,
                            weight_transfer="gloo", weight_bucket_mb=1)  # the tiny model's ~1.4 MB: two buckets
    reference = RolloutConfig(num_engines=1, num_cpus=0.5, kv_cache_gib=1, max_new_tokens=24)  # object_store
    learner = LearnerGroup(model, LearnerConfig(num_ranks=1, lr=1e-2, micro_batch_size=8, zero_stage=0,
                                                num_cpus_per_rank=1.0), ObjectiveConfig(name="sft"))
    group = ref_group = None
    try:
        group = driver.RolloutGroup(model, engines)
        ref_group = driver.RolloutGroup(model, reference)
        initial = ray.get(_engine_parameters(group.actors[0]))
        before = group.generate(PROMPTS, n=1, temperature=0.0).to_pylist()

        learner.train(_examples(tiny_model, 1))
        # Requests in flight while the weights arrive: the update lands between engine steps (StepLock).
        in_flight = group.submit(PROMPTS * 4, chunk_size=len(PROMPTS), n=4, temperature=1.0, max_tokens=48)
        group.sync_weights(learner, 1)
        calls = [ray.get(ref).to_pylist() for ref in in_flight]
        assert all(len(c) == 4 * len(PROMPTS) for c in calls)
        assert any(r["policy_version_last"] == 1 for c in calls for r in c), "no request saw the new weights"
        ref_group.update_weights(learner.rollout_weights_ref(), 1)
        expected = ray.get(_engine_parameters(ref_group.actors[0]))
        got = ray.get([_engine_parameters(a) for a in group.actors])
        assert not _same(expected, initial), "training did not move the weights: the test could not fail"
        assert all(_same(g, expected) for g in got), "an engine's weights differ from the learner's"
        after = group.generate(PROMPTS, n=1, temperature=0.0).to_pylist()
        assert [r["completion"] for r in after] == [r["completion"] for r in ref_group.generate(
            PROMPTS, n=1, temperature=0.0).to_pylist()]
        assert [r["completion"] for r in after] != [r["completion"] for r in before]
        assert [r["policy_version"] for r in after] == [1] * len(PROMPTS)

        # A second sync reuses the standing group.
        standing = group._group
        learner.train(_examples(tiny_model, 2))
        group.sync_weights(learner, 2)
        assert group._group is standing
        assert [s["version"] for s in group.stats()] == [2, 2]
        ref_group.update_weights(learner.rollout_weights_ref(), 2)
        expected = ray.get(_engine_parameters(ref_group.actors[0]))
        assert all(_same(g, expected) for g in ray.get([_engine_parameters(a) for a in group.actors]))

        # An engine Ray restarts comes back with the initial weights and outside the group: healed by ref from
        # the learner, and the group is formed again, with both engines, at the next sync.
        ray.kill(group.actors[1], no_restart=False)
        _wait_restarted(group.actors[1])
        assert group.heal() == [1]
        assert group._group is None
        assert _same(ray.get(_engine_parameters(group.actors[1])), expected)
        learner.train(_examples(tiny_model, 3))
        group.sync_weights(learner, 3)
        assert [s["version"] for s in group.stats()] == [3, 3]
        ref_group.update_weights(learner.rollout_weights_ref(), 3)
        expected = ray.get(_engine_parameters(ref_group.actors[0]))
        assert all(_same(g, expected) for g in ray.get([_engine_parameters(a) for a in group.actors]))
        with pytest.raises(Exception, match="not newer"):
            group.sync_weights(learner, 3)
    finally:
        for g in (group, ref_group):
            if g is not None:
                g.shutdown()
        learner.shutdown()
