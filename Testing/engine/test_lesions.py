"""Lesion table and lesion-wise detection on hand-built cases."""

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from unetseg.engine.lesions import (
    aggregate_lesion_detection,
    label_lesions,
    lesion_detection,
    lesion_table,
)


def _box(array, start, size, value=1):
    array[tuple(slice(a, a + s) for a, s in zip(start, size, strict=True))] = value


def _sphere_diameter(volume):
    return (6.0 * volume / math.pi) ** (1.0 / 3.0)


def test_lesion_table_3d_anisotropic():
    labels = np.zeros((20, 30, 40), np.uint8)
    _box(labels, (2, 3, 4), (2, 3, 4))  # 24 voxels
    _box(labels, (10, 10, 10), (4, 5, 6), 1)  # 120 voxels, labels 1 and 3
    _box(labels, (12, 10, 10), (2, 5, 6), 3)
    _box(labels, (16, 25, 30), (1, 1, 1), 2)  # 1 voxel of label 2
    spacing_ijk = (0.5, 1.0, 2.0)
    voxel_mm3 = 0.5 * 1.0 * 2.0
    rows = lesion_table(labels, spacing_ijk)
    assert [row["id"] for row in rows] == [1, 2, 3]
    assert [row["voxel_count"] for row in rows] == [120, 24, 1]
    big = rows[0]
    assert big["labels"] == [1, 3]
    assert big["volume_mm3"] == pytest.approx(120 * voxel_mm3)
    assert big["volume_ml"] == pytest.approx(120 * voxel_mm3 / 1000)
    assert big["equivalent_diameter_mm"] == pytest.approx(_sphere_diameter(120 * voxel_mm3))
    expected_index = ndimage.center_of_mass(labels > 0, ndimage.label(labels > 0)[0], 2)
    assert big["centroid_index"] == pytest.approx([11.5, 12.0, 12.5])
    assert big["centroid_index"] == pytest.approx(list(expected_index))
    # mm in (x, y, z) = (I, J, K) order: i * 0.5, j * 1.0, k * 2.0
    assert big["centroid_mm"] == pytest.approx([12.5 * 0.5, 12.0 * 1.0, 11.5 * 2.0])
    assert big["bbox_start"] == [10, 10, 10] and big["bbox_stop"] == [14, 15, 16]
    crop = labels[
        tuple(slice(a, b) for a, b in zip(big["bbox_start"], big["bbox_stop"], strict=True))
    ]
    assert np.count_nonzero(crop) == 120
    json.dumps(rows, allow_nan=False)

    assert [
        row["voxel_count"] for row in lesion_table(labels, spacing_ijk, min_volume_mm3=2.0)
    ] == [120, 24]
    only_two = lesion_table(labels, spacing_ijk, label_values=[2])
    assert len(only_two) == 1 and only_two[0]["labels"] == [2]
    assert lesion_table(np.zeros((3, 4, 5)), spacing_ijk) == []


def test_lesion_table_ras_centroid():
    labels = np.zeros((5, 6, 7), np.uint8)
    labels[1, 2, 3] = 1
    ijk_to_ras = np.array(
        [[-0.5, 0, 0, 10.0], [0, -1.0, 0, 20.0], [0, 0, 2.0, -30.0], [0, 0, 0, 1]]
    )
    (row,) = lesion_table(labels, (0.5, 1.0, 2.0), ijk_to_ras=ijk_to_ras)
    assert row["centroid_index"] == [1.0, 2.0, 3.0]
    assert row["centroid_ras"] == pytest.approx([10.0 - 1.5, 20.0 - 2.0, -30.0 + 2.0])


def test_connectivity():
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[1, 1, 1] = 1
    labels[2, 2, 2] = 1  # corner neighbour only
    assert label_lesions(labels)[1].size - 1 == 1
    assert label_lesions(labels, connectivity=1)[1].size - 1 == 2
    assert label_lesions(labels, connectivity=2)[1].size - 1 == 2
    with pytest.raises(ValueError):
        label_lesions(labels, connectivity=4)


