"""Reward schemes and the verdict taxonomy without a sandbox: the table, its parts, scoring, config, docs."""

from __future__ import annotations

import ast
import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from halo_ray.config import from_dict
from halo_ray.errors import ConfigError
from halo_ray.verifiers import VERIFIERS, VerifierConfig, score
from halo_ray.verifiers.base import auto_rewards, code_blocks, extract_code, sanitize
from halo_ray.verifiers.reward import CHOICES, SCHEMES, resolve, reward_table, scheme_reward
from halo_ray.verifiers.verdicts import FAILED, JUDGED, NOT_APPLIED, UNSCORED, UNTESTED, VERDICTS

ROOT = Path(__file__).resolve().parents[2]

# Seed 000's table under graduated; (passed, total) of the example are 1 of 4 where the verdict allows it.
GRADUATED = {"SUCCESS": (1.0, 1.0), "WRONG_OUTPUT": (0.7, 0.7), "RUNTIME_ERROR": (0.5, 0.3), "TIMEOUT": (0.5, 0.3),
             "SYNTAX_ERROR": (0.0, 0.0), "UNTESTED": (0.5, 0.3), "FAILED": (0.0, 0.0)}


def counts(verdict):
    """Every (passed, total) a verdict can come with."""
    if verdict in (UNTESTED, FAILED):
        return [(0, 0)]
    if verdict == "SUCCESS":
        return [(t, t) for t in (1, 3, 7)]
    return [(p, t) for t in (0, 1, 3, 7) for p in range(t + 1) if not (verdict == "SYNTAX_ERROR" and p)]


@pytest.mark.parametrize("scheme,verdict", list(itertools.product(SCHEMES, VERDICTS)))
def test_components_sum_exactly_to_the_reward(scheme, verdict):
    for (passed, total), warnings in itertools.product(counts(verdict), (False, True)):
        reward, parts = scheme_reward(scheme, verdict, passed, total, warnings)
        assert sum(parts.values()) == reward, (scheme, verdict, passed, total, warnings, parts)
        assert 0.0 <= reward <= 1.0 and all(v >= 0 for v in parts.values())
        if scheme == "graduated":
            assert reward == GRADUATED[verdict][warnings], (verdict, warnings)
            assert set(parts) == {"compile", "run", "correct"}
        elif scheme == "pass_rate":
            judged = verdict not in ("SYNTAX_ERROR", UNTESTED, FAILED) and total
            assert reward == (passed / total if judged else 0.0)
        else:
            assert reward == (1.0 if verdict == "SUCCESS" else 0.0)


def test_score_is_computed_on_the_host_from_the_sanitized_judgement():
    crash = {"verdict": "RUNTIME_ERROR", "passed": 0, "total": 3, "warnings": False, "detail": "NameError"}
    assert score(crash, "pass_rate")["reward"] == 0.0  # a Python crash at pass_rate 0 earns nothing
    assert score(crash, "graduated")["reward"] == 0.5
    partial = score(dict(crash, passed=2), "pass_rate")
    assert (partial["reward"], partial["pass_rate"], partial["tests_passed"], partial["tests_total"]) == (2 / 3, 2 / 3, 2, 3)
    nothing = score({"verdict": "SUCCESS", "passed": 0, "total": 0}, "pass_fail")
    assert (nothing["verdict"], nothing["reward"], nothing["pass_rate"]) == (UNTESTED, 0.0, 0.0)
    # A judge may only return its five verdicts; a forged host-side one (or garbage) is a RUNTIME_ERROR.
    for forged in ({"verdict": UNTESTED, "total": 0}, {"verdict": FAILED}, ["SUCCESS"], None):
        out = score(forged, "pass_fail")
        assert (out["verdict"], out["reward"], out["reward_components"]) == ("RUNTIME_ERROR", 0.0, {"success": 0.0})
    assert sanitize({"verdict": "SUCCESS", "passed": 5, "total": 2})["passed"] == 2  # never more than total


def test_unknown_scheme_names_the_key():
    assert from_dict(VerifierConfig, {"reward": "pass_fail"}).reward == "pass_fail"
    with pytest.raises(ConfigError, match=r"verifier\.reward: 'passfail' is not one of auto, graduated, pass_rate, "
                                          r"pass_fail; did you mean 'pass_fail'\?"):
        from halo_ray.sections import RaftJobConfig

        from_dict(RaftJobConfig, {"verifier": {"reward": "passfail"}})
    with pytest.raises(ConfigError, match="verifier.reward: unknown reward scheme 'binary'"):
        resolve("binary", "graduated")
    assert resolve("auto", "pass_rate") == "pass_rate" and resolve("graduated", "pass_rate") == "graduated"
    from halo_ray.objectives.grpo import REWARDS, GRPOConfig

    assert REWARDS == ("verifier", *SCHEMES)  # GRPO names the same schemes, plus the verifier's own reward
    with pytest.raises(ConfigError, match="reward: 'binary' is not one of verifier, graduated"):
        from_dict(GRPOConfig, {"reward": "binary"})


