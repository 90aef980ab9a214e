"""Test data and checks shared by the suites: the real-data folder ``../shared/data``, a
synthetic brain case written as BraTS 2023 NIfTI files, a small untrained brain model, and the
overlap and shape checks of segmentation results (fixtures are in ``conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from Training.synth import brain_mri_case
from Training.synth.case import SynthCase
from unetseg.engine.geometry import Geometry
from unetseg.engine.package import ModelPackage
from unetseg.untrained import brain_mri_manifest, untrained_package

#: Real images, next to the repository (tests that need them are skipped when it is absent).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: SNOMED CT terminology of a brain metastasis label, as manifests write it (copy it before
#: changing it).
METASTASIS_TERMINOLOGY = {
    "category": {
        "scheme": "SCT",
        "value": "49755003",
        "meaning": "Morphologically Altered Structure",
    },
    "type": {"scheme": "SCT", "value": "14799000", "meaning": "Neoplasm, Secondary"},
    "anatomic_region": {"scheme": "SCT", "value": "12738006", "meaning": "Brain"},
}
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
        save_nifti(files[name], case.images[name].astype(np.int16), case.geometry.ijk_to_ras)
    return files


def save_nifti(path: Path, array: np.ndarray, ijk_to_ras: np.ndarray, dtype=None) -> Path:
    """Write a (K, J, I) array as NIfTI (nibabel's (I, J, K) order) with affine ``ijk_to_ras``;
    with an integer ``dtype``, values are rounded to it. Returns ``path``."""
    array = np.asarray(array)
    if dtype is not None:
        array = np.rint(array).astype(dtype)
    nib.save(nib.Nifti1Image(array.transpose(2, 1, 0), ijk_to_ras), path)
    return path


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


def random_brain_inputs(
    shape: tuple[int, int, int], spacing_mm: float, seed: int
) -> tuple[list[np.ndarray | None], list[Geometry | None]]:
    """``Segmenter.segment`` arguments for a 4-input brain model: t1c and flair uniform in
    [1, 100) (float32, (K, J, I) ``shape``) on an axis-aligned grid of ``spacing_mm``, t1 and t2
    missing."""
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(1.0, 100.0, shape).astype(np.float32) for _ in range(2)]
    geometry = Geometry(np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0]), shape)
    return [*arrays, None, None], [geometry, geometry, None, None]


def needs_shared(path: Path):
    """Mark a test as needing ``path`` under ``SHARED_DATA``; skip it when absent."""

    def decorate(test):
        skip = pytest.mark.skipif(not path.exists(), reason=f"{path} not available")
        return pytest.mark.shared_data(skip(test))

    return decorate


def shared_path(*parts: str) -> Path:
    """``SHARED_DATA / parts``, or skip the calling test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found: {path}")
    return path


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two masks (0 when both are empty)."""
    return 2.0 * float(np.logical_and(a, b).sum()) / max(1.0, float(a.sum() + b.sum()))


def ellipsoid(geometry: Geometry, center_ras, radii_mm) -> np.ndarray:
    """Bool (K, J, I): voxel centres of ``geometry`` inside an axis-aligned RAS ellipsoid."""
    k, j, i = np.indices(geometry.shape)
    ijk1 = np.stack([i, j, k, np.ones_like(i)]).reshape(4, -1).astype(float)
    ras = (geometry.ijk_to_ras @ ijk1)[:3].T
    inside = (((ras - np.asarray(center_ras)) / np.asarray(radii_mm)) ** 2).sum(axis=1) <= 1.0
    return inside.reshape(geometry.shape)


def read_seg_nrrd(path) -> tuple[dict, np.ndarray]:
    """slicerio's reading of a .seg.nrrd: the dict and the (K, J, I) label map (one layer)."""
    import slicerio

    seg = slicerio.read_segmentation(str(path))
    assert {segment["layer"] for segment in seg["segments"]} == {0}
    return seg, seg["voxels"].transpose(2, 1, 0)


def to_sitk(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """A (K, J, I) array on ``geometry`` as a SimpleITK image (LPS), the independent reference of
    geometry and resampling checks."""
    image = sitk.GetImageFromArray(array)
    params = geometry.to_sitk_params()
    image.SetSpacing(params["spacing"])
    image.SetOrigin(params["origin"])
    image.SetDirection(params["direction"])
    return image


def sitk_resample(array: np.ndarray, source: Geometry, target: Geometry, order: int) -> np.ndarray:
    """SimpleITK's resampling of ``array`` from ``source`` onto ``target`` (order 1 linear, 0
    nearest neighbour; 0 outside)."""
    interpolator = sitk.sitkLinear if order == 1 else sitk.sitkNearestNeighbor
    reference = to_sitk(np.zeros(target.shape, dtype=np.uint8), target)
    output = sitk.Resample(to_sitk(array, source), reference, sitk.Transform(), interpolator, 0.0)
    return sitk.GetArrayFromImage(output)
