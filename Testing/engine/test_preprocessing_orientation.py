"""Reorientation against nibabel's as_closest_canonical (the reference definition)."""

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from Testing.case_files import SHARED_DATA
from unetseg.engine.geometry import Geometry
from unetseg.engine.preprocessing.orientation import canonical_layout, reorient_to_canonical


def random_affine(rng: np.random.Generator) -> np.ndarray:
    """Oblique (up to ~40 degrees), axis-permuted, flipped, anisotropic affine."""
    rotation = Rotation.from_rotvec(rng.normal(size=3) * 0.35).as_matrix()
    permutation = np.eye(3)[:, rng.permutation(3)] * rng.choice([-1.0, 1.0], size=3)
    affine = np.eye(4)
    affine[:3, :3] = rotation @ permutation * rng.uniform(0.4, 3.0, size=3)
    affine[:3, 3] = rng.uniform(-100, 100, size=3)
    return affine


@pytest.mark.parametrize("seed", range(12))
def test_matches_nibabel_closest_canonical(seed: int) -> None:
    rng = np.random.default_rng(seed)
    affine = random_affine(rng)
    data_ijk = rng.normal(size=(5, 6, 7)).astype(np.float32)  # nibabel order (I, J, K)
    image = nib.Nifti1Image(data_ijk, affine)
    expected = nib.as_closest_canonical(image)

    array = data_ijk.transpose(2, 1, 0)  # (K, J, I)
    canonical, geometry, _ = reorient_to_canonical(array, Geometry.from_nibabel(image))

    np.testing.assert_array_equal(canonical, np.asarray(expected.dataobj).transpose(2, 1, 0))
    np.testing.assert_allclose(geometry.ijk_to_ras, expected.affine, atol=1e-9)
    assert canonical.flags.c_contiguous
    assert nib.aff2axcodes(geometry.ijk_to_ras) == ("R", "A", "S")


@pytest.mark.parametrize("seed", range(6))
def test_undo_restores_layout_with_channels(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    geometry = Geometry(random_affine(rng), (4, 5, 6))
    labels = rng.integers(0, 7, size=(2, 4, 5, 6)).astype(np.uint16)
    canonical, canonical_geometry, undo = reorient_to_canonical(labels, geometry)
    assert canonical.dtype == np.uint16
    restored = undo.apply(canonical)
    np.testing.assert_array_equal(restored, labels)
    assert restored.flags.c_contiguous
    # Same physical voxels: every canonical voxel centre is an original voxel centre.
    ijk = np.array([1, 2, 3, 1.0])  # canonical (i, j, k)
    original_ijk = geometry.ras_to_ijk @ canonical_geometry.ijk_to_ras @ ijk
    np.testing.assert_allclose(original_ijk, np.round(original_ijk), atol=1e-9)
    i, j, k = np.round(original_ijk[:3]).astype(int)
    assert canonical[1, 3, 2, 1] == labels[1, k, j, i]
    layout_geometry, layout_undo = canonical_layout(geometry)
    assert layout_undo == undo
    assert layout_geometry.is_close(canonical_geometry, atol=0)


def test_identity_for_ras_volume() -> None:
    geometry = Geometry(np.diag([0.5, 1.0, 2.0, 1.0]), (3, 4, 5))
    array = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    canonical, canonical_geometry, undo = reorient_to_canonical(array, geometry)
    assert undo.is_identity
    np.testing.assert_array_equal(canonical, array)
    assert canonical_geometry.is_close(geometry, atol=0)


def test_lps_volume_flips_i_and_j() -> None:
    geometry = Geometry(np.diag([-1.0, -1.0, 2.0, 1.0]), (2, 3, 4))
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    canonical, canonical_geometry, undo = reorient_to_canonical(array, geometry)
    np.testing.assert_array_equal(canonical, array[:, ::-1, ::-1])
    np.testing.assert_allclose(canonical_geometry.origin, [-3.0, -2.0, 0.0])
    assert undo.flips == (True, True, False)


def test_undo_rejects_wrong_shape() -> None:
    _, _, undo = reorient_to_canonical(np.zeros((2, 3, 4)), Geometry(np.eye(4), (2, 3, 4)))
    with pytest.raises(ValueError, match="spatial shape"):
        undo.apply(np.zeros((3, 3, 4)))


@pytest.mark.shared_data
def test_real_lps_nifti() -> None:
    path = SHARED_DATA / "ct_totalsegmentator" / "example_mr_sm.nii.gz"
    if not path.exists():
        pytest.skip(f"real data not found: {path}")
    image = nib.load(path)
    expected = nib.as_closest_canonical(image)
    array = np.asarray(image.dataobj).transpose(2, 1, 0)
    canonical, geometry, undo = reorient_to_canonical(array, Geometry.from_nibabel(image))
    np.testing.assert_array_equal(canonical, np.asarray(expected.dataobj).transpose(2, 1, 0))
    np.testing.assert_allclose(geometry.ijk_to_ras, expected.affine, atol=1e-4)
    np.testing.assert_array_equal(undo.apply(canonical), array)
