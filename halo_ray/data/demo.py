"""The embedded demo task family: one-line Python operations with a constant k.

Each problem is a function header with a one-line docstring, to be completed with ``return <expr>``,
checked by 5-9 asserts. 29 operations (14 on ints, 10 on lists, 5 on strings), constants 2-19.
The split is stratified by operation (``../shared/notes/demo-task-family.md``): per operation, 2
constants for SFT, 8 for the RAFT prompt set and 8 held out, so a held-out problem is an
(operation, constant) pair never seen in SFT or RAFT. ``metadata["stage"]`` names the part
(``sft``, ``raft``, ``heldout``); held-out problems have split ``test``, the rest ``train``.
"""

from __future__ import annotations

import random
import re

from halo_ray.data.schema import Problem

# (operation id, kind, expression over the argument `a` and the constant `k`, docstring phrasings)
OPERATIONS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("add", "int", "a + k", ("Return {a} plus {k}.", "Add {k} to {a}.", "Return the sum of {a} and {k}.")),
    ("sub", "int", "a - k", ("Return {a} minus {k}.", "Subtract {k} from {a}.")),
    ("rsub", "int", "k - a", ("Return {k} minus {a}.", "Subtract {a} from {k}.")),
    ("mul", "int", "a * k", ("Return {a} times {k}.", "Multiply {a} by {k}.")),
    ("floordiv", "int", "a // k", ("Return {a} divided by {k}, rounded down.", "Integer-divide {a} by {k}.")),
    ("mod", "int", "a % k", ("Return the remainder of {a} divided by {k}.", "Return {a} modulo {k}.")),
    ("divisible", "int", "a % k == 0", ("Return True if {a} is divisible by {k}.", "Check whether {k} divides {a}.")),
    ("max", "int", "max(a, k)", ("Return the larger of {a} and {k}.", "Return {a}, but at least {k}.")),
    ("min", "int", "min(a, k)", ("Return the smaller of {a} and {k}.", "Return {a}, but at most {k}.")),
    ("gt", "int", "a > k", ("Return True if {a} is greater than {k}.", "Check whether {a} exceeds {k}.")),
    ("lt", "int", "a < k", ("Return True if {a} is less than {k}.", "Check whether {a} is below {k}.")),
    ("dist", "int", "abs(a - k)", ("Return the distance between {a} and {k}.", "Return the absolute difference of {a} and {k}.")),
    ("sqplus", "int", "a * a + k", ("Return {a} squared plus {k}.", "Square {a} and add {k}.")),
    ("eq", "int", "a == k", ("Return True if {a} equals {k}.", "Check whether {a} is {k}.")),
    ("tail", "list", "a[-k:]", ("Return the last {k} elements of {a}.", "Keep only the final {k} items of {a}.")),
    ("head", "list", "a[:k]", ("Return the first {k} elements of {a}.", "Keep only the first {k} items of {a}.")),
    ("drop", "list", "a[k:]", ("Return {a} without its first {k} elements.", "Drop the first {k} items of {a}.")),
    ("count", "list", "a.count(k)", ("Return how many times {k} occurs in {a}.", "Count the occurrences of {k} in {a}.")),
    ("addall", "list", "[v + k for v in a]", ("Add {k} to every element of {a}.", "Return {a} with {k} added to each item.")),
    ("mulall", "list", "[v * k for v in a]", ("Multiply every element of {a} by {k}.", "Return {a} with each item times {k}.")),
    ("above", "list", "[v for v in a if v > k]", ("Return the elements of {a} greater than {k}.", "Keep the items of {a} above {k}.")),
    ("sumplus", "list", "sum(a) + k", ("Return the sum of {a} plus {k}.", "Add {k} to the total of {a}.")),
    ("longer", "list", "len(a) > k", ("Return True if {a} has more than {k} elements.", "Check whether {a} is longer than {k}.")),
    ("contains", "list", "k in a", ("Return True if {k} is in {a}.", "Check whether {a} contains {k}.")),
    ("repeat", "str", "a * k", ("Return {a} repeated {k} times.", "Repeat the string {a} {k} times.")),
    ("ljust", "str", "a.ljust(k, '.')", ("Pad {a} on the right with dots to width {k}.", "Left-justify {a} in {k} characters, filling with '.'.")),
    ("rjust", "str", "a.rjust(k, '.')", ("Pad {a} on the left with dots to width {k}.", "Right-justify {a} in {k} characters, filling with '.'.")),
    ("prefix", "str", "a[:k]", ("Return the first {k} characters of {a}.", "Cut {a} to its first {k} characters.")),
    ("suffix", "str", "a[k:]", ("Return {a} without its first {k} characters.", "Drop the first {k} characters of {a}.")),
]
NAMES = ("f", "compute", "transform", "apply", "calc", "process", "solve", "handle", "op", "run")
ARGS = {"int": ("x", "n", "a", "value", "num"), "list": ("xs", "items", "values", "arr", "nums"),
        "str": ("s", "text", "word", "name")}
