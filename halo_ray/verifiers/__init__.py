"""Verifiers: one registry (``VERIFIERS``) of ways to run and judge a program, and the local pool.

Importing this package is light (standard library and the config loader): the CLI and config
validation read the registry without starting anything. ``verify_batch`` / ``Verifier`` run checks
in warm bubblewrap sandboxes (``halo_ray.sandbox``); ``actors/verifier.py`` wraps ``Verifier`` as a
Ray actor. ``verdicts`` lists the verdicts, ``reward`` the reward schemes, ``config`` the section.
"""

from halo_ray.verifiers.base import VERIFIERS, code_blocks, extract_code, score
from halo_ray.verifiers.verdicts import FAILED, JUDGED, SUCCESS, UNSCORED, UNTESTED, VERDICTS
from halo_ray.verifiers import python as _python  # noqa: F401  (registers python, humaneval, mbpp, pytest)
from halo_ray.verifiers import native as _native  # noqa: F401  (registers gcc, g++, clang, clang++, rust, go)
from halo_ray.verifiers import dispatch as _dispatch  # noqa: F401  (registers auto, stdio)
from halo_ray.verifiers import srl as _srl  # noqa: F401  (registers srl_trace: in process, no sandbox)
from halo_ray.verifiers.config import VerifierConfig
from halo_ray.verifiers.pool import Verifier, available_cpus, verify_batch

__all__ = ["FAILED", "JUDGED", "SUCCESS", "UNSCORED", "UNTESTED", "VERDICTS", "VERIFIERS", "Verifier", "VerifierConfig",
           "available_cpus", "code_blocks", "extract_code", "score", "verify_batch"]