def test_lesion_table_2d():
    labels = np.zeros((20, 30), np.uint8)
    _box(labels, (2, 2), (3, 4))
    labels[10, 10] = labels[11, 11] = 1  # diagonal pair: one lesion with 8-connectivity
    rows = lesion_table(labels, spacing=(0.5, 2.0, 5.0))  # 2D ignores K spacing
    assert [row["voxel_count"] for row in rows] == [12, 2]
    assert rows[0]["area_mm2"] == pytest.approx(12 * 0.5 * 2.0)
    assert "volume_ml" not in rows[0]
    assert rows[0]["equivalent_diameter_mm"] == pytest.approx(math.sqrt(4 * 12.0 / math.pi))
    assert rows[0]["centroid_mm"] == pytest.approx([3.5 * 0.5, 3.0 * 2.0])
    assert len(lesion_table(labels, (0.5, 2.0), connectivity=1)) == 3


def _found_missed_false_positive():
    """Reference: A (9^3, diameter ~11 mm) and B (3^3, ~3.7 mm); prediction hits A only + FP."""
    ref = np.zeros((40, 40, 40), np.uint8)
    pred = np.zeros_like(ref)
    _box(ref, (5, 5, 5), (9, 9, 9))
    _box(ref, (30, 30, 30), (3, 3, 3))
    _box(pred, (7, 5, 5), (9, 9, 9))  # A shifted by 2 voxels along K
    _box(pred, (30, 5, 30), (2, 2, 2))  # false positive
    return pred, ref


def test_detection_found_missed_false_positive():
    pred, ref = _found_missed_false_positive()
    result = lesion_detection(pred, ref)
    assert result["reference_lesions"] == 2 and result["predicted_lesions"] == 2
    assert (result["detected"], result["missed"], result["false_positives"]) == (1, 1, 1)
    assert result["sensitivity"] == 0.5 and result["precision"] == 0.5 and result["f1"] == 0.5
    dice_a = 2 * 7 * 81 / (729 + 729)
    assert result["lesion_dice"] == pytest.approx(dice_a / 3)
    lesions = result["lesions"]
    assert [les["detected"] for les in lesions] == [True, False]
    assert lesions[0]["dice"] == pytest.approx(dice_a) and lesions[1]["dice"] == 0.0
    assert lesions[0]["equivalent_diameter_mm"] == pytest.approx(_sphere_diameter(729))
    buckets = {(b["min_mm"], b["max_mm"]): b for b in result["by_size"]}
    assert list(buckets) == [(0.0, 3.0), (3.0, 6.0), (6.0, 10.0), (10.0, 20.0), (20.0, None)]
    assert buckets[(10.0, 20.0)]["sensitivity"] == 1.0
    assert buckets[(3.0, 6.0)]["sensitivity"] == 0.0
    assert buckets[(3.0, 6.0)]["reference_lesions"] == 1
    assert buckets[(0.0, 3.0)]["sensitivity"] is None
    json.dumps(result, allow_nan=False)

    # Ignoring lesions under 30 mm³ drops B (27 mm³) and the false positive (8 mm³).
    filtered = lesion_detection(pred, ref, min_volume_mm3=30.0)
    assert (filtered["detected"], filtered["missed"], filtered["false_positives"]) == (1, 0, 0)


def test_detection_merge_and_split():
    ref = np.zeros((30, 30, 30), np.uint8)
    _box(ref, (5, 5, 5), (4, 4, 4))
    _box(ref, (5, 5, 12), (4, 4, 4))
    merged = np.zeros_like(ref)
    _box(merged, (5, 5, 5), (4, 4, 11))  # one prediction bridging both reference lesions
    result = lesion_detection(merged, ref)
    assert result["detected"] == 2 and result["false_positives"] == 0
    assert result["predicted_lesions"] == 1 and result["precision"] == 1.0
    assert result["lesions"][0]["dice"] == pytest.approx(2 * 64 / (64 + 176))

    one = np.zeros_like(ref)
    _box(one, (5, 5, 5), (4, 4, 10))
    split = np.zeros_like(ref)
    _box(split, (5, 5, 5), (4, 4, 4))
    _box(split, (5, 5, 11), (4, 4, 4))  # two predictions inside one reference lesion
    result = lesion_detection(split, one)
    assert result["reference_lesions"] == 1 and result["predicted_lesions"] == 2
    assert result["detected"] == 1 and result["false_positives"] == 0
    assert result["lesions"][0]["dice"] == pytest.approx(2 * 128 / (160 + 128))
    assert result["lesion_dice"] == pytest.approx(2 * 128 / (160 + 128))


