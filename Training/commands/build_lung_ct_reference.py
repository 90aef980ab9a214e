"""``python -m Training build-lung-ct-reference``: the held-out reference of the ``lung-ct`` model.

TotalSegmentator's example CTs with its model-made lobes merged per side, as a Decathlon folder
for ``python -m Training evaluate`` (see ``Training.reference.totalsegmentator_lungs``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write the lung-ct evaluation set: TotalSegmentator example CTs, lobes merged per side"
DEFAULT_SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="dataset folder (created)")
    parser.add_argument(
        "--shared",
        default=str(DEFAULT_SHARED),
        help="shared data folder holding ct_totalsegmentator/ (default: ../shared/data)",
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from Training.reference.totalsegmentator_lungs import build_reference

    try:
        content = build_reference(args.shared, args.out)
    except (FileNotFoundError, RuntimeError) as error:  # SimpleITK raises RuntimeError
        print(f"build-lung-ct-reference: error: {error}", file=sys.stderr)
        return 2
    for case_id, volumes in content["volumes_ml"].items():
        listed = ", ".join(f"{name} {ml:.0f} mL" for name, ml in volumes.items())
        print(f"{case_id}: {listed}")
    print(f"wrote {content['numTraining']} cases to {args.out}")
    return 0
