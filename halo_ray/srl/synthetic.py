"""A synthetic slice of ast-grep refactoring tasks (seed 003 §5), generated deterministically.

The twelve built-in tasks are too few for a paired test over held-out tasks, and far too few to teach a small
model to read an instruction, so the demo (and anyone who wants more tasks) draws from a family of one-file
Python renames: a call ``old(...)`` becomes ``new(...)``, or a method call ``obj.old(...)`` becomes
``obj.new(...)``. Every task names its file and identifiers in the instruction, and a held-out task's pair
``(old, new)`` is never a training task's, so a held-out task is solved by reading the instruction, not by
recalling a training action. Each task has a module, tests that the untouched module fails and the canonical
teacher trace passes, and ``language`` python (the slice, ``halo_ray.srl.teacher.slice_of``, is told apart by
the ``synthetic_`` id prefix).

Made for the embedded tiny model (two layers, a 512-token BPE), which learns to copy from its prompt only
from thousands of distinct examples, with the words to copy near the answer and few tokens each
(README, SRL): every identifier and module is one token of its tokenizer (``WORDS``), the instruction names
the file, the old and the new name in the order the action writes them, and the system role is one line
(``BRIEF_SYSTEM``; the instruction comes last in every task's prompt).

The same ``train``, ``heldout`` and ``seed`` give the same tasks, and the held-out ones do not depend on
``train``: ``srl:synthetic:400`` names the first 400 training tasks of ``srl:synthetic`` and the same 40 held-out
ones.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache

from halo_ray.errors import ConfigError
from halo_ray.srl.tasks import Task

PREFIX = "synthetic_"
# One token each of the tiny tokenizer at the start of a line and after a backtick, a quote, a dot, an
# underscore or "def " (tests/unit/test_data_sources.py pins it); no keyword, builtin or standard-library module.
WORDS = ("act", "ain", "bon", "dat", "din", "een", "ement", "enc", "end", "ent", "est", "etur", "eturn", "even",
         "ever", "everse", "ext", "ged", "get", "ibon", "incl", "ing", "ist", "ital", "item", "ith", "its", "low",
         "ode", "ort", "otal", "ount", "ring", "rix", "split", "stdi", "ude", "ues")
BRIEF_SYSTEM = "Rename with ast-grep. Answer with <think>, <action> and <state_update>."
DEFAULT_TRAIN, DEFAULT_HELDOUT, DEFAULT_SEED = 4000, 40, 3


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
    return Task(id=f"{PREFIX}{index:04d}_call_{old}_{new}", language="python", split=split,
                instruction=f"In `{module}.py`, replace calls to `{old}` with calls to `{new}`.",
                files={f"{module}.py": code}, checks={}, tests=tests,
                teacher=_trace(think, action, "rename the calls"), system=BRIEF_SYSTEM)


def _method_rename(index: int, old: str, new: str, module: str, split: str) -> Task:
    code = (f"class Box:\n    def {old}(self, x):\n        return x + 1\n\n    def {new}(self, x):\n"
            f"        return x + 2\n\n\ndef run(v):\n    box = Box()\n    return box.{old}(v) * 10\n")
    tests = (f"run = _module({module!r}).run\nassert run(1) == 30\nassert run(0) == 20\n"
             f"assert _module({module!r}).Box().{old}(1) == 2\n")
    action = {"language": "python", "paths": [f"{module}.py"], "pattern": f"$OBJ.{old}($$$ARGS)",
              "replacement": f"$OBJ.{new}($$$ARGS)"}
    think = "Match any receiver and keep the arguments."
    return Task(id=f"{PREFIX}{index:04d}_method_{old}_{new}", language="python", split=split,
                instruction=f"In `{module}.py`, replace method calls `.{old}(...)` with `.{new}(...)`.",
                files={f"{module}.py": code}, checks={}, tests=tests,
                teacher=_trace(think, action, "rename the method calls"), system=BRIEF_SYSTEM)


@lru_cache(maxsize=8)
def synthetic_tasks(train: int = DEFAULT_TRAIN, heldout: int = DEFAULT_HELDOUT, seed: int = DEFAULT_SEED) -> tuple[Task, ...]:
    """``heldout`` held-out tasks then ``train`` training tasks (ids ``synthetic_<index>_<kind>_<old>_<new>``).

    Each held-out task has a pair of names of its own; training tasks draw (pair, module) from the other pairs, no
    two alike. The held-out tasks do not depend on ``train``, and fewer training tasks are a prefix of more.
    Raises ConfigError when the counts do not make sense.
    """
    pairs = [(old, new) for old in WORDS for new in WORDS if old != new]
    rng = random.Random(seed)
    rng.shuffle(pairs)
    most = (len(pairs) - heldout) * len(WORDS)
    if not 0 < heldout < len(pairs) or not 0 < train <= most:
        raise ConfigError(f"srl synthetic tasks: need 0 < heldout ({heldout}) < {len(pairs)} (the pairs of names) "
                          f"and 0 < train ({train}) <= {most}")
    modules = random.Random(seed + 1)
    draws = [(pairs[i], modules.choice(WORDS), "heldout") for i in range(heldout)]
    order = random.Random(seed + 2).sample(range(most), most)  # (pair, module), no two alike; a prefix per train
    draws += [(pairs[heldout + d // len(WORDS)], WORDS[d % len(WORDS)], "train") for d in order[:train]]
    return tuple((_call_rename if i % 2 == 0 else _method_rename)(i, old, new, module, split)
                 for i, ((old, new), module, split) in enumerate(draws))
