"""Compiled-language verifiers: gcc, g++, clang, clang++, rustc, go (graduated rewards by default, seed 000).

The program is compiled inside the sandbox (compile limits from the config), then run once per
stdin/stdout test case, or once with empty input when there are none. A compile failure, including
a compiler stopped by its limits (``#include "/dev/zero"``), is a SYNTAX_ERROR; warnings (``-Wall``
for C/C++, rustc's defaults) only set the ``warnings`` flag and lower the compile tier to 0.3.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

from halo_ray.errors import ConfigError
from halo_ray.verifiers.base import VERIFIERS, record_cases, record_code

if TYPE_CHECKING:
    from halo_ray.verifiers.config import VerifierConfig

# Compilers start many processes and threads (cc1, as, ld; Go's and rustc's thread pools).
COMPILE_MAX_PROCESSES = 256


@functools.lru_cache(maxsize=None)
def _rust_sysroot() -> str | None:
    """The real toolchain behind rustup's ``rustc`` proxy (the proxy needs ~/.rustup state)."""
    rustc = shutil.which("rustc") or (os.path.expanduser("~/.cargo/bin/rustc") if os.path.exists(os.path.expanduser("~/.cargo/bin/rustc")) else None)
    if not rustc:
        return None
    try:
        out = subprocess.run([rustc, "--print", "sysroot"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    root = out.stdout.strip()
    return root if os.path.exists(os.path.join(root, "bin", "rustc")) else None


class NativeVerifier:
    """Compile and run a program; stdin/stdout test cases optional (graduated rewards by default)."""

    language = "c"
    tool = "gcc"
    source = "main.c"
    flags: tuple[str, ...] = ("-Wall", "-o", "prog", "main.c", "-lm")
    warning_markers: tuple[str, ...] = ("warning:",)

    def default_reward(self, record: dict) -> str:
        """The scheme ``verifier.reward: auto`` means here: seed 000's table, written for compile-and-run."""
        return "graduated"

    def executable(self) -> str | None:
        path = shutil.which(self.tool)
        return os.path.realpath(path) if path else None

    def available(self) -> str | None:
        """None when the toolchain is installed, else the reason it is not usable."""
        return None if self.executable() else f"{self.tool} is not installed (not on PATH)"

    def binds(self) -> list[str]:
        exe = self.executable()
        return [os.path.dirname(exe)] if exe and not exe.startswith("/usr/") else []

    def env(self) -> dict:
        exe = self.executable() or ""
        return {"PATH": f"{os.path.dirname(exe)}:/usr/local/bin:/usr/bin:/bin", "HOME": "/scratch",
                "TMPDIR": "/tmp", "LANG": "C.UTF-8"}

    def plan(self, record: dict, cfg: VerifierConfig) -> dict:
        """The sandbox request for ``record`` (without limits)."""
        reason = self.available()
        if reason:
            raise ConfigError(f"record {record.get('id')!r} needs the {type(self).__name__} toolchain: {reason}")
        return {"kind": "native", "code": record_code(record, cfg, self.language), "cases": record_cases(record),
                "env": self.env(), "run": ["/scratch/prog"],
                "compile": {"argv": [self.executable(), *self.flags], "source": self.source,
                            "timeout": float(cfg.compile_timeout_s), "memory_mb": int(cfg.compile_memory_mb),
                            "max_processes": COMPILE_MAX_PROCESSES, "warning_markers": list(self.warning_markers)}}


VERIFIERS.register("gcc")(NativeVerifier)


@VERIFIERS.register("g++")
class GppVerifier(NativeVerifier):
    """C++ with g++ -Wall -std=c++17; stdin/stdout test cases optional (graduated rewards by default)."""

    language, tool, source = "cpp", "g++", "main.cpp"
    flags = ("-Wall", "-std=c++17", "-o", "prog", "main.cpp")


@VERIFIERS.register("clang")
class ClangVerifier(NativeVerifier):
    """C with clang -Wall; stdin/stdout test cases optional (graduated rewards by default)."""

    tool = "clang"


@VERIFIERS.register("clang++")
class ClangppVerifier(GppVerifier):
    """C++ with clang++ -Wall -std=c++17; stdin/stdout test cases optional (graduated rewards by default)."""

    tool = "clang++"


@VERIFIERS.register("rust")
class RustVerifier(NativeVerifier):
    """Rust with rustc (edition 2021, default warnings); stdin/stdout test cases optional."""

    language, tool, source = "rust", "rustc", "main.rs"
    flags = ("--edition", "2021", "-C", "debuginfo=0", "-o", "prog", "main.rs")

    def executable(self) -> str | None:
        root = _rust_sysroot()
        return os.path.join(root, "bin", "rustc") if root else None

    def binds(self) -> list[str]:
        root = _rust_sysroot()
        return [root] if root else []


@VERIFIERS.register("go")
class GoVerifier(NativeVerifier):
    """Go with go build (no cgo, GOPATH mode); stdin/stdout test cases optional."""

    language, tool, source = "go", "go", "main.go"
    flags = ("build", "-o", "prog", "main.go")
    warning_markers = ()

    def binds(self) -> list[str]:
        exe = self.executable()
        root = os.path.dirname(os.path.dirname(exe)) if exe else ""
        return [root] if root and not root.startswith("/usr/") else []

    def env(self) -> dict:
        return dict(super().env(), GOCACHE="/scratch/.gocache", GOPATH="/scratch/.gopath", CGO_ENABLED="0",
                    GO111MODULE="off", GOTOOLCHAIN="local", GOFLAGS="-buildvcs=false")
