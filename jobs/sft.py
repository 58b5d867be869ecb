"""SFT job for ``ray job submit``: supervised fine-tuning on reference solutions (seed 001 step 2).

    ray job submit --working-dir . --runtime-env cluster/runtime-env.yaml -- \\
        python jobs/sft.py --config configs/sft.yaml --set model.path=/models/base --set data.train=data/train.jsonl

Writes <run>/final in Hugging Face format (adapter or full model), ready for jobs/raft.py.
"""

from __future__ import annotations

import sys

from halo_ray.cli.jobs import job_main


def main(argv: list[str] | None = None) -> int:
    return job_main("sft", argv)


if __name__ == "__main__":
    sys.exit(main())
