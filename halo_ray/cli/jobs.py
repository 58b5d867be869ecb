"""The job table: which config, driver module and function each job runs, for ``ray job submit``
scripts (``jobs/*.py``) and the CLI's stream commands."""

from __future__ import annotations

import argparse
import json

from halo_ray.cli.common import add_config_args
from halo_ray.cli.progress import StepProgress

JOBS = {"sft": ("SFTJobConfig", "halo_ray.driver.sft", "sft", False),
        "raft": ("RaftJobConfig", "halo_ray.driver.raft", "raft", True),
        "grpo": ("GRPOJobConfig", "halo_ray.driver.grpo", "grpo", True),
        "online_dpo": ("OnlineDPOJobConfig", "halo_ray.driver.online_dpo", "online_dpo", True),
        "dpo": ("DPOJobConfig", "halo_ray.driver.dpo", "dpo", False),
        "srl": ("SRLJobConfig", "halo_ray.driver.srl", "srl", True)}
"""Job -> (config class in halo_ray.sections, driver module, function, resumable)."""


def job_main(job: str, argv: list[str] | None = None) -> int:
    """``python jobs/<job>.py --config FILE [--set k=v] [--resume]`` under ``ray job submit``: load the config
    strictly, anchor its outputs outside Ray's temporary working-dir copy, run the job, print the summary.
    Exit 2 on a config or data error (one line on stderr)."""
    import importlib
    import logging
    import sys

    import halo_ray
    from halo_ray import driver, sections
    from halo_ray.config import load_config
    from halo_ray.errors import HaloError
    from halo_ray.home import anchor_job_outputs, run_directory

    cls_name, module, function, resumable = JOBS[job]
    parser = argparse.ArgumentParser(description=f"halo-ray {job} job")
    add_config_args(parser)
    if resumable:
        parser.add_argument("--resume", action="store_true", help="continue logging.name's run from its last checkpoint")
    args = parser.parse_args(argv)
    steps = StepProgress()  # step lines with rate and ETA (in `ray job logs` too)
    if hasattr(sys.stdout, "reconfigure"):  # `ray job logs` shows progress as it happens, not at exit
        sys.stdout.reconfigure(line_buffering=True)
    try:
        config = load_config(getattr(sections, cls_name), args.config, args.overrides)
        config = anchor_job_outputs(config, job)
        print(f"halo-ray {halo_ray.__version__} from {halo_ray.__path__[0]}; run directory {run_directory(config)}",
              flush=True)
        logging.basicConfig(level=config.logging.level, format="%(levelname)s %(name)s: %(message)s")
        run = getattr(importlib.import_module(module), function)
        if resumable:
            summary = run(config, resume=args.resume, progress=steps)
        else:
            summary = run(config) if job == "sft" else run(config, progress=steps)
    except HaloError as exc:
        print(f"{job} job: error: {exc}", file=sys.stderr)
        return 2
    finally:
        steps.close()
        driver.shutdown()
    print(json.dumps(summary, indent=2))
    return 0
