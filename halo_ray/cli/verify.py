"""``halo-ray verify``: run a JSONL file of programs through the sandboxed verifiers, locally (no Ray)."""

from __future__ import annotations

import argparse
import collections
import sys
import time


def register(sub) -> None:
    from halo_ray.verifiers import VERIFIERS

    names = VERIFIERS.names()
    parser = sub.add_parser(
        "verify", help="verify programs from a JSONL file in warm bubblewrap sandboxes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Input records: id, language (python by default; c, cpp, rust, go), code, and either tests "
                    "(Python run after the code), test_cases ([{\"input\", \"output\"}]) or neither (compile and "
                    "run only); optional entry_point and verifier. Unknown fields are ignored. Output: one JSON "
                    "line per input, in input order: id, verdict, reward, pass_rate, duration_s, detail, "
                    "reward_components, warnings.\n\nverifiers:\n"
                    + "\n".join(f"  {name:10} {VERIFIERS.doc(name)}" for name in names))
    parser.add_argument("--input", required=True, metavar="IN.jsonl", help="records to verify")
    parser.add_argument("--output", required=True, metavar="OUT.jsonl", help="results, written atomically")
    parser.add_argument("--workers", type=int, metavar="N", help="sandbox workers (default: one per available CPU)")
    parser.add_argument("--timeout", type=float, metavar="S", help="wall-clock limit per program run in seconds (default 5)")
    parser.add_argument("--verifier", choices=names, metavar="NAME",
                        help=f"default verifier for records without one (default auto; one of: {', '.join(names)})")
    parser.set_defaults(func=run)


def read_input(path: str) -> list[tuple[int, dict]]:
    """``(line, record)`` pairs; DataError naming FILE:LINE for bad JSON or a missing/invalid field."""
    from halo_ray.errors import DataError
    from halo_ray.io import read_jsonl
    from halo_ray.verifiers.base import LANGUAGES

    records = []
    for line, record in read_jsonl(path):
        where = f"{path}:{line}"
        if "id" not in record:
            raise DataError(f"{where}: missing 'id'")
        if not isinstance(record.get("code"), str):
            raise DataError(f"{where}: 'code' must be a string, got {type(record.get('code')).__name__}")
        language = str(record.get("language") or "python").lower()
        if language not in LANGUAGES:
            raise DataError(f"{where}: unknown language {language!r} (known: python, c, cpp, rust, go)")
        if "test_cases" in record and not (isinstance(record["test_cases"], list)
                                           and all(isinstance(c, dict) and "output" in c for c in record["test_cases"])):
            raise DataError(f"{where}: 'test_cases' must be a list of {{\"input\", \"output\"}} objects")
        if "tests" in record and not isinstance(record["tests"], (str, list)):
            raise DataError(f"{where}: 'tests' must be Python source (a string)")
        records.append((line, record))
    return records


def run(args: argparse.Namespace) -> int:
    from halo_ray.config import from_dict
    from halo_ray.errors import ConfigError, DataError
    from halo_ray.io import write_jsonl
    from halo_ray.sections import VerifierConfig
    from halo_ray.verifiers import verify_batch
    from halo_ray.verifiers.pool import plan_request

    shortcuts = {"workers": args.workers, "timeout_s": args.timeout, "name": args.verifier}
    cfg = from_dict(VerifierConfig, {k: v for k, v in shortcuts.items() if v is not None}, source="command line")
    numbered = read_input(args.input)
    for line, record in numbered:  # every problem with its FILE:LINE before any sandbox starts
        try:
            plan_request(record, cfg)
        except (DataError, ConfigError) as exc:
            raise DataError(f"{args.input}:{line}: {exc}") from None
    records = [record for _, record in numbered]
    start = time.monotonic()
    with _progress(len(records)) as progress:
        results = verify_batch(records, cfg, progress=progress)
    write_jsonl(args.output, results)
    elapsed = time.monotonic() - start
    counts = collections.Counter(r["verdict"] for r in results)
    summary = ", ".join(f"{v} {n}" for v, n in counts.most_common())
    rate = len(results) / elapsed if elapsed > 0 else 0.0
    print(f"verified {len(results)} records in {elapsed:.1f}s ({rate:.1f}/s): {summary or 'nothing'}; "
          f"wrote {args.output}", file=sys.stderr)
    return 0


class _progress:
    """A rich progress bar on stderr when it is a terminal; a no-op callback otherwise."""

    def __init__(self, total: int):
        self.total = total
        self.bar = None

    def __enter__(self):
        if not sys.stderr.isatty():
            return None
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(transient=True, console=Console(stderr=True))
        self.bar.start()
        task = self.bar.add_task("verifying", total=self.total)
        return lambda done, total: self.bar.update(task, completed=done)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
