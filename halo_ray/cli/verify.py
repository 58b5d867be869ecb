"""``halo-ray verify``: run a JSONL file of programs through the sandboxed verifiers, locally (no Ray)."""

from __future__ import annotations

import argparse
import collections
import sys
import time


def register(sub) -> None:
    from halo_ray.verifiers import VERIFIERS
    from halo_ray.verifiers.base import auto_rewards_text
    from halo_ray.verifiers.reward import CHOICES, reward_table
    from halo_ray.verifiers.verdicts import MEANING

    names = VERIFIERS.names()
    parser = sub.add_parser(
        "verify", help="verify programs or generated samples (JSONL or Parquet) in warm bubblewrap sandboxes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Input records (JSONL or Parquet): id, language (python by default; c, cpp, rust, go), code, and either tests "
                    "(Python run after the code), test_cases ([{\"input\", \"output\"}]) or neither (compile and "
                    "run only: UNTESTED); optional entry_point and verifier. Sample records from `halo-ray generate` (prompt_id, "
                    "sample_index, completion and the problem's fields) are verified as they are. Unknown fields "
                    "are ignored. Output: one record per input, in input order: id, verdict, reward, pass_rate, "
                    "tests_passed, tests_total, duration_s, detail, reward_components (they sum to reward), warnings."
                    "\n\nverdicts:\n" + "\n".join(f"  {v:13} {m}" for v, m in MEANING.items())
                    + "\n\nrewards (--reward, verifier.reward), by verdict:\n" + "\n".join(f"  {line}" for line in reward_table(markdown=False))
                    + f"\n  auto (the default): {auto_rewards_text()}."
                    "\n\nverifiers:\n"
                    + "\n".join(f"  {name:10} {VERIFIERS.doc(name)}" for name in names))
    parser.add_argument("--input", required=True, metavar="IN", help="records to verify, .jsonl or .parquet "
                        "(programs, or the samples `halo-ray generate` writes)")
    parser.add_argument("--output", required=True, metavar="OUT", help="results, .jsonl or .parquet by extension, "
                        "written atomically")
    parser.add_argument("--workers", type=int, metavar="N", help="sandbox workers (default: one per available CPU)")
    parser.add_argument("--timeout", type=float, metavar="S", help="wall-clock limit per program run in seconds (default 5)")
    parser.add_argument("--verifier", choices=names, metavar="NAME",
                        help=f"default verifier for records without one (default auto; one of: {', '.join(names)})")
    parser.add_argument("--reward", choices=CHOICES, metavar="SCHEME",
                        help=f"reward scheme (default auto; one of: {', '.join(CHOICES)}; table above)")
    parser.set_defaults(func=run)


def read_input(path: str) -> list[tuple[int, dict]]:
    """``(line, record)`` pairs, JSONL or Parquet; DataError naming FILE:LINE for every bad record.

    A record is either a program (``id``, ``code``) or a sample as ``generate`` writes it
    (``prompt_id``, ``sample_index``, ``completion`` and the problem's ``tests``/``test_cases``/
    ``entry_point``/``language``): its program is built from the completion as the benchmark does.
    """
    from halo_ray.bench.score import build_program
    from halo_ray.data.schema import iter_file
    from halo_ray.errors import DataError
    from halo_ray.verifiers.base import LANGUAGES

    records, errors = [], []
    for line, record, error in iter_file(path):
        where = f"{path}:{line}"
        if error:
            errors.append(f"{where}: {error}")
            continue
        if "code" not in record and "completion" in record:  # a sample record
            if record.get("prompt_id") is None:
                errors.append(f"{where}: a sample record needs 'prompt_id' (generate writes it), got keys "
                              f"{sorted(record)[:8]}")
                continue
            if not isinstance(record["completion"], str):
                errors.append(f"{where}: 'completion' must be a string, got {type(record['completion']).__name__}")
                continue
            index = record.get("sample_index", 0)
            record = {**record, "id": record.get("id") or f"{record['prompt_id']}#{index}",
                      "code": build_program(record, record["completion"])}
        if "id" not in record:
            errors.append(f"{where}: missing 'id' (a program record has id and code; a sample record "
                          "has prompt_id and completion)")
            continue
        if not isinstance(record.get("code"), str):
            errors.append(f"{where}: 'code' must be a string, got {type(record.get('code')).__name__}")
            continue
        language = str(record.get("language") or "python").lower()
        if language not in LANGUAGES:
            errors.append(f"{where}: unknown language {language!r} (known: python, c, cpp, rust, go)")
        elif record.get("test_cases") is not None and not (
                isinstance(record["test_cases"], list)
                and all(isinstance(c, dict) and "output" in c for c in record["test_cases"])):
            errors.append(f"{where}: 'test_cases' must be a list of {{\"input\", \"output\"}} objects")
        elif record.get("tests") is not None and not isinstance(record["tests"], (str, list)):
            errors.append(f"{where}: 'tests' must be Python source (a string)")
        else:
            records.append((line, record))
    if errors:
        more = [f"... and {len(errors) - 20} more"] if len(errors) > 20 else []
        raise DataError("\n".join(errors[:20] + more))
    return records


def run(args: argparse.Namespace) -> int:
    from halo_ray.config import from_dict
    from halo_ray.errors import ConfigError, DataError
    from halo_ray.cli.progress import Progress
    from halo_ray.io import check_table_suffix
    from halo_ray.verifiers.config import VerifierConfig
    from halo_ray.verifiers import verify_batch
    from halo_ray.verifiers.pool import plan_request

    shortcuts = {"workers": args.workers, "timeout_s": args.timeout, "name": args.verifier, "reward": args.reward}
    cfg = from_dict(VerifierConfig, {k: v for k, v in shortcuts.items() if v is not None}, source="command line")
    check_table_suffix(args.output, "output")
    numbered = read_input(args.input)
    for line, record in numbered:  # every problem with its FILE:LINE before any sandbox starts
        try:
            plan_request(record, cfg)
        except (DataError, ConfigError) as exc:
            raise DataError(f"{args.input}:{line}: {exc}") from None
    records = [record for _, record in numbered]
    start = time.monotonic()
    with Progress("verified", len(records), "programs") as bar:
        results = verify_batch(records, cfg, progress=bar.update)
    for record, result in zip(records, results):  # a sample's results keep its keys
        for key in ("prompt_id", "sample_index"):
            if key in record:
                result.setdefault(key, record[key])
    write_results(args.output, results)
    elapsed = time.monotonic() - start
    counts = collections.Counter(r["verdict"] for r in results)
    summary = ", ".join(f"{v} {n}" for v, n in counts.most_common())
    rate = len(results) / elapsed if elapsed > 0 else 0.0
    print(f"verified {len(results)} records in {elapsed:.1f}s ({rate:.1f}/s): {summary or 'nothing'}; "
          f"wrote {args.output}", file=sys.stderr)
    return 0


def write_results(path: str, results: list[dict]) -> None:
    """JSONL or Parquet by extension; in Parquet ``reward_components`` is a string->double map (as in a
    ``ScoredBatch``), so verifiers with different components do not share one padded struct."""
    from halo_ray.io import check_table_suffix, write_records, write_table

    if check_table_suffix(path, "output") == ".jsonl" or not results:
        write_records(path, results)
        return
    import pyarrow as pa

    schema = pa.Table.from_pylist(results).schema
    i = schema.get_field_index("reward_components")
    if i >= 0:
        schema = schema.set(i, pa.field("reward_components", pa.map_(pa.string(), pa.float64())))
    write_table(path, pa.Table.from_pylist(results, schema=schema))
