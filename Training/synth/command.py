"""``python -m Training synth``: write a synthetic dataset with exact labels."""

from __future__ import annotations

import argparse

HELP = "write synthetic phantoms with exact labels in the folder layout the readers take"
TASKS = ("brain-mri", "lung-ct", "lung-cxr", "ovarian-ct")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--cases", type=int, default=4, help="labelled cases (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--size",
        type=int,
        help="voxels per in-plane axis (default 96; lung-cxr: image width, default 256)",
    )
    parser.add_argument(
        "--layout",
        choices=("brainmetshare", "brats", "msd", "pairs", "ovarian"),
        help="brain-mri: brainmetshare (default) or brats; other tasks have one layout",
    )
    parser.add_argument(
        "--unlabelled", type=int, default=0, help="extra cases written without a label"
    )
    parser.add_argument(
        "--image-format", choices=("png", "jpg"), default="png", help="lung-cxr images"
    )
    parser.add_argument(
        "--brats-et-label",
        type=int,
        choices=(3, 4),
        default=3,
        help="enhancing-tumour label of the brats layout: 3 (BraTS 2023, default) or 4 "
        "(BraTS 2017-2021)",
    )
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="fixed voxel size in mm, (I, J, K) order (default: random per case)",
    )
    parser.add_argument(
        "--canonical",
        action="store_true",
        help="grid axes along R, A, S (default: random permutation, flips, oblique rotation)",
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from Training.synth.writers import write_dataset

    try:
        ids = write_dataset(
            args.task,
            args.out,
            args.cases,
            args.seed,
            size=args.size,
            layout=args.layout,
            unlabelled=args.unlabelled,
            image_format=args.image_format,
            et_label=args.brats_et_label,
            spacing=tuple(args.spacing) if args.spacing else None,
            canonical=args.canonical,
        )
    except ValueError as error:
        print(f"synth: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(ids)} {args.task} cases to {args.out}")
    return 0
