"""Test-based DPO job for ``ray job submit`` (seed 002's experiment end to end: preferences from test
pass rates, DPO against the frozen reference, paired evaluation of baseline and tuned model).

    ray job submit --working-dir . --runtime-env cluster/runtime-env.yaml -- \\
        python jobs/dpo.py --config configs/dpo.yaml --set model.path=/models/sft/final

Writes the run directory (preferences, final/, eval/ with the report).
"""

from __future__ import annotations

import sys

from halo_ray.cli.jobs import job_main


def main(argv: list[str] | None = None) -> int:
    return job_main("dpo", argv)


if __name__ == "__main__":
    sys.exit(main())
