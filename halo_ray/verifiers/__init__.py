"""Verifiers: one registry (``VERIFIERS``) of ways to run and judge a program, and the local pool.

Importing this package is light (standard library only): the CLI and config validation read the
registry without starting anything. ``verify_batch`` / ``Verifier`` run checks in warm bubblewrap
sandboxes (``halo_ray.sandbox``); ``actors/verifier.py`` wraps ``Verifier`` as a Ray actor.
"""

from halo_ray.verifiers.base import VERDICTS, VERIFIERS, extract_code, score
from halo_ray.verifiers import python as _python  # noqa: F401  (registers python, humaneval, mbpp, pytest)
from halo_ray.verifiers import native as _native  # noqa: F401  (registers gcc, g++, clang, clang++, rust, go)
from halo_ray.verifiers import dispatch as _dispatch  # noqa: F401  (registers auto, stdio)
from halo_ray.verifiers import srl as _srl  # noqa: F401  (registers srl_trace: in process, no sandbox)
from halo_ray.verifiers.pool import Verifier, available_cpus, verify_batch

__all__ = ["VERDICTS", "VERIFIERS", "Verifier", "available_cpus", "extract_code", "score", "verify_batch"]
