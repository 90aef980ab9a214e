"""Subcommands of ``python -m Training`` (each registered in ``Training.cli.COMMANDS``)."""

from __future__ import annotations

import argparse

#: Parts of a dataset's patient-level split that ``--split`` names (see ``resolve_data``).
SPLIT_PARTS = ("all", "train", "val", "test")


def add_data_arguments(
    parser: argparse.ArgumentParser,
    *,
    run_folder: str,
    split_default: str | None,
    split_help: str,
) -> None:
    """Add ``--data`` (what ``Training.evaluation.resolve_data`` takes), ``--out`` (the output
    folder) and ``--split`` (a part of the data's patient-level split) to ``parser``.

    Args:
        run_folder: how ``--data`` help names a training run folder.
        split_default, split_help: default and help of ``--split``.
    """
    parser.add_argument(
        "--data",
        required=True,
        metavar="DATA_CFG_OR_DIR",
        help=f"dataset folder (layout detected), data or training config (YAML), or a {run_folder}",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--split", choices=SPLIT_PARTS, default=split_default, help=split_help)
