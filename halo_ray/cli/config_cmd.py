"""``halo-ray config``: list every key of a job's config, or check a YAML file."""

from __future__ import annotations

import argparse

from halo_ray.cli.common import add_config_args


def register(sub) -> None:
    from halo_ray.sections import JOB_CONFIGS

    parser = sub.add_parser("config", help="list config keys of a job, or check and resolve a config file")
    csub = parser.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    keys = csub.add_parser("keys", help="every dotted key with its type, default and doc")
    keys.add_argument("job", choices=sorted(JOB_CONFIGS))
    keys.set_defaults(func=show_keys)
    check = csub.add_parser("check", help="load a config strictly and print it resolved")
    check.add_argument("job", choices=sorted(JOB_CONFIGS))
    add_config_args(check)
    check.set_defaults(func=check_config)


def show_keys(args: argparse.Namespace) -> int:
    from halo_ray.config import describe
    from halo_ray.sections import JOB_CONFIGS

    for key, tp, default, doc in describe(JOB_CONFIGS[args.job]):
        print(f"{key} ({tp}, default {default!r}): {doc}")
    return 0


# What a job refuses at start beyond loading its config (which every command shares); `config check`
# runs the same list. RaftJobConfig.validate and friends hold the checks that loading already makes.
JOB_REQUIREMENTS = {
    "raft": [("data.train", lambda c: c.data.train,
              "name the RAFT prompts (a problems file or a source such as demo#raft)")],
    "sft": [("data.train", lambda c: c.data.train,
             "name the SFT problems (with reference solutions), e.g. demo#sft")],
    "benchmark": [("benchmark.problems", lambda c: c.benchmark.problems,
                   "name the problems (a file or a SPEC such as humaneval#all)")],
}


def requirement_errors(job: str, config) -> list[str]:
    """What ``job`` would refuse at start for ``config`` (empty when it would start)."""
    return [f"{key}: required: {fix}" for key, present, fix in JOB_REQUIREMENTS.get(job, []) if not present(config)]


def check_config(args: argparse.Namespace) -> int:
    from halo_ray.config import dump_yaml, load_config
    from halo_ray.errors import ConfigError
    from halo_ray.sections import JOB_CONFIGS

    config = load_config(JOB_CONFIGS[args.job], args.config, args.overrides)
    problems = requirement_errors(args.job, config)
    if problems:
        raise ConfigError(problems)
    print(dump_yaml(config), end="")
    return 0
