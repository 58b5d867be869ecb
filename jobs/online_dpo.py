"""Online DPO job for ``ray job submit`` (DPO on the asynchronous stream, pairs within each scored group).

    ray job submit --working-dir . --runtime-env cluster/runtime-env.yaml -- \\
        python jobs/online_dpo.py --config configs/online_dpo.yaml --set model.path=/models/sft/final \\
        --set data.train=data/train.jsonl [--resume]

Load the config strictly, then the driver runs the stream: rollout actors sample, verifier pools
score each chunk as it arrives, learner ranks train on each step's pairs against the frozen reference, weights return by ref.
"""

from __future__ import annotations

import sys

from halo_ray.cli.jobs import job_main


def main(argv: list[str] | None = None) -> int:
    return job_main("online_dpo", argv)


if __name__ == "__main__":
    sys.exit(main())
