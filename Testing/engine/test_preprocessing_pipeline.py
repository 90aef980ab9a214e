"""The preprocessing pipeline on synthetic cases defined analytically in physical (RAS) space.

Images and label maps are evaluated at the voxel centres of each grid from closed-form functions
of the RAS position, so every geometric step (LPS input, oblique directions, reorientation,
resampling, restoring) is checked against an independent ground truth.
"""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.transform import Rotation

from Testing.case_files import SHARED_DATA, dice, sitk_resample
from unetseg.engine.geometry import Geometry
from unetseg.engine.manifest import InputSpec
from unetseg.engine.preprocessing.pipeline import prepare_inputs
from unetseg.engine.preprocessing.resampling import resample_to_geometry
from unetseg.engine.preprocessing.spec import PreparationSpec

CENTER = np.array([5.0, -10.0, 20.0])  # RAS mm
LPS = np.diag([-1.0, -1.0, 1.0])


def world(geometry: Geometry) -> np.ndarray:
    """(3, K, J, I) RAS positions of the voxel centres."""
    k, j, i = np.indices(geometry.shape)
    ijk = np.stack([i, j, k, np.ones_like(i)]).reshape(4, -1).astype(np.float64)
    return (geometry.ijk_to_ras @ ijk)[:3].reshape(3, *geometry.shape)


def blob_labels(geometry: Geometry) -> np.ndarray:
    """uint8 (K, J, I): 1 = large ellipsoid, 2 = smaller one inside it."""
    p = world(geometry) - CENTER[:, None, None, None]
    labels = np.zeros(geometry.shape, dtype=np.uint8)
    labels[(p[0] / 22) ** 2 + (p[1] / 18) ** 2 + (p[2] / 15) ** 2 < 1] = 1
    labels[((p[0] - 6) / 10) ** 2 + ((p[1] + 3) / 9) ** 2 + (p[2] / 8) ** 2 < 1] = 2
    return labels


def intensity(geometry: Geometry, phase: float = 0.0) -> np.ndarray:
    """Smooth float32 (K, J, I) image, positive everywhere."""
    p = world(geometry)
    value = 100 + 30 * np.sin(p[0] / 15 + phase) * np.cos(p[1] / 20) + 20 * np.sin(p[2] / 12)
    return value.astype(np.float32)


def oblique_lps_geometry() -> Geometry:
    """Oblique, anisotropic grid built from LPS values (as read from DICOM), centred on CENTER."""
    spacing = np.array([0.9, 1.1, 2.5])
    shape_kji = (24, 56, 60)
    direction_lps = Rotation.from_euler("zyx", [20, -10, 15], degrees=True).as_matrix()
    half_extent = direction_lps @ (spacing * (np.array(shape_kji[::-1]) - 1) / 2)
    origin_lps = LPS @ CENTER - half_extent
    return Geometry.from_lps(spacing, origin_lps, direction_lps, shape_kji)


FLAIR_ZSCORE = {"method": "zscore", "mask": "nonzero"}
CT_WINDOW = {"method": "ct_window", "center": 40, "width": 400}


def manifest(spacing=(1.5, 1.5, 1.5), flair_required=True, flair_normalization=FLAIR_ZSCORE):
    """A two-input MR model: t1c (required, raw) and flair."""
    return PreparationSpec(
        inputs=(
            InputSpec("t1c"),
            InputSpec("flair", required=flair_required, normalization=flair_normalization),
        ),
        modality="MR",
        spacing_mm=tuple(spacing),
    )


def ct_model(spacing: tuple[float, float, float]) -> PreparationSpec:
    """A one-input CT model with a soft-tissue window."""
    return PreparationSpec((InputSpec("ct", normalization=CT_WINDOW),), spacing_mm=spacing)


def interior(geometry: Geometry, inside_of: Geometry, margin_voxels: float = 1.5) -> np.ndarray:
    """bool (K, J, I) of ``geometry`` voxels at least ``margin_voxels`` inside ``inside_of``."""
    ijk = np.einsum("ab,b...->a...", inside_of.ras_to_ijk[:3, :3], world(geometry))
    ijk += inside_of.ras_to_ijk[:3, 3, None, None, None]
    upper = np.array(inside_of.shape[::-1])[:, None, None, None] - 1 - margin_voxels
    return np.all((ijk >= margin_voxels) & (ijk <= upper), axis=0)


