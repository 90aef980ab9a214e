"""Right/left lung reference of TotalSegmentator's example CTs, for evaluating ``lung-ct``.

TotalSegmentator's regression files (``ct_totalsegmentator/`` of ``../shared/data``) hold CTs
with its model-made labels (class map ``total``). No manual chest-CT labels are reachable here, so
these lobes, merged per side, are the reference the ``lung-ct`` model is compared with:
right lung = upper + middle + lower right lobe (12, 13, 14), left lung = upper + lower left lobe
(10, 11). The cases, written as a Decathlon folder that ``python -m Training evaluate`` reads:

- ``ts_basal_slab``: ``example_ct_sm.nii.gz`` (30 slices of 3 mm through the lung bases and the
  upper abdomen) with ``example_seg.nii.gz`` (same grid);
- ``ts_abdomen_dicom``: the 20-slice ``example_ct_dicom`` series (upper abdomen, 0.98 x 0.98 x
  2 mm) with ``example_seg_dicom.nii.gz`` resampled onto it (nearest neighbour). It holds no lung
  label: a model must leave it empty (Dice 1 when both are empty, 0 for any false positive).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from Training.data.volumes import read_image
from Training.synth.writers import save_nifti, write_decathlon_json
from unetseg.engine.geometry import Geometry

RIGHT_LOBES = (12, 13, 14)
LEFT_LOBES = (10, 11)
LABELS = {1: "right lung", 2: "left lung"}


def merge_lobes(total: np.ndarray) -> np.ndarray:
    """uint8 map 1 = right lung, 2 = left lung from a TotalSegmentator ``total`` label map."""
    merged = np.zeros(total.shape, np.uint8)
    merged[np.isin(total, RIGHT_LOBES)] = 1
    merged[np.isin(total, LEFT_LOBES)] = 2
    return merged


def build_reference(shared: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the cases (module docstring) under ``out`` and return ``dataset.json``'s content.

    Raises:
        FileNotFoundError: a TotalSegmentator file is missing under ``shared``.
    """
    source = Path(shared) / "ct_totalsegmentator"
    root = Path(out)
    image, geometry = read_image(source / "example_ct_sm.nii.gz")
    total, _ = read_image(source / "example_seg.nii.gz")
    cases = {"ts_basal_slab": (image, merge_lobes(total), geometry)}
    cases["ts_abdomen_dicom"] = _dicom_case(source)
    volumes = {}
    for case_id, (hu, label, grid) in cases.items():
        save_nifti(root / "imagesTr" / f"{case_id}.nii.gz", hu, grid, np.int16)
        save_nifti(root / "labelsTr" / f"{case_id}.nii.gz", label, grid, np.uint8)
        voxel_ml = float(np.prod(grid.spacing)) / 1000.0
        volumes[case_id] = {
            name: round(float(np.count_nonzero(label == value)) * voxel_ml, 1)
            for value, name in LABELS.items()
        }
    return write_decathlon_json(
        root,
        "TotalSegmentator-lungs",
        "TotalSegmentator example CTs with its MODEL-MADE lobes merged per side (1 right lung, "
        "2 left lung); reference for the lung-ct model, never trained on.",
        LABELS,
        list(cases),
        reference="python -m Training build-lung-ct-reference",
        volumes_ml=volumes,
    )


def _dicom_case(source: Path) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """The DICOM series in HU and its merged labels resampled onto the series' grid."""
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(source / "example_ct_dicom"))
    if not files:
        raise FileNotFoundError(f"no DICOM series in {source / 'example_ct_dicom'}")
    reader.SetFileNames(files)
    series = reader.Execute()
    total = sitk.ReadImage(str(source / "example_seg_dicom.nii.gz"))
    total = sitk.Resample(total, series, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    hu = sitk.GetArrayFromImage(series)
    label = merge_lobes(sitk.GetArrayFromImage(total))
    return hu, label, Geometry.from_sitk(series)
