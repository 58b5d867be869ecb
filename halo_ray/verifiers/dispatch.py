"""Verifiers that pick another by the record's language: ``auto`` and ``stdio``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from halo_ray.errors import DataError
from halo_ray.verifiers.base import VERIFIERS, language_of

if TYPE_CHECKING:
    from halo_ray.verifiers.config import VerifierConfig

# The verifier each language gets under ``auto`` and ``stdio``.
BY_LANGUAGE = {"python": "python", "c": "gcc", "cpp": "g++", "rust": "rust", "go": "go"}


@VERIFIERS.register("auto")
class AutoVerifier:
    """By the record's language: python asserts/cases, c with gcc, cpp with g++, rust, go."""

    def delegate(self, record: dict):
        return VERIFIERS.get(BY_LANGUAGE[language_of(record)])()

    def default_reward(self, record: dict) -> str:
        return self.delegate(record).default_reward(record)

    def available(self) -> str | None:
        return None

    def binds(self) -> list[str]:
        return [d for name in set(BY_LANGUAGE.values()) for d in VERIFIERS.get(name)().binds()]

    def plan(self, record: dict, cfg: VerifierConfig) -> dict:
        return self.delegate(record).plan(record, cfg)


@VERIFIERS.register("stdio")
class StdioVerifier(AutoVerifier):
    """stdin/stdout test cases ('test_cases') in the record's language (python, c, cpp, rust, go)."""

    def plan(self, record: dict, cfg: VerifierConfig) -> dict:
        if not record.get("test_cases"):
            raise DataError(f"record {record.get('id')!r}: the stdio verifier needs 'test_cases'")
        return self.delegate(record).plan({k: v for k, v in record.items() if k != "tests"}, cfg)