def test_oblique_lps_case_prepare_and_restore() -> None:
    geometry = oblique_lps_geometry()
    t1c, flair = intensity(geometry), intensity(geometry, phase=1.0)
    case = prepare_inputs([t1c, flair], [geometry, geometry], manifest())

    model = case.model_geometry
    np.testing.assert_allclose(model.spacing, 1.5)
    assert np.all(np.diag(model.direction) > 0.9)  # closest canonical: I, J, K ~ R, A, S
    assert case.image.shape == (2, *model.shape) and case.image.dtype == np.float32
    assert case.missing_inputs == []
    assert case.reference_geometry.is_close(geometry, atol=0)
    # Channel 0 (no normalisation) equals the analytic image at the model voxel centres.
    inner = interior(model, geometry)
    assert inner.mean() > 0.5
    np.testing.assert_allclose(case.image[0][inner], intensity(model)[inner], atol=1.0)
    # Channel 1 is z-scored inside its non-zero voxels (here: the whole grid).
    assert abs(case.image[1].mean()) < 1e-3 and abs(case.image[1].std() - 1) < 1e-3
    assert case.foreground_mask is not None and case.foreground_mask.dtype == bool
    assert case.foreground_mask.shape == model.shape
    assert set(case.timings) >= {"validate", "reorient", "resample", "normalize", "total"}

    # A label map on the model grid goes back onto the original grid and layout.
    restored = case.restore_labels(blob_labels(model))
    expected = blob_labels(geometry)
    assert restored.dtype == np.uint8 and restored.shape == geometry.shape
    boundary = ndimage.morphological_gradient(expected, size=3) > 0
    near_boundary = ndimage.binary_dilation(boundary)  # one original voxel either side
    assert not np.any((restored != expected) & ~near_boundary)
    assert dice(restored > 0, expected > 0) > 0.96
    assert dice(restored == 2, expected == 2) > 0.9
    # Same as SimpleITK's nearest-neighbour resampling of the model-grid labels.
    np.testing.assert_array_equal(
        restored, sitk_resample(blob_labels(model), model, geometry, order=0)
    )

    probabilities = np.stack([blob_labels(model) == v for v in (0, 1, 2)]).astype(np.float32)
    restored_probabilities = case.restore_probabilities(probabilities)
    assert restored_probabilities.shape == (3, *geometry.shape)
    np.testing.assert_allclose(restored_probabilities.sum(axis=0), 1.0, atol=1e-5)
    agree = np.argmax(restored_probabilities, axis=0) == expected
    assert np.all(agree | near_boundary)


def test_identity_geometry_is_exact() -> None:
    geometry = Geometry(np.diag([1.0, 1.0, 1.0, 1.0]), (20, 22, 24))
    t1c = intensity(geometry)
    case = prepare_inputs([t1c, t1c], [geometry, None], manifest(spacing=(1, 1, 1)))
    np.testing.assert_array_equal(case.image[0], t1c)
    assert case.model_geometry.is_close(geometry, atol=1e-9)
    labels = blob_labels(geometry)
    np.testing.assert_array_equal(case.restore_labels(labels), labels)
    # Without geometries: a 1 mm RAS identity grid.
    bare = prepare_inputs([t1c, t1c], [None, None], manifest(spacing=(1, 1, 1)))
    assert bare.reference_geometry.is_close(Geometry(np.eye(4), t1c.shape), atol=0)
    np.testing.assert_array_equal(bare.image, case.image)


def test_lps_geometry_with_model_spacing_is_only_reoriented_and_exact() -> None:
    geometry = Geometry(np.diag([-1.0, -1.0, 2.0, 1.0]) @ _translation(30, 40, 0), (12, 22, 24))
    t1c = intensity(geometry)
    case = prepare_inputs([t1c, t1c], [geometry, geometry], manifest(spacing=(1, 1, 2)))
    np.testing.assert_array_equal(case.image[0], t1c[:, ::-1, ::-1])
    labels = blob_labels(geometry)
    np.testing.assert_array_equal(case.restore_labels(labels[:, ::-1, ::-1]), labels)


