"""Argument helpers shared by commands: ``--config``/``--set`` and job-config loading."""

from __future__ import annotations

import argparse
from typing import Any

from halo_ray.config import load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` and repeatable ``--set dotted.key=value``."""
    parser.add_argument("--config", metavar="FILE", help="YAML config mirroring the job's sections")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value by dotted path, e.g. rollout.temperature=0.8 (repeatable)")


def job_config(cls: type, args: argparse.Namespace, shortcuts: dict[str, Any]) -> Any:
    """Load ``cls`` from ``--config``, then shortcut flags (dotted key -> value, None = not given), then ``--set``."""
    base = {key: value for key, value in shortcuts.items() if value is not None}
    return load_config(cls, args.config, args.overrides, base=base)
