"""What the driver decides when actors die, without Ray: which engines need the latest weights, how a
failed chunk is issued again (and when it stops being issued), the run's name across restarts, the
restart limit's config key, and the one line that names a dead actor."""

from __future__ import annotations

import pytest

from halo_ray.config import load_config
from halo_ray.driver import ROLLOUT_TRIES, engines_behind, worth_retrying
from halo_ray.driver.loop import actor_error, named_run
from halo_ray.driver.stream import Stream
from halo_ray.errors import ConfigError
from halo_ray.sections import GRPOJobConfig, RolloutConfig, StreamConfig

RAY_DEATH = ("The actor died unexpectedly before finishing this task.\n\tclass_name: LearnerRank\n"
             "\tactor_id: 9f3c\n\tpid: 4242\n\tname: grpo-x/learner-0\n\tnamespace: halo-ray\n\tip: 10.0.0.7\n"
             "The actor is dead because it was killed by `ray.kill`.")


def test_engines_behind_are_those_not_at_the_latest_version():
    assert engines_behind([3, 0, 3, 2], 3) == [1, 3]
    assert engines_behind([0, 0], 0) == []


def test_only_a_death_or_a_restarted_engine_makes_a_request_worth_sending_again():
    import ray

    from halo_ray.rollout import EngineRestartedError

    task = ray.exceptions.RayTaskError
    refused = task("VerifierPool.score", "tb", task("RolloutActor.generate", "tb", EngineRestartedError("restarted")))
    assert worth_retrying(refused, []), "the verifier's error carries the refusal as its cause"
    assert worth_retrying(ray.exceptions.ActorDiedError(), [])
    assert worth_retrying(RuntimeError("whatever"), [0]), "an engine had to be healed"
    assert not worth_retrying(task("RolloutActor.generate", "tb", ValueError("bad sampling setting")), [])


class Handles:
    """The two calls ``Stream`` makes on a chunk's failure (``RolloutGroup.heal``, ``VerifierGroup.check``);
    ``heal`` reports the engines it brought to the latest weights."""

    version = 2

    def __init__(self, healed: list[int]):
        self.healed, self.calls = healed, []

    def heal(self):
        self.calls.append("heal")
        return self.healed

    def check(self):
        self.calls.append("check")


def stream(handles: Handles) -> Stream:
    problems = {f"p{i}": {"prompt": f"def f{i}(x):"} for i in range(8)}
    return Stream(handles, handles, problems, StreamConfig(prompts_per_step=4, chunk_prompts=2, num_steps=2),
                  RolloutConfig(), seed=0)


def test_a_failed_chunk_is_issued_again_after_the_engines_are_healed():
    handles = Handles(healed=[0])
    s = stream(handles)
    positions = s.buffer.issue(2)
    s._failed(positions, RuntimeError("this engine was restarted by Ray and holds the initial weights"))
    assert handles.calls == ["heal", "check"]
    assert s.buffer.in_flight == set() and s.buffer.issue(2) == positions, "the same positions, nothing skipped"
    assert s.buffer.state.counts["generated"] == 0, "nothing of the failed chunk is counted"


def test_a_chunk_an_actor_died_under_is_issued_again_with_nothing_to_heal():
    import ray

    s = stream(Handles(healed=[]))
    positions = s.buffer.issue(2)
    s._failed(positions, ray.exceptions.ActorDiedError())  # e.g. died before its weights were ever updated
    assert s.buffer.issue(2) == positions


def test_a_failure_no_death_explains_ends_the_run_at_once():
    s = stream(Handles(healed=[]))
    with pytest.raises(RuntimeError, match="bad sampling setting"):
        s._failed(s.buffer.issue(2), RuntimeError("bad sampling setting"))


def test_a_position_that_keeps_failing_ends_the_run_with_its_error():
    s = stream(Handles(healed=[0]))
    error = RuntimeError("the engine crashes on this prompt")
    for _ in range(ROLLOUT_TRIES - 1):
        s._failed(s.buffer.issue(2), error)
    with pytest.raises(RuntimeError, match="crashes on this prompt"):
        s._failed(s.buffer.issue(2), error)


def test_a_run_keeps_one_name_across_restarts():
    config = GRPOJobConfig()
    named = named_run(config, "grpo")
    assert named.logging.name.startswith("grpo-") and named.logging.run_dir == config.logging.run_dir
    assert named_run(named, "grpo") is named


def test_max_restarts_is_a_checked_config_key():
    assert GRPOJobConfig().checkpoint.max_restarts == 2
    assert load_config(GRPOJobConfig, None, ["checkpoint.max_restarts=0"]).checkpoint.max_restarts == 0
    with pytest.raises(ConfigError, match=r"checkpoint\.max_restarts.*-1"):
        load_config(GRPOJobConfig, None, ["checkpoint.max_restarts=-1"])


def test_a_dead_actor_is_named_with_ray_s_reason():
    assert actor_error(RuntimeError(RAY_DEATH)) == "grpo-x/learner-0 died (The actor is dead because it was killed by `ray.kill`.)"
    assert actor_error(RuntimeError("")) == "an actor died (RuntimeError)"
    assert actor_error(RuntimeError("gone")) == "an actor died (gone)"
