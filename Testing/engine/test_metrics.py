"""Metrics checked against MONAI, brute-force distances and analytic boxes and spheres."""

import json

import numpy as np
import pytest
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
)
from scipy import ndimage
from scipy.spatial.distance import cdist

from Testing.case_files import SHARED_DATA
from unetseg.engine.metrics import (
    DISTANCE_METRICS,
    OVERLAP_METRICS,
    array_order_spacing,
    binary_metrics,
    compute_metrics,
    surface_distances,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")


def _blobs(shape, seed, threshold=0.6):
    """Smooth random binary blobs (several components, irregular surfaces)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), sigma=2.0)
    return field > np.quantile(field, threshold)


def _monai(pred, ref, sampling):
    """MONAI's Dice, HD95 and symmetric ASD; ``sampling`` in array order."""
    y_pred = torch.from_numpy(pred[None, None].astype(np.float32))
    y = torch.from_numpy(ref[None, None].astype(np.float32))
    dice = compute_dice(y_pred, y, include_background=True).item()
    hd95 = compute_hausdorff_distance(
        y_pred, y, include_background=True, percentile=95, spacing=list(sampling)
    ).item()
    assd = compute_average_surface_distance(
        y_pred, y, include_background=True, symmetric=True, spacing=list(sampling)
    ).item()
    return dice, hd95, assd


def _face_surface(mask):
    """Surface voxels by explicit face-neighbour checks (independent of binary_erosion)."""
    padded = np.pad(mask, 1)
    inner = tuple(slice(1, -1) for _ in range(mask.ndim))
    surface = np.zeros_like(mask)
    for axis in range(mask.ndim):
        for shift in (-1, 1):
            neighbour = np.roll(padded, shift, axis=axis)[inner]
            surface |= mask & ~neighbour
    return surface


def test_array_order_spacing():
    assert array_order_spacing((0.5, 0.7, 3.0), 3) == (3.0, 0.7, 0.5)
    assert array_order_spacing((0.5, 0.7, 3.0), 2) == (0.7, 0.5)
    assert array_order_spacing((0.5, 0.7), 2) == (0.7, 0.5)
    with pytest.raises(ValueError):
        array_order_spacing((1.0, 1.0), 3)
    with pytest.raises(ValueError):
        array_order_spacing((1.0, 0.0, 1.0), 3)


def test_overlap_metrics_by_hand_2d():
    ref = np.zeros((4, 5), dtype=np.uint8)
    pred = np.zeros((4, 5), dtype=np.uint8)
    ref[0, :4] = 1  # 4 voxels
    pred[0, 2:] = 1  # 3 voxels, TP = 2, FP = 1, FN = 2, TN = 15
    m = binary_metrics(pred, ref, include_distances=False)
    assert m == pytest.approx(
        {
            "dice": 4 / 7,
            "iou": 2 / 5,
            "sensitivity": 2 / 4,
            "specificity": 15 / 16,
            "precision": 2 / 3,
            "volume_similarity": 1 - 1 / 7,
        }
    )


@pytest.mark.parametrize(
    ("shape", "spacing_ijk", "seed"),
    [
        ((20, 36, 32), (0.8, 1.1, 2.5), 0),
        ((18, 30, 34), (1.0, 1.0, 1.0), 1),
        ((48, 40), (0.6, 1.7), 2),
    ],
)
def test_matches_monai_on_random_blobs(shape, spacing_ijk, seed):
    ref = _blobs(shape, seed)
    pred = _blobs(shape, seed + 100)
    pred |= ndimage.binary_dilation(ref) & _blobs(shape, seed + 200, 0.3)
    sampling = array_order_spacing(spacing_ijk, len(shape))
    dice, hd95, assd = _monai(pred, ref, sampling)
    m = binary_metrics(pred, ref, spacing_ijk)
    assert m["dice"] == pytest.approx(dice, abs=1e-6)
    assert m["hd95_mm"] == pytest.approx(hd95, rel=1e-5)
    assert m["assd_mm"] == pytest.approx(assd, rel=1e-5)


def test_surface_distances_match_brute_force():
    shape = (14, 22, 18)
    sampling = (2.0, 0.9, 0.6)
    ref = _blobs(shape, 5)
    pred = _blobs(shape, 6)
    pred_pts = np.argwhere(_face_surface(pred)) * sampling
    ref_pts = np.argwhere(_face_surface(ref)) * sampling
    pairwise = cdist(pred_pts, ref_pts)
    to_ref, to_pred = surface_distances(pred, ref, sampling)
    np.testing.assert_allclose(np.sort(to_ref), np.sort(pairwise.min(axis=1)), rtol=1e-12)
    np.testing.assert_allclose(np.sort(to_pred), np.sort(pairwise.min(axis=0)), rtol=1e-12)


def test_concentric_boxes_analytic_anisotropic():
    """Inner box inside an outer box grown by ``grow`` voxels per side; exact distances."""
    spacing_ijk = (0.5, 1.0, 3.0)
    sampling = np.array(array_order_spacing(spacing_ijk, 3))
    shape = (16, 20, 24)
    lo = np.array([5, 6, 7])
    hi = np.array([10, 13, 17])  # inclusive inner box corners
    grow = np.array([2, 3, 4])
    inner = np.zeros(shape, bool)
    outer = np.zeros(shape, bool)
    inner[tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))] = True
    outer[tuple(slice(a, b + 1) for a, b in zip(lo - grow, hi + grow, strict=True))] = True
    inner_pts = np.argwhere(inner)
    inner_pts = inner_pts[((inner_pts == lo) | (inner_pts == hi)).any(axis=1)]
    outer_pts = np.argwhere(outer)
    outer_pts = outer_pts[((outer_pts == lo - grow) | (outer_pts == hi + grow)).any(axis=1)]
    # Outer-shell voxel -> nearest inner voxel: the clamped offset to the inner box.
    gap = np.maximum(lo - outer_pts, 0) + np.maximum(outer_pts - hi, 0)
    outer_to_inner = np.sqrt(np.sum((gap * sampling) ** 2, axis=1))
    # Inner-shell voxel -> nearest outer face, straight along one axis.
    to_faces = np.minimum(inner_pts - (lo - grow), (hi + grow) - inner_pts) * sampling
    inner_to_outer = to_faces.min(axis=1)
    all_d = np.concatenate([outer_to_inner, inner_to_outer])
    expected_hd95 = max(np.percentile(outer_to_inner, 95), np.percentile(inner_to_outer, 95))
    m = binary_metrics(outer, inner, spacing_ijk)
    assert m["hd95_mm"] == pytest.approx(expected_hd95, rel=1e-12)
    assert m["assd_mm"] == pytest.approx(all_d.mean(), rel=1e-12)
    assert m["dice"] == pytest.approx(2 * inner.sum() / (inner.sum() + outer.sum()))
    assert m["sensitivity"] == 1.0
    assert m["precision"] == pytest.approx(inner.sum() / outer.sum())


