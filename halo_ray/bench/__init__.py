"""Benchmarks: the unbiased pass@k, results.json scoring, paired significance tests and reports.

Importing this package is light: scipy and matplotlib load only when a comparison or report is made.
"""

from halo_ray.bench.compare import compare_results, load_result, paired_test, reward_curves
from halo_ray.bench.passk import PassAtKError, parse_ks, pass_at_k
from halo_ray.bench.report import write_report
from halo_ray.bench.run import benchmark_from_config, run_benchmark
from halo_ray.bench.score import build_program, score_results, verify_record
from halo_ray.verifiers.verdicts import VERDICTS

__all__ = [
    "VERDICTS", "PassAtKError", "benchmark_from_config", "build_program", "compare_results", "load_result",
    "paired_test", "parse_ks", "pass_at_k", "reward_curves", "run_benchmark", "score_results", "verify_record",
    "write_report",
]
