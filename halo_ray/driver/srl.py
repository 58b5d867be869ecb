"""SRL on the stream (seed 003): GRPO on trace-matching rewards with a KL anchor to the base.

The learner step is GRPO's (``grpo_batch``: groups with signal, group-normalised advantages, the
clipped surrogate with ``objective.grpo.kl_coef`` x KL to the base), with two changes: the rewards
come from the ``srl_trace`` verifier (each sample's trace scored against its task's teacher trace,
seed 003 §18), and a malformed trace trains with advantage 0 (``srl.zero_malformed_advantage``,
§7). Each step also logs seed 003 §27's metrics, overall and by language (``srl/<metric>`` and
``srl/<language>/<metric>``): trace parse rate, action fidelity, state faithfulness, think
similarity and brevity penalty, the reward, execution success (with ``verifier.execute``), and the
words in ``<think>`` and ``<state_update>``. KL per token is the objective's ``train/kl``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from halo_ray.driver.grpo import grpo_batch
from halo_ray.driver.loop import StepBatch, run_stream
from halo_ray.driver.stream import Stream
from halo_ray.errors import ConfigError
from halo_ray.sections import SRLJobConfig
from halo_ray.srl.prompts import close_trace

log = logging.getLogger(__name__)

METRICS = ("trace_parse_rate", "action_fidelity", "state_faithfulness", "think_similarity", "brevity_penalty",
           "reward_mean", "execution_success", "think_tokens", "state_tokens")
RENAMED = {"think_tokens": "think_words", "state_tokens": "state_words"}  # counted in words on the driver


def components(row: dict) -> dict[str, float]:
    """A sample's reward components as a dict (Arrow map columns arrive as (key, value) pairs)."""
    comp = row.get("reward_components") or {}
    return dict(comp.items() if isinstance(comp, dict) else comp)


def is_malformed(row: dict) -> bool:
    """Whether the srl_trace verifier found the sample's trace malformed (no components: malformed too)."""
    return components(row).get("malformed", 1.0) >= 0.5


def _block_words(text: str, tag: str) -> int:
    start, end = text.find(f"<{tag}>"), text.find(f"</{tag}>")
    if start < 0:
        return 0
    return len(text[start + len(tag) + 2:end if end > start else len(text)].split())


def eval_rows(rows: list[dict], problems: dict[str, dict]) -> list[dict]:
    """Stream samples as ``halo_ray.srl.evaluate`` rows (components, language, execution, word counts)."""
    out = []
    for x in rows:
        comp = components(x)
        malformed = is_malformed(x)
        problem = problems.get(x["prompt_id"], {})
        out.append({
            "task": x["prompt_id"], "language": problem.get("language", "unknown"), "malformed": malformed,
            "total": float(x["reward"]), **{k: comp.get(k, 0.0) for k in ("action", "state", "think", "brevity_penalty")},
            "success": None if "executed" not in comp else comp["executed"] >= 0.5,
            "think_tokens": 0 if malformed else _block_words(x["completion"], "think"),
            "state_tokens": 0 if malformed else _block_words(x["completion"], "state_update"),
        })
    return out


def srl_metrics(rows: list[dict], problems: dict[str, dict]) -> dict[str, float]:
    """Seed 003 §27's metrics of a step's samples: ``srl/<metric>`` and ``srl/<language>/<metric>``."""
    from halo_ray.srl.evaluate import summarize

    if not rows:
        return {}
    report = summarize(eval_rows(rows, problems))
    out = {}
    for prefix, metrics in [("srl", report["overall"])] + [(f"srl/{k}", v) for k, v in report["by_language"].items()]:
        for key in METRICS:
            if metrics.get(key) is not None:
                out[f"{prefix}/{RENAMED.get(key, key)}"] = float(metrics[key])
    return out


