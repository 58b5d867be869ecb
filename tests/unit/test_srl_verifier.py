"""The srl_trace verifier through the entry points the stream uses (the pool's ``Verifier.verify`` and
``score_rollouts``, as the VerifierPool actor calls them), SRL's job config, and SRL's GRPO step
(malformed traces at advantage 0, §27 metrics) on a stream whose buffer is the real one."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pyarrow as pa
import pytest

from halo_ray.bench.score import verify_record
from halo_ray.config import from_dict, load_config
from halo_ray.data.sources import problems_from_spec
from halo_ray.errors import ConfigError, DataError
from halo_ray.sections import SRLJobConfig, SRLVerifierConfig
from halo_ray.srl.reward import SRLRewardConfig
from halo_ray.stream import Group, StreamBuffer
from halo_ray.verifiers import VERIFIERS

needs_sandbox = pytest.mark.skipif(not shutil.which("bwrap"), reason="the pool starts bubblewrap sandboxes")
PROBLEMS = {p.id: p.to_dict() for p in problems_from_spec("srl")}
PID = "srl/py_len_zero"
TEACHER = PROBLEMS[PID]["metadata"]["teacher_trace"]
CFG = SRLVerifierConfig(workers=1)


def record(completion: str, pid: str = PID, rid: str = "r") -> dict:
    return verify_record(PROBLEMS[pid], completion, rid)


@pytest.fixture(scope="module")
def pool():
    from halo_ray.verifiers import Verifier

    if not shutil.which("bwrap"):
        pytest.skip("the pool starts bubblewrap sandboxes")
    with Verifier(CFG) as verifier:
        yield verifier


def test_srl_problems_name_their_verifier_and_carry_the_teacher_trace():
    assert "srl_trace" in VERIFIERS.names() and "in process" in VERIFIERS.doc("srl_trace")
    train, heldout = problems_from_spec("srl#train"), problems_from_spec("srl#heldout")
    assert len(train) == 8 and len(heldout) == 4 and not {p.id for p in train} & {p.id for p in heldout}
    assert {p.language for p in heldout} == {"python", "javascript", "java"}
    rec = record("text with ```fences``` kept")
    assert rec["verifier"] == "srl_trace" and rec["teacher_trace"] == TEACHER and rec["srl_task"] == "py_len_zero"
    assert rec["completion"] == "text with ```fences``` kept", "trace matching scores the raw completion"
    assert "Task: Replace comparisons" in PROBLEMS[PID]["prompt"] and "--- queue_utils.py" in PROBLEMS[PID]["prompt"]
    with pytest.raises(ConfigError, match="srl#train"):
        problems_from_spec("srl:3")


def test_plan_request_checks_srl_records_without_a_sandbox_request():
    from halo_ray.verifiers.pool import plan_request

    req = plan_request(record(TEACHER), CFG)
    assert req["in_process"] and req["verifier"] == "srl_trace" and "code" not in req
    with pytest.raises(DataError, match="'bad'.*teacher_trace"):
        plan_request({"id": "bad", "verifier": "srl_trace", "code": "x"}, CFG)


@needs_sandbox
def test_identical_trace_scores_one_and_malformed_minus_point_two_through_the_pool(pool):
    no_stop = TEACHER.rsplit("</state_update>", 1)[0]  # what vLLM returns when it stopped at the stop string
    python = {"id": "py", "verifier": "python", "code": "def f():\n    return 1\n", "tests": "assert f() == 1\n"}
    results = pool.verify([record(TEACHER, rid="same"), record("no tags at all", rid="bad"), python,
                           record(no_stop, rid="stopped")])
    same, bad, py, stopped = results
    assert [r["id"] for r in results] == ["same", "bad", "py", "stopped"], "results keep the input order"
    assert same["verdict"] == "SUCCESS" and same["reward"] == pytest.approx(1.0) and same["pass_rate"] == 1.0
    comp = same["reward_components"]
    assert comp["action"] == pytest.approx(1.0) and comp["state"] == pytest.approx(1.0)
    assert comp["think"] == pytest.approx(1.0) and comp["brevity_penalty"] == 0.0 and comp["malformed"] == 0.0
    assert {"verdict", "reward", "pass_rate", "reward_components", "detail", "duration_s", "warnings"} <= set(same)
    assert bad["verdict"] == "SYNTAX_ERROR" and bad["reward"] == -0.2 and bad["reward_components"]["malformed"] == 1.0
    assert bad["detail"] == "missing_tag"
    assert py["verdict"] == "SUCCESS" and py["reward"] == 1.0, "sandboxed records in the same batch still run"
    assert stopped["reward"] == pytest.approx(1.0), "the stop string the rollout removed is put back"


@needs_sandbox
def test_reward_settings_come_from_the_verifier_section():
    from halo_ray.verifiers import verify_batch

    strict = replace(CFG, srl=SRLRewardConfig(malformed_reward=-0.1), restore_stop=False)
    no_stop = TEACHER.rsplit("</state_update>", 1)[0]
    (bad, stopped) = verify_batch([record("oops", rid="a"), record(no_stop, rid="b")], strict)
    assert bad["reward"] == -0.1 and stopped["reward"] == -0.1 and stopped["detail"] == "missing_tag"
    other = PROBLEMS["srl/py_sorted_keys"]["metadata"]["teacher_trace"]
    (partial,) = verify_batch([record(other, rid="c")], CFG)
    assert partial["verdict"] == "WRONG_OUTPUT" and -0.2 < partial["reward"] < 0.7


@needs_sandbox
def test_score_rollouts_gives_the_stream_its_components(pool):
    from halo_ray.samples import ROLLOUT_SCHEMA
    from halo_ray.selection import score_rollouts

    base = {"prompt": "p", "prompt_token_ids": [1], "token_ids": [2], "logprobs": [-0.1], "policy_version": 0,
            "policy_version_last": 0, "finish_reason": "stop", "engine": 0, "generate_s": 0.0}
    table = pa.Table.from_pylist([{**base, "prompt_id": PID, "sample_index": i, "completion": c}
                                  for i, c in enumerate([TEACHER, "<think>x</think>"])], schema=ROLLOUT_SCHEMA)
    rows = score_rollouts(table, {PID: PROBLEMS[PID]}, pool.verify).to_pylist()
    assert [r["reward"] for r in rows] == pytest.approx([1.0, -0.2])
    assert dict(rows[1]["reward_components"])["malformed"] == 1.0


@pytest.mark.skipif(not shutil.which("bwrap"), reason="executes actions in bubblewrap sandboxes")
def test_execute_runs_the_parsed_action_in_the_sandbox_as_a_metric():
    from halo_ray.verifiers import verify_batch

    wrong = TEACHER.replace('"replacement": "not $X"', '"replacement": "$X"')
    results = verify_batch([record(TEACHER, rid="ok"), record(wrong, rid="wrong"), record("bad", rid="bad")],
                           replace(CFG, execute=True))
    assert [r["reward_components"]["executed"] for r in results] == [1.0, 0.0, 0.0]
    assert results[1]["reward"] < 1.0 and results[1]["reward"] > 0.5, "execution is a metric, not the reward"


def test_srl_job_config_defaults_and_validation(tmp_path):
    cfg = SRLJobConfig()
    assert cfg.verifier.name == "srl_trace" and cfg.rollout.stop == ("</state_update>",)
    assert 0.01 <= cfg.objective.grpo.kl_coef <= 0.1 and cfg.objective.grpo.eps_low == cfg.objective.grpo.eps_high == 0.2
    assert cfg.model.lora.enabled and cfg.srl.zero_malformed_advantage and cfg.data.train == "srl#train"
    with pytest.raises(ConfigError, match="x.yaml: verifier.srl: clip_min"):
        from_dict(SRLJobConfig, {"verifier": {"srl": {"clip_min": 2.0}}}, source="x.yaml")
    bad = {"objective": {"name": "dpo"}, "verifier": {"name": "python"}, "rollout": {"samples_per_prompt": 1}}
    with pytest.raises(ConfigError) as err:
        from_dict(SRLJobConfig, bad, source="x.yaml")
    text = str(err.value)
    for needle in ("objective.name: SRL trains the grpo objective", "verifier.name: SRL's rewards are trace matching",
                   "rollout.samples_per_prompt: GRPO needs at least 2"):
        assert needle in text, needle
    path = tmp_path / "srl.yaml"
    path.write_text("verifier:\n  srl:\n    action_wieght: 0.4\n")
    with pytest.raises(ConfigError, match="verifier.srl.action_wieght.*did you mean 'verifier.srl.action_weight'"):
        load_config(SRLJobConfig, path)
    assert load_config(SRLJobConfig, None, ["verifier.srl.brevity_coef=0"]).verifier.srl.brevity_coef == 0.0


class BufferOnlyStream:
    """What SRL's step uses of ``driver.stream.Stream``: the buffer, ``next_groups`` and ``problems``."""

    def __init__(self, per_step: int, score):
        self.buffer = StreamBuffer(per_step, 0, 50)
        self.score, self.problems = score, PROBLEMS

    def next_groups(self, version: int, need: int | None = None):
        for pos in self.buffer.issue(10_000):
            self.buffer.add(Group(pos, self.score(pos)[0]["prompt_id"], self.score(pos), version, version))
        return self.buffer.take(version, need), 0.0


