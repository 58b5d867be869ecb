"""The SRL trace format: strict parsing with reasons, the canonical form, counting, tag tokens."""

from __future__ import annotations

import json

import pytest

from halo_ray.errors import ModelError
from halo_ray.srl import RejectionCounter, TraceError, format_trace, parse_trace, round_trips
from halo_ray.srl.tokens import SCHEMA_KEY, add_trace_tokens, check_trace_tokens, schema_version
from halo_ray.srl.trace import SCHEMA_VERSION, TAG_TOKENS, canonical

ACTION = {"pattern": "len($X) == 0", "replacement": "not $X", "language": "python", "paths": ["src/**/*.py"]}
STATE = {"constraints": ["keep behaviour"], "decisions": ["use truthiness"], "open_issues": [], "next_focus": ["tests"]}


def make(think="Empty sequences are falsy.", action=None, state=None, before="", between="\n", after=""):
    a = json.dumps(ACTION if action is None else action)
    s = json.dumps(STATE if state is None else state)
    return (f"{before}<think>{think}</think>{between}<action>{a}</action>{between}"
            f"<state_update>{s}</state_update>{after}")


def reason(text):
    with pytest.raises(TraceError) as info:
        parse_trace(text)
    return info.value.reason


def test_valid_trace_parses_into_fields():
    trace = parse_trace(make(before="\n  ", after="\n"))
    assert trace.think == "Empty sequences are falsy."
    assert trace.action.pattern == "len($X) == 0" and trace.action.paths == ("src/**/*.py",)
    assert trace.action.constraints is None
    assert trace.state.decisions == ("use truthiness",) and trace.state.open_issues == ()


def test_optional_constraints_object():
    trace = parse_trace(make(action={**ACTION, "constraints": {"X": {"regex": "^items$"}}}))
    assert trace.action.constraints == {"X": {"regex": "^items$"}}
    assert reason(make(action={**ACTION, "constraints": ["X"]})) == "action_type"


@pytest.mark.parametrize("text, why", [
    (make().replace("<think>", "").replace("</think>", ""), "missing_tag"),
    (make().replace("</state_update>", ""), "missing_tag"),
    ("<action>{}</action><think>x</think><state_update>{}</state_update>", "tag_order"),
    (make() + "<think>again</think>", "nested_tag"),
    (make(before="Sure! Here it is:\n"), "extra_text"),
    (make(between="\nand then\n"), "extra_text"),
    (make(after=" trailing"), "extra_text"),
    (make(think="   "), "empty_think"),
    (make().replace(json.dumps(ACTION), '{"pattern": "x",'), "action_json"),
    (make(action=["not", "an", "object"]), "action_json"),
    (make(action={k: v for k, v in ACTION.items() if k != "paths"}), "action_missing_key"),
    (make(action={**ACTION, "rewrite": "y"}), "action_unknown_key"),
    (make(action={**ACTION, "paths": "src/*.py"}), "action_type"),
    (make(action={**ACTION, "paths": []}), "action_type"),
    (make(action={**ACTION, "pattern": 3}), "action_type"),
    (make(action={**ACTION, "pattern": " "}), "action_type"),
    (make(action={**ACTION, "language": "cobol"}), "action_language"),
    (make().replace(json.dumps(STATE), "{constraints: []}"), "state_update_json"),
    (make(state={k: v for k, v in STATE.items() if k != "next_focus"}), "state_missing_key"),
    (make(state={**STATE, "mood": []}), "state_unknown_key"),
    (make(state={**STATE, "decisions": "one"}), "state_type"),
    (make(state={**STATE, "decisions": [1]}), "state_type"),
])
def test_rejections_name_their_reason(text, why):
    assert reason(text) == why


def test_non_text_is_rejected():
    assert reason(None) == "not_text"


def test_format_round_trips_and_is_canonical():
    text = make(action={**ACTION, "constraints": {"X": {"regex": "é"}}})
    assert not round_trips(text)  # not in canonical layout
    canon = canonical(text)
    assert round_trips(canon)
    assert parse_trace(canon) == parse_trace(text)
    assert format_trace(parse_trace(canon)) == canon
    assert canon.startswith("<think>\n") and canon.endswith("</state_update>")
    with pytest.raises(TraceError):
        round_trips("no tags")


def test_rejection_counter():
    counter = RejectionCounter()
    out = counter.parse_all([make(), make(before="x"), make(before="y"), "nothing", make()])
    assert [t is not None for t in out] == [True, False, False, False, True]
    assert counter.total == 5 and counter.parse_rate() == pytest.approx(0.4)
    assert counter.rejections() == {"extra_text": 2, "missing_tag": 1}
    assert RejectionCounter().parse_rate() == 0.0


def test_tags_become_single_tokens_of_the_tiny_model_and_survive_decoding(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from halo_ray.tiny import init_tiny

    folder = init_tiny(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    before = len(tokenizer)
    assert len(tokenizer.encode("<state_update>", add_special_tokens=False)) > 1
    with pytest.raises(ModelError):
        check_trace_tokens(tokenizer)

    assert add_trace_tokens(tokenizer, model) == len(TAG_TOKENS)
    assert len(tokenizer) == before + len(TAG_TOKENS)
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)
    assert model.get_output_embeddings().weight.shape[0] == model.get_input_embeddings().weight.shape[0]
    check_trace_tokens(tokenizer)
    ids = tokenizer.encode(make(), add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=False) == make()
    assert tokenizer.decode(ids, skip_special_tokens=True) == make(), "vLLM decodes skipping special tokens"
    assert all(len(tokenizer.encode(t, add_special_tokens=False)) == 1 for t in TAG_TOKENS)
    assert add_trace_tokens(tokenizer, model) == 0  # idempotent

    out = tmp_path / "prepared"
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    reloaded = AutoTokenizer.from_pretrained(out)
    assert schema_version(reloaded) == SCHEMA_VERSION
    check_trace_tokens(reloaded)
    assert json.loads((out / "config.json").read_text())[SCHEMA_KEY] == SCHEMA_VERSION
    assert AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight.shape[0] >= len(reloaded)

    reloaded.init_kwargs[SCHEMA_KEY] = "srl-trace-v0"
    with pytest.raises(ModelError, match="srl-trace-v0"):
        add_trace_tokens(reloaded)


def test_srl_training_prepares_a_base_with_the_tags_once_and_keeps_a_prepared_one(tmp_path):
    from transformers import AutoTokenizer

    from halo_ray.driver.srl import with_trace_tokens
    from halo_ray.sections import LoggingConfig, ModelConfig, SRLJobConfig
    from halo_ray.tiny import init_tiny

    base = init_tiny(tmp_path / "tiny")
    config = SRLJobConfig(model=ModelConfig(path=str(base)), logging=LoggingConfig(run_dir=str(tmp_path / "runs"), name="r"))
    prepared = with_trace_tokens(config, progress=lambda line: None)
    assert prepared.model.path == str(tmp_path / "runs" / "r" / "base-model")
    check_trace_tokens(AutoTokenizer.from_pretrained(prepared.model.path))
    assert schema_version(AutoTokenizer.from_pretrained(base)) is None, "the base itself is left alone"
    again = with_trace_tokens(SRLJobConfig(model=prepared.model, logging=config.logging), progress=lambda line: None)
    assert again.model.path == prepared.model.path