def test_concentric_spheres_anisotropic():
    spacing_ijk = (0.8, 0.8, 1.5)
    sampling = np.array(array_order_spacing(spacing_ijk, 3))
    shape = (40, 70, 70)
    coords = np.indices(shape).T * sampling
    radius = np.linalg.norm(coords - coords[35, 35, 20], axis=-1).T
    r_ref, r_pred = 15.0, 20.0
    m = binary_metrics(radius <= r_pred, radius <= r_ref, spacing_ijk)
    assert m["dice"] == pytest.approx(2 * r_ref**3 / (r_ref**3 + r_pred**3), rel=0.02)
    assert m["hd95_mm"] == pytest.approx(r_pred - r_ref, abs=sampling.max())
    assert m["assd_mm"] == pytest.approx(r_pred - r_ref, abs=sampling.max())


def test_empty_cases_are_defined_and_json_safe():
    shape = (4, 5, 6)
    spacing_ijk = (0.5, 1.0, 2.0)
    diagonal = np.sqrt((4 * 2.0) ** 2 + (5 * 1.0) ** 2 + (6 * 0.5) ** 2)
    empty = np.zeros(shape, bool)
    full = np.ones(shape, bool)
    blob = np.zeros(shape, bool)
    blob[1:3, 1:4, 2:5] = True

    both = binary_metrics(empty, empty, spacing_ijk)
    assert both == {name: 1.0 for name in OVERLAP_METRICS} | {"hd95_mm": 0.0, "assd_mm": 0.0}

    missed = binary_metrics(empty, blob, spacing_ijk)
    assert missed["dice"] == missed["iou"] == missed["sensitivity"] == 0.0
    assert missed["volume_similarity"] == 0.0
    assert missed["precision"] == 1.0 and missed["specificity"] == 1.0
    assert missed["hd95_mm"] == missed["assd_mm"] == pytest.approx(diagonal)

    spurious = binary_metrics(blob, empty, spacing_ijk)
    assert spurious["dice"] == spurious["precision"] == 0.0
    assert spurious["sensitivity"] == 1.0
    assert spurious["hd95_mm"] == pytest.approx(diagonal)

    everything = binary_metrics(full, full, spacing_ijk)
    assert everything["specificity"] == 1.0 and everything["dice"] == 1.0
    assert everything["hd95_mm"] == 0.0

    for result in (both, missed, spurious, everything):
        json.dumps(result, allow_nan=False)


