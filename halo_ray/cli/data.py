"""``halo-ray data``: prepare problem sets with seeded splits, validate files, generate data with an LLM."""

from __future__ import annotations

import argparse
import sys

from halo_ray.data.generate import BACKENDS
from halo_ray.data.sources import SOURCES


def _listing(registry) -> str:
    return "; ".join(f"{name}: {registry.doc(name).rstrip('.')}" for name in registry.names())


def register(sub) -> None:
    parser = sub.add_parser("data", help="prepare, validate and generate problem sets")
    dsub = parser.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    prep = dsub.add_parser(
        "prepare", help="write a problem set (or SFT records) with seeded train/val/test splits",
        description="Load a data source, assign each problem to train/val/test by a keyed hash of its id "
                    "(independent of input order), print the split sizes and write the chosen split.")
    prep.add_argument("--dataset", required=True, metavar="SPEC",
                      help=f"problems to load: SOURCE[:ARG][#PART] or FILE.jsonl/.parquet[#PART]; #PART is a "
                           f"named subset (humaneval#all, mbpp#official_test), a stage (demo#heldout) or a split. "
                           f"Sources: {_listing(SOURCES)}")
    prep.add_argument("--output", required=True, metavar="FILE", help="output file, .jsonl or .parquet")
    prep.add_argument("--split", default="all", choices=["train", "val", "test", "all"],
                      help="which split to write (default all: every problem, each with its split field)")
    prep.add_argument("--seed", type=int, default=42, help="split seed (default 42)")
    prep.add_argument("--ratios", default="0.5,0.2,0.3", metavar="TRAIN,VAL,TEST",
                      help="split ratios summing to 1 (default 0.5,0.2,0.3)")
    prep.add_argument("--format", default="problems", choices=["problems", "sft"],
                      help="problems: the problem schema; sft: chat-templated prompt/completion records "
                           "from problems with reference solutions")
    prep.add_argument("--from", dest="from_path", metavar="PATH",
                      help="local .jsonl/.parquet copy of a hub dataset (codeforces_cpp) when the hub is unreachable")
    prep.add_argument("--map", dest="mapping", action="append", default=[], metavar="FIELD=COLUMN,...",
                      help="for jsonl:/parquet: sources, take problem FIELD from input COLUMN, "
                           "e.g. --map prompt=question,tests=test (repeatable)")
    prep.add_argument("--tokenizer", metavar="DIR",
                      help="--format sft: render with this tokenizer's chat template instead of ChatML")
    prep.set_defaults(func=prepare)

    val = dsub.add_parser("validate", help="check a problems, SFT, samples or preferences file against its schema",
                          description="Report every bad record as FILE:LINE: message; exit status 1 if any. "
                                      "Kinds: problems (data prepare), sft (data prepare --format sft), samples "
                                      "(generate, benchmark --save-samples), preferences (DPO pairs).")
    val.add_argument("file", metavar="FILE", help=".jsonl or .parquet file")
    val.add_argument("--kind", default="auto", choices=["auto", "problems", "sft", "samples", "preferences"],
                     help="schema to check (default auto, by the first record: 'chosen' means preferences, "
                          "'prompt_id' and 'completion' samples, 'completion' sft, else problems)")
    val.set_defaults(func=validate)

    gen = dsub.add_parser(
        "generate", help="sample completions for prompts from an LLM backend (resumable)",
        description="Each finished prompt is appended to --output as one JSON line; rerunning skips the ids "
                    "already there. API keys come from OPENAI_API_KEY / ANTHROPIC_API_KEY.")
    gen.add_argument("--prompts", required=True, metavar="FILE",
                     help=".txt (a prompt per line), .jsonl/.parquet with id and prompt, or a problems SPEC (demo#heldout)")
    gen.add_argument("--backend", required=True, choices=BACKENDS.names(), help=_listing(BACKENDS))
    gen.add_argument("--model", required=True, metavar="M", help="model name (a model directory for vllm)")
    gen.add_argument("--output", required=True, metavar="FILE", help="output .jsonl (appended to)")
    gen.add_argument("--base-url", metavar="URL",
                     help="server address (openai: with /v1, default https://api.openai.com/v1; "
                          "ollama: default http://localhost:11434; anthropic: default https://api.anthropic.com)")
    gen.add_argument("--n", type=int, default=1, help="completions per prompt (default 1)")
    gen.add_argument("--concurrency", type=int, default=4, help="requests in flight at once (default 4)")
    gen.add_argument("--max-tokens", type=int, default=512, help="longest completion in tokens (default 512)")
    gen.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    gen.add_argument("--top-p", type=float, default=0.95, help="nucleus threshold (default 0.95)")
    gen.add_argument("--retries", type=int, default=5, help="retries per request on 429/5xx/connection errors")
    gen.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds, doubled each retry")
    gen.add_argument("--timeout", type=float, default=120.0, help="per-request timeout in seconds")
    gen.add_argument("--endpoint", default="completions", choices=["completions", "chat"],
                     help="openai backend: /v1/completions or /v1/chat/completions (default completions)")
    gen.set_defaults(func=generate)


