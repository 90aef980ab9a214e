"""Calibration of evaluated models (``Training.evaluation.calibration``): the expected
calibration error against analytic cases, the per-label and top-label bins of softmax and
sigmoid probabilities, and the reliability diagram in the evaluation report."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from Training.evaluation.calibration import (
    Calibration,
    Reliability,
    expected_calibration_error,
    plot_reliability,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_perfectly_calibrated_probabilities_have_ece_near_zero():
    rng = np.random.default_rng(0)
    p = rng.random(400_000)
    outcome = rng.random(p.size) < p  # the label is there with probability p
    assert expected_calibration_error(p, outcome) == pytest.approx(0.0, abs=0.005)


def test_certain_predictions_right_seventy_percent_of_the_time_have_ece_0_3():
    outcome = np.arange(1000) % 10 < 7
    assert expected_calibration_error(np.ones(1000), outcome) == pytest.approx(0.3)
    # The same as a softmax model's top label: always 100 % sure, right 7 times in 10.
    reference = (np.arange(1000) % 10 >= 7).astype(np.uint8)  # label 0 where the model is right
    probabilities = np.stack([np.ones(1000), np.zeros(1000)])
    calibration = Calibration([(1, "thing")], "softmax")
    calibration.add_case(probabilities, reference)
    result = calibration.result()
    assert result["top_label"]["ece"] == pytest.approx(0.3)
    assert result["top_label"]["bins"][-1] == {
        "low": 0.9,
        "high": 1.0,
        "count": 1000,
        "predicted": 1.0,
        "observed": 0.7,
    }
    # Label 1 is predicted with probability 0 and is there 30 % of the time.
    assert result["labels"][0]["ece"] == pytest.approx(0.3)
    assert result["labels"][0]["bins"][0]["observed"] == pytest.approx(0.3)


def test_bins_are_voxel_weighted():
    curve = Reliability(4)
    curve.add(np.full(100, 0.3), np.arange(100) < 30)  # bin [0.25, 0.5): calibrated
    curve.add(np.full(300, 0.8), np.zeros(300))  # bin [0.75, 1]: 0.8 too high
    assert curve.counts.tolist() == [0, 100, 0, 300]
    assert curve.ece() == pytest.approx(300 / 400 * 0.8)
    assert Reliability().ece() is None
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        curve.add(np.array([1.5]), np.array([1]))


def test_softmax_mask_and_sigmoid_known_regions():
    # Softmax, 3 labels + background on a 2x2x2 grid; the mask leaves out two voxels.
    reference = np.array([0, 1, 2, 3, 0, 1, 2, 3]).reshape(2, 2, 2)
    probabilities = np.zeros((4, 2, 2, 2))
    flat = probabilities.reshape(4, -1)
    flat[reference.ravel(), np.arange(8)] = 1.0  # one-hot, always right
    mask = np.ones((2, 2, 2), dtype=bool)
    mask.flat[[0, 1]] = False
    calibration = Calibration([(1, "a"), (2, "b"), (3, "c")], "softmax")
    calibration.add_case(probabilities, reference, mask)
    result = calibration.result()
    assert result["top_label"]["voxels"] == 6
    assert result["top_label"]["ece"] == 0.0
    assert [item["ece"] for item in result["labels"]] == [0.0, 0.0, 0.0]

    # Sigmoid, nested regions (region c = reference >= c); region 2 is unknown where known = 0.
    reference = np.array([0, 1, 2, 2])
    probabilities = np.array([[0.0, 1.0, 1.0, 1.0], [0.5, 0.5, 1.0, 1.0]])
    known = np.array([[1, 1, 1, 1], [0, 0, 1, 1]])
    calibration = Calibration([(1, "whole"), (2, "core")], "sigmoid")
    calibration.add_case(probabilities, reference, known=known)
    result = calibration.result()
    assert result["top_label"] is None
    assert [item["voxels"] for item in result["labels"]] == [4, 2]
    assert [item["ece"] for item in result["labels"]] == [0.0, 0.0]
    with pytest.raises(ValueError, match="expected probabilities of shape"):
        calibration.add_case(probabilities[:1], reference)


def test_reliability_diagram_png(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(1)
    calibration = Calibration([(1, "lesion")], "softmax")
    p1 = rng.random(5000)
    calibration.add_case(np.stack([1 - p1, p1]), (rng.random(5000) < p1).astype(np.uint8))
    path = plot_reliability(calibration.result(), tmp_path / "plot" / "calibration.png", "m")
    assert path is not None and path.read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.usefixtures("one_thread")
def test_evaluation_report_has_the_calibration(tmp_path):
    pytest.importorskip("matplotlib")
    from Training.cli import main
    from Training.synth import write_dataset
    from unetseg.untrained import lung_ct_manifest, untrained_package

    data = tmp_path / "lung"
    write_dataset("lung-ct", data, 2, seed=5, size=32)
    manifest = copy.deepcopy(lung_ct_manifest(filters=(4, 8)))
    manifest["spacing_mm"] = [4.0] * 3
    manifest["patch_size"] = [16] * 3
    model = untrained_package(tmp_path / "model", manifest, seed=3)
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(model.path), "--data", str(data), "--out", str(out)]
    assert main([*args, "--no-distances", "--overlays", "0"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    calibration = result["calibration"]
    assert calibration["cases"] == 2 and calibration["activation"] == "softmax"
    assert [item["value"] for item in calibration["labels"]] == [1, 2]
    top = calibration["top_label"]
    assert top["voxels"] > 0
    assert sum(row["count"] for row in top["bins"]) == top["voxels"]
    assert all(item["voxels"] == top["voxels"] for item in calibration["labels"])
    assert 0.0 <= top["ece"] <= 1.0
    assert (out / calibration["plot"]).read_bytes().startswith(PNG_SIGNATURE)
    page = (out / "report.html").read_text()
    assert "<h2>Calibration</h2>" in page and "top label (arg-max)" in page
    assert "## Calibration" in (out / "report.md").read_text()
