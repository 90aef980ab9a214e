"""A synthetic brain case written as BraTS 2023 NIfTI files and a small untrained brain model,
as the command-line and host tests use them."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from Training.synth import brain_mri_case
from Training.synth.case import SynthCase
from unetseg.engine.package import ModelPackage
from unetseg.untrained import brain_mri_manifest, untrained_package

#: Model input -> BraTS 2023 file suffix.
BRATS_2023 = {"t1c": "t1c", "flair": "t2f", "t1": "t1n", "t2": "t2w"}


def brats_case(seed: int = 4) -> SynthCase:
    """A small 4-sequence brain phantom (32 x 32 x 16 voxels of 2 x 2 x 3 mm)."""
    return brain_mri_case(
        np.random.default_rng(seed), (32, 32, 16), (2.0, 2.0, 3.0), layout="brats"
    )


def write_brats_files(case: SynthCase, folder: Path) -> dict[str, Path]:
    """Write ``case``'s sequences as ``BraTS-MET-00007-000-<suffix>.nii.gz`` (int16) into
    ``folder``; returns model input -> path."""
    files = {}
    for name, suffix in BRATS_2023.items():
        files[name] = folder / f"BraTS-MET-00007-000-{suffix}.nii.gz"
        image = case.images[name].transpose(2, 1, 0).astype(np.int16)
        nib.save(nib.Nifti1Image(image, case.geometry.ijk_to_ras), files[name])
    return files


def small_brain_model(
    folder: Path,
    filters: tuple[int, ...] = (4, 8, 16),
    patch: int = 32,
    seed: int = 0,
) -> ModelPackage:
    """An untrained 4-input brain model package at 2 mm with ``patch``³ windows in ``folder``:
    fast enough for command-line and host tests."""
    manifest = brain_mri_manifest(filters, patch_size=(patch, patch, patch))
    manifest["spacing_mm"] = [2.0, 2.0, 2.0]
    return untrained_package(folder, manifest, seed=seed)
