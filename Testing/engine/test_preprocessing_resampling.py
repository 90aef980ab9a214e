"""Resampling against SimpleITK ``Resample`` (the reference implementation of the conventions)."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.transform import Rotation

from Testing.case_files import sitk_resample
from unetseg.engine.geometry import Geometry
from unetseg.engine.preprocessing.resampling import resample_to_geometry, resample_to_spacing


def smooth_volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    phase = rng.uniform(0, 6, size=3)
    return (np.sin(5 * k + phase[0]) * np.cos(7 * j + phase[1]) + np.sin(4 * i + phase[2])).astype(
        np.float32
    )


SOURCE = Geometry.from_spacing_origin_direction(
    (0.9, 1.2, 3.0),
    (-40.0, 20.0, -15.0),
    Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix(),
    (20, 34, 40),
)
OBLIQUE_TARGET = Geometry.from_spacing_origin_direction(
    (1.1, 0.8, 2.0),
    (-35.0, 15.0, -10.0),
    Rotation.from_euler("xyz", [-5, 15, 80], degrees=True).as_matrix(),
    (22, 36, 38),
)
ALIGNED_TARGET = Geometry.from_spacing_origin_direction(
    (0.7071, 1.7321, 2.2361),
    SOURCE.origin + SOURCE.direction @ [3.3141, -2.1718, 4.0577],  # no half-way (tie) positions
    SOURCE.direction,
    (30, 20, 50),
)


@pytest.mark.parametrize("target", [OBLIQUE_TARGET, ALIGNED_TARGET], ids=["oblique", "aligned"])
def test_linear_matches_sitk(target: Geometry) -> None:
    image = np.random.default_rng(1).normal(size=SOURCE.shape).astype(np.float32)
    ours = resample_to_geometry(image, SOURCE, target, order=1)
    expected = sitk_resample(image, SOURCE, target, order=1)
    assert ours.dtype == np.float32 and ours.shape == target.shape
    assert 0.1 < np.mean(expected != 0) < 0.9  # the grids partly overlap: fill is exercised
    np.testing.assert_allclose(ours, expected, atol=1e-4)


@pytest.mark.parametrize("target", [OBLIQUE_TARGET, ALIGNED_TARGET], ids=["oblique", "aligned"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_nearest_matches_sitk_and_keeps_dtype(target: Geometry, dtype: type) -> None:
    labels = np.random.default_rng(2).integers(0, 6, size=SOURCE.shape).astype(dtype)
    ours = resample_to_geometry(labels, SOURCE, target, order=0)
    expected = sitk_resample(labels, SOURCE, target, order=0)
    assert ours.dtype == dtype
    # Positions exactly half-way between voxels may round differently: allow a few.
    assert np.mean(ours != expected) < 1e-3
    assert set(np.unique(ours)) <= set(range(6))


def test_channels_are_resampled_independently() -> None:
    image = np.random.default_rng(3).normal(size=(2, *SOURCE.shape)).astype(np.float32)
    both = resample_to_geometry(image, SOURCE, OBLIQUE_TARGET, order=1, fill=-1.0)
    for c in range(2):
        single = resample_to_geometry(image[c], SOURCE, OBLIQUE_TARGET, order=1, fill=-1.0)
        np.testing.assert_array_equal(both[c], single)
    assert np.any(both == -1.0)


def test_identity_is_exact() -> None:
    image = np.random.default_rng(4).normal(size=SOURCE.shape).astype(np.float32)
    labels = (image > 0.5).astype(np.uint8)
    same = Geometry(SOURCE.ijk_to_ras.copy(), SOURCE.shape)
    np.testing.assert_array_equal(resample_to_geometry(image, SOURCE, same, 1), image)
    np.testing.assert_array_equal(resample_to_geometry(labels, SOURCE, same, 0), labels)
    resampled, geometry = resample_to_spacing(image, SOURCE, tuple(SOURCE.spacing), 1)
    np.testing.assert_array_equal(resampled, image)
    assert geometry.is_close(SOURCE, atol=1e-9)
    assert not np.shares_memory(resampled, image)


def test_spacing_grid_placement_is_corner_aligned() -> None:
    geometry = Geometry.from_spacing_origin_direction(
        (1.0, 1.0, 1.5), (10.0, 20.0, 30.0), SOURCE.direction, (11, 8, 10)
    )
    image = smooth_volume(geometry.shape)
    resampled, new = resample_to_spacing(image, geometry, (2.0, 0.5, None), 1)
    # Sizes: round_half_up(10 * 1 / 2) = 5, round_half_up(8 * 1 / 0.5) = 16, K kept.
    assert new.shape == (11, 16, 5)
    np.testing.assert_allclose(new.spacing, (2.0, 0.5, 1.5))
    np.testing.assert_allclose(new.direction, geometry.direction, atol=1e-12)
    # The outer corner of voxel 0 (index -0.5 on every axis) is the same physical point.
    corner = geometry.ijk_to_ras @ [-0.5, -0.5, -0.5, 1]
    np.testing.assert_allclose(new.ijk_to_ras @ [-0.5, -0.5, -0.5, 1], corner, atol=1e-9)
    # Values: SimpleITK on the new grid, everywhere (no border effect inside the extent).
    expected = sitk_resample(image, geometry, new, order=1)
    inner = (slice(None), slice(1, -1), slice(None))
    np.testing.assert_allclose(resampled[inner], expected[inner], atol=1e-5)
    # And torch's own corner-aligned interpolation along the axes it covers.
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(image)[None, None], size=(11, 16, 5), mode="trilinear"
    )[0, 0].numpy()
    np.testing.assert_allclose(resampled, ref, atol=1e-5)


def test_spacing_rounds_half_up_and_extends_edges() -> None:
    geometry = Geometry(np.eye(4), (3, 4, 5))
    image = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    resampled, new = resample_to_spacing(image, geometry, (2.0, 2.0, 2.0), 1)
    assert new.shape == (2, 2, 3)  # 1.5 -> 2, 2 -> 2, 2.5 -> 3
    # Last I voxel centre lies at old index 4.5, beyond the last voxel: edge value, not fill.
    np.testing.assert_allclose(resampled[0, 0, 2], image[:2, :2, 4].mean())


def test_label_round_trip_down_and_up() -> None:
    geometry = Geometry.from_spacing_origin_direction(
        (0.8, 0.8, 1.0), (0, 0, 0), SOURCE.direction, (40, 48, 52)
    )
    k, j, i = np.indices(geometry.shape)
    labels = np.zeros(geometry.shape, dtype=np.uint8)
    labels[(k - 20) ** 2 + (j - 24) ** 2 + (i - 26) ** 2 < 15**2] = 1
    labels[(k - 20) ** 2 + (j - 20) ** 2 + (i - 20) ** 2 < 8**2] = 2
    coarse, coarse_geometry = resample_to_spacing(labels, geometry, (1.6, 1.6, 2.0), 0)
    assert coarse.dtype == np.uint8 and set(np.unique(coarse)) == {0, 1, 2}
    back = resample_to_geometry(coarse, coarse_geometry, geometry, 0, padding="border")
    # Nearest down/up by 2 moves boundaries by at most one fine voxel: errors only next to them.
    boundary = ndimage.morphological_gradient(labels, size=3) > 0
    near_boundary = ndimage.binary_dilation(boundary)
    assert not np.any((back != labels) & ~near_boundary)
    for value in (1, 2):
        a, b = labels == value, back == value
        assert 2 * np.sum(a & b) / (a.sum() + b.sum()) > 0.85
    # Upsampling by an integer factor and back is exact for labels.
    fine, fine_geometry = resample_to_spacing(labels, geometry, (0.4, 0.4, 0.5), 0)
    np.testing.assert_array_equal(resample_to_geometry(fine, fine_geometry, geometry, 0), labels)


def test_rejects_bad_arguments() -> None:
    image = np.zeros(SOURCE.shape, dtype=np.float32)
    with pytest.raises(ValueError, match="order"):
        resample_to_geometry(image, SOURCE, OBLIQUE_TARGET, order=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not end with"):
        resample_to_geometry(image[1:], SOURCE, OBLIQUE_TARGET, order=1)
    with pytest.raises(ValueError, match="positive"):
        resample_to_spacing(image, SOURCE, (1.0, 0.0, 1.0), 1)