def _translation(i: float, j: float, k: float) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, 3] = (-i, -j, -k)
    return matrix


def test_missing_optional_input_gives_zero_channel() -> None:
    geometry = oblique_lps_geometry()
    case = prepare_inputs(
        [intensity(geometry), None], [geometry, None], manifest(flair_required=False)
    )
    assert case.missing_inputs == ["flair"]
    assert np.all(case.image[1] == 0)
    assert np.any(case.image[0] != 0)
    with pytest.raises(ValueError, match="required input 'flair' is missing"):
        prepare_inputs([intensity(geometry), None], [geometry, None], manifest())


def test_secondary_on_another_grid_is_resampled_onto_the_reference() -> None:
    reference = oblique_lps_geometry()
    direction = Rotation.from_euler("xyz", [-25, 5, 40], degrees=True).as_matrix()
    spacing, shape = np.array([1.2, 1.2, 1.8]), (40, 60, 60)
    origin = CENTER - direction @ (spacing * (np.array(shape[::-1]) - 1) / 2)
    other = Geometry.from_spacing_origin_direction(spacing, origin, direction, shape)
    spec = manifest(flair_normalization={"method": "none"})
    case = prepare_inputs(
        [intensity(reference), intensity(other, phase=1.0)], [reference, other], spec
    )
    assert "resample_secondary" in case.timings
    model = case.model_geometry
    inner = interior(model, reference) & interior(model, other)
    assert inner.mean() > 0.3
    np.testing.assert_allclose(case.image[1][inner], intensity(model, 1.0)[inner], atol=1.0)


def test_secondary_without_overlap_is_rejected() -> None:
    reference = oblique_lps_geometry()
    far = Geometry.from_spacing_origin_direction((1, 1, 1), CENTER + 500, np.eye(3), (5, 5, 5))
    with pytest.raises(ValueError, match="'flair' does not overlap"):
        prepare_inputs([intensity(reference), intensity(far)], [reference, far], manifest())


def test_invalid_inputs_are_reported_by_name() -> None:
    geometry = oblique_lps_geometry()
    t1c, flair = intensity(geometry), intensity(geometry)
    flair[3, 4, 5] = np.nan
    with pytest.raises(ValueError, match="input 'flair' contains NaN values"):
        prepare_inputs([t1c, flair], [geometry, geometry], manifest())
    with pytest.raises(ValueError, match="input 't1c' is empty"):
        prepare_inputs([np.zeros_like(t1c), t1c], [geometry, geometry], manifest())
    with pytest.raises(ValueError, match="expects 2 inputs"):
        prepare_inputs([t1c], [geometry], manifest())
    with pytest.raises(ValueError, match="geometry shape"):
        prepare_inputs([t1c, t1c[1:]], [geometry, Geometry(np.eye(4), t1c.shape)], manifest())


def test_ct_case_uses_body_mask_as_foreground() -> None:
    geometry = Geometry(np.diag([2.0, 2.0, 2.0, 1.0]), (20, 32, 32))
    _, j, i = np.indices(geometry.shape)
    body = ((j - 16) / 12) ** 2 + ((i - 16) / 10) ** 2 < 1
    ct = np.where(body, 40, -1000).astype(np.int16)
    case = prepare_inputs([ct], [geometry], ct_model((2.0, 2.0, 2.0)))
    np.testing.assert_array_equal(case.foreground_mask, body)
    np.testing.assert_allclose(case.image[0][body], 0.5)


