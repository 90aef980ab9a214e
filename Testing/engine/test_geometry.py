"""Geometry against SimpleITK and nibabel (independent readers of the same grids)."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from Testing.case_files import SHARED_DATA
from unetseg.engine.geometry import LPS_TO_RAS, Geometry

LPS = np.diag([-1.0, -1.0, 1.0])


def oblique_sitk_image() -> sitk.Image:
    image = sitk.Image(7, 5, 3, sitk.sitkFloat32)  # size (I, J, K)
    image.SetSpacing((0.8, 1.3, 2.5))
    image.SetOrigin((12.0, -30.0, 5.5))
    direction = Rotation.from_euler("zyx", [25, -10, 40], degrees=True).as_matrix()
    image.SetDirection(tuple(direction.ravel()))
    return image


def test_from_sitk_maps_indices_like_sitk() -> None:
    image = oblique_sitk_image()
    geometry = Geometry.from_sitk(image)
    assert geometry.shape == (3, 5, 7)
    np.testing.assert_allclose(geometry.spacing, (0.8, 1.3, 2.5))
    for index in [(0, 0, 0), (6, 4, 2), (3, 1, 2)]:
        lps = image.TransformIndexToPhysicalPoint(index)
        ras = geometry.ijk_to_ras @ np.array([*index, 1.0])
        np.testing.assert_allclose(ras[:3], LPS @ lps, atol=1e-9)
        back = geometry.ras_to_ijk @ ras
        np.testing.assert_allclose(back[:3], index, atol=1e-9)


def test_properties_decompose_the_matrix() -> None:
    direction = Rotation.from_euler("xyz", [5, 50, -70], degrees=True).as_matrix()
    geometry = Geometry.from_spacing_origin_direction(
        (0.5, 2.0, 3.0), (1, 2, 3), direction, (4, 5, 6)
    )
    np.testing.assert_allclose(geometry.spacing, (0.5, 2.0, 3.0))
    np.testing.assert_allclose(geometry.origin, (1, 2, 3))
    np.testing.assert_allclose(geometry.direction, direction, atol=1e-12)
    np.testing.assert_allclose(geometry.ras_to_ijk @ geometry.ijk_to_ras, np.eye(4), atol=1e-12)
    # Voxel (i, j, k) = (1, 0, 0) is one I step (0.5 mm along the first direction column).
    np.testing.assert_allclose(
        geometry.ijk_to_ras @ [1, 0, 0, 1], [*(np.array([1, 2, 3]) + 0.5 * direction[:, 0]), 1]
    )


def test_to_sitk_params_round_trip() -> None:
    image = oblique_sitk_image()
    geometry = Geometry.from_sitk(image)
    params = geometry.to_sitk_params()
    rebuilt = sitk.Image(params["size"], sitk.sitkUInt8)
    rebuilt.SetSpacing(params["spacing"])
    rebuilt.SetOrigin(params["origin"])
    rebuilt.SetDirection(params["direction"])
    np.testing.assert_allclose(rebuilt.GetOrigin(), image.GetOrigin(), atol=1e-12)
    np.testing.assert_allclose(rebuilt.GetDirection(), image.GetDirection(), atol=1e-12)
    assert Geometry.from_sitk(rebuilt).is_close(geometry, atol=1e-12)


def test_from_lps_matches_ras() -> None:
    direction_lps = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    from_lps = Geometry.from_lps((1, 2, 3), (10, 20, 30), direction_lps, (2, 3, 4))
    expected = Geometry.from_spacing_origin_direction(
        (1, 2, 3), (-10, -20, 30), LPS_TO_RAS @ direction_lps, (2, 3, 4)
    )
    assert from_lps.is_close(expected, atol=1e-12)


def test_from_nibabel_reverses_shape_and_keeps_affine() -> None:
    affine = np.array([[-0.9, 0.1, 0, 10], [0, 0, 2.0, -5], [0.05, 1.1, 0, 3], [0, 0, 0, 1]])
    image = nib.Nifti1Image(np.zeros((7, 5, 3), dtype=np.float32), affine)
    geometry = Geometry.from_nibabel(image)
    assert geometry.shape == (3, 5, 7)
    np.testing.assert_allclose(geometry.ijk_to_ras, image.affine)
    flat = Geometry.from_nibabel(nib.Nifti1Image(np.zeros((7, 5), dtype=np.float32), np.eye(4)))
    assert flat.shape == (1, 5, 7)


def test_sitk_2d_image_gets_one_slice() -> None:
    image = sitk.Image(6, 4, sitk.sitkUInt8)
    image.SetSpacing((0.2, 0.3))
    geometry = Geometry.from_sitk(image)
    assert geometry.shape == (1, 4, 6)
    np.testing.assert_allclose(geometry.spacing, (0.2, 0.3, 1.0))
    np.testing.assert_allclose(geometry.direction, LPS, atol=0)


def test_is_close_and_validation() -> None:
    geometry = Geometry(np.diag([1.0, 2.0, 3.0, 1.0]), (2, 3, 4))
    moved = Geometry(
        geometry.ijk_to_ras + np.pad(np.full((3, 1), 1e-3), ((0, 1), (3, 0))), (2, 3, 4)
    )
    assert geometry.is_close(moved, atol=1e-2)
    assert not geometry.is_close(moved, atol=1e-4)
    assert not geometry.is_close(Geometry(geometry.ijk_to_ras, (2, 3, 5)))
    assert not geometry.ijk_to_ras.flags.writeable
    with pytest.raises(ValueError, match="singular"):
        Geometry(np.diag([1.0, 0.0, 1.0, 1.0]), (1, 1, 1))
    with pytest.raises(ValueError, match="shape"):
        Geometry(np.eye(4), (3, 4))


@pytest.mark.shared_data
def test_real_nifti_nibabel_and_sitk_agree() -> None:
    path = SHARED_DATA / "ct_totalsegmentator" / "example_mr_sm.nii.gz"
    if not path.exists():
        pytest.skip(f"real data not found: {path}")
    from_nib = Geometry.from_nibabel(nib.load(path))
    from_itk = Geometry.from_sitk(sitk.ReadImage(str(path)))
    assert from_nib.is_close(from_itk, atol=1e-3)
    assert from_nib.shape == sitk.GetArrayViewFromImage(sitk.ReadImage(str(path))).shape
