"""Command line of the training package: one subcommand per module listed in ``COMMANDS``.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Keep its top-level imports light (argparse only); import numpy/torch inside ``run`` so that
``python -m Training --help`` stays fast. To add a command, add one line to ``COMMANDS``.
Failures follow ``unetseg.exits``: one line on stderr and exit code 2 (``--debug`` shows the
traceback); SIGINT/SIGTERM give exit code 130.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from unetseg.exits import debug_option, run_command

# Subcommand name -> module implementing it.
COMMANDS: dict[str, str] = {
    "synth": "Training.synth.command",
    "train": "Training.commands.train",
    "evaluate": "Training.commands.evaluate",
    "inspect": "Training.commands.inspect",
    "export": "Training.commands.export",
    "pseudolabel-lungs": "Training.commands.pseudolabel_lungs",
    "build-lung-ct-data": "Training.commands.build_lung_ct_data",
    "build-lung-ct-reference": "Training.commands.build_lung_ct_reference",
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
        sub = subparsers.add_parser(
            name, help=module.HELP, description=module.HELP, parents=[debug_option()]
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the chosen command, return its exit code."""
    args = build_parser().parse_args(argv)
    return run_command(
        f"python -m Training {args.command}", lambda: int(args.run(args)), debug=args.debug
    )
