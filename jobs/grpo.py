"""GRPO job for ``ray job submit`` (GRPO with the DAPO options on the asynchronous stream).

    ray job submit --working-dir . --runtime-env cluster/runtime-env.yaml -- \\
        python jobs/grpo.py --config configs/grpo.yaml --set model.path=/models/sft/final \\
        --set data.train=data/train.jsonl [--resume]

Load the config strictly, then the driver runs the stream: rollout actors sample, verifier pools
score each chunk as it arrives, learner ranks train on group advantages, weights return by ref.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import halo_ray
from halo_ray.cli.common import add_config_args
from halo_ray.config import load_config
from halo_ray.errors import HaloError
from halo_ray.home import anchor_job_outputs, run_directory
from halo_ray.sections import GRPOJobConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="halo-ray GRPO job")
    add_config_args(parser)
    parser.add_argument("--resume", action="store_true", help="continue logging.name's run from its last checkpoint")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # `ray job logs` shows progress as it happens, not at exit
        sys.stdout.reconfigure(line_buffering=True)
    from halo_ray import driver

    try:
        config = load_config(GRPOJobConfig, args.config, args.overrides)
        config = anchor_job_outputs(config, "grpo")  # never inside Ray's temporary working-dir copy
        print(f"halo-ray {halo_ray.__version__} from {halo_ray.__path__[0]}; "
              f"run directory {run_directory(config)}", flush=True)
        logging.basicConfig(level=config.logging.level, format="%(levelname)s %(name)s: %(message)s")
        from halo_ray.driver.grpo import grpo

        summary = grpo(config, resume=args.resume, progress=print)
    except HaloError as exc:
        print(f"grpo job: error: {exc}", file=sys.stderr)
        return 2
    finally:
        driver.shutdown()
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
