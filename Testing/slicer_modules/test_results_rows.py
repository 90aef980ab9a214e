"""The rows of the panel's results tables, built from a real run's statistics (the Qt part,
``resultsView``, only puts them into widgets and cannot run here)."""

from __future__ import annotations

from Testing.runners import TORCH_CPU
from unetseg.gui.resultsRows import lesionCentroids, lesionRows, segmentRows
from unetseg.host.logic import SegmentationLogic
from unetseg.host.scene_io import loadVolume, newScene


def _run(brain_model, brats_files, options):
    scene = newScene()
    nodes = {name: loadVolume(scene, path) for name, path in brats_files.items()}
    return SegmentationLogic(scene).run(brain_model, nodes, options).statistics


def test_rows_hold_sizes_labels_and_centroids(brain_model, brats_files):
    statistics = _run(brain_model, brats_files, TORCH_CPU)

    names = [label.name for label in brain_model.labels]
    assert [row[0] for row in segmentRows(statistics)] == names
    assert all(len(row) == 2 and row[1] >= 0.0 for row in segmentRows(statistics))
    lesions = statistics["lesions"]
    rows = lesionRows(statistics)
    assert [row[0] for row in rows] == [lesion["id"] for lesion in lesions]
    assert [row[1] for row in rows] == [lesion["volume_ml"] for lesion in lesions]
    for row, lesion in zip(rows, lesions, strict=True):
        assert len(row) == 3
        assert row[2].split(", ") == [names[value - 1] for value in lesion["labels"]]
    assert lesionCentroids(statistics) == [tuple(lesion["centroid_ras"]) for lesion in lesions]


def test_scored_runs_add_uncertainty_and_confidence(brain_model, brats_files):
    statistics = _run(brain_model, brats_files, TORCH_CPU.with_changes(uncertainty=True))

    for row, segment in zip(segmentRows(statistics), statistics["segments"], strict=True):
        assert row[2] == segment["uncertainty_mean"]
    rows = lesionRows(statistics)
    assert rows, "the untrained network finds lesions in the phantom"
    for row, lesion in zip(rows, statistics["lesions"], strict=True):
        assert row[3:] == [lesion["uncertainty_mean"], lesion["low_confidence"]]
