"""``python -m Training pseudolabel-lungs``: classical right/left lung labels for a chest CT."""

from __future__ import annotations

import argparse

HELP = "label the patient's right (1) and left (2) lung of a chest CT with the classical method"
_NAMES = {1: "right lung", 2: "left lung"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ct", required=True, help="CT in HU (NIfTI, NRRD, MHA)")
    parser.add_argument("--out", required=True, help="label map to write (.nii.gz, uint8)")
    parser.add_argument("--overlay", metavar="PNG", help="also write an overlay montage")


def run(args: argparse.Namespace) -> int:
    import sys
    import time
    from pathlib import Path

    import numpy as np

    from Training.data.volumes import read_image
    from Training.pseudolabels import label_lungs
    from Training.pseudolabels.montage import lung_montage
    from Training.synth.writers import save_nifti

    start = time.perf_counter()
    try:
        hu, geometry = read_image(Path(args.ct))
        if hu.ndim != 3 or geometry.shape[0] == 1:
            raise ValueError(f"{args.ct} is not a 3D volume")
        result = label_lungs(hu, geometry)
        if not result.label.any():
            raise ValueError(f"no lung found in {args.ct}")
    except ValueError as error:  # DatasetError is a ValueError
        print(f"pseudolabel-lungs: error: {error}", file=sys.stderr)
        return 2
    save_nifti(Path(args.out), result.label, geometry, np.uint8)
    if args.overlay:
        lung_montage(hu, result.label, geometry, args.overlay, title=Path(args.ct).name)
    volumes = ", ".join(f"{name} {result.volumes_ml[v]:.0f} mL" for v, name in _NAMES.items())
    print(
        f"{args.out}: {volumes}; trachea {'found' if result.trachea_found else 'not found'}"
        f"{', lungs split at the junction' if result.split else ''} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return 0
