"""Window placement and importance maps against MONAI's own functions."""

import itertools

import numpy as np
import pytest
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers.utils import _get_scan_interval

from unetseg.engine.inference.tiling import (
    axis_starts,
    covering_starts,
    mask_bounding_box,
    monai_padding,
    plan_tiling,
)
from unetseg.engine.inference.weighting import importance_map

CASES = [
    ((40, 50, 37), (16, 20, 24), 0.5),
    ((40, 50, 37), (16, 20, 24), 0.25),
    ((40, 50, 37), (40, 64, 8), 0.6),
    ((10, 50, 37), (16, 20, 24), 0.5),
    ((7, 9, 11), (16, 20, 24), 0.5),
    ((64, 33), (32, 32), 0.5),
    ((100, 100), (64, 64), 0.0),
    ((129, 17), (128, 17), 0.9),
]


def monai_windows(spatial, roi, overlap):
    """MONAI's window slices (padded coordinates) mapped back to image coordinates."""
    pad = monai_padding(spatial, roi)
    padded = [max(s, r) for s, r in zip(spatial, roi, strict=True)]
    interval = _get_scan_interval(padded, roi, len(roi), (overlap,) * len(roi))
    out = []
    for window in dense_patch_slices(padded, roi, interval):
        out.append(
            tuple(
                slice(max(w.start - b, 0), min(w.stop - b, s))
                for w, (b, _), s in zip(window, pad, spatial, strict=True)
            )
        )
    return out


@pytest.mark.parametrize(("spatial", "roi", "overlap"), CASES)
def test_windows_match_monai(spatial, roi, overlap):
    tiling = plan_tiling(spatial, roi, (overlap,) * len(roi), items=2)
    expected = monai_windows(spatial, roi, overlap)
    assert [w.source for w in tiling.windows] == expected * 2
    assert [w.item for w in tiling.windows] == [0] * len(expected) + [1] * len(expected)
    starts0 = [w.source[0].start for w in tiling.windows[: len(expected)]]
    assert starts0 == sorted(starts0)
    window_shape = tuple(c.stop - c.start for c in tiling.crop)
    for window in tiling.windows:
        assert tuple(s.stop - s.start for s in window.source) == window_shape


@pytest.mark.parametrize("roi", [(16, 20, 24), (15, 21, 8), (128, 128, 128), (5, 64)])
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_importance_map_equals_monai(roi, mode):
    ours = importance_map(roi, mode, 0.125)
    ref = compute_importance_map(roi, mode=mode, sigma_scale=0.125, dtype=torch.float32)
    assert ours.dtype == torch.float32
    assert torch.equal(ours, ref)


def test_importance_map_per_axis_sigma():
    ours = importance_map((12, 30, 9), "gaussian", (0.5, 0.1, 0.3))
    ref = compute_importance_map((12, 30, 9), mode="gaussian", sigma_scale=(0.5, 0.1, 0.3))
    assert torch.equal(ours, ref)
    assert ours.min() >= 1e-3


def test_mask_bounding_box():
    rng = np.random.default_rng(3)
    mask = np.zeros((20, 30, 25), bool)
    mask[rng.integers(4, 15, 6), rng.integers(2, 28, 6), rng.integers(5, 20, 6)] = True
    idx = np.nonzero(mask)
    expected = tuple((int(i.min()), int(i.max()) + 1) for i in idx)
    assert mask_bounding_box(torch.from_numpy(mask)) == expected
    assert mask_bounding_box(torch.zeros(4, 5, dtype=torch.bool)) is None


def test_crop_to_mask_keeps_fewest_full_grid_windows_covering_the_box():
    spatial, roi = (60, 70, 50), (16, 16, 16)
    mask = torch.zeros((1, *spatial), dtype=torch.bool)
    mask[0, 30:34, 10:40, 20:45] = True
    full = plan_tiling(spatial, roi, (0.5,) * 3, 1)
    thin = plan_tiling(spatial, roi, (0.5,) * 3, 1, mask, crop_to_mask=True)

    def starts_of(tiling):
        return {tuple(s.start for s in w.source) for w in tiling.windows}

    assert starts_of(thin) <= starts_of(full)  # the windows never move
    starts = [sorted({w.source[a].start for w in thin.windows}) for a in range(3)]
    assert starts == [[24], [8, 24], [16, 32]]  # step 8: the latest start covering each gap
    covered = torch.zeros(spatial, dtype=torch.bool)
    for window in thin.windows:
        covered[window.source] = True
    assert covered[mask[0]].all()


@pytest.mark.parametrize("seed", range(20))
def test_covering_starts_is_a_minimal_cover(seed):
    rng = np.random.default_rng(seed)
    roi = int(rng.integers(4, 20))
    extent = int(rng.integers(roi, 120))
    starts = axis_starts(extent, roi, float(rng.choice([0.0, 0.25, 0.5, 0.75])))
    lo = int(rng.integers(0, extent))
    box = (lo, int(rng.integers(lo + 1, extent + 1)))
    chosen = covering_starts(starts, roi, box)
    assert set(chosen) <= set(starts)
    assert all(any(s <= v < s + roi for s in chosen) for v in range(*box))
    fewest = next(  # brute force over subsets of the starts that touch the box
        n
        for n in range(1, len(starts) + 1)
        for subset in itertools.combinations(starts, n)
        if all(any(s <= v < s + roi for s in subset) for v in range(*box))
    )
    assert len(chosen) == fewest


def test_crop_to_mask_box_grown_inside_image():
    mask = torch.zeros((1, 40, 40), dtype=torch.bool)
    mask[0, 0:2, 38:40] = True
    tiling = plan_tiling((40, 40), (16, 16), (0.5, 0.5), 1, mask, crop_to_mask=True)
    assert [w.source for w in tiling.windows] == [(slice(0, 16), slice(24, 40))]
