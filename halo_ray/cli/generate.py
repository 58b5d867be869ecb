"""``halo-ray generate``: sample completions for prompts with rollout actors."""

from __future__ import annotations

import argparse
import time

from halo_ray.cli.common import add_config_args, job_config


def register(sub) -> None:
    parser = sub.add_parser(
        "generate", help="sample completions from a model with vLLM rollout actors on Ray",
        description="Sample N completions per prompt. Starts a local Ray session unless RAY_ADDRESS is set. "
                    "Output: one record per sample (prompt_id, sample_index, prompt, completion, token ids, "
                    "behaviour logprobs, policy_version), JSONL or Parquet by extension.")
    parser.add_argument("--model", metavar="DIR", help="Hugging Face model directory (default: the embedded tiny model)")
    parser.add_argument("--prompts", required=True, metavar="FILE",
                        help="JSONL/Parquet with a 'prompt' field (and 'id'), or a text file with one prompt per line")
    parser.add_argument("--output", required=True, metavar="FILE", help="output .jsonl or .parquet")
    parser.add_argument("--n", type=int, help="samples per prompt (rollout.samples_per_prompt)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (rollout.temperature)")
    parser.add_argument("--top-p", type=float, help="nucleus threshold (rollout.top_p)")
    parser.add_argument("--max-new-tokens", type=int, help="longest completion (rollout.max_new_tokens)")
    parser.add_argument("--seed", type=int, help="sampling seed (rollout.seed)")
    parser.add_argument("--engines", type=int, help="rollout actors (rollout.num_engines)")
    add_config_args(parser)
    parser.set_defaults(func=run)


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
    prompts = [{"prompt_id": p["id"], "prompt": p["prompt"]} for p in read_prompts(args.prompts)]
    from halo_ray import driver

    started = time.perf_counter()
    try:
        table = driver.generate(config, prompts)
    finally:
        driver.shutdown()
    elapsed = time.perf_counter() - started
    write_table(args.output, table)
    tokens = sum(len(t) for t in table.column("token_ids").to_pylist())
    print(f"wrote {table.num_rows} samples for {len(prompts)} prompts to {args.output} "
          f"({tokens} tokens, {elapsed:.1f} s including engine start)")
    return 0
