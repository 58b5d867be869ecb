"""Reward schemes: one table from a verdict and its test counts to a reward and the parts it is made of.

``verifier.reward`` picks the scheme the verifiers score with; GRPO's ``objective.grpo.reward`` may pick
another one for its advantages. Both call ``scheme_reward``, so a scheme means the same thing wherever
it is named, and a reward is always the exact sum of its ``reward_components``.

- ``graduated`` (seed 000, written for compile-and-run checks of C/C++, Rust, Go): 0 for a program
  that does not compile; the compile tier (0.5 clean, 0.3 with warnings) for one that compiles but
  crashes, times out or has nothing to check; 0.7 when it runs through its tests with a wrong answer;
  1.0 when every test passes. Parts: ``compile`` + ``run`` + ``correct``.
- ``pass_rate``: the fraction of the record's tests (assertions, pytest tests, stdin/stdout cases)
  that passed, whatever stopped the others. Part: ``pass_rate``.
- ``pass_fail``: 1 on SUCCESS, else 0. Part: ``success``.

``auto`` (the default of ``verifier.reward``) is graduated for the compiled-language verifiers and
pass_rate for the Python ones (each verifier class's ``default_reward``), so that a Python crash or
a wrong answer is not paid for by a compile tier Python does not have. UNTESTED (nothing to check)
earns the compile tier under graduated, as seed 000's compile-only verification does, and 0 under the
other two; FAILED (infrastructure) earns 0 under every scheme.
"""

from __future__ import annotations

import difflib

from halo_ray.errors import ConfigError
from halo_ray.verifiers.verdicts import FAILED, SUCCESS, SYNTAX_ERROR, UNTESTED, VERDICTS, WRONG_OUTPUT

SCHEMES = ("graduated", "pass_rate", "pass_fail")
AUTO = "auto"
CHOICES = (AUTO, *SCHEMES)
"""The values of ``verifier.reward``."""

# Seed 000's graduated table (0, 0.3 / 0.5, 0.7, 1.0) written as increments, so the parts add up exactly.
COMPILE = {False: 0.5, True: 0.3}  # by ``warnings``
RUN = {False: 0.2, True: 0.4}  # running through the tests lifts either compile tier to 0.7
CORRECT = 0.3


def final_verdict(verdict: str, total: int) -> str:
    """The verdict a record gets: a judge's SUCCESS with nothing checked (``total`` 0) is UNTESTED."""
    return UNTESTED if verdict == SUCCESS and total == 0 else verdict


def resolve(scheme: str, default: str) -> str:
    """The scheme ``verifier.reward`` names, ``auto`` replaced by the verifier's ``default``.

    Raises ConfigError naming ``verifier.reward`` for an unknown name (a config built in Python
    without ``validated``).
    """
    if scheme not in CHOICES:
        close = difflib.get_close_matches(str(scheme), CHOICES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"verifier.reward: unknown reward scheme {scheme!r}{hint} (known: {', '.join(CHOICES)})")
    return default if scheme == AUTO else scheme


def scheme_reward(scheme: str, verdict: str, passed: int = 0, total: int = 0,
                  warnings: bool = False) -> tuple[float, dict[str, float]]:
    """A sample's reward under ``scheme`` and its parts.

    Args:
        scheme: one of ``SCHEMES``.
        verdict: one of ``VERDICTS`` (as ``final_verdict`` gives it).
        passed, total: tests passed and tests the record has (0 <= passed <= total).
        warnings: the compiler warned (graduated's lower compile tier).
    Returns:
        ``(reward, components)``; ``reward == sum(components.values())`` exactly.
    """
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r} (known: {', '.join(VERDICTS)})")
    if not 0 <= passed <= total:
        raise ValueError(f"passed must be in [0, total], got passed={passed}, total={total}")
    judged = verdict not in (SYNTAX_ERROR, FAILED)
    if scheme == "graduated":
        warned = bool(warnings)
        parts = {"compile": COMPILE[warned] if judged else 0.0,
                 "run": RUN[warned] if verdict in (SUCCESS, WRONG_OUTPUT) else 0.0,
                 "correct": CORRECT if verdict == SUCCESS else 0.0}
    elif scheme == "pass_rate":
        parts = {"pass_rate": passed / total if judged and verdict != UNTESTED and total else 0.0}
    elif scheme == "pass_fail":
        parts = {"success": 1.0 if verdict == SUCCESS else 0.0}
    else:
        raise ValueError(f"unknown reward scheme {scheme!r} (known: {', '.join(SCHEMES)})")
    return float(sum(parts.values())), parts


# Inputs the table is computed from: (passed, total) of a representative record per verdict.
_EXAMPLE = {SUCCESS: (4, 4), SYNTAX_ERROR: (0, 4), UNTESTED: (0, 0), FAILED: (0, 0)}


def _cell(scheme: str, verdict: str) -> str:
    """One cell of the table, computed by ``scheme_reward`` itself so the docs cannot drift from it."""
    passed, total = _EXAMPLE.get(verdict, (1, 4))
    plain = scheme_reward(scheme, verdict, passed, total)[0]
    warned = scheme_reward(scheme, verdict, passed, total, warnings=True)[0]
    if 0 < passed < total and plain == passed / total:
        return "passed / total"
    return f"{plain:g}" if warned == plain else f"{plain:g} ({warned:g} with warnings)"


def reward_table(markdown: bool = True) -> list[str]:
    """The schemes as a table, one row per verdict: Markdown (the README) or aligned text (``verify --help``)."""
    header = ["verdict", *SCHEMES]
    rows = [[verdict, *(_cell(s, verdict) for s in SCHEMES)] for verdict in VERDICTS]
    if markdown:
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header, *rows]]