def scored(pos: int, samples) -> list[dict]:
    """Rows of a scored group: ``samples`` are (reward, malformed, action) triples."""
    pid = sorted(PROBLEMS)[pos % len(PROBLEMS)]
    return [{"prompt_id": pid, "sample_index": i, "completion": TEACHER if not m else "junk", "reward": r,
             "pass_rate": 0.0, "verdict": "SYNTAX_ERROR" if m else "WRONG_OUTPUT", "finish_reason": "stop",
             "token_ids": [pos, i], "prompt_token_ids": [pos], "logprobs": [-1.0, -1.0],
             "reward_components": {"malformed": float(m), "action": a, "state": 0.0 if m else 0.5,
                                   "think": 0.0 if m else 0.5, "brevity_penalty": 0.0}}
            for i, (r, m, a) in enumerate(samples)]


def test_srl_step_zeroes_malformed_advantages_and_logs_the_section_27_metrics():
    from halo_ray.driver.srl import srl_batch
    from halo_ray.sections import StreamConfig

    groups = {0: [(0.8, False, 1.0), (-0.2, True, 0.0), (0.4, False, 0.5), (-0.2, True, 0.0)],
              1: [(-0.2, True, 0.0)] * 4,  # no signal: rejected and replaced (dynamic sampling)
              2: [(0.6, False, 0.8), (0.2, False, 0.2), (-0.2, True, 0.0), (0.6, False, 0.8)]}
    stream = BufferOnlyStream(2, lambda pos: scored(pos, groups.get(pos, groups[1])))
    config = SRLJobConfig(stream=StreamConfig(prompts_per_step=2))
    batch = srl_batch(config)(stream, 0)
    assert [g.position for g in batch.taken] == [0, 2]
    adv = {(x["prompt_id"], x["sample_index"]): x["advantage"] for x in batch.rows}
    malformed = [(x["prompt_id"], x["sample_index"]) for x in batch.rows if x["verdict"] == "SYNTAX_ERROR"]
    assert len(malformed) == 3 and all(adv[k] == 0.0 for k in malformed)
    assert all(e["advantage"] == 0.0 for e in batch.examples if e["token_ids"][1] in (1, 3) and e["token_ids"][0] == 0)
    assert adv[(batch.rows[0]["prompt_id"], 0)] > 0 and adv[(batch.rows[0]["prompt_id"], 2)] > 0, \
        "the -0.2 samples still count in the group's mean"
    m = batch.metrics
    assert m["srl/trace_parse_rate"] == pytest.approx(5 / 8) and m["srl/malformed_zeroed"] == 3
    assert m["srl/action_fidelity"] == pytest.approx((1.0 + 0.5 + 0.8 + 0.2 + 0.8) / 8)
    assert m["srl/state_faithfulness"] == pytest.approx(0.5 * 5 / 8)
    assert m["srl/reward_mean"] == pytest.approx((0.8 - 0.2 + 0.4 - 0.2 + 0.6 + 0.2 - 0.2 + 0.6) / 8)
    assert m["srl/think_words"] > 0 and "srl/execution_success" not in m
    langs = {PROBLEMS[g.prompt_id]["language"] for g in batch.taken}
    assert all(f"srl/{lang}/action_fidelity" in m for lang in langs)
    # Off: malformed samples keep their (negative) group advantage.
    kept = srl_batch(replace(config, srl=replace(config.srl, zero_malformed_advantage=False)))(
        BufferOnlyStream(2, lambda pos: scored(pos, groups.get(pos, groups[1]))), 0)
    assert all(x["advantage"] < 0 for x in kept.rows if x["verdict"] == "SYNTAX_ERROR")


