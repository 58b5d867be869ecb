"""Argument helpers shared by commands: ``--config``/``--set`` and job-config loading."""

from __future__ import annotations

import argparse
from pathlib import Path
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


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A table on stdout: rich boxes on a terminal; plain aligned columns when piped (nothing wraps or is cut)."""
    import sys

    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        console = Console()
        table = Table()
        for i, column in enumerate(header):
            table.add_column(column, justify="left" if i == 0 else "right", overflow="fold")
        for row in rows:
            table.add_row(*row)
        if title:
            console.print(title, style="bold", soft_wrap=True)
        console.print(table)
        return
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    if title:
        print(title)
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def output_overrides(path: str | None) -> dict:
    """``--output runs/x`` sets the run directory's parent and name (``logging.run_dir``, ``logging.name``)."""
    if not path:
        return {}
    p = Path(path)
    return {"logging.run_dir": str(p.parent), "logging.name": p.name}


def run_driver(function, config, *args, **kwargs) -> Any:
    """Call a driver entry point (``function(config, *args, **kwargs)``) and shut the driver's actors down
    however it ends; returns what it returned. The CLI commands that start a job all go through here."""
    from halo_ray import driver

    try:
        return function(config, *args, **kwargs)
    finally:
        driver.shutdown()
