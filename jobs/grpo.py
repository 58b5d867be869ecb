"""GRPO job for ``ray job submit`` (GRPO with the DAPO options on the asynchronous stream).

    ray job submit --working-dir . --runtime-env cluster/runtime-env.yaml -- \\
        python jobs/grpo.py --config configs/grpo.yaml --set model.path=/models/sft/final \\
        --set data.train=data/train.jsonl [--resume]

Load the config strictly, then the driver runs the stream: rollout actors sample, verifier pools
score each chunk as it arrives, learner ranks train on group advantages, weights return by ref.
"""

from __future__ import annotations

import sys

from halo_ray.cli.jobs import job_main


def main(argv: list[str] | None = None) -> int:
    return job_main("grpo", argv)


if __name__ == "__main__":
    sys.exit(main())
