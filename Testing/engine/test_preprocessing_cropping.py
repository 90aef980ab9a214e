"""Bounding boxes, crop/uncrop and body masks (synthetic phantoms and a real CT)."""

import nibabel as nib
import numpy as np
import pytest

from Testing.case_files import SHARED_DATA
from unetseg.engine.preprocessing.cropping import (
    CropBox,
    body_mask,
    crop_to_foreground,
    foreground_bbox,
)


def test_bbox_matches_nonzero_extent() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = np.zeros((9, 11, 13), dtype=bool)
        points = rng.integers(0, (9, 11, 13), size=(4, 3))
        mask[tuple(points.T)] = True
        nonzero = np.nonzero(mask)
        expected = tuple(slice(int(a.min()), int(a.max()) + 1) for a in nonzero)
        assert foreground_bbox(mask) == expected


def test_bbox_margin_is_clipped_per_axis() -> None:
    mask = np.zeros((10, 10, 10), dtype=np.uint8)
    mask[1, 5, 8] = 1
    assert foreground_bbox(mask, margin=2) == (slice(0, 4), slice(3, 8), slice(6, 10))
    assert foreground_bbox(mask, margin=(0, 1, 3)) == (slice(1, 2), slice(4, 7), slice(5, 10))
    with pytest.raises(ValueError, match="empty"):
        foreground_bbox(np.zeros((3, 3)))


def test_crop_and_uncrop_round_trip_with_channels() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(size=(2, 8, 9, 10)).astype(np.float32)
    mask = np.zeros((8, 9, 10), dtype=bool)
    mask[2:5, 3:7, 4:6] = True
    cropped, box = crop_to_foreground(image, mask, margin=1)
    assert cropped.shape == (2, 5, 6, 4)
    assert cropped.flags.c_contiguous
    restored = box.uncrop(cropped, fill=-5)
    inside = (slice(None), slice(1, 6), slice(2, 8), slice(3, 7))
    np.testing.assert_array_equal(restored[inside], image[inside])
    outside = np.ones(restored.shape, dtype=bool)
    outside[inside] = False
    assert np.all(restored[outside] == -5)
    labels = box.uncrop((cropped[0] > 0).astype(np.uint8), (8, 9, 10))
    assert labels.dtype == np.uint8 and labels.shape == (8, 9, 10)
    with pytest.raises(ValueError, match="does not end with"):
        box.uncrop(cropped[:, 1:])
    assert isinstance(box, CropBox) and box.spatial_shape == (8, 9, 10)


def ct_phantom() -> np.ndarray:
    """(K, J, I) HU: air around an elliptic body with two lungs joined to the air by a trachea
    that leaves through the top slice, plus a separate table below the body."""
    k, j, i = np.indices((40, 64, 64))
    image = np.full(k.shape, -1000.0, dtype=np.float32)
    body = ((j - 30) / 22) ** 2 + ((i - 32) / 28) ** 2 < 1
    image[body] = 40.0
    for center in (20, 44):
        image[(((j - 30) / 12) ** 2 + ((i - center) / 9) ** 2 < 1) & (k > 5) & (k < 35)] = -850.0
    image[((j - 30) ** 2 + (i - 32) ** 2 < 9) & (k >= 30)] = -1000.0  # trachea to the top
    image[(np.abs(j - 30) < 2) & (i > 20) & (i < 44) & (k >= 28) & (k < 31)] = -1000.0  # bronchi
    image[(j >= 56) & (j < 59) & (i > 5) & (i < 58)] = 200.0  # table
    return image


def test_ct_body_mask_keeps_lungs_and_drops_table() -> None:
    image = ct_phantom()
    mask = body_mask(image, max_voxels=None)
    _, j, i = np.indices(image.shape)
    body = ((j - 30) / 22) ** 2 + ((i - 32) / 28) ** 2 < 1
    np.testing.assert_array_equal(mask, body)  # lungs and trachea filled, table and air out
    coarse = body_mask(image, max_voxels=20_000)  # subsampled: blocky but inclusive
    assert coarse.shape == image.shape
    assert np.all(coarse[body])
    assert coarse.mean() < 2 * body.mean()


def test_mr_body_mask_default_threshold() -> None:
    rng = np.random.default_rng(2)
    k, j, i = np.indices((30, 40, 40))
    head = ((k - 15) / 12) ** 2 + ((j - 20) / 16) ** 2 + ((i - 20) / 14) ** 2 < 1
    ventricles = ((k - 15) / 4) ** 2 + ((j - 20) / 5) ** 2 + ((i - 20) / 3) ** 2 < 1
    image = np.abs(rng.normal(0, 15, size=head.shape))  # Rician-like background noise
    image[head] = rng.normal(600, 60, size=head.sum())
    image[ventricles] = rng.normal(60, 20, size=ventricles.sum())  # dark CSF
    mask = body_mask(image, modality="MR", max_voxels=None)
    np.testing.assert_array_equal(mask, head)
    assert not body_mask(np.zeros((4, 5, 6)), threshold=0.5, max_voxels=None).any()


def test_2d_body_mask() -> None:
    j, i = np.indices((50, 60))
    image = np.where(((j - 25) / 20) ** 2 + ((i - 30) / 25) ** 2 < 1, 800.0, -1000.0)
    image[((j - 25) / 5) ** 2 + ((i - 30) / 5) ** 2 < 1] = -900.0
    mask = body_mask(image.astype(np.float32))
    np.testing.assert_array_equal(mask, ((j - 25) / 20) ** 2 + ((i - 30) / 25) ** 2 < 1)


@pytest.mark.shared_data
def test_real_ct_body_mask_contains_lungs() -> None:
    ct_path = SHARED_DATA / "ct_totalsegmentator" / "example_ct_sm.nii.gz"
    seg_path = SHARED_DATA / "ct_totalsegmentator" / "example_seg.nii.gz"
    if not ct_path.exists() or not seg_path.exists():
        pytest.skip(f"real data not found: {ct_path.parent}")
    image = np.asarray(nib.load(ct_path).dataobj).transpose(2, 1, 0)  # RAS: K is axial
    labels = np.asarray(nib.load(seg_path).dataobj).transpose(2, 1, 0)
    mask = body_mask(image)
    lungs = (labels >= 10) & (labels <= 14)  # the five lung lobes (class_map.json "total")
    assert lungs.sum() > 1000
    assert np.mean(mask[lungs]) > 0.999
    assert np.mean(mask[labels > 0]) > 0.999
    assert np.mean(mask[image < -950]) < 0.5  # most outside air is excluded
