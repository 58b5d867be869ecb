"""SFT job for ``ray job submit``: supervised fine-tuning on reference solutions (seed 001 step 2).

    ray job submit --working-dir . --runtime-env cluster/runtime-env.yaml -- \\
        python jobs/sft.py --config configs/sft.yaml --set model.path=/models/base --set data.train=data/train.jsonl

Writes <run>/final in Hugging Face format (adapter or full model), ready for jobs/raft.py.
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
from halo_ray.sections import SFTJobConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="halo-ray SFT job")
    add_config_args(parser)
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # `ray job logs` shows progress as it happens, not at exit
        sys.stdout.reconfigure(line_buffering=True)
    from halo_ray import driver

    try:
        config = load_config(SFTJobConfig, args.config, args.overrides)
        config = anchor_job_outputs(config, "sft")  # never inside Ray's temporary working-dir copy
        print(f"halo-ray {halo_ray.__version__} from {halo_ray.__path__[0]}; "
              f"run directory {run_directory(config)}", flush=True)
        logging.basicConfig(level=config.logging.level, format="%(levelname)s %(name)s: %(message)s")
        from halo_ray.driver.sft import sft

        summary = sft(config)
    except HaloError as exc:
        print(f"sft job: error: {exc}", file=sys.stderr)
        return 2
    finally:
        driver.shutdown()
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
