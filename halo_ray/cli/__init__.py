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
COMMAND_MODULES = ["model", "generate", "config_cmd", "bench", "data", "verify", "train", "runs", "dpo", "srl", "sweep"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="halo-ray",
        description="Distributed RLVR for code LLMs: vLLM rollouts, sandboxed verifiers, DeepSpeed learners on Ray.",
    )
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="library log level on stderr (default: WARNING); INFO adds progress lines and actor logs")
    from halo_ray import __version__

    parser.add_argument("--version", action="version", version=f"halo-ray {__version__}")
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
        cause = getattr(exc, "cause", None)  # raised inside an actor: Ray wraps it with the remote traceback
        print(f"halo-ray {args.command}: error: {cause if isinstance(cause, HaloError) else exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not type(exc).__module__.startswith("ray") or args.log_level == "DEBUG":
            raise
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        print(f"halo-ray {args.command}: error: Ray: {type(exc).__name__}: {lines[-1] if lines else ''} "
              "(actor output: --log-level INFO; full traceback: --log-level DEBUG)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"halo-ray {args.command}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        signum = getattr(sys.modules.get("halo_ray.driver"), "STOPPED_BY", None)
        if signum is None:
            raise
        import signal

        print(f"halo-ray {args.command}: stopped by {signal.Signals(signum).name}; the run's actors were shut down",
              file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
