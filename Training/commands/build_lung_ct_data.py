"""``python -m Training build-lung-ct-data``: the training data of the bundled ``lung-ct`` model.

Real chest CT with classical right/left lung labels plus synthetic phantoms, as a Decathlon
folder (see ``Training.pseudolabels.lung_ct_data``). The default CT is the ITKElastix chest CT of
``../shared/data`` (relative to the repository root); TotalSegmentator's example CT is kept out
on purpose: it is the held-out evaluation case.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write the lung-ct training set: real CT with classical labels + synthetic phantoms"
DEFAULT_CT = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "data"
    / "ct_chest_itkelastix"
    / "chest_ct.nii.gz"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="dataset folder (created)")
    parser.add_argument(
        "--ct",
        nargs="+",
        default=[str(DEFAULT_CT)],
        help="real chest CTs in HU (default: ../shared/data/ct_chest_itkelastix/chest_ct.nii.gz)",
    )
    parser.add_argument(
        "--phantoms", type=int, default=10, help="synthetic chest phantoms (default 10)"
    )
    parser.add_argument(
        "--abdomens",
        type=int,
        default=4,
        help="abdominal phantoms: lung bases above an abdomen with bowel gas (default 4)",
    )
    parser.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")


def run(args: argparse.Namespace) -> int:
    import sys

    from Training.pseudolabels.lung_ct_data import build_lung_ct_dataset

    if args.phantoms < 0 or args.abdomens < 0:
        print("build-lung-ct-data: error: phantom counts must not be negative", file=sys.stderr)
        return 2
    try:
        summary = build_lung_ct_dataset(args.out, args.ct, args.phantoms, args.abdomens, args.seed)
    except ValueError as error:  # DatasetError is a ValueError
        print(f"build-lung-ct-data: error: {error}", file=sys.stderr)
        return 2
    for case_id, info in summary["cases"].items():
        volumes = ", ".join(f"{name} {ml:.0f} mL" for name, ml in info["volumes_ml"].items())
        print(f"{case_id}: {info['shape_kji']} voxels (K, J, I), {volumes}")
    print(f"wrote {len(summary['cases'])} cases to {args.out}")
    return 0