def srl_batch(config: SRLJobConfig) -> Callable[[Stream, int], StepBatch]:
    """SRL's step: GRPO's, malformed samples at advantage 0, and the §27 metrics added."""
    grpo = grpo_batch(config, is_malformed if config.srl.zero_malformed_advantage else None)

    def make(stream: Stream, version: int) -> StepBatch:
        batch = grpo(stream, version)
        metrics = srl_metrics(batch.rows, stream.problems)
        batch.metrics.update(metrics)
        batch.metrics["srl/malformed_zeroed"] = sum(1 for x in batch.rows if is_malformed(x)) \
            if config.srl.zero_malformed_advantage else 0
        inner = batch.describe
        batch.describe = lambda train: (f"parse {metrics.get('srl/trace_parse_rate', 0.0):.2f}, action "
                                        f"{metrics.get('srl/action_fidelity', 0.0):.3f}, " + inner(train))
        return batch

    return make


def srl(config: SRLJobConfig, resume: bool = False, progress: Callable[[str], None] = log.info) -> dict:
    """Run SRL on the stream; returns the summary (run directory, stages, sample accounting).

    Args:
        config: the job config (``configs/srl.yaml`` mirrors it).
        resume: continue the run in ``logging.run_dir/logging.name`` from its last checkpoint.
        progress: receives one line per evaluation and step (the CLI prints them).
    """
    if not isinstance(config, SRLJobConfig):
        raise ConfigError(f"srl: expected an SRLJobConfig, got {type(config).__name__}")
    if config.srl.trace_tokens:
        config = with_trace_tokens(config, progress)
    return run_stream(config, "srl", resume, progress, srl_batch(config))


def with_trace_tokens(config: SRLJobConfig, progress: Callable[[str], None] = log.info) -> SRLJobConfig:
    """``config`` with a model whose tokenizer holds the trace tags (``srl.trace_tokens``).

    A model that has them already is used as is; otherwise its copy with the tags added and the embeddings
    resized is written to ``<run>/base-model`` (kept on ``--resume``) and becomes ``model.path``, so the learner,
    the KL anchor and the vLLM engines all load the same resized model.
    """
    import dataclasses

    from transformers import AutoTokenizer

    from halo_ray.driver import resolve_model
    from halo_ray.driver.loop import named_run
    from halo_ray.srl.tokens import has_trace_tokens, prepare_model_dir

    config = named_run(config, "srl")
    model = resolve_model(config.model)
    if has_trace_tokens(AutoTokenizer.from_pretrained(model.path)):
        return dataclasses.replace(config, model=model)
    prepared = Path(config.logging.run_dir) / config.logging.name / "base-model"
    if not (prepared / "config.json").is_file():
        added = prepare_model_dir(model.path, prepared)
        progress(f"{model.path}: {added} trace tag tokens added (embeddings resized) in {prepared}")
    return dataclasses.replace(config, model=dataclasses.replace(model, path=str(prepared)))