def test_detection_overlap_threshold():
    ref = np.zeros((20, 20, 20), np.uint8)
    _box(ref, (5, 5, 5), (4, 4, 10))  # 160 voxels
    pred = np.zeros_like(ref)
    _box(pred, (5, 5, 0), (4, 4, 6))  # covers 16 / 160 = 10 % of the lesion; 1/6 of itself inside
    assert lesion_detection(pred, ref)["detected"] == 1
    strict = lesion_detection(pred, ref, overlap_threshold=0.2)
    assert strict["detected"] == 0 and strict["false_positives"] == 1
    assert strict["lesion_dice"] == 0.0


def test_detection_empty_cases():
    empty = np.zeros((10, 10, 10), np.uint8)
    lesion = empty.copy()
    _box(lesion, (2, 2, 2), (3, 3, 3))
    both = lesion_detection(empty, empty)
    assert both["sensitivity"] == both["precision"] == both["f1"] == both["lesion_dice"] == 1.0
    assert both["false_positives"] == 0 and both["lesions"] == []
    assert all(b["sensitivity"] is None for b in both["by_size"])
    spurious = lesion_detection(lesion, empty)
    assert spurious["sensitivity"] == 1.0 and spurious["precision"] == 0.0
    assert spurious["f1"] == 0.0 and spurious["lesion_dice"] == 0.0
    assert spurious["false_positives"] == 1
    missed = lesion_detection(empty, lesion)
    assert missed["sensitivity"] == 0.0 and missed["precision"] == 1.0
    assert missed["f1"] == 0.0 and missed["lesion_dice"] == 0.0
    for result in (both, spurious, missed):
        json.dumps(result, allow_nan=False)


def test_detection_2d_label_values_and_custom_buckets():
    ref = np.zeros((30, 30), np.uint8)
    pred = np.zeros_like(ref)
    _box(ref, (2, 2), (4, 4), 1)
    _box(ref, (20, 20), (2, 2), 2)  # label 2 is not a lesion for label_values=[1]
    pred[5, 5] = 1
    pred[6, 6] = 1  # 8-connected to the first pixel, one predicted lesion touching the reference
    pred[20, 20] = 2
    result = lesion_detection(
        pred, ref, spacing=(1.0, 1.0), label_values=[1], size_buckets_mm=(0, 5)
    )
    assert result["reference_lesions"] == 1 and result["predicted_lesions"] == 1
    assert result["detected"] == 1 and result["false_positives"] == 0
    assert result["by_size"] == [
        {"min_mm": 0.0, "max_mm": 5.0, "reference_lesions": 1, "detected": 1, "sensitivity": 1.0}
    ]
    assert lesion_detection(pred, ref, (1.0, 1.0), [1], connectivity=1)["false_positives"] == 1
    with pytest.raises(ValueError):
        lesion_detection(pred, ref, size_buckets_mm=(5, 0))


def test_aggregate_over_cases():
    pred, ref = _found_missed_false_positive()
    empty = np.zeros_like(ref)
    cases = [
        lesion_detection(pred, ref),
        lesion_detection(ref, ref),
        lesion_detection(empty, empty),
    ]
    pooled = aggregate_lesion_detection(cases)
    assert pooled["cases"] == 3
    assert pooled["reference_lesions"] == 4 and pooled["detected"] == 3
    assert pooled["false_positives"] == 1
    assert pooled["false_positives_per_case"] == pytest.approx(1 / 3)
    assert pooled["sensitivity"] == 0.75
    assert pooled["precision"] == pytest.approx(3 / 4)
    dice_a = 2 * 7 * 81 / (729 + 729)
    assert pooled["lesion_dice"] == pytest.approx((dice_a + 0 + 1 + 1) / 5)
    small = next(b for b in pooled["by_size"] if b["min_mm"] == 3.0)
    assert (small["reference_lesions"], small["detected"], small["sensitivity"]) == (2, 1, 0.5)
    with pytest.raises(ValueError):
        aggregate_lesion_detection([])
