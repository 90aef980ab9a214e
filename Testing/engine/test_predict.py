"""Segmenter: whole-case segmentation on arrays (prepare -> sliding window -> reference grid).

Geometry is checked with known networks: a voxel-wise "threshold" network makes the label map
a thresholded copy of the input, so an analytic shape drawn in world coordinates must come back
at the same place on the (oblique, anisotropic) reference grid. Equivalence with MONAI's
``sliding_window_inference`` is checked on an identity-geometry input at model spacing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference as monai_sliding_window
from torch import nn

from Testing.case_files import dice, ellipsoid
from Testing.runners import TORCH_CPU, torch_runner
from unetseg.engine.geometry import Geometry
from unetseg.engine.inference import CancelToken, InferenceCancelled
from unetseg.engine.options import SegmentOptions
from unetseg.engine.predict import Segmenter
from unetseg.untrained import brain_mri_manifest, lung_cxr_manifest, untrained_package

FILTERS = (4, 8, 16)


class Threshold(nn.Module):
    """Logits [0, gain * x_0, -big, ...]: label 1 where normalised input 0 exceeds ``level``.

    Records the last input batch it saw.
    """

    def __init__(self, out_channels: int, level: float = 0.0, gain: float = 20.0) -> None:
        super().__init__()
        self.out_channels, self.level, self.gain = out_channels, level, gain
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach().clone()
        logits = torch.full((x.shape[0], self.out_channels, *x.shape[2:]), -100.0)
        logits[:, 0] = 0.0
        logits[:, 1] = self.gain * (x[:, 0] - self.level)
        return logits


def oblique_geometry(shape_kji, spacing_ijk) -> Geometry:
    """IJK axes rotated 25 deg about S and 15 deg about R; IJK axes permuted towards L, P, S."""
    a, b = np.radians(25.0), np.radians(15.0)
    about_s = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    about_r = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    axes = about_s @ about_r @ np.array([[0, -1, 0], [-1, 0, 0], [0, 0, 1]])
    extent = np.asarray(spacing_ijk) * np.asarray(shape_kji)[::-1]
    origin = -axes @ (extent / 2.0)
    return Geometry.from_spacing_origin_direction(spacing_ijk, origin, axes, shape_kji)


@pytest.fixture(scope="module")
def brain_package(tmp_path_factory):
    """4-input brain model at 2 mm with a 32^3 patch (a few windows per case)."""
    manifest = brain_mri_manifest(FILTERS, patch_size=(32, 32, 32))
    manifest["spacing_mm"] = [2.0, 2.0, 2.0]
    return untrained_package(tmp_path_factory.mktemp("brain"), manifest)


def test_labels_lie_on_the_oblique_anisotropic_reference_grid(tmp_path):
    manifest = brain_mri_manifest(FILTERS, patch_size=(32, 32, 32))
    manifest["spacing_mm"] = [2.0, 2.0, 2.0]
    # Unnormalised T1c, so that the threshold sits halfway between the two intensities.
    manifest["inputs"][0]["normalization"] = {"method": "none"}
    segmenter = Segmenter(untrained_package(tmp_path / "brain", manifest), TORCH_CPU)
    segmenter.runner = torch_runner(Threshold(4, level=170.0, gain=1.0))
    geometry = oblique_geometry((10, 26, 22), (1.7, 1.3, 4.5))
    inside = ellipsoid(geometry, center_ras=(6.0, -4.0, 3.0), radii_mm=(11.0, 7.0, 9.0))
    t1c = np.where(inside, 300.0, 40.0).astype(np.float32)
    # Secondary input on another (axial, isotropic, larger) grid, resampled onto the reference.
    other = Geometry(
        np.array([[2.0, 0, 0, -40], [0, 2, 0, -40], [0, 0, 2, -40], [0, 0, 0, 1]]), (40, 40, 40)
    )
    flair = np.full(other.shape, 7.0, np.float32)

    result = segmenter.segment([t1c, flair, None, None], [geometry, other, None, None])

    assert result.labels.shape == t1c.shape
    assert result.labels.dtype == np.uint8
    assert result.geometry.is_close(geometry, 1e-9)
    # A transposed or flipped axis would move the off-centre ellipsoid away.
    assert dice(result.labels == 1, inside) > 0.9
    assert set(np.unique(result.labels)) <= {0, 1}
    assert set(result.timings) == {"prepare", "inference", "restore"}
    assert result.device.startswith("CPU")


def test_missing_inputs_are_flagged_and_fed_as_zero_channels(brain_package):
    geometry = oblique_geometry((8, 20, 20), (2.0, 2.0, 3.0))
    rng = np.random.default_rng(0)
    t1c = rng.uniform(10, 20, geometry.shape).astype(np.float32)
    flair = rng.uniform(10, 20, geometry.shape).astype(np.float32)
    segmenter = Segmenter(brain_package, TORCH_CPU)
    network = Threshold(4)
    segmenter.runner = torch_runner(network)

    result = segmenter.segment([t1c, flair, None, None], [geometry, geometry, None, None])

    assert result.missing_inputs == ["t1", "t2"]
    assert network.seen is not None
    assert network.seen[:, :2].abs().sum() > 0
    assert not network.seen[:, 2:].any()
    with pytest.raises(ValueError, match="t1c"):
        segmenter.segment([None, flair, t1c, None], [None, geometry, geometry, None])


def test_2d_image_is_segmented_on_its_own_pixel_grid(tmp_path):
    package = untrained_package(tmp_path / "cxr", lung_cxr_manifest((4, 8)))
    shape = (1, 90, 70)  # (K, J, I): one slice, 0.7 x 1.4 mm pixels, resampled to 1 mm
    geometry = Geometry(np.diag([-0.7, -1.4, 1.0, 1.0]), shape)
    image = np.full(shape, 20.0, np.float32)
    bright = np.zeros(shape, bool)
    bright[0, 15:50, 40:62] = True  # off-centre rectangle
    image[bright] = 220.0
    segmenter = Segmenter(package, TORCH_CPU)

    untrained = segmenter.segment([image], [geometry])
    assert untrained.labels.shape == shape
    assert untrained.geometry.is_close(geometry, 1e-9)

    segmenter.runner = torch_runner(Threshold(2, level=0.5))
    result = segmenter.segment([image[0]], [geometry])  # (J, I) is accepted too
    assert result.labels.shape == shape[1:]
    assert dice(result.labels == 1, bright[0]) > 0.9


def test_cancel_raises_after_reported_progress(brain_package):
    geometry = Geometry(np.diag([2.0, 2.0, 2.0, 1.0]), (40, 40, 40))  # 2 x 2 x 2 windows
    image = np.random.default_rng(1).uniform(1, 2, geometry.shape).astype(np.float32)
    segmenter = Segmenter(brain_package, TORCH_CPU)
    token = CancelToken()
    reports = []

    def progress(done: int, total: int) -> None:
        reports.append((done, total))
        token.cancel()

    with pytest.raises(InferenceCancelled):
        segmenter.segment(
            [image, image, None, None],
            [geometry, None, None, None],
            progress=progress,
            cancel=token,
        )
    assert reports == [(1, 8)]


def test_invalid_options_are_refused_before_loading():
    for bad in ({"overlap": 1.0}, {"overlap": -0.1}, {"backend": "onnx"}, {"precision": "f8"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SegmentOptions(**bad)
    with pytest.raises(ValueError, match="CPU only"):
        SegmentOptions(device="cuda", backend="openvino")


def _zscore_nonzero(x: np.ndarray) -> np.ndarray:
    values = x[x != 0].astype(np.float64)
    return np.where(x != 0, (x - values.mean()) / values.std(), 0.0).astype(np.float32)


def test_equals_monai_sliding_window_on_identity_geometry_at_model_spacing(tmp_path):
    # Anisotropic patch (I, J, K) = (16, 24, 8): the window must become (K, J, I) = (8, 24, 16).
    manifest = brain_mri_manifest(FILTERS, patch_size=(16, 24, 8))
    manifest["spacing_mm"] = [1.0, 1.0, 1.0]
    package = untrained_package(tmp_path / "brain", manifest, seed=3)
    shape = (8, 30, 20)  # (K, J, I): 1 x 2 x 2 windows at overlap 0.5
    rng = np.random.default_rng(2)
    arrays = [rng.uniform(1.0, 100.0, shape).astype(np.float32) for _ in range(4)]
    segmenter = Segmenter(package, TORCH_CPU)

    result = segmenter.segment(arrays, [Geometry(np.eye(4), shape)] * 4)

    image = torch.from_numpy(np.stack([_zscore_nonzero(x) for x in arrays]))[None]
    with torch.no_grad():
        logits = monai_sliding_window(
            image, (8, 24, 16), 1, segmenter.runner.network, overlap=0.5, mode="gaussian"
        )
    expected = logits.argmax(dim=1)[0].numpy()
    assert result.labels.shape == shape
    np.testing.assert_array_equal(result.labels, expected)
    assert len(np.unique(expected)) > 1  # the untrained net does not give one constant label


@pytest.fixture(scope="module")
def small_brain_package(tmp_path_factory):
    """The brain model with a 16^3 patch (cheap windows, many per case)."""
    manifest = brain_mri_manifest(FILTERS, patch_size=(16, 16, 16))
    manifest["spacing_mm"] = [2.0, 2.0, 2.0]
    return untrained_package(tmp_path_factory.mktemp("small-brain"), manifest)


def _partial_foreground_case() -> tuple[list, list, tuple[slice, ...]]:
    """T1c and FLAIR (z-score over non-zero voxels) that are non-zero only in a box:
    (K, J, I) = (16, 32, 32) at the model's 2 mm on a canonical grid (model grid = input grid),
    1 x 3 x 3 windows of 16^3, of which 1 x 2 x 2 hold the box (J and I voxels 5:15)."""
    shape = (16, 32, 32)
    box = (slice(3, 13), slice(5, 15), slice(5, 15))
    rng = np.random.default_rng(7)
    arrays = []
    for _ in range(2):
        image = np.zeros(shape, np.float32)
        image[box] = rng.uniform(1.0, 100.0, (10, 10, 10))
        arrays.append(image)
    geometry = Geometry(np.diag([2.0, 2.0, 2.0, 1.0]), shape)
    return [*arrays, None, None], [geometry, geometry, None, None], box


def _segment_counting_windows(segmenter: Segmenter, arrays, geometries):
    totals = []
    result = segmenter.segment(
        arrays, geometries, progress=lambda done, total: totals.append(total)
    )
    assert len(set(totals)) == 1
    return result, totals[0]


def test_default_skipping_labels_the_foreground_as_a_full_run(small_brain_package):
    arrays, geometries, box = _partial_foreground_case()
    segmenter = Segmenter(small_brain_package, TORCH_CPU)  # instance norm: context matters
    full_segmenter = Segmenter(small_brain_package, TORCH_CPU.with_changes(skip_background=False))

    skipped, skipped_windows = _segment_counting_windows(segmenter, arrays, geometries)
    full, full_windows = _segment_counting_windows(full_segmenter, arrays, geometries)

    assert (skipped_windows, full_windows) == (4, 9)
    assert skipped.labels.shape == full.labels.shape == arrays[0].shape
    np.testing.assert_array_equal(skipped.labels[box], full.labels[box])
    assert len(np.unique(full.labels[box])) > 1  # not one constant label
    assert not skipped.labels[:, 24:].any()  # no computed window reaches here: background


def test_fast_runs_fewer_windows_on_the_same_grid(small_brain_package):
    arrays, geometries, _ = _partial_foreground_case()
    segmenter = Segmenter(small_brain_package, TORCH_CPU)
    fast_segmenter = Segmenter(small_brain_package, TORCH_CPU.with_changes(fast=True))

    exact, exact_windows = _segment_counting_windows(segmenter, arrays, geometries)
    fast, fast_windows = _segment_counting_windows(fast_segmenter, arrays, geometries)

    assert fast_windows < exact_windows
    assert fast_windows == 1  # the full tiling's window [0, 16) covers 5:15 on J and I
    assert fast.labels.shape == exact.labels.shape == arrays[0].shape
    assert fast.labels.dtype == exact.labels.dtype
    assert fast.geometry.is_close(geometries[0], 1e-9)
    assert not fast.labels[:, :, 16:].any()  # beyond that window: background
    assert fast_segmenter.runner.precision == "float32"  # the model does not allow reduced


def test_coarse_model_grid_boundaries_follow_the_input_resolution(tmp_path):
    """A 1 mm model on a 0.25 mm image: labels are decided on the input grid from the
    resampled logits, so a boundary lands within one input pixel of the analytic one; the
    nearest-neighbour restore of model-grid labels would step by four pixels."""
    manifest = lung_cxr_manifest((4, 8))
    manifest["inputs"][0]["normalization"] = {"method": "none"}
    segmenter = Segmenter(untrained_package(tmp_path / "cxr", manifest), TORCH_CPU)
    segmenter.runner = torch_runner(Threshold(2, level=100.8, gain=1.0))
    shape = (1, 64, 400)
    geometry = Geometry(np.diag([-0.25, -0.25, 1.0, 1.0]), shape)
    ramp = np.broadcast_to(np.arange(400, dtype=np.float32) * 0.5, shape).copy()  # 2 per mm
    result = segmenter.segment([ramp], [geometry])
    truth = ramp > 100.8  # from column 202; model-grid voxels hold columns 4m-4m+3
    errors = np.flatnonzero((result.labels[0] == 1) != truth[0]).size
    assert errors <= shape[1]  # at most one column; labels restored from the model grid: two


def test_labels_are_resampled_directly_when_the_model_grid_is_not_coarser(tmp_path):
    from unetseg.engine.preprocessing.pipeline import prepare_inputs

    package = untrained_package(tmp_path / "cxr", lung_cxr_manifest((4, 8)))
    segmenter = Segmenter(package, TORCH_CPU)
    for pixel_mm, coarser in ((0.25, True), (1.0, False), (1.1, False)):
        geometry = Geometry(np.diag([-pixel_mm, -pixel_mm, 1.0, 1.0]), (1, 40, 40))
        case = prepare_inputs([np.ones((1, 40, 40), np.float32)], [geometry], package.preparation)
        assert segmenter._restores_logits(case) is coarser
