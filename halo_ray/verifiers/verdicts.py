"""The verdict taxonomy: the one list of what a verified sample can be, in the order reports show it.

Seed 002's five classes are what a sandbox judge may return (``JUDGED``; ``sandbox_worker.py`` is
standard library only and writes them as strings, ``base.sanitize`` turns anything else into a
RUNTIME_ERROR). Two more are decided on the host: ``UNTESTED`` (the program ran cleanly but the
record had nothing to check it against) and ``FAILED`` (the infrastructure could not run the check:
no judgement of the program, so no reward, and it is counted apart from the model's failures).
SRL's environment reports add ``NOT_APPLIED`` (the agent's edit did not apply, so nothing ran); it is
no verdict of a verified program and not in ``VERDICTS``.
"""

from __future__ import annotations

SUCCESS = "SUCCESS"
WRONG_OUTPUT = "WRONG_OUTPUT"
RUNTIME_ERROR = "RUNTIME_ERROR"
TIMEOUT = "TIMEOUT"
SYNTAX_ERROR = "SYNTAX_ERROR"
UNTESTED = "UNTESTED"
FAILED = "FAILED"
NOT_APPLIED = "NOT_APPLIED"

JUDGED = (SUCCESS, WRONG_OUTPUT, RUNTIME_ERROR, TIMEOUT, SYNTAX_ERROR)
"""What a sandbox judge may return (seed 002's taxonomy; a compile failure is a SYNTAX_ERROR)."""

VERDICTS = (*JUDGED, UNTESTED, FAILED)
"""Every verdict, in report order."""

UNSCORED = (FAILED,)
"""Verdicts that are no judgement of the program: such samples take part in no selection, pair or group."""

MEANING = {
    SUCCESS: "every test passed",
    WRONG_OUTPUT: "ran, but a test failed (an assertion or a wrong stdout)",
    RUNTIME_ERROR: "crashed, exited non-zero or broke the sandbox's protocol",
    TIMEOUT: "ran past verifier.timeout_s",
    SYNTAX_ERROR: "did not parse or compile (the compiler's own limits included)",
    UNTESTED: "ran cleanly, but the record has no tests or test cases to check it against",
    FAILED: "the sandbox could not run the check (infrastructure, not the program)",
}
