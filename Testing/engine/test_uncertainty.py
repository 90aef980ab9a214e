"""Uncertainty from mirroring test-time augmentation: the window wrapper against analytic
predictors, the Segmenter's uncertainty map, and the per-segment / per-lesion scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from Testing.case_files import random_brain_inputs, small_brain_model
from Testing.runners import TORCH_CPU
from unetseg.engine.confidence import LOW_CONFIDENCE, lesion_uncertainty, segment_uncertainty
from unetseg.engine.inference.mirroring import mirrored
from unetseg.engine.inference.uncertainty import normalised_entropy, with_uncertainty
from unetseg.engine.lesions import lesion_table
from unetseg.engine.options import SegmentOptions
from unetseg.engine.predict import Segmenter

LARGE = 30.0  # a confident logit


def left_half_predictor(x: torch.Tensor) -> torch.Tensor:
    """2 classes: class 1 certain on the first half of the window along I, class 0 on the
    rest; mirroring along I therefore reverses the answer on every voxel."""
    logits = torch.zeros(x.shape[0], 2, *x.shape[2:])
    half = x.shape[-1] // 2
    logits[..., :half] = torch.tensor([0.0, LARGE]).view(1, 2, *(1,) * (x.ndim - 2))
    logits[..., half:] = torch.tensor([LARGE, 0.0]).view(1, 2, *(1,) * (x.ndim - 2))
    return logits


def constant_predictor(x: torch.Tensor) -> torch.Tensor:
    logits = torch.zeros(x.shape[0], 2, *x.shape[2:])
    logits[:, 1] = LARGE
    return logits


def test_mirrored_copies_that_disagree_give_full_uncertainty_and_agreeing_ones_none():
    x = torch.randn(1, 1, 4, 6, 8)
    disagreeing = with_uncertainty(left_half_predictor, (2,), 3, "softmax")(x)
    agreeing = with_uncertainty(constant_predictor, (0, 1, 2), 3, "softmax")(x)

    assert disagreeing.shape == (1, 3, 4, 6, 8) and agreeing.shape == (1, 3, 4, 6, 8)
    torch.testing.assert_close(disagreeing[:, 2], torch.ones(1, 4, 6, 8), atol=1e-4, rtol=0)
    torch.testing.assert_close(agreeing[:, 2], torch.zeros(1, 4, 6, 8), atol=1e-4, rtol=0)
    # The logit channels are those of plain mirroring TTA.
    torch.testing.assert_close(disagreeing[:, :2], mirrored(left_half_predictor, (2,), 3)(x))
    # Mirroring along an axis the predictor ignores: every copy agrees.
    along_k = with_uncertainty(left_half_predictor, (0,), 3, "softmax")(x)
    assert float(along_k[:, 2].max()) < 1e-4


def test_normalised_entropy_reaches_zero_and_one():
    uniform = torch.full((1, 4, 3), 0.25)
    certain = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 4, 1).expand(1, 4, 3)
    assert torch.allclose(normalised_entropy(uniform, "softmax"), torch.ones(1, 3))
    assert float(normalised_entropy(certain, "softmax").max()) < 1e-5
    halves = torch.full((1, 2, 3), 0.5)
    assert torch.allclose(normalised_entropy(halves, "sigmoid"), torch.ones(1, 3))
    p = torch.tensor([[[0.9], [0.1]]])  # two channels, each 0.469 bits
    expected = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)
    assert float(normalised_entropy(p, "sigmoid")) == pytest.approx(expected, rel=1e-5)


@pytest.fixture(scope="module")
def brain_package(tmp_path_factory):
    return small_brain_model(tmp_path_factory.mktemp("brain"), (4, 8, 16), patch=16, seed=2)


def _case():
    # (K, J, I) on a 1.5 mm grid, resampled to the model's 2 mm
    return random_brain_inputs((12, 30, 26), 1.5, seed=3)


def test_segmenter_returns_an_uncertainty_map_on_the_input_grid(brain_package):
    arrays, geometries = _case()
    mirroring = Segmenter(brain_package, TORCH_CPU.with_changes(mirroring=True))
    uncertain = Segmenter(brain_package, TORCH_CPU.with_changes(uncertainty=True))
    plain = mirroring.segment(arrays, geometries)
    first = uncertain.segment(arrays, geometries)
    again = uncertain.segment(arrays, geometries)

    assert plain.uncertainty is None
    assert first.uncertainty.shape == first.labels.shape == arrays[0].shape
    assert first.uncertainty.dtype == np.float32
    assert first.uncertainty.min() >= 0.0 and first.uncertainty.max() <= 1.0
    assert first.uncertainty.std() > 0  # an untrained network hesitates unevenly
    np.testing.assert_array_equal(first.uncertainty, again.uncertainty)  # deterministic
    # The labels are those of mirroring TTA (the same averaged logits).
    assert np.mean(first.labels == plain.labels) > 0.999
    assert SegmentOptions(uncertainty=True).mirroring


def test_segment_and_lesion_scores_are_the_means_inside_them():
    labels = np.zeros((6, 20, 20), np.uint8)
    labels[1:4, 2:6, 2:6] = 1  # lesion 1 (48 voxels), label 1
    labels[2:4, 12:15, 12:14] = 2  # lesion 2 (12 voxels), label 2
    uncertainty = np.zeros(labels.shape, np.float32)
    uncertainty[labels == 1] = 0.1
    uncertainty[labels == 2] = 0.6
    uncertainty[0, 0, 0] = 1.0  # background does not count

    means = segment_uncertainty(labels, uncertainty, [1, 2, 3])
    assert means[1] == pytest.approx(0.1) and means[2] == pytest.approx(0.6)
    assert means[3] is None
    scores = lesion_uncertainty(labels, uncertainty, (1.0, 1.0, 1.0), [1, 2])
    rows = lesion_table(labels, (1.0, 1.0, 1.0), [1, 2])
    assert [row["voxel_count"] for row in rows] == [48, 12]
    assert scores == pytest.approx([0.1, 0.6])
    assert [s > LOW_CONFIDENCE for s in scores] == [False, True]
    with pytest.raises(ValueError, match="differs"):
        segment_uncertainty(labels, uncertainty[:-1], [1])
