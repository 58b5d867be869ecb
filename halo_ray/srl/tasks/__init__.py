"""The built-in ast-grep refactoring tasks: small repositories in Python, JavaScript and Java.

Each task is a folder: ``task.json`` (``id``, ``language``, ``split`` train/heldout, ``instruction``),
``repo/`` (the files an action may rewrite), ``checks/`` (test programs the action never sees:
``node`` scripts, a Java ``TestMain``), ``tests.py`` (Python asserts the sandbox runs after writing the
rewritten repository: ``_read(path)``, ``_node(script)`` and ``_java(main_class)`` are provided, and
the repository is importable) and ``teacher.txt`` (a canonical teacher trace whose action passes the
tests; the untouched repository fails them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from halo_ray.errors import DataError
from halo_ray.srl.trace import LANGUAGES, Trace, TraceError, parse_trace

SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class Task:
    """One refactoring task (see the module docstring for the folder it comes from)."""

    id: str
    language: str
    split: str
    instruction: str
    files: dict[str, str]
    checks: dict[str, str]
    tests: str
    teacher: str = field(repr=False)
    system: str = ""  # the system role students and teachers read; empty: the full SRL role (prompts.SYSTEM)

    @property
    def teacher_trace(self) -> Trace:
        return parse_trace(self.teacher)

    def prompt(self) -> str:
        """The user turn a model sees: every repository file, then the language and the instruction, last (next to
        the answer, where a small model attends best)."""
        parts = ["Repository:"] + [f"--- {path}\n{self.files[path].rstrip()}" for path in sorted(self.files)]
        return "\n".join(parts + [f"Language: {self.language}", f"Task: {self.instruction}"]) + "\n"


def _read_tree(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def load_task(folder: str | Path) -> Task:
    """Read one task folder; DataError naming the file when something is missing or malformed."""
    folder = Path(folder)
    meta_path = folder / "task.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise DataError(f"{meta_path}: missing (every task folder needs task.json)") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{meta_path}:{exc.lineno}: {exc.msg}") from None
    missing = [k for k in ("id", "language", "split", "instruction") if k not in meta]
    if missing:
        raise DataError(f"{meta_path}: lacks {', '.join(missing)}")
    if meta["language"] not in LANGUAGES or meta["split"] not in SPLITS:
        raise DataError(f"{meta_path}: language must be one of {LANGUAGES} and split one of {SPLITS}, "
                        f"got {meta['language']!r} / {meta['split']!r}")
    teacher = (folder / "teacher.txt").read_text() if (folder / "teacher.txt").is_file() else ""
    try:
        parse_trace(teacher)
    except TraceError as exc:
        raise DataError(f"{folder / 'teacher.txt'}: {exc}") from None
    files = _read_tree(folder / "repo")
    if not files:
        raise DataError(f"{folder / 'repo'}: no files")
    return Task(id=meta["id"], language=meta["language"], split=meta["split"], instruction=meta["instruction"],
                files=files, checks=_read_tree(folder / "checks"), tests=(folder / "tests.py").read_text(),
                teacher=teacher)


def builtin_tasks(*, language: str | None = None, split: str | None = None) -> list[Task]:
    """The shipped tasks, sorted by id, optionally only one language and/or split (``train``, ``heldout``)."""
    if language is not None and language not in LANGUAGES:
        raise DataError(f"unknown task language {language!r} (known: {', '.join(LANGUAGES)})")
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown task split {split!r} (known: {', '.join(SPLITS)})")
    root = resources.files("halo_ray.srl.tasks")
    tasks = [load_task(Path(str(entry))) for entry in sorted(root.iterdir(), key=lambda e: e.name)
             if entry.is_dir() and (entry / "task.json").is_file()]
    return [t for t in tasks if (language is None or t.language == language) and (split is None or t.split == split)]


def by_language(tasks: list[Task]) -> dict[str, list[Task]]:
    """The tasks grouped by language (every supported language present, possibly empty)."""
    return {lang: [t for t in tasks if t.language == lang] for lang in LANGUAGES}


def task_index() -> dict[str, Task]:
    """Every task a problem's ``metadata.srl_task`` may name, by id: the built-in tasks and the default
    synthetic slice (``halo_ray.srl.synthetic``, source ``srl:synthetic``)."""
    from halo_ray.srl.synthetic import synthetic_tasks  # imports this module's Task

    return {t.id: t for t in (*builtin_tasks(), *synthetic_tasks())}