CONSTANTS = tuple(range(2, 20))
STAGE_SIZES = {"sft": 2, "raft": 8, "heldout": 8}


def _input(kind: str, rng: random.Random, k: int):
    if kind == "int":
        return rng.randint(-30, 60)
    if kind == "list":
        return [rng.choice([k, rng.randint(0, 25)]) for _ in range(rng.randint(0, 12))]
    return "".join(rng.choice("abcxyz") for _ in range(rng.randint(1, 6)))


def make_problem(op: str, k: int, stage: str, variant: int, seed: int) -> Problem:
    """One problem for operation ``op`` and constant ``k``; ``variant`` picks name, argument and phrasing."""
    _, kind, expr, phrasings = next(o for o in OPERATIONS if o[0] == op)
    rng = random.Random(f"{seed}:{op}:{k}:{variant}")
    name, arg, phrasing = rng.choice(NAMES), rng.choice(ARGS[kind]), rng.choice(phrasings)
    body = _substitute(expr, arg, k)
    prompt = f'def {name}({arg}):\n    """{phrasing.format(a=arg, k=k)}"""\n'
    solution = f"    return {body}\n"
    func = eval(f"lambda {arg}: {body}")  # our own generated expression, not model output
    asserts = []
    for _ in range(rng.randint(5, 9)):
        value = _input(kind, rng, k)
        asserts.append(f"assert {name}({value!r}) == {func(value)!r}")
    return Problem(
        id=f"demo/{op}/{k}/{variant}", prompt=prompt, tests="\n".join(asserts) + "\n", entry_point=name,
        language="python", source="demo", split="test" if stage == "heldout" else "train",
        metadata={"stage": stage, "operation": op, "constant": k, "category": kind,
                  "canonical_solution": prompt + solution, "completion": solution},
    )


def _substitute(expr: str, arg: str, k: int) -> str:
    """Write ``expr`` with the argument name and the constant filled in (``a`` and ``k`` are placeholders)."""
    return re.sub(r"\bk\b", str(k), re.sub(r"\ba\b", arg, expr))


def demo_problems(seed: int = 0, sft_variants: int = 8) -> list[Problem]:
    """The whole family: per operation, constants split 2 / 8 / 8 into sft / raft / heldout.

    Args:
        seed: chooses the split of constants, names, phrasings and test inputs.
        sft_variants: problems per SFT (operation, constant) pair, differing in name, argument
            and phrasing (SFT needs more examples than constants).
    """
    problems = []
    for op, *_ in OPERATIONS:
        constants = list(CONSTANTS)
        random.Random(f"{seed}:{op}:split").shuffle(constants)
        start = 0
        for stage, size in STAGE_SIZES.items():
            for k in sorted(constants[start:start + size]):
                for variant in range(sft_variants if stage == "sft" else 1):
                    problems.append(make_problem(op, k, stage, variant, seed))
            start += size
    return problems


def stage(problems: list[Problem], name: str) -> list[Problem]:
    """The problems of one stage (``sft``, ``raft`` or ``heldout``)."""
    return [p for p in problems if p.metadata.get("stage") == name]