@pytest.mark.parametrize("with_slice_axis", [False, True])
def test_2d_path_keeps_pixel_order(with_slice_axis: bool) -> None:
    geometry = Geometry(np.diag([-0.25, -0.25, 1.0, 1.0]), (1, 40, 48))  # LPS identity, 2D
    image = np.full((40, 48), 10.0, dtype=np.float32)
    image[:8, :12] = 200.0  # a marker in the first rows and columns
    given = image[None] if with_slice_axis else image
    spec = PreparationSpec(
        (InputSpec("xray"),), spatial_dims=2, modality="CR", spacing_mm=(0.5, 0.5)
    )
    case = prepare_inputs([given], [geometry], spec)
    assert case.image.shape == (1, 20, 24)
    assert case.foreground_mask is None
    np.testing.assert_allclose(case.image[0, :4, :6], 200.0)  # not flipped
    np.testing.assert_allclose(case.image[0, 4:, 6:], 10.0)
    restored = case.restore_labels((case.image[0] > 100).astype(np.uint8))
    assert restored.shape == given.shape
    np.testing.assert_array_equal(restored.reshape(40, 48), (image > 100).astype(np.uint8))
    probabilities = case.restore_probabilities(case.image[:1] / 200.0)
    assert probabilities.shape == (1, *given.shape)
    with pytest.raises(ValueError, match="one slice"):
        prepare_inputs([np.ones((2, 40, 48))], [None], spec)


@pytest.mark.parametrize("shape", [(60, 90), (32, 32), (200, 130)])
def test_2d_image_size_resamples_any_image_to_the_model_size_and_back(shape) -> None:
    rows, columns = shape
    geometry = Geometry(np.diag([-0.143, -0.143, 1.0, 1.0]), (1, rows, columns))
    image = np.zeros(shape, dtype=np.float32)
    image[: rows // 2, : columns // 4] = 100.0  # top-left block: a quarter of the columns
    spec = PreparationSpec(
        (InputSpec("xray"),),
        spatial_dims=2,
        modality="DX",
        spacing_mm=(2.0, 2.0, 1.0),  # ignored in-plane: image_size wins
        image_size=(32, 32),
    )
    case = prepare_inputs([image], [geometry], spec)
    assert case.image.shape == (1, 32, 32)
    block = case.image[0] > 50
    assert block[:14, :6].all() and not block[18:].any() and not block[:, 10:].any()
    restored = case.restore_labels(block.astype(np.uint8))
    assert restored.shape == shape
    assert dice(restored.astype(bool), image > 50) > 0.9


@pytest.mark.shared_data
def test_real_dicom_ct_with_nifti_labels_stored_in_another_layout() -> None:
    folder = SHARED_DATA / "ct_totalsegmentator"
    if not (folder / "example_ct_dicom").is_dir():
        pytest.skip(f"real data not found: {folder}")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder / "example_ct_dicom")))
    ct_image = reader.Execute()
    ct, ct_geometry = sitk.GetArrayFromImage(ct_image), Geometry.from_sitk(ct_image)
    seg_image = nib.load(folder / "example_seg_dicom.nii.gz")  # same voxels, stored LAS
    seg = np.asarray(seg_image.dataobj).transpose(2, 1, 0)
    seg_geometry = Geometry.from_nibabel(seg_image)

    # Same physical grid, J reversed: resampling is an exact flip.
    on_ct = resample_to_geometry(seg, seg_geometry, ct_geometry, order=0)
    np.testing.assert_array_equal(on_ct, seg[:, ::-1, :])

    case = prepare_inputs([ct], [ct_geometry], ct_model((1.5, 1.5, 2.0)))
    on_model = resample_to_geometry(seg, seg_geometry, case.model_geometry, order=0)
    liver = on_model == 5
    assert liver.sum() > 1000
    # Image and labels meet on the model grid: liver parenchyma is ~40-120 HU.
    liver_hu = np.median(case.image[0][liver]) * 400 + 40 - 200
    assert 20 < liver_hu < 150
    assert case.foreground_mask is not None and case.foreground_mask[on_model > 0].mean() > 0.999

    restored = case.restore_labels(on_model)
    near_boundary = ndimage.binary_dilation(ndimage.morphological_gradient(on_ct, size=3) > 0)
    assert np.mean((restored != on_ct) & ~near_boundary) < 1e-4
    assert dice(restored == 5, on_ct == 5) > 0.97
