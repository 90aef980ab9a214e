"""Headless command line: ``python -m unetseg {segment,segment-batch,models,sample,demo}``.

The same entry runs inside Slicer:
``Slicer --no-main-window --python-script <repo>/unetseg/scripts/slicer_segment.py -- segment ...``.
One module per group of subcommands (``segment``, ``models``, ``samples``); each adds its
parsers with a ``handler`` default. Their top-level imports stay light (no torch, no Slicer),
so argument errors come before anything heavy is loaded.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from unetseg import __version__
from unetseg.cli import models, samples, segment
from unetseg.cli.common import HelpFormatter
from unetseg.exits import debug_option, run_command

#: Loggers of libraries that are quiet unless ``-v`` (highdicom logs nine INFO lines per SEG).
THIRD_PARTY_LOGGERS = ("highdicom", "slicer")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; ``args.handler(args)`` runs the chosen one."""
    parser = argparse.ArgumentParser(
        prog="unetseg", description=__doc__.splitlines()[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    common = [debug_option()]
    for group in (segment, models, samples):
        group.add_parsers(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (see ``unetseg.exits``: errors print one
    line and give 2, SIGINT/SIGTERM give 130)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    with _verbosity(quiet, verbose):
        return run_command(f"unetseg {args.command}", lambda: args.handler(args), debug=args.debug)


@contextmanager
def _verbosity(quiet: bool, verbose: bool) -> Iterator[None]:
    """Log levels for the block: UNetSeg INFO (WARNING with ``quiet``, DEBUG with
    ``verbose``); ``THIRD_PARTY_LOGGERS`` WARNING (ERROR with ``quiet``) and highdicom's
    warnings hidden, unless ``verbose``. The previous levels come back after."""
    levels = {"unetseg": logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO}
    if not verbose:
        levels |= dict.fromkeys(THIRD_PARTY_LOGGERS, logging.ERROR if quiet else logging.WARNING)
    loggers = {name: logging.getLogger(name) for name in levels}
    previous = {name: logger.level for name, logger in loggers.items()}
    with warnings.catch_warnings():
        if not verbose:
            warnings.filterwarnings("ignore", module=r"highdicom(\.|$)")
        try:
            for name, level in levels.items():
                loggers[name].setLevel(level)
            yield
        finally:
            for name, level in previous.items():
                loggers[name].setLevel(level)
