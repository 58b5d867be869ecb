"""The problem schema every job reads, the SFT, sample and preference records, and their file checks.

A problem is one programming task: a prompt, and how to check a program written for it (``tests``:
Python source run after the program, HumanEval's ``check`` convention included when ``entry_point``
is set; or ``test_cases``: stdin/stdout pairs; or neither: compile and run only). Files are JSONL
or Parquet, chosen by extension; every problem found in a file is reported as ``FILE:LINE: message``
(for Parquet, LINE is the 1-based row).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from halo_ray.errors import DataError
from halo_ray.io import check_table_suffix, write_records

SPLITS = ("train", "val", "test")
MAX_REPORTED = 20


@dataclass(frozen=True)
class Problem:
    """One programming problem.

    Attributes:
        id: unique, stable id (``HumanEval/0``, ``mbpp/11``); splits are derived from it.
        prompt: the text shown to the model.
        tests: Python test source run after the program (asserts; HumanEval's ``check`` is called
            with ``entry_point`` when it defines one).
        test_cases: stdin/stdout pairs ``[{"input": str, "output": str}]`` (any language).
        entry_point: the function the tests check, if any.
        language: ``python``, ``c``, ``cpp``, ``rust``, ``go``.
        source: the data source it came from (``humaneval``, ``mbpp``...).
        split: ``train``, ``val``, ``test``, or empty when not split.
        metadata: everything else; reference solutions live in ``metadata["canonical_solution"]``
            as a complete program.
    """

    id: str
    prompt: str
    tests: str | None = None
    test_cases: list[dict] | None = None
    entry_point: str | None = None
    language: str = "python"
    source: str = ""
    split: str = ""
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def solution(self) -> str | None:
        """The reference solution (a complete program), when the source has one."""
        return self.metadata.get("canonical_solution")


PROBLEM_FIELDS = tuple(f.name for f in dataclasses.fields(Problem))
PREFERENCE_REQUIRED = ("prompt", "chosen", "rejected")


def _problem_arrow_schema():
    import pyarrow as pa

    case = pa.struct([pa.field("input", pa.string()), pa.field("output", pa.string())])
    return pa.schema([
        pa.field("id", pa.string()), pa.field("prompt", pa.string()), pa.field("tests", pa.string()),
        pa.field("test_cases", pa.list_(case)), pa.field("entry_point", pa.string()),
        pa.field("language", pa.string()), pa.field("source", pa.string()), pa.field("split", pa.string()),
        # Metadata differs between sources, so Parquet keeps it as JSON text rather than a struct
        # whose columns would be the union of every source's keys.
        pa.field("metadata", pa.string()),
    ])


def check_problem(record: dict) -> list[str]:
    """Return what is wrong with one problem record (empty when it is valid)."""
    errs = []
    for key in record:
        if key not in PROBLEM_FIELDS:
            close = difflib.get_close_matches(key, PROBLEM_FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            errs.append(f"unknown field {key!r}{hint}; known: {', '.join(PROBLEM_FIELDS)} (`data prepare "
                        f"--dataset jsonl:FILE` moves other fields into metadata)")
    for key in ("id", "prompt"):
        if key not in record or record[key] is None:
            errs.append(f"missing required field {key!r}")
        elif not isinstance(record[key], str):
            errs.append(f"field {key!r} must be a string, got {type(record[key]).__name__} {record[key]!r:.40}")
        elif not record[key].strip():
            errs.append(f"field {key!r} is empty")
    for key in ("tests", "entry_point", "language", "source", "split"):
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            errs.append(f"field {key!r} must be a string, got {type(value).__name__} {value!r:.40}")
    split = record.get("split")
    if isinstance(split, str) and split not in ("",) + SPLITS:
        errs.append(f"field 'split' must be one of train, val, test or empty, got {split!r}")
    cases = record.get("test_cases")
    if cases is not None:
        if not isinstance(cases, list):
            errs.append(f"field 'test_cases' must be a list of {{input, output}} objects, got {type(cases).__name__}")
        else:
            for i, case in enumerate(cases):
                if not (isinstance(case, dict) and isinstance(case.get("input"), str)
                        and isinstance(case.get("output"), str)):
                    errs.append(f"test_cases[{i}] must be an object with string 'input' and 'output', got {case!r:.60}")
                    break
    metadata = record.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        errs.append(f"field 'metadata' must be an object, got {type(metadata).__name__}")
    return errs


def check_preference(record: dict) -> list[str]:
    """Return what is wrong with one preference record (``prompt``, ``chosen``, ``rejected``)."""
    errs = []
    for key in PREFERENCE_REQUIRED:
        if key not in record or record[key] is None:
            errs.append(f"missing required field {key!r}")
        elif not isinstance(record[key], str):
            errs.append(f"field {key!r} must be a string, got {type(record[key]).__name__} {record[key]!r:.40}")
    if not errs and record["chosen"] == record["rejected"]:
        errs.append("'chosen' and 'rejected' are identical")
    return errs


def _strings(record: dict, required: tuple[str, ...], optional: tuple[str, ...]) -> list[str]:
    errs = []
    for key in required:
        if record.get(key) is None:
            errs.append(f"missing required field {key!r}")
    for key in required + optional:
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            errs.append(f"field {key!r} must be a string, got {type(value).__name__} {value!r:.40}")
    return errs


def check_sft(record: dict) -> list[str]:
    """What is wrong with one SFT record (``prompt``, ``completion``; ``data prepare --format sft`` writes these)."""
    errs = _strings(record, ("prompt", "completion"), ("id", "split"))
    split = record.get("split")
    if isinstance(split, str) and split not in ("",) + SPLITS:
        errs.append(f"field 'split' must be one of train, val, test or empty, got {split!r}")
    if isinstance(record.get("completion"), str) and not record["completion"].strip():
        errs.append("field 'completion' is empty")
    return errs


def check_sample(record: dict) -> list[str]:
    """What is wrong with one sample record (``generate`` writes these; ``verify`` and ``benchmark`` read them).

    A sample is ``prompt_id``, ``sample_index``, ``prompt``, ``completion``, optionally the problem's
    ``tests``/``test_cases``/``entry_point``/``language`` and whatever the engine recorded.
    """
    errs = _strings(record, ("prompt_id", "completion"), ("prompt", "tests", "entry_point", "language"))
    index = record.get("sample_index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        errs.append(f"field 'sample_index' must be a whole number >= 0, got {index!r:.40}")
    cases = record.get("test_cases")
    if cases is not None and not (isinstance(cases, list) and all(
            isinstance(c, dict) and isinstance(c.get("output"), str) for c in cases)):
        errs.append("field 'test_cases' must be a list of {input, output} objects")
    return errs


KINDS = {"problems": check_problem, "sft": check_sft, "samples": check_sample, "preferences": check_preference}


def problem_from_dict(record: dict) -> Problem:
    """Build a Problem from a record that ``check_problem`` accepts."""
    values = {key: record[key] for key in PROBLEM_FIELDS if record.get(key) is not None}
    if isinstance(values.get("metadata"), str):
        values["metadata"] = json.loads(values["metadata"])
    return Problem(**values)


def iter_file(path: str | os.PathLike) -> Iterator[tuple[int, dict | None, str | None]]:
    """Yield ``(line, record, error)`` for each record of a JSONL or Parquet file.

    Unlike ``halo_ray.io.read_jsonl`` (same rules: one JSON object per line) a bad line does not
    stop the scan: it is yielded as an error so that ``validate`` reports every bad line at once.
    """
    p = Path(path)
    if check_table_suffix(p, "input") == ".parquet":
        import pyarrow.parquet as pq

        if not p.is_file():
            raise DataError(f"{p}: file not found")
        try:
            rows = pq.read_table(p).to_pylist()
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataError(f"{p}: not a readable Parquet file: {exc}") from None
        for row, record in enumerate(rows, start=1):
            if isinstance(record.get("metadata"), str):
                try:
                    record["metadata"] = json.loads(record["metadata"])
                except json.JSONDecodeError:
                    yield row, None, "field 'metadata' holds text that is not JSON"
                    continue
            yield row, record, None
        return
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    with p.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8", errors="replace"))
            except json.JSONDecodeError as exc:
                yield number, None, f"invalid JSON: {exc.msg} (column {exc.colno})"
                continue
            if isinstance(record, dict):
                yield number, record, None
            else:
                yield number, None, f"expected a JSON object, got {type(record).__name__}"


def record_kind(record: dict) -> str:
    """The kind of a record by its fields: preferences (``chosen``), samples (``prompt_id`` and
    ``completion``), sft (``completion``), else problems."""
    if "chosen" in record:
        return "preferences"
    if "completion" in record:
        return "samples" if "prompt_id" in record else "sft"
    return "problems"


def file_kind(path: str | os.PathLike) -> str:
    """The kind (``KINDS``) of a file, decided by its first readable record."""
    for _, record, _ in iter_file(path):
        if record is not None:
            return record_kind(record)
    return "problems"


def validate_file(path: str | os.PathLike, kind: str = "auto") -> tuple[str, int, list[str]]:
    """Check every record of a problems, SFT, samples or preferences file.

    Args:
        path: a ``.jsonl`` or ``.parquet`` file.
        kind: one of ``KINDS`` or ``auto`` (decided by the first record).

    Returns:
        ``(kind, records, messages)``: each message is ``FILE:LINE: message``; duplicate problem
        ids are reported at their second occurrence.
    """
    kind, records, messages = _scan(path, kind)
    return kind, len(records), messages


def _scan(path, kind: str) -> tuple[str, list[dict | None], list[str]]:
    if kind == "auto":
        kind = file_kind(path)
    if kind not in KINDS:
        raise DataError(f"{path}: unknown kind {kind!r}; known: auto, {', '.join(KINDS)}")
    check = KINDS[kind]
    records, messages, seen = [], [], {}
    for line, record, error in iter_file(path):
        records.append(record)
        if error:
            messages.append(f"{path}:{line}: {error}")
            continue
        messages += [f"{path}:{line}: {msg}" for msg in check(record)]
        pid = record.get("id")
        if kind == "problems" and isinstance(pid, str):
            if pid in seen:
                messages.append(f"{path}:{line}: duplicate id {pid!r} (first at line {seen[pid]})")
            else:
                seen[pid] = line
    return kind, records, messages


def read_problems(path: str | os.PathLike) -> list[Problem]:
    """Read a problems file (JSONL or Parquet, by extension).

    Raises:
        DataError: listing every bad record as ``FILE:LINE: message`` (the first 20, then a count).
    """
    _, records, messages = _scan(path, "problems")
    if messages:
        shown = messages[:MAX_REPORTED]
        more = len(messages) - len(shown)
        tail = [f"... and {more} more (run `halo-ray data validate {path}` for all)"] if more else []
        raise DataError("\n".join(shown + tail))
    return [problem_from_dict(record) for record in records]


def write_problems(path: str | os.PathLike, problems: list[Problem]) -> None:
    """Write problems as JSONL or Parquet (by extension), atomically."""
    if check_table_suffix(path, "output") == ".jsonl":
        write_records(path, [p.to_dict() for p in problems])
        return
    rows = []
    for p in problems:
        row = p.to_dict()
        row["metadata"] = json.dumps(p.metadata, ensure_ascii=False, sort_keys=True)
        rows.append(row)
    write_records(path, rows, schema=_problem_arrow_schema())



def check_prompts(prompts, where: str = "prompts") -> None:
    """Check the prompts a caller hands the driver: a list of dicts with string ``prompt_id`` and ``prompt``.

    Raises:
        DataError naming each bad item (``prompts[3]``) and the fix, before any actor starts.
    """
    if isinstance(prompts, (str, bytes, dict)) or not hasattr(prompts, "__iter__"):
        raise DataError(f"{where}: expected a list of {{'prompt_id', 'prompt'}} dicts, got {type(prompts).__name__}")
    errs = []
    for i, item in enumerate(prompts):
        if not isinstance(item, dict):
            errs.append(f"{where}[{i}]: expected a dict with 'prompt_id' and 'prompt', got {type(item).__name__}")
            continue
        for key in ("prompt_id", "prompt"):
            if not isinstance(item.get(key), str):
                hint = " (a problem's 'id' goes in 'prompt_id')" if key == "prompt_id" and "id" in item else ""
                errs.append(f"{where}[{i}]: needs a string {key!r}{hint}, got keys {sorted(item)[:6]}")
    if errs:
        more = [f"... and {len(errs) - MAX_REPORTED} more"] if len(errs) > MAX_REPORTED else []
        raise DataError("\n".join(errs[:MAX_REPORTED] + more))
