"""The ``halo-ray`` command line: one module per command group, each with ``register(subparsers)``.

Command modules import only light libraries at module level, so ``halo-ray verify`` or
``halo-ray data validate`` never start torch, vLLM or Ray.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from halo_ray.errors import HaloError

# Each name is a module of halo_ray.cli with a register(subparsers) function.
COMMAND_MODULES = ["model", "generate", "config_cmd", "bench", "data", "verify", "train"]
COMMAND_MODULES += ["dpo", "sweep"]  # test-based DPO (issue 13) and grid sweeps


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="halo-ray",
        description="Distributed RLVR for code LLMs: vLLM rollouts, sandboxed verifiers, DeepSpeed learners on Ray.",
    )
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="library log level on stderr (default: WARNING)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"halo_ray.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``halo-ray`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except HaloError as exc:
        print(f"halo-ray {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"halo-ray {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
