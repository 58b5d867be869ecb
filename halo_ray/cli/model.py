"""``halo-ray model``: the embedded tiny model."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    parser = sub.add_parser("model", help="build and inspect models")
    msub = parser.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")
    init = msub.add_parser("init-tiny", help="write the embedded Qwen2-architecture model and its tokenizer",
                           description="Build the embedded model locally (nothing is downloaded). "
                                       "The same seed gives byte-identical files.")
    init.add_argument("--output", required=True, metavar="DIR", help="model directory to write")
    init.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    init.add_argument("--size", default="tiny", choices=["tiny", "small"],
                      help="tiny: 0.56M parameters (tests, demo); small: ~34M (benchmarks)")
    init.set_defaults(func=init_tiny)


def init_tiny(args: argparse.Namespace) -> int:
    from halo_ray.cli.progress import status
    from halo_ray.tiny import init_tiny as build

    with status(f"building the {args.size} model (tokenizer, weights) in {args.output}"):
        out = build(args.output, seed=args.seed, size=args.size)
    print(f"wrote {args.size} model (seed {args.seed}) to {out}")
    return 0
