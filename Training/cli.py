"""Command line of the training package: one subcommand per module listed in ``COMMANDS``.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Keep its top-level imports light (argparse only); import numpy/torch inside ``run`` so that
``python -m Training --help`` stays fast. To add a command, add one line to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

# Subcommand name -> module implementing it.
COMMANDS: dict[str, str] = {
    "synth": "Training.synth.command",
    "train": "Training.commands.train",
    "evaluate": "Training.commands.evaluate",
    "export": "Training.commands.export",
}


def build_parser() -> argparse.ArgumentParser:
    """Parser with one subparser per registered command; ``args.run`` is the command's ``run``."""
    parser = argparse.ArgumentParser(
        prog="python -m Training",
        description="UNetSeg training tools: synthetic data, training, evaluation, export.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the chosen command, return its exit code."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))
