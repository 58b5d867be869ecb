"""Benchmark job for ``ray job submit``: pass@k, verdict mix, compile rate and timing of one model.

    ray job submit --working-dir . -- python jobs/benchmark.py --config configs/benchmark.yaml \\
        --set benchmark.problems=problems.jsonl --set model.path=/models/base --set benchmark.output=base.json

Load the config strictly, let the driver sample with rollout actors and verify with the verifier pool,
print the headline numbers. ``halo-ray benchmark compare`` turns several outputs into a report.
"""

from __future__ import annotations

import argparse
import logging
import sys

import halo_ray
from halo_ray.cli.common import add_config_args
from halo_ray.config import load_config
from halo_ray.errors import HaloError
from halo_ray.home import anchor_job_outputs
from halo_ray.sections import BenchmarkJobConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="halo-ray benchmark job (pass@k of a model on problems)")
    add_config_args(parser)
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # `ray job logs` shows progress as it happens, not at exit
        sys.stdout.reconfigure(line_buffering=True)
    from halo_ray import driver

    try:
        config = load_config(BenchmarkJobConfig, args.config, args.overrides)
        config = anchor_job_outputs(config, "benchmark")  # never inside Ray's temporary working-dir copy
        print(f"halo-ray {halo_ray.__version__} from {halo_ray.__path__[0]}; "
              f"results {config.benchmark.output}", flush=True)
        logging.basicConfig(level=config.logging.level, format="%(levelname)s %(name)s: %(message)s")
        results = driver.benchmark(config)
    except HaloError as exc:
        print(f"benchmark job: error: {exc}", file=sys.stderr)
        return 2
    finally:
        driver.shutdown()
    passed = ", ".join(f"pass@{k} {v:.3f}" for k, v in results["pass_at_k"].items())
    print(f"{results['model']}: {results['problems']} problems, {results['samples']} samples: {passed}, "
          f"compile rate {results['compile_rate']:.3f}, {results['timing']['total_s']:.1f} s")
    if config.benchmark.output:
        print(f"wrote {config.benchmark.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
