"""Supervised fine-tuning on reference solutions (seed 001's step 2): one learner call over the data,
one metrics point per optimizer step, an HF-format ``final/`` directory."""

from __future__ import annotations

import math
import time

from halo_ray.data.sources import problems_from_spec
from halo_ray.driver import init, resolve_model
from halo_ray.driver.stream import check_capacity
from halo_ray.errors import ConfigError
from halo_ray.io import write_json
from halo_ray.runlog import RunLog, run_path
from halo_ray.sections import SFTJobConfig


def sft_examples(problems: list[dict], tokenizer) -> list[dict]:
    """Prompt/completion token ids from problems with reference solutions.

    The completion is ``metadata.completion`` when present, else the solution with the prompt
    removed (HumanEval style), else the whole solution. Prompt and completion are tokenized
    separately (``objectives.tokenize_pair``) so the training tokens match generation.
    """
    from halo_ray.objectives import tokenize_pair

    out = []
    for p in problems:
        meta = p.get("metadata") or {}
        solution = meta.get("canonical_solution")
        completion = meta.get("completion")
        if completion is None and solution:
            completion = solution[len(p["prompt"]):] if solution.startswith(p["prompt"]) else solution
        if completion:
            out.append(tokenize_pair(tokenizer, p["prompt"], completion))
    return out


def sft(config: SFTJobConfig) -> dict:
    """Supervised fine-tuning on reference solutions; writes ``<run>/final`` (HF format) and returns a summary."""
    from transformers import AutoTokenizer

    if not config.data.train:
        raise ConfigError("data.train: name the SFT problems (with reference solutions), e.g. demo#sft")
    problems = [p.to_dict() for p in problems_from_spec(config.data.train)]  # bad data fails before anything starts
    model = resolve_model(config.model)
    examples = sft_examples(problems, AutoTokenizer.from_pretrained(model.path))
    if not examples:
        raise ConfigError(f"data.train={config.data.train!r}: no problem carries a reference solution to train on")
    path = run_path(config.logging.run_dir, config.logging.name, "sft")
    init(config.cluster)
    lc = config.learner
    steps = lc.epochs * math.ceil(len(examples) / (lc.micro_batch_size * lc.grad_accum * lc.num_ranks))
    check_capacity(learner=lc.num_ranks * lc.num_cpus_per_rank)
    run = RunLog(path, config)
    learner = None
    try:
        from halo_ray.actors.learner import LearnerGroup

        learner = LearnerGroup(model, lc, config.objective, total_steps=steps, run=run.path.name)
        started = time.perf_counter()
        metrics = learner.train(examples)
        for record in metrics.pop("steps_log"):
            run.log(record["global_step"], {f"train/{k}": v for k, v in record.items()}, stage="sft")
        final = run.path / "final"
        learner.save_checkpoint(str(final), {"examples": len(examples)})
        summary = {"run_dir": str(run.path), "final": str(final), "examples": len(examples),
                   "train": metrics, "seconds": time.perf_counter() - started}
        write_json(run.path / "summary.json", summary)
        return summary
    finally:
        run.close()
        if learner is not None:
            learner.shutdown()
