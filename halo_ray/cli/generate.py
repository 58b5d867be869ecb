"""``halo-ray generate``: sample completions for prompts with rollout actors."""

from __future__ import annotations

import argparse
import time

from halo_ray.cli.common import add_config_args, job_config


def register(sub) -> None:
    parser = sub.add_parser(
        "generate", help="sample completions from a model with vLLM rollout actors on Ray",
        description="Sample N completions per prompt. Starts a local Ray session unless RAY_ADDRESS is set. "
                    "Output: one sample record per completion (prompt_id, sample_index, prompt, completion, token ids, "
                    "behaviour logprobs, policy_version, and the problem's tests/test_cases/entry_point/language "
                    "when the prompts are problems), JSONL or Parquet by extension; `halo-ray verify` reads it as is.")
    parser.add_argument("--model", metavar="DIR", help="Hugging Face model directory (default: the embedded tiny model)")
    parser.add_argument("--prompts", required=True, metavar="FILE|SPEC",
                        help="a problems SPEC (demo#heldout, humaneval#all, FILE.jsonl#test), JSONL/Parquet records "
                             "with 'prompt' (and 'id' or 'prompt_id'), or a .txt file with one prompt per line")
    parser.add_argument("--output", required=True, metavar="FILE", help="output .jsonl or .parquet")
    parser.add_argument("--n", type=int, help="samples per prompt (rollout.samples_per_prompt)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (rollout.temperature)")
    parser.add_argument("--top-p", type=float, help="nucleus threshold (rollout.top_p)")
    parser.add_argument("--max-new-tokens", type=int, help="longest completion (rollout.max_new_tokens)")
    parser.add_argument("--seed", type=int, help="sampling seed (rollout.seed)")
    parser.add_argument("--engines", type=int, help="rollout actors (rollout.num_engines)")
    add_config_args(parser)
    parser.set_defaults(func=run)


# Problem fields a sample keeps, so that `halo-ray verify` checks generate's output as it is.
CHECK_FIELDS = ("tests", "test_cases", "entry_point", "language")


def sample(config, prompts: list[dict]):
    """Sample ``config.rollout`` completions for ``prompts`` (``prompt_id``, ``prompt``) with progress.

    Starts (or joins) Ray, loads the engines under a spinner, and counts finished prompts as the
    rollout actors return their chunks. Returns the ``RolloutBatch`` table, by prompt and sample.
    """
    import math

    import ray

    from halo_ray import driver
    from halo_ray.cli.progress import Progress, status
    from halo_ray.samples import concat

    driver.init(config.cluster)
    r = config.rollout
    with status(f"loading {r.num_engines} rollout engine(s)"):
        group = driver.rollout_group(config.model, r)
    chunk = max(1, math.ceil(len(prompts) / max(10, r.num_engines)))  # about ten progress steps
    refs = group.submit(prompts, chunk_size=chunk, n=r.samples_per_prompt, temperature=r.temperature,
                        top_p=r.top_p, max_tokens=r.max_new_tokens, seed=r.seed, stop=list(r.stop) or None)
    size = {ref: len(prompts[i * chunk:(i + 1) * chunk]) for i, ref in enumerate(refs)}
    with Progress("sampled", len(prompts), "prompts") as bar:
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            bar.advance(size[ready[0]])
    return concat(ray.get(refs))


def with_problem_fields(table, records: dict):
    """``table`` with the ``CHECK_FIELDS`` columns its prompts' records carry appended (the engine's columns keep their types)."""
    import pyarrow as pa

    ids = table.column("prompt_id").to_pylist()
    for key in CHECK_FIELDS:
        if any(key in record for record in records.values()):
            table = table.append_column(key, pa.array([records[pid].get(key) for pid in ids]))
    return table


def run(args: argparse.Namespace) -> int:
    from halo_ray.data.generate import read_prompts
    from halo_ray.io import check_table_suffix, write_table
    from halo_ray.sections import GenerateConfig

    config = job_config(GenerateConfig, args, {
        "model.path": args.model, "rollout.samples_per_prompt": args.n, "rollout.temperature": args.temperature,
        "rollout.top_p": args.top_p, "rollout.max_new_tokens": args.max_new_tokens, "rollout.seed": args.seed,
        "rollout.num_engines": args.engines,
    })
    check_table_suffix(args.output, "output")
    if config.model.path:  # fail before reading data or starting Ray
        from halo_ray.rollout import check_model_dir

        check_model_dir(config.model.path)
    records = {p["id"]: p for p in read_prompts(args.prompts, keep=CHECK_FIELDS)}  # bad lines fail here, before Ray
    prompts = [{"prompt_id": pid, "prompt": p["prompt"]} for pid, p in records.items()]
    from halo_ray import driver

    started = time.perf_counter()
    try:
        table = sample(config, prompts)
    finally:
        driver.shutdown()
    elapsed = time.perf_counter() - started
    table = with_problem_fields(table, records)
    write_table(args.output, table)
    tokens = sum(len(t) for t in table.column("token_ids").to_pylist())
    print(f"wrote {table.num_rows} samples for {len(prompts)} prompts to {args.output} "
          f"({tokens} tokens, {elapsed:.1f} s including engine start)")
    return 0