def prepare(args: argparse.Namespace) -> int:
    from halo_ray.data import write_problems
    from halo_ray.data.sources import parse_mapping, problems_from_spec
    from halo_ray.data.splits import parse_ratios
    from halo_ray.io import check_table_suffix, write_records

    ratios = parse_ratios(args.ratios)
    check_table_suffix(args.output, "output")
    problems = problems_from_spec(args.dataset, seed=args.seed, ratios=ratios, from_path=args.from_path,
                                  mapping=parse_mapping(args.mapping))
    sizes = {name: sum(p.split == name for p in problems) for name in ("train", "val", "test")}
    print(f"{args.dataset}: {len(problems)} problems; seed {args.seed}, ratios {args.ratios}: "
          + ", ".join(f"{name} {count}" for name, count in sizes.items()))
    if args.split != "all":
        problems = [p for p in problems if p.split == args.split]
    if args.format == "sft":
        from halo_ray.data.sft import sft_records

        records, skipped = sft_records(problems, args.tokenizer)
        write_records(args.output, records)
        note = f" ({skipped} without a reference solution left out)" if skipped else ""
        print(f"wrote {len(records)} SFT records ({args.split}) to {args.output}{note}")
    else:
        write_problems(args.output, problems)
        print(f"wrote {len(problems)} problems ({args.split}) to {args.output}")
    return 0


def validate(args: argparse.Namespace) -> int:
    from halo_ray.data import validate_file

    kind, count, messages = validate_file(args.file, args.kind)
    for message in messages:
        print(message)
    if messages:
        print(f"{args.file}: {len(messages)} problem(s) in {count} {kind} records", file=sys.stderr)
        return 1
    print(f"{args.file}: {count} {kind} records, all valid")
    return 0


def generate(args: argparse.Namespace) -> int:
    from halo_ray.data.generate import BackendOptions, make_backend, read_prompts, run_generation

    prompts = read_prompts(args.prompts)  # bad records are named before any backend or actor starts
    generate_fn = None
    if args.backend == "vllm":  # our rollout actors, through the driver (the CLI may import Ray)
        from halo_ray.driver import generate as generate_fn
    backend = make_backend(args.backend, BackendOptions(
        model=args.model, base_url=args.base_url, max_tokens=args.max_tokens, temperature=args.temperature,
        top_p=args.top_p, timeout_s=args.timeout, retries=args.retries, backoff_s=args.backoff,
        endpoint=args.endpoint, generate_fn=generate_fn))
    try:
        if sys.stderr.isatty():
            from rich.progress import Progress

            with Progress(transient=True) as progress:
                task = progress.add_task(f"{args.backend} {args.model}", total=len(prompts))
                summary = run_generation(prompts, backend, args.output, n=args.n, concurrency=args.concurrency,
                                         on_result=lambda s: progress.update(
                                             task, completed=s.skipped + s.written + len(s.failed)))
        else:
            summary = run_generation(prompts, backend, args.output, n=args.n, concurrency=args.concurrency)
    finally:
        if args.backend == "vllm":  # our rollout actors (and maybe a Ray session this command started)
            from halo_ray import driver

            driver.shutdown()
    rate = summary.written / summary.seconds if summary.seconds else 0.0
    print(f"{args.output}: wrote {summary.written}, skipped {summary.skipped} already done, "
          f"failed {len(summary.failed)} of {summary.total} prompts in {summary.seconds:.1f} s ({rate:.2f} prompts/s)")
    if summary.failed:
        print(f"failed ids (rerun to retry them): {', '.join(summary.failed[:20])}", file=sys.stderr)
        return 1
    return 0
