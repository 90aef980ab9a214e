"""Pieces shared by the subcommands: adding one with the help format, verbosity and run
options, and the checks that an optional package can be imported."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unetseg.engine.options import SegmentOptions

#: What ``segment``, ``segment-batch`` and ``demo`` need besides the base packages.
SLICER_CORE_HINT = (
    "pip install slicer-core (wheels for Linux x86-64, macOS arm64 and Windows x64), "
    "or run it inside 3D Slicer: Slicer --no-main-window --python-script "
    "unetseg/scripts/slicer_segment.py -- ..."
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the empty ones (None, False, [])."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, []):
            return action.help
        return super()._get_help_string(action)


def add_command(
    commands: argparse._SubParsersAction,
    name: str,
    parents: Sequence[argparse.ArgumentParser],
    summary: str,
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` to ``commands``: the options of ``parents``, ``summary`` as its
    help, and ``HelpFormatter``."""
    return commands.add_parser(
        name, parents=list(parents), help=summary, formatter_class=HelpFormatter
    )


def verbosity_option() -> argparse.ArgumentParser:
    """Parent parser adding ``-q/--quiet`` and ``-v/--verbose``."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print debug messages and those of third-party libraries (highdicom, slicer)",
    )
    return parent


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of a run (``SegmentOptions``) as arguments of ``parser``."""
    from unetseg.engine.options import BACKENDS, DEVICES, MAX_OVERLAP, PRECISIONS

    parser.add_argument("--device", default="auto", choices=DEVICES, help="where the network runs")
    parser.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="what runs the network: auto = OpenVINO on the CPU when installed, else torch",
    )
    parser.add_argument(
        "--overlap", type=float, help=f"window overlap in [0, {MAX_OVERLAP}] (default: the model's)"
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="run only the fewest windows covering the body/head box, in reduced precision "
        "where the model allows it: faster, approximate (some voxels may be labelled "
        "differently)",
    )
    parser.add_argument(
        "--uncertainty",
        action="store_true",
        help="also write <output>.uncertainty.nrrd (per-voxel uncertainty in [0, 1] from "
        "mirroring test-time augmentation: 8 passes per window in 3D) and score every segment "
        "and lesion",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto = float32 on the CPU (reduced with --fast where the model allows it), "
        "float16 on CUDA; reduced = bfloat16/float16 whatever the model says",
    )


def segment_options(args: argparse.Namespace) -> SegmentOptions:
    """The run's ``SegmentOptions`` from the arguments (ValueError names the bad one)."""
    from unetseg.engine.options import SegmentOptions

    try:
        return SegmentOptions.from_attributes(args)
    except ValueError as error:
        raise ValueError(f"--{error}") from None


def require_module(name: str, needed_for: str, hint: str) -> None:
    """Check that ``import name`` works.

    Raises:
        RuntimeError: one line saying what needs it and what to install, with the import error.
    """
    try:
        importlib.import_module(name)
    except ImportError as error:
        raise RuntimeError(f"{needed_for}, which cannot be imported ({error}): {hint}") from error


def require_slicer() -> None:
    """Check that ``import slicer`` works (``slicer-core`` or the Slicer app)."""
    require_module("slicer", "this command needs Slicer's MRML", SLICER_CORE_HINT)


def require_highdicom() -> None:
    """Check that ``highdicom`` (the DICOM SEG writer) can be imported."""
    require_module("highdicom", "--dicom-seg needs highdicom", "pip install highdicom")
