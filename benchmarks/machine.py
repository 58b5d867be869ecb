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


def tree_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (default: this one) and all its descendants,
    including the children they have already reaped (a local Ray session's raylet reaps its workers, so an
    actor killed mid-benchmark still counts). Linux only; 0.0 elsewhere."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        ppid = int(fields[1])  # fields after the command: state, ppid, ... utime is the 14th of stat, here [11]
        children.setdefault(ppid, []).append(int(entry))
        times[int(entry)] = sum(int(x) for x in fields[11:15]) / tick  # utime, stime, cutime, cstime
    total, todo = 0.0, [pid or os.getpid()]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo.extend(children.get(p, []))
    return total
