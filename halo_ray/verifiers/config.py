"""The ``verifier`` config section, beside the verifiers it configures (``halo_ray.sections`` re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass

from halo_ray.config import opt
from halo_ray.verifiers.base import VERIFIERS, auto_rewards_text
from halo_ray.verifiers.reward import CHOICES


@dataclass(frozen=True)
class VerifierConfig:
    name: str = opt("auto", "verifier from the registry; auto picks one by each record's language", choices=VERIFIERS)
    # The verifier modules register before this one is imported (the package's __init__ orders it),
    # so the auto line below names every verifier.
    reward: str = opt("auto", "reward scheme (table in `halo-ray verify --help`): graduated (0 syntax error, 0.5 compiles "
                      "(0.3 with warnings), 0.7 wrong output, 1 correct), pass_rate (fraction of tests passed) or "
                      f"pass_fail (1 on SUCCESS); auto: {auto_rewards_text()}", choices=CHOICES)
    workers: int = opt(0, "sandbox workers in all; 0 uses one per available CPU")
    timeout_s: float = opt(5.0, "wall-clock limit per program run in seconds")
    memory_mb: int = opt(1024, "address-space limit per program in MiB")
    max_processes: int = opt(32, "process/thread cap per sandbox")
    max_output_bytes: int = opt(65536, "captured stdout/stderr per run; the rest is discarded")
    cache_size: int = opt(100_000, "results kept in the cache keyed by code, tests, verifier, reward scheme and limits")
    max_in_flight: int = opt(0, "batches a pool accepts before callers wait (back-pressure); 0 means 2 per worker")
    compile_timeout_s: float = opt(20.0, "wall-clock limit per compilation (C, C++, Rust, Go)")
    compile_memory_mb: int = opt(4096, "address-space limit per compiler process in MiB")
    scratch_mb: int = opt(256, "size of each sandbox's private scratch tmpfs (/scratch, /tmp) and largest file a program may write")
    extract_code: bool = opt(True, "take the program from markdown fences when the code has any")

    def validate(self) -> list[str]:
        errs = [f"{key} must be positive, got {getattr(self, key)}"
                for key in ("timeout_s", "memory_mb", "max_processes", "max_output_bytes", "compile_timeout_s",
                            "compile_memory_mb", "scratch_mb") if getattr(self, key) <= 0]
        errs += [f"{key} must be >= 0, got {getattr(self, key)}"
                 for key in ("workers", "cache_size", "max_in_flight") if getattr(self, key) < 0]
        return errs
