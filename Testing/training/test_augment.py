"""Augmentation: patch warping against numpy/scipy references, image-label alignment, intensity."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from Training.augment import (
    SpatialTransform,
    augment_intensity,
    random_spatial_transform,
    rotation_matrix,
    warp,
)
from Training.config import (
    AugmentationConfig,
    BiasFieldConfig,
    FlipConfig,
    GammaConfig,
    ModalityDropoutConfig,
    NoiseConfig,
    RotationConfig,
    ScaleConfig,
    ShiftConfig,
)

OFF = AugmentationConfig(
    flip=FlipConfig(p=0.0),
    rotation=RotationConfig(p=0.0),
    scale=ScaleConfig(p=0.0),
    shift=ShiftConfig(p=0.0),
    gamma=GammaConfig(p=0.0),
    noise=NoiseConfig(p=0.0),
    bias_field=BiasFieldConfig(p=0.0),
)


def _smooth_volume(shape, seed=0, channels=1):
    rng = np.random.default_rng(seed)
    volume = rng.normal(size=(channels, *shape))
    return np.stack([ndimage.gaussian_filter(v, 2.5) for v in volume]).astype(np.float32)


def _offsets(patch):
    grids = np.meshgrid(*[np.arange(p) - p // 2 for p in patch], indexing="ij")
    return np.stack([g.ravel() for g in grids]).astype(np.float64)


def test_identity_is_an_exact_crop_with_zero_padding():
    volume = _smooth_volume((20, 24, 28))
    patch = warp(volume, (10, 12, 14), (8, 8, 8), SpatialTransform.identity(3), "bilinear")
    np.testing.assert_array_equal(patch.numpy(), volume[:, 6:14, 8:16, 10:18])
    # A patch hanging over the corner: the outside is 0, the inside the volume.
    corner = warp(volume, (1, 2, 3), (8, 8, 8), SpatialTransform.identity(3), "bilinear").numpy()
    np.testing.assert_array_equal(corner[:, 3:, 2:, 1:], volume[:, :5, :6, :7])
    assert not corner[:, :3].any() and not corner[:, :, :2].any() and not corner[..., :1].any()


def test_flips_match_numpy_flip_about_the_centre_voxel():
    volume = _smooth_volume((20, 24, 28))
    transform = SpatialTransform(np.diag([1.0, -1.0, -1.0]), np.zeros(3))
    patch = warp(volume, (10, 12, 14), (6, 6, 6), transform, "bilinear").numpy()
    # Offsets -3..2 map to positions c - o: 12 + 3 .. 12 - 2 on J, 14 + 3 .. 14 - 2 on I.
    expected = volume[:, 7:13, 10:16, 12:18][:, :, ::-1, ::-1]
    np.testing.assert_array_equal(patch, expected)


def test_quarter_turn_through_grid_sample_matches_rot90():
    """A 90 degree rotation is not axis-aligned (grid path) but lands on voxel centres."""
    volume = _smooth_volume((1, 30, 30))[:, 0]  # (C, J, I)
    transform = SpatialTransform(rotation_matrix([np.pi / 2]), np.zeros(2))
    patch = warp(volume, (15, 15), (9, 9), transform, "bilinear").numpy()
    positions = np.rint(np.array([15.0, 15.0])[:, None] + transform.matrix @ _offsets((9, 9)))
    expected = volume[0][positions[0].astype(int), positions[1].astype(int)].reshape(9, 9)
    np.testing.assert_allclose(patch[0], expected, atol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_rotation_and_zoom_match_scipy_linear_interpolation(dims):
    shape = (24, 26, 28)[-dims:]
    volume = _smooth_volume(shape, seed=dims)
    rng = np.random.default_rng(7)
    angles = rng.uniform(-0.3, 0.3, size=1 if dims == 2 else 3)
    matrix = rotation_matrix(angles) / 1.15
    shift = np.array([0.3, -1.7, 0.6])[:dims]
    transform = SpatialTransform(matrix, shift)
    patch_size = (10, 12, 11)[:dims]
    centre = np.array(shape) // 2
    patch = warp(volume, centre, patch_size, transform, "bilinear").numpy()[0]
    positions = centre[:, None] + shift[:, None] + matrix @ _offsets(patch_size)
    expected = ndimage.map_coordinates(volume[0].astype(np.float64), positions, order=1)
    np.testing.assert_allclose(patch.ravel(), expected, atol=1e-5)


def test_anisotropic_rotation_is_a_rotation_in_millimetres():
    """With voxel size (K, J, I) = (3, 1, 1) mm an in-plane rotation keeps K steps of 3 mm."""
    rng = np.random.default_rng(0)
    config = dataclasses.replace(OFF, rotation=RotationConfig(p=1.0, degrees=30))
    transform = random_spatial_transform(rng, config, (8, 8, 8), (3.0, 1.0, 1.0))
    millimetres = np.diag([3.0, 1.0, 1.0]) @ transform.matrix @ np.diag([1 / 3.0, 1.0, 1.0])
    np.testing.assert_allclose(millimetres @ millimetres.T, np.eye(3), atol=1e-12)
    assert not transform.axis_aligned


def test_disabled_probabilities_give_the_identity_and_flips_follow_named_axes():
    rng = np.random.default_rng(0)
    assert random_spatial_transform(rng, OFF, (8, 8, 8), (1, 1, 1)).axis_aligned
    np.testing.assert_array_equal(
        random_spatial_transform(rng, OFF, (8, 8, 8), (1, 1, 1)).matrix, np.eye(3)
    )
    flip_x = dataclasses.replace(OFF, flip=FlipConfig(p=1.0, axes=("x",)))
    matrix = random_spatial_transform(rng, flip_x, (8, 8, 8), (1, 1, 1)).matrix
    np.testing.assert_array_equal(matrix, np.diag([1.0, 1.0, -1.0]))  # x = I = last axis
    flip_y_2d = dataclasses.replace(OFF, flip=FlipConfig(p=1.0, axes=("y",)))
    matrix = random_spatial_transform(rng, flip_y_2d, (8, 8), (1, 1)).matrix
    np.testing.assert_array_equal(matrix, np.diag([-1.0, 1.0]))  # y = J = first axis in 2D


def test_label_stays_aligned_with_the_image_under_spatial_augmentation():
    """label = image > t before warping stays (warped image > t), except at the label border
    where linear and nearest-neighbour sampling may disagree; a one-voxel misalignment fails."""
    volume = _smooth_volume((40, 40, 40), seed=3)
    threshold = 0.02
    label = (volume > threshold).astype(np.uint8)
    config = AugmentationConfig(
        rotation=RotationConfig(p=1.0, degrees=15),
        scale=ScaleConfig(p=1.0, range=(0.8, 1.2)),
        shift=ShiftConfig(p=1.0, fraction=0.1),
        flip=FlipConfig(p=0.5),
    )
    rng = np.random.default_rng(1)
    border = np.ones((3, 3, 3), dtype=bool)
    for _ in range(4):
        transform = random_spatial_transform(rng, config, (24, 24, 24), (1.0, 1.0, 1.0))
        image = warp(volume, (20, 20, 20), (24, 24, 24), transform, "bilinear")[0].numpy()
        warped = warp(label, (20, 20, 20), (24, 24, 24), transform, "nearest")[0].numpy()
        assert set(np.unique(warped)) <= {0.0, 1.0}  # nearest neighbour keeps label values
        mismatch = (image > threshold) != (warped > 0.5)
        band = ndimage.binary_dilation(warped > 0.5, border) & ~ndimage.binary_erosion(
            warped > 0.5, border
        )
        assert not np.any(mismatch & ~band)
        assert mismatch.mean() < 0.06
        shifted = warp(label, (20, 20, 21), (24, 24, 24), transform, "nearest")[0].numpy()
        assert ((image > threshold) != (shifted > 0.5)).mean() > 2 * mismatch.mean()


def _intensity_config(**kwargs):
    return dataclasses.replace(OFF, **kwargs)


def test_gamma_keeps_mean_and_std_and_changes_the_shape():
    image = torch.from_numpy(_smooth_volume((16, 16, 16), channels=2))
    before = image.clone()
    config = _intensity_config(gamma=GammaConfig(p=1.0, range=(1.8, 1.8)))
    out = augment_intensity(image, np.random.default_rng(0), config)
    for c in range(2):
        assert float(out[c].mean()) == pytest.approx(float(before[c].mean()), abs=1e-5)
        assert float(out[c].std()) == pytest.approx(float(before[c].std()), rel=1e-4)
    assert not torch.allclose(out, before, atol=1e-3)


def test_noise_and_bias_field_are_seeded():
    config = _intensity_config(
        noise=NoiseConfig(p=1.0, std=0.2), bias_field=BiasFieldConfig(p=1.0, strength=0.3)
    )
    volume = _smooth_volume((12, 12, 12))
    a = augment_intensity(torch.from_numpy(volume.copy()), np.random.default_rng(5), config)
    b = augment_intensity(torch.from_numpy(volume.copy()), np.random.default_rng(5), config)
    c = augment_intensity(torch.from_numpy(volume.copy()), np.random.default_rng(6), config)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_modality_dropout_zeroes_a_proper_subset_of_channels():
    config = _intensity_config(modality_dropout=ModalityDropoutConfig(p=1.0))
    rng = np.random.default_rng(0)
    patterns = set()
    for _ in range(60):
        image = torch.ones(4, 4, 4, 4)
        out = augment_intensity(image, rng, config)
        zeroed = tuple(bool((out[c] == 0).all()) for c in range(4))
        assert 1 <= sum(zeroed) <= 3
        patterns.add(zeroed)
    assert len(patterns) > 5