def test_compute_metrics_per_label_and_mean():
    ref = np.zeros((10, 12, 14), np.int16)
    ref[2:6, 3:8, 4:10] = 1
    ref[6:9, 3:8, 4:10] = 2
    pred = ref.copy()
    pred[2, 3:8, 4:10] = 0  # label 1 loses one slab, label 2 perfect, label 3 absent in both
    result = compute_metrics(pred, ref, labels=[1, 2, 3], spacing=(1.0, 1.0, 2.0))
    assert set(result) == {"1", "2", "3", "mean"}
    assert set(result["mean"]) == set(OVERLAP_METRICS) | set(DISTANCE_METRICS)
    assert result["1"]["dice"] == pytest.approx(2 * 90 / (90 + 120))
    assert result["1"]["hd95_mm"] == pytest.approx(2.0)  # one slab along K, 2 mm
    assert result["2"]["dice"] == 1.0 and result["2"]["hd95_mm"] == 0.0
    assert result["3"]["dice"] == 1.0
    for name in result["mean"]:
        expected = np.mean([result[key][name] for key in ("1", "2", "3")])
        assert result["mean"][name] == pytest.approx(expected)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    overlap_only = compute_metrics(pred, ref, labels=[1], include_distances=False)
    assert set(overlap_only["1"]) == set(OVERLAP_METRICS)
    with pytest.raises(ValueError):
        compute_metrics(pred, ref[:-1], labels=[1])


def test_compute_metrics_nested_regions():
    """Sigmoid models: label c is scored as the region >= c (BraTS WT / TC / ET style)."""
    ref = np.zeros((8, 20, 20), np.uint8)
    ref[:, 2:18, 2:18] = 1  # 16x16 outer region
    ref[:, 6:14, 6:14] = 2  # 8x8 inner region, inside label 1
    pred = ref.copy()
    pred[:, 6:14, 6:14] = 1  # inner region missed; the outer region is still whole
    exclusive = compute_metrics(pred, ref, [1, 2], include_distances=False)
    nested = compute_metrics(pred, ref, [1, 2], include_distances=False, nested=True)
    assert nested["1"]["dice"] == 1.0  # >= 1 is the whole 16x16 square in both
    assert exclusive["1"]["dice"] == pytest.approx(2 * 192 / (256 + 192))  # ring vs square
    assert nested["2"]["dice"] == exclusive["2"]["dice"] == 0.0


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_brats_labels_match_monai():
    case = SHARED_DATA / "brats2015" / "brats_2013_pat0003_1" / "OTMultiClass.nii.gz"
    if not case.exists():
        pytest.skip(f"real data not found at {case}")
    nib = pytest.importorskip("nibabel")
    image = nib.load(case)
    ref = np.asarray(image.dataobj).transpose(2, 1, 0)  # nibabel (I, J, K) -> array (K, J, I)
    spacing_ijk = tuple(float(s) for s in image.header.get_zooms()[:3])
    core = ndimage.binary_erosion(ref > 0, iterations=2)
    pred = np.where(core, ref, 0)
    pred = np.roll(pred, 2, axis=2)
    result = compute_metrics(pred, ref, labels=[4], spacing=spacing_ijk)
    dice, hd95, assd = _monai(pred == 4, ref == 4, array_order_spacing(spacing_ijk, 3))
    assert result["4"]["dice"] == pytest.approx(dice, abs=1e-6)
    assert result["4"]["hd95_mm"] == pytest.approx(hd95, rel=1e-5)
    assert result["4"]["assd_mm"] == pytest.approx(assd, rel=1e-5)
