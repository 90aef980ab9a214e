"""``segment --uncertainty``: the uncertainty volume beside the segmentation (read back with
SimpleITK), the scores in the summary and CSVs, and the volume node the host layer adds."""

from __future__ import annotations

import csv
import json

import numpy as np
import SimpleITK as sitk

from Testing.command_line import run_cli, segment_args
from Testing.runners import TORCH_CPU
from unetseg.host.logic import SegmentationLogic
from unetseg.host.scene_io import loadVolume, newScene
from unetseg.host.volumes import UNCERTAINTY_COLOR_NODE_ID, volumeGeometry


def test_uncertainty_volume_and_scores_are_written(brain_model, brats_files, tmp_path, capsys):
    output = tmp_path / "case.seg.nrrd"
    summary, statistics = tmp_path / "case.json", tmp_path / "case.csv"
    args = segment_args(brain_model.path, brats_files.values(), output, "--uncertainty")
    code, out, err = run_cli(
        capsys, *args, "--summary", summary, "--statistics", statistics, "--backend", "torch"
    )

    assert code == 0, err
    volume_path = tmp_path / "case.uncertainty.nrrd"
    assert f"wrote uncertainty: {volume_path}" in out
    volume = sitk.ReadImage(str(volume_path))
    reference = sitk.ReadImage(str(brats_files["t1c"]))
    assert volume.GetSize() == reference.GetSize()
    np.testing.assert_allclose(volume.GetSpacing(), reference.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(volume.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(volume.GetDirection(), reference.GetDirection(), atol=1e-6)
    values = sitk.GetArrayViewFromImage(volume)
    assert values.dtype == np.float32 and values.min() >= 0.0 and values.max() <= 1.0
    assert values.max() > 0.0

    report = json.loads(summary.read_text())
    assert report["options"]["uncertainty"] and report["options"]["mirroring"]
    assert report["outputs"]["uncertainty"] == str(volume_path)
    for segment in report["statistics"]["segments"]:
        assert segment["voxel_count"] == 0 or 0.0 <= segment["uncertainty_mean"] <= 1.0
    for lesion in report["statistics"]["lesions"]:
        assert lesion["low_confidence"] == (lesion["uncertainty_mean"] > 0.25)
    with statistics.open() as f:
        assert "uncertainty_mean" in next(csv.reader(f))
    lesions_csv = tmp_path / "case_lesions.csv"
    with lesions_csv.open() as f:
        assert {"uncertainty_mean", "low_confidence"} <= set(next(csv.reader(f)))


def test_the_host_adds_a_heat_map_volume_on_the_reference_grid(brain_model, brats_files):
    scene = newScene()
    nodes = {name: loadVolume(scene, path) for name, path in brats_files.items()}
    options = TORCH_CPU.with_changes(uncertainty=True)

    result = SegmentationLogic(scene).run(brain_model, nodes, options)

    node = result.uncertaintyNode
    assert node is not None and node.GetScene() is scene
    assert node.GetName() == f"{result.segmentationNode.GetName()} uncertainty"
    assert volumeGeometry(node).is_close(volumeGeometry(nodes["t1c"]))
    display = node.GetDisplayNode()
    assert display.GetColorNodeID() == UNCERTAINTY_COLOR_NODE_ID
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 1.0)
    assert result.uncertainty.shape == result.labels.shape
