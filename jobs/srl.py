"""SRL job for ``ray job submit`` (seed 003: GRPO on trace-matching rewards with a KL anchor to the base).

    ray job submit --working-dir . --runtime-env cluster/runtime-env.yaml -- \\
        python jobs/srl.py --config configs/srl.yaml --set model.path=/models/base [--resume]

Load the config strictly, then the driver runs the stream: rollout actors sample traces for the
built-in ast-grep tasks, the srl_trace verifier scores them against the teacher traces in process,
learner ranks train on group advantages (malformed traces at advantage 0), weights return by ref.
"""

from __future__ import annotations

import sys

from halo_ray.cli.jobs import job_main


def main(argv: list[str] | None = None) -> int:
    return job_main("srl", argv)


if __name__ == "__main__":
    sys.exit(main())
