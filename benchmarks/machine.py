"""The machine line every benchmark prints: CPU model, cores, load, OS, Python and library versions."""

from __future__ import annotations

import importlib
import os
import platform


def describe(*libraries: str) -> str:
    """One line naming the machine and the versions of ``libraries`` (module names, e.g. "torch")."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", load %.1f" % os.getloadavg()[0] if hasattr(os, "getloadavg") else ""
    versions = "".join(f", {name} {importlib.import_module(name).__version__}" for name in libraries)
    return (f"{cpu}, {cores} CPUs{load}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}{versions}")
