"""Files in and out: atomic writes, JSONL with line numbers in errors, Arrow tables by extension.

Every result file is written to a temporary sibling and renamed into place, so a crash or a kill
never leaves a half-written result. Append-only logs (``append_jsonl``) write whole lines and
readers drop a torn last line, so finished work survives a kill.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from halo_ray.errors import DataError

TABLE_SUFFIXES = (".jsonl", ".parquet")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file next to ``path``; on success fsync it and rename it onto ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_jsonl(path: str | os.PathLike, *, allow_torn_tail: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each non-blank line of a JSONL file.

    Raises ``DataError`` naming ``FILE:LINE`` for bad JSON or a line that is not an object.
    With ``allow_torn_tail`` a last line without its newline that fails to parse (a killed
    writer) is skipped instead.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    with p.open("rb") as fh:
        lines = fh.read().split(b"\n")
    last = len(lines)
    for number, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            if allow_torn_tail and number == last:
                return
            raise DataError(f"{p}:{number}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{p}:{number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records as JSONL atomically; returns the count."""
    n = 0
    with atomic_write(path) as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def append_jsonl(fh, record: dict) -> None:
    """Append one whole line to an open file and flush it, so a kill loses at most this line."""
    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    fh.flush()


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write pretty JSON atomically."""
    with atomic_write(path) as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False)
        fh.write("\n")


def check_table_suffix(path: str | os.PathLike, what: str = "file") -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: unsupported {what} extension {suffix!r}; use .jsonl or .parquet")
    return suffix


def write_records(path: str | os.PathLike, records: list[dict], schema=None) -> None:
    """Write records as JSONL or Parquet, chosen by the file extension, atomically."""
    if check_table_suffix(path, "output") == ".jsonl":
        write_jsonl(path, records)
        return
    import pyarrow as pa

    write_table(path, pa.Table.from_pylist(records, schema=schema))


def write_table(path: str | os.PathLike, table) -> None:
    """Write an Arrow table as Parquet or JSONL (by extension), atomically."""
    if check_table_suffix(path, "output") == ".jsonl":
        write_jsonl(path, table.to_pylist())
        return
    import pyarrow.parquet as pq

    with atomic_write(path, "wb") as fh:
        pq.write_table(table, fh)


def read_records(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL or Parquet file into a list of dicts."""
    if check_table_suffix(path, "input") == ".jsonl":
        return [record for _, record in read_jsonl(path)]
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        raise DataError(f"{path}: file not found")
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