def test_auto_is_graduated_for_compiled_languages_and_pass_rate_for_python():
    assert auto_rewards() == {"pass_rate": ["python", "humaneval", "mbpp", "pytest"],
                              "graduated": ["gcc", "g++", "clang", "clang++", "rust", "go"]}
    auto = VERIFIERS.get("auto")()
    assert [auto.default_reward({"language": lang}) for lang in ("python", "c", "cpp", "rust", "go")] == \
        ["pass_rate", "graduated", "graduated", "graduated", "graduated"]
    from halo_ray.config import describe

    doc = next(d for k, _t, _d, d in describe(VerifierConfig) if k == "reward")
    for names in auto_rewards().values():
        assert ", ".join(names) in doc


def test_the_readme_and_help_show_the_table():
    readme = (ROOT / "README.md").read_text()
    assert "\n".join(reward_table()) in readme, "README's reward table differs from reward_table(); paste it again"
    done = subprocess.run([sys.executable, "-m", "halo_ray", "verify", "--help"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for line in reward_table(markdown=False):
        assert line in done.stdout
    assert "UNTESTED" in done.stdout and "--reward SCHEME" in done.stdout


def test_one_verdict_taxonomy():
    assert VERDICTS[:5] == JUDGED and UNTESTED in VERDICTS and UNSCORED == (FAILED,)
    from halo_ray import bench, sections
    from halo_ray.verifiers import config

    assert bench.VERDICTS is VERDICTS and sections.VerifierConfig is config.VerifierConfig
    # The sandbox side (standard library only, started by path) writes verdicts as strings: each one it
    # can write must be one a judge may return.
    for name in ("sandbox_worker.py", "sandbox.py"):
        source = (ROOT / "halo_ray" / name).read_text()
        written = {node.value for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Constant)
                   and isinstance(node.value, str) and re.fullmatch(r"[A-Z]+(_[A-Z]+)*", node.value)
                   and re.search(r"ERROR|OUTPUT|TIMEOUT|SUCCESS|FAIL|TESTED", node.value)}
        assert written and written <= set(JUDGED), (name, written - set(JUDGED))
    # Nowhere else in the package is a verdict list or "FAILED" spelled out.
    for path in (ROOT / "halo_ray").rglob("*.py"):
        if path.name in ("verdicts.py", "sandbox_worker.py", "sandbox.py"):
            continue
        tree = ast.parse(path.read_text())
        exported = {id(c) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                    and any(getattr(t, "id", "") == "__all__" for t in node.targets) for c in ast.walk(node.value)}
        strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) not in exported]
        assert not {FAILED, UNTESTED, NOT_APPLIED} & set(strings), path
        tuples = [n for n in ast.walk(tree) if isinstance(n, (ast.Tuple, ast.List))
                  and sum(isinstance(e, ast.Constant) and e.value in JUDGED for e in n.elts) >= 3]
        assert not tuples, f"{path}: a list of verdicts outside verifiers/verdicts.py"


def test_one_fence_extractor():
    text = "Here:\n```text\nnot code\n```\nthen\n```Python3 run\ndef f():\n    return 1\n```\n"
    assert code_blocks(text) == [("text", "not code\n"), ("python3", "def f():\n    return 1\n")]
    assert extract_code(text, "python") == "def f():\n    return 1\n"
    assert code_blocks("no fences") == [] and extract_code("x ```y``` z", "python") == "x ```y``` z"
    from halo_ray.bench.score import build_program

    assert build_program({"prompt": "p", "language": "python"}, text) == "def f():\n    return 1\n"
    for path in (ROOT / "halo_ray").rglob("*.py"):
        if path.name == "base.py" and path.parent.name == "verifiers":
            continue
        for line in path.read_text().splitlines():
            assert not ("re.compile" in line and "```" in line), f"{path}: a fence regex outside verifiers/base.py"


def test_grpo_recomputes_a_scheme_from_the_scored_batch_as_the_verifier_would():
    import pyarrow as pa

    from halo_ray.groups import prepare_groups
    from halo_ray.objectives.grpo import GRPOConfig
    from halo_ray.samples import ROLLOUT_SCHEMA
    from halo_ray.selection import score_rollouts

    judged = [{"verdict": "RUNTIME_ERROR", "passed": 1, "total": 4, "warnings": True},
              {"verdict": "WRONG_OUTPUT", "passed": 3, "total": 4}, {"verdict": "SUCCESS", "passed": 4, "total": 4},
              {"verdict": "SYNTAX_ERROR", "passed": 0, "total": 4}]
    rows = [{"prompt_id": "p", "sample_index": i, "prompt": "", "completion": "x", "prompt_token_ids": [1],
             "token_ids": [1, 2], "logprobs": [-1.0, -1.0], "policy_version": 0, "policy_version_last": 0,
             "finish_reason": "stop", "engine": 0, "generate_s": 0.0} for i in range(len(judged))]
    table = pa.Table.from_pylist(rows, schema=ROLLOUT_SCHEMA)
    scored = score_rollouts(table, {"p": {"prompt": "", "tests": "assert True"}},
                            lambda records: [score(raw, "pass_rate") for raw in judged])
    assert scored.column("reward").to_pylist() == [0.25, 0.75, 1.0, 0.0]
    for how, scheme in (("verifier", "pass_rate"), ("graduated", "graduated"), ("pass_fail", "pass_fail")):
        out, _ = prepare_groups(scored, GRPOConfig(reward=how, filter_zero_variance=False), max_new_tokens=8)
        assert out.column("train_reward").to_pylist() == [score(raw, scheme)["reward"] for raw in judged], how
    assert [score(raw, "graduated")["reward"] for raw in judged] == [0.3, 0.7, 1.0, 0.0]