def test_teacher_steps_are_parsed_gated_on_execution_filtered_and_stored_by_slice(tmp_path):
    import pyarrow.parquet as pq

    from halo_ray.data.sft import chatml
    from halo_ray.srl.execute import Execution
    from halo_ray.srl.prompts import TeacherConfig
    from halo_ray.srl.tasks import builtin_tasks
    from halo_ray.srl.teacher import collect, teacher_prompt, write_traces

    tasks = {t.id: t for t in builtin_tasks()}
    py, js = tasks["py_len_zero"], tasks["js_var_to_let"]
    prompt = teacher_prompt(py, list(tasks.values()), TeacherConfig(few_shot=1), chatml)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert prompt.count("<|im_start|>user") == 2 and tasks["py_average_to_mean"].teacher in prompt, "same-language anchor"
    terse = ('<think>ok</think><action>{"pattern": "a", "replacement": "b", "language": "python", "paths": ["*.py"]}'
             '</action><state_update>{"constraints": [], "decisions": [], "open_issues": [], "next_focus": []}</state_update>')
    stopped = lambda t: t.teacher.rsplit("</state_update>", 1)[0]  # noqa: E731  (as sampled: stop string removed)
    steps = [(py, stopped(py)), (js, js.teacher), (py, "no trace"), (js, js.teacher), (py, terse)]
    ok, failed = Execution(True, {"verdict": "SUCCESS"}), Execution(False, {"verdict": "WRONG_OUTPUT"})
    kept, counts = collect([t for t, _ in steps], [x for _, x in steps], [0, 0, 1, 1, 2],
                           {0: ok, 1: ok, 3: failed, 4: ok}, TeacherConfig())
    assert [(r["task"], r["sample_index"]) for r in kept] == [("py_len_zero", 0), ("js_var_to_let", 0)]
    assert counts["dropped"] == {"parse:missing_tag": 1, "execution": 1, "quality": 1}
    assert counts["sampled"] == 5 and counts["kept"] == 2 and counts["parse_rate"] == pytest.approx(4 / 5)
    assert all(r["trace_quality"] >= 0.6 and r["trace"] == r["text"] for r in kept), "canonical traces round-trip"
    assert json_loads(kept[0]["env_report"])["verdict"] == "SUCCESS"
    slices = write_traces(tmp_path, kept, counts)
    assert slices == {"python": 1, "javascript": 1}
    assert pq.read_table(tmp_path / "traces" / "javascript.parquet").column("task").to_pylist() == ["js_var_to_let"]
    assert pq.read_table(tmp_path / "traces.parquet").num_rows == 2
    assert json_loads((tmp_path / "summary.json").read_text())["slices"] == slices


def json_loads(text: str):
    import json

    return json.loads(text)