def evaluate_model(config: SRLJobConfig, output: str = "", progress: Callable[[str], None] = log.info) -> dict:
    """Seed 003 §27's metrics of ``config.model`` on held-out tasks (``halo-ray srl eval``).

    Samples ``eval.samples`` outputs per task of ``data.eval`` (default ``srl#heldout``) with the
    evaluation settings (``eval.temperature``, ``eval.top_p``, ``eval.seed``; ``rollout.max_new_tokens``
    and ``rollout.stop``), scores each against its task's teacher trace (``verifier.srl``), applies
    every parsed action with ast-grep and runs the task's tests in the sandbox (execution success).

    Args:
        config: the job config; ``model.path`` is the model to evaluate (empty: the embedded tiny model): a
            Hugging Face model folder, or a LoRA checkpoint (adapter only), which is merged into its base
            (``adapter_config.json``'s ``base_model_name_or_path``) in a temporary folder for the engine.
        output: where the report goes as JSON (empty: nowhere).
    Returns:
        ``{"model", "tasks", "samples_per_task", "overall", "by_language", "by_task", "rejections", "samples",
        "settings", "elapsed_s"}``: ``overall`` and each language hold ``halo_ray.srl.evaluate.summarize``'s metrics
        (trace parse rate, action fidelity, state faithfulness, think similarity, brevity penalty, reward, execution
        success, think and state tokens, histograms, failures by kind); ``by_task`` the per-task means of
        ``halo_ray.srl.evaluate.TASK_METRICS`` (for paired tests across models); ``samples`` each completion with
        its parsed action, success and failure kind (``halo_ray.srl.evaluate.report``).
    """
    import dataclasses
    import tempfile
    import time

    from halo_ray.adapters import is_adapter_dir, merged_model
    from halo_ray.config import validated
    from halo_ray.data.sources import problems_from_spec
    from halo_ray.driver import RolloutGroup, init, resolve_model
    from halo_ray.errors import DataError
    from halo_ray.io import write_json
    from halo_ray.srl.evaluate import report as report_completions
    from halo_ray.srl.tasks import task_index

    config = validated(config)
    spec = config.data.eval or "srl#heldout"
    problems = [p.to_dict() for p in problems_from_spec(spec)]
    tasks = task_index()
    unknown = [p["id"] for p in problems if (p.get("metadata") or {}).get("srl_task") not in tasks]
    if unknown:
        raise DataError(f"data.eval={spec!r}: srl eval runs the SRL tasks (srl#heldout, srl:synthetic#heldout); "
                        f"{len(unknown)} problem(s) name none, e.g. {unknown[:3]}")
    init(config.cluster)
    e, r = config.eval, config.rollout
    started = time.perf_counter()
    model = config.model
    adapter = bool(model.path) and is_adapter_dir(model.path)
    # beside the checkpoint, which lies where every node can read it (the engine may run on another node)
    with tempfile.TemporaryDirectory(prefix=".srl-eval-merged-", dir=Path(model.path).parent if adapter else None) as scratch:
        if adapter:  # vLLM loads one model folder: base and adapter merged
            progress(f"{model.path} is a LoRA adapter: merging it into its base model for the evaluation")
            model = dataclasses.replace(model, path=str(merged_model(model.path, Path(scratch) / "merged")),
                                        lora=dataclasses.replace(model.lora, enabled=False))
        model = resolve_model(model)
        group = RolloutGroup(model, r)
        try:
            table = group.generate([{"prompt_id": p["id"], "prompt": p["prompt"]} for p in problems], n=e.samples,
                                   temperature=e.temperature, top_p=e.top_p, max_tokens=r.max_new_tokens,
                                   seed=e.seed, stop=list(r.stop) or None)
        finally:
            group.shutdown()
    rows = table.to_pylist()
    progress(f"sampled {len(rows)} outputs for {len(problems)} tasks; scoring and executing them")
    by_id = {p["id"]: tasks[p["metadata"]["srl_task"]] for p in problems}
    scored = report_completions([by_id[x["prompt_id"]] for x in rows], [x["completion"] for x in rows],
                                config.verifier.srl, verifier=dataclasses.replace(config.verifier, extract_code=False),
                                restore=config.verifier.restore_stop)
    report = {"model": config.model.path or model.path, "tasks": spec, "samples_per_task": e.samples, **scored,
              "settings": {"temperature": e.temperature, "top_p": e.top_p, "seed": e.seed,
                           "max_new_tokens": r.max_new_tokens, "stop": list(r.stop),
                           "embedder": config.verifier.srl.embedder},
              "elapsed_s": round(time.perf_counter() - started, 3)}
    if output:
        write_json(Path(output), report)
    o = report["overall"]
    progress(f"parse rate {o['trace_parse_rate']:.3f}, action fidelity {o['action_fidelity']:.3f}, state "
             f"{o['state_faithfulness']:.3f}, think {o['think_similarity']:.3f}, execution success "
             f"{o['execution_success'] if o['execution_success'] is not None else 'n/a'}")
    return report


