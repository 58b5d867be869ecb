"""A synthetic slice of ast-grep refactoring tasks (seed 003 §5), generated deterministically.

The twelve built-in tasks are too few for a paired test over held-out tasks, so the demo (and anyone
who wants more tasks) draws from a family of one-file Python renames: a call ``old(...)`` becomes
``new(...)``, or a method call ``obj.old(...)`` becomes ``obj.new(...)``. Every task names its
identifiers in the instruction, so a held-out task (identifiers never paired in training) is solved
by reading the instruction, not by recalling a training action. Each task has a module, tests that
the untouched module fails and the canonical teacher trace passes, and ``language`` python (the
slice, ``halo_ray.srl.teacher.slice_of``, is told apart by the ``synthetic_`` id prefix).

The same ``count``, ``heldout`` and ``seed`` give the same tasks; ``heldout`` of them
(drawn with ``seed + 1``) form the held-out split.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache

from halo_ray.errors import ConfigError
from halo_ray.srl.tasks import Task

PREFIX = "synthetic_"
VERBS = ("load", "save", "parse", "send", "read", "build", "check", "merge", "split", "count", "fetch", "clean")
NOUNS = ("user", "item", "order", "path", "name", "token", "row", "page", "file", "key", "node", "price")
MODULES = ("core", "utils", "store", "jobs", "api", "views", "tools", "models")
DEFAULT_COUNT, DEFAULT_HELDOUT, DEFAULT_SEED = 240, 40, 3


def _trace(think: str, action: dict, decision: str) -> str:
    # short on purpose: the identifiers live in the action only, so action fidelity is what tells tasks apart
    state = {"constraints": ["keep the arguments"], "decisions": [decision], "next_focus": [], "open_issues": []}
    return (f"<think>\n{think}\n</think>\n<action>\n{json.dumps(action, sort_keys=True)}\n</action>\n"
            f"<state_update>\n{json.dumps(state, sort_keys=True)}\n</state_update>")


def _call_rename(index: int, old: str, new: str, module: str, split: str) -> Task:
    code = (f"def {old}(x):\n    return x + 1\n\n\ndef {new}(x):\n    return x + 2\n\n\n"
            f"def run(v):\n    return {old}(v) * 10\n")
    tests = (f"run = _module({module!r}).run\nassert run(1) == 30\nassert run(0) == 20\n"
             f"assert _module({module!r}).{old}(1) == 2\n")
    action = {"language": "python", "paths": [f"{module}.py"], "pattern": f"{old}($$$ARGS)",
              "replacement": f"{new}($$$ARGS)"}
    think = "Match the call with its arguments; the definition stays."
    return Task(id=f"{PREFIX}{index:03d}_call_{old}", language="python", split=split,
                instruction=f"Replace calls to `{old}` with calls to `{new}` in `{module}.py`.",
                files={f"{module}.py": code}, checks={}, tests=tests,
                teacher=_trace(think, action, "rename the calls"))


def _method_rename(index: int, old: str, new: str, module: str, split: str) -> Task:
    code = (f"class Box:\n    def {old}(self, x):\n        return x + 1\n\n    def {new}(self, x):\n"
            f"        return x + 2\n\n\ndef run(v):\n    box = Box()\n    return box.{old}(v) * 10\n")
    tests = (f"run = _module({module!r}).run\nassert run(1) == 30\nassert run(0) == 20\n"
             f"assert _module({module!r}).Box().{old}(1) == 2\n")
    action = {"language": "python", "paths": [f"{module}.py"], "pattern": f"$OBJ.{old}($$$ARGS)",
              "replacement": f"$OBJ.{new}($$$ARGS)"}
    think = "Match any receiver and keep the arguments."
    return Task(id=f"{PREFIX}{index:03d}_method_{old}", language="python", split=split,
                instruction=f"Replace method calls `.{old}(...)` with `.{new}(...)` in `{module}.py`.",
                files={f"{module}.py": code}, checks={}, tests=tests,
                teacher=_trace(think, action, "rename the method calls"))


@lru_cache(maxsize=8)
def synthetic_tasks(count: int = DEFAULT_COUNT, heldout: int = DEFAULT_HELDOUT, seed: int = DEFAULT_SEED) -> tuple[Task, ...]:
    """``count`` synthetic tasks (ids ``synthetic_<index>_<kind>_<old>``), ``heldout`` of them in the held-out split.

    Raises ConfigError when the counts do not make sense (the identifier space holds 144 names).
    """
    names = [f"{v}_{n}" for v in VERBS for n in NOUNS]
    if not 0 < heldout < count or count > len(names) * 2:
        raise ConfigError(f"srl synthetic tasks: need 0 < heldout ({heldout}) < count ({count}) <= {len(names) * 2}")
    rng = random.Random(seed)
    held = set(random.Random(seed + 1).sample(range(count), heldout))
    tasks = []
    for i in range(count):
        old, new = rng.sample(names, 2)
        make = _call_rename if i % 2 == 0 else _method_rename
        tasks.append(make(i, old, new, rng.choice(MODULES), "heldout" if i in held else "train"))
    return tuple(tasks)
