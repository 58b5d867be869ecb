"""RAFT job for ``ray job submit`` (seeds 000, 001).

    ray job submit --working-dir . --runtime-env cluster/runtime-env.yaml -- \\
        python jobs/raft.py --config configs/raft.yaml --set model.path=/models/sft/final \\
        --set data.train=data/train.jsonl [--resume]

Load the config strictly, then the driver runs the stream: rollout actors sample, verifier pools
score each chunk as it arrives, learner ranks train on the kept samples, weights return by ref.
"""

from __future__ import annotations

import sys

from halo_ray.cli.jobs import job_main


def main(argv: list[str] | None = None) -> int:
    return job_main("raft", argv)


if __name__ == "__main__":
    sys.exit(main())