def traces(config, progress: Callable[[str], None] = log.info) -> dict:
    """Teacher traces (``halo-ray srl traces``): sample on rollout actors, parse, execute, filter, write Parquet.

    Each task of ``data.train`` gets ``rollout.samples_per_prompt`` traces from ``model`` (its chat
    template, or ChatML, over the system role, ``teacher.few_shot`` anchors and the task), sampled
    with ``rollout`` (T 0.3, top-p 0.9, stop at ``</state_update>``). Every parsed action is applied
    with ast-grep and the task's tests run in the sandbox; steps that fail, do not parse or fall
    below ``teacher.min_quality`` (``<think>`` measured in the teacher's tokens) are dropped.

    Returns:
        The ``summary.json``: ``model``, ``tasks``, ``sampled``, ``kept``, ``dropped`` (reason -> count),
        ``rejections``, ``parse_rate``, ``slices`` (rows per slice), ``settings``, ``elapsed_s``.
    """
    import time

    from transformers import AutoTokenizer

    from halo_ray.config import validated
    from halo_ray.data.sft import chatml
    from halo_ray.data.sources import problems_from_spec
    from halo_ray.driver import RolloutGroup, init, resolve_model
    from halo_ray.errors import DataError
    from halo_ray.srl.execute import execute_many
    from halo_ray.srl.tasks import builtin_tasks
    from halo_ray.srl.teacher import collect, teacher_prompt, write_traces
    from halo_ray.srl.trace import TraceError, parse_trace

    config = validated(config)
    out = Path(config.output)
    if (out / "summary.json").exists():
        raise ConfigError(f"{out} already holds traces (summary.json): choose another output")
    pool = builtin_tasks()
    by_id = {t.id: t for t in pool}
    problems = problems_from_spec(config.data.train)
    missing = [p.id for p in problems if p.metadata.get("srl_task") not in by_id]
    if missing:
        raise DataError(f"data.train={config.data.train!r}: teacher traces are for the built-in SRL tasks (srl#train); "
                        f"{len(missing)} problem(s) name none, e.g. {missing[:3]}")
    tasks = [by_id[p.metadata["srl_task"]] for p in problems]
    init(config.cluster)
    model = resolve_model(config.model)
    tokenizer = AutoTokenizer.from_pretrained(model.path)
    render = chatml if not tokenizer.chat_template else (
        lambda msgs, gen: tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen))
    r = config.rollout
    started = time.perf_counter()
    group = RolloutGroup(model, r)
    try:
        table = group.generate([{"prompt_id": t.id, "prompt": teacher_prompt(t, pool, config.teacher, render)}
                                for t in tasks])
    finally:
        group.shutdown()
    rows = table.to_pylist()
    progress(f"sampled {len(rows)} teacher steps for {len(tasks)} tasks; executing the parsed actions")
    step_tasks = [by_id[x["prompt_id"]] for x in rows]
    parsed = {}
    for i, (task, x) in enumerate(zip(step_tasks, rows)):
        try:
            parsed[i] = parse_trace(close_trace(x["completion"]))
        except TraceError:
            continue
    runs = execute_many([(step_tasks[i], t.action) for i, t in parsed.items()], config.verifier) if parsed else []
    executions = dict(zip(parsed, runs))
    kept, counts = collect(step_tasks, [x["completion"] for x in rows], [x["sample_index"] for x in rows], executions,
                           config.teacher, count_tokens=lambda text: len(tokenizer.encode(text, add_special_tokens=False)))
    summary = {"model": model.path, "tasks": config.data.train, **counts,
               "settings": {"temperature": r.temperature, "top_p": r.top_p, "max_new_tokens": r.max_new_tokens,
                            "stop": list(r.stop), "seed": r.seed, "few_shot": config.teacher.few_shot,
                            "min_quality": config.teacher.min_quality, "max_think_tokens": config.teacher.max_think_tokens},
               "elapsed_s": round(time.perf_counter() - started, 3)}
    summary["slices"] = write_traces(out, kept, summary)
    progress(f"kept {counts['kept']} of {counts['sampled']} teacher steps (parse rate {counts['parse_rate']:.3f}; "
             f"dropped {counts['dropped']}) in {out}")
    return summary
