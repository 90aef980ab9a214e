"""SegmentationLogic.process on real MRML (slicer-core): volumes from real files -> engine ->
segmentation node -> .seg.nrrd read back independently with slicerio.

Geometry is checked with a known voxel-wise network (``Threshold``): each label is a thresholded
input channel, so shapes drawn in world coordinates on each input's own grid must come back at
the same place on the reference volume's grid.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from Testing.case_files import dice, ellipsoid, read_seg_nrrd, save_nifti, to_sitk
from Testing.runners import TORCH_CPU, torch_runner
from Training.synth import brain_mri_case
from unetseg.engine.geometry import Geometry
from unetseg.engine.inference import CancelToken, InferenceCancelled
from unetseg.engine.matching import MissingInputError, match_inputs
from unetseg.host.logic import SegmentationJob, SegmentationLogic
from unetseg.host.scene_io import loadVolume, saveSegmentation
from unetseg.host.segmentation import SegmentationExistsError, segmentId
from unetseg.host.volumes import describeVolume, volumeGeometry
from unetseg.untrained import brain_mri_manifest, lung_cxr_manifest, untrained_package

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def matchNodes(nodes, inputs):
    """Volume nodes to model inputs, as the modules' auto-fill matches them."""
    return match_inputs([describeVolume(node) for node in nodes], inputs)


# BraTS 2023 file names (t1c, t2f = FLAIR, t1n = native T1, t2w = T2) in scrambled order.
BRATS_FILES = {"t2": "t2w", "t1c": "t1c", "t1": "t1n", "flair": "t2f"}


class Threshold(nn.Module):
    """Logits [0, x_a - level_a, x_b - level_b, -100...]: label 1 from input channel a, label 2
    from channel b (the shapes must not overlap)."""

    def __init__(self, out_channels: int, channels=(0, 1), levels=(0.0, 0.0)) -> None:
        super().__init__()
        self.out_channels, self.channels, self.levels = out_channels, channels, levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.full((x.shape[0], self.out_channels, *x.shape[2:]), -100.0)
        logits[:, 0] = 0.0
        for label, (channel, level) in enumerate(
            zip(self.channels, self.levels, strict=True), start=1
        ):
            logits[:, label] = x[:, channel] - level
        return logits


def node_count(scene) -> int:
    return scene.GetNumberOfNodes()


def write_lps_nrrd(path, array: np.ndarray, geometry: Geometry):
    """(K, J, I) array as NRRD in LPS (as ITK writes it)."""
    sitk.WriteImage(to_sitk(array, geometry), str(path))
    return path


def assert_geometry_is_the_volumes(seg: dict, volumeNode) -> None:
    geometry = volumeGeometry(volumeNode)
    np.testing.assert_allclose(seg["ijkToLPS"], LPS_TO_RAS @ geometry.ijk_to_ras, atol=1e-5)
    assert seg["voxels"].shape == geometry.shape[::-1]


@pytest.fixture(scope="module")
def brats_files(tmp_path_factory):
    """A synthetic 4-sequence brain case written as BraTS 2023 NIfTI files (oblique grid)."""
    case = brain_mri_case(np.random.default_rng(5), (40, 40, 24), (1.5, 1.5, 2.5), layout="brats")
    folder = tmp_path_factory.mktemp("brats")
    return {
        name: save_nifti(
            folder / f"BraTS-GLI-00042-000-{suffix}.nii.gz",
            case.images[name],
            case.geometry.ijk_to_ras,
        )
        for name, suffix in BRATS_FILES.items()
    }


@pytest.fixture
def brats_nodes(scene, brats_files):
    """The four files loaded as volume nodes (named after their files)."""
    return [loadVolume(scene, path) for path in brats_files.values()]


def test_lps_nrrd_reference_and_ras_nifti_secondary_on_another_grid(scene, tmp_path):
    manifest = brain_mri_manifest((4, 8, 16), patch_size=(32, 32, 32))
    manifest["spacing_mm"] = [2.0, 2.0, 2.0]
    for spec in manifest["inputs"]:
        spec["normalization"] = {"method": "none"}  # thresholds halfway between intensities
    model = untrained_package(tmp_path / "model", manifest)
    # Reference: oblique, anisotropic, stored in LPS (NRRD). Secondary: axial 2.2 mm NIfTI (RAS).
    a, b = np.radians(20.0), np.radians(-12.0)
    rotation = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rotation = rotation @ np.array(
        [[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]]
    )
    reference = Geometry.from_spacing_origin_direction(
        (1.4, 1.8, 3.5), (-20.0, -22.0, -18.0), rotation, (12, 26, 30)
    )
    secondary = Geometry.from_spacing_origin_direction(
        (2.2, 2.2, 2.2), (-30.0, -30.0, -30.0), np.eye(3), (28, 28, 28)
    )
    centerA, radiiA = (-4.0, -6.0, -3.0), (9.0, 6.0, 8.0)
    centerB, radiiB = (12.0, 10.0, 6.0), (6.0, 8.0, 7.0)
    insideA = ellipsoid(reference, centerA, radiiA)
    t1c = np.where(insideA, 300.0, 40.0).astype(np.float32)
    flair = np.where(ellipsoid(secondary, centerB, radiiB), 500.0, 100.0).astype(np.float32)
    t1cNode = loadVolume(scene, write_lps_nrrd(tmp_path / "post.nrrd", t1c, reference))
    flairNode = loadVolume(
        scene, save_nifti(tmp_path / "flair.nii.gz", flair, secondary.ijk_to_ras)
    )
    assert volumeGeometry(t1cNode).is_close(reference, 1e-4)
    logic = SegmentationLogic(scene)
    logic.segmenter(model, TORCH_CPU).runner = torch_runner(Threshold(4, levels=(170.0, 300.0)))

    result = logic.run(model, {"t1c": t1cNode, "flair": flairNode}, TORCH_CPU)

    seg, labels = read_seg_nrrd(saveSegmentation(result.segmentationNode, tmp_path / "r.seg.nrrd"))
    assert_geometry_is_the_volumes(seg, t1cNode)
    assert dice(labels == 1, insideA) > 0.88
    # The FLAIR shape, drawn on its own grid, lands at its world position on the T1c grid.
    assert dice(labels == 2, ellipsoid(reference, centerB, radiiB)) > 0.88
    np.testing.assert_array_equal(labels, result.labels)


def test_four_sequences_matched_by_name_give_a_complete_segmentation(
    scene, brain_model, brats_nodes, tmp_path
):
    match = matchNodes(brats_nodes, brain_model.inputs)
    assert {name: node.GetName() for name, node in match.assigned.items()} == {
        name: f"BraTS-GLI-00042-000-{suffix}" for name, suffix in BRATS_FILES.items()
    }
    reference = match.assigned["t1c"]

    result = SegmentationLogic(scene).run(brain_model, match.assigned, TORCH_CPU)

    node = result.segmentationNode
    assert node.GetName() == f"BraTS-GLI-00042-000-t1c - {brain_model.title}"
    assert node.GetAttribute("UNetSeg.Model") == f"{brain_model.id}@{brain_model.version}"
    assert node.GetAttribute("UNetSeg.MissingInputs") is None
    assert result.missingInputs == []
    assert node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole()) is reference
    segmentation = node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]
    assert ids == [segmentId(label, brain_model.id) for label in brain_model.labels]
    assert [row["name"] for row in result.statistics["segments"]] == [
        label.name for label in brain_model.labels
    ]
    assert "lesions" in result.statistics
    assert set(result.timings) >= {"read", "model", "prepare", "inference", "write", "total"}

    seg, labels = read_seg_nrrd(saveSegmentation(node, tmp_path / "brats.seg.nrrd"))
    assert_geometry_is_the_volumes(seg, reference)
    np.testing.assert_array_equal(labels, result.labels)
    assert len(seg["segments"]) == len(brain_model.labels)
    for segment, label in zip(seg["segments"], brain_model.labels, strict=True):
        assert segment["name"] == label.name
        assert segment["labelValue"] == label.value
        np.testing.assert_allclose(segment["color"], np.array(label.color) / 255, atol=1e-6)
        assert segment["terminology"]["type"] == [
            label.terminology["type"][key] for key in ("scheme", "value", "meaning")
        ]
        assert segment["terminology"]["anatomicRegion"] == ["SCT", "12738006", "Brain"]


def test_gui_style_job_with_missing_inputs_is_flagged(scene, brain_model, brats_nodes):
    match = matchNodes(brats_nodes, brain_model.inputs)
    inputs = {"t1c": match.assigned["t1c"], "flair": match.assigned["flair"], "t1": None}
    reports = []

    job = SegmentationLogic(scene).start(
        brain_model, inputs, TORCH_CPU, progress=lambda done, total: reports.append((done, total))
    )

    assert isinstance(job, SegmentationJob)
    deadline = time.monotonic() + 60
    while not job.isDone():  # as the GUI's timer polls
        assert time.monotonic() < deadline
        time.sleep(0.02)
    result = job.finish()
    assert reports and reports[-1][0] == reports[-1][1] and job.progress == reports[-1]
    assert result.missingInputs == ["t1", "t2"]
    assert result.segmentationNode.GetAttribute("UNetSeg.MissingInputs") == "t1,t2"


def test_fast_run_gives_a_segmentation_on_the_reference_grid(
    scene, brain_model, brats_nodes, tmp_path
):
    match = matchNodes(brats_nodes, brain_model.inputs)
    reference = match.assigned["t1c"]

    result = SegmentationLogic(scene).run(
        brain_model, match.assigned, TORCH_CPU.with_changes(fast=True)
    )

    node = result.segmentationNode
    assert node.GetScene() is scene
    assert node.GetAttribute("UNetSeg.Model") == f"{brain_model.id}@{brain_model.version}"
    assert node.GetSegmentation().GetNumberOfSegments() == len(brain_model.labels)
    seg, labels = read_seg_nrrd(saveSegmentation(node, tmp_path / "fast.seg.nrrd"))
    assert_geometry_is_the_volumes(seg, reference)
    np.testing.assert_array_equal(labels, result.labels)


def test_missing_required_input_raises_and_leaves_scene_unchanged(scene, brain_model, brats_nodes):
    match = matchNodes(brats_nodes, brain_model.inputs)
    logic = SegmentationLogic(scene)
    before = node_count(scene)

    with pytest.raises(MissingInputError, match="flair"):
        logic.run(brain_model, {"t1c": match.assigned["t1c"], "t2": match.assigned["t2"]})
    with pytest.raises(MissingInputError, match="flair"):
        matchNodes([match.assigned["t1c"]], brain_model.inputs)
    with pytest.raises(ValueError, match="no input"):
        logic.run(brain_model, {**match.assigned, "dwi": match.assigned["t2"]})
    assert node_count(scene) == before


def test_engine_failure_leaves_scene_unchanged(scene, brain_model, make_volume, brats_nodes):
    match = matchNodes(brats_nodes, brain_model.inputs)
    empty = make_volume(np.zeros((6, 8, 8), np.int16), name="empty_flair")
    before = node_count(scene)

    with pytest.raises(ValueError, match="empty"):
        SegmentationLogic(scene).run(
            brain_model, {"t1c": match.assigned["t1c"], "flair": empty}, TORCH_CPU
        )
    assert node_count(scene) == before


def test_never_overwrites_and_replaces_only_model_segments(scene, brain_model, brats_nodes):
    match = matchNodes(brats_nodes, brain_model.inputs)
    output = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "edited")
    output.CreateDefaultDisplayNodes()
    userId = output.GetSegmentation().AddEmptySegment("", "My note")
    logic = SegmentationLogic(scene)
    before = node_count(scene)

    with pytest.raises(SegmentationExistsError, match="edited"):
        logic.run(brain_model, match.assigned, TORCH_CPU, outputSegmentationNode=output)
    assert node_count(scene) == before
    assert output.GetSegmentation().GetNumberOfSegments() == 1

    for _ in range(2):  # the second run replaces the first run's segments
        result = logic.run(
            brain_model,
            match.assigned,
            TORCH_CPU,
            outputSegmentationNode=output,
            replaceModelSegments=True,
        )
    assert result.segmentationNode is output
    assert node_count(scene) == before
    segmentation = output.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]
    assert ids == [userId] + [segmentId(label, brain_model.id) for label in brain_model.labels]
    assert segmentation.GetSegment(userId).GetName() == "My note"


def test_cancel_from_another_thread_leaves_scene_unchanged(scene, brain_model, make_volume):
    image = np.random.default_rng(0).uniform(10, 20, (20, 20, 50)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])  # 100 mm along I: 3 windows of 32 voxels at 2 mm
    t1c, flair = make_volume(image, affine, "t1c"), make_volume(image, affine, "flair")
    logic = SegmentationLogic(scene)
    before = node_count(scene)
    started, cancelled = threading.Event(), threading.Event()

    def progress(done: int, total: int) -> None:
        started.set()
        cancelled.wait(10)  # hold the engine until the test thread has cancelled

    job = logic.start(brain_model, {"t1c": t1c, "flair": flair}, TORCH_CPU, progress=progress)
    assert started.wait(60)
    job.cancel()
    cancelled.set()
    assert job.wait(60)
    with pytest.raises(InferenceCancelled):
        job.finish()
    assert job.progress[0] < job.progress[1]

    token = CancelToken()
    token.cancel()
    with pytest.raises(InferenceCancelled):  # blocking run cancelled through its token
        logic.run(brain_model, {"t1c": t1c, "flair": flair}, TORCH_CPU, cancelToken=token)
    assert node_count(scene) == before


def test_single_slice_volume_goes_through_the_2d_model(scene, tmp_path):
    model = untrained_package(tmp_path / "cxr", lung_cxr_manifest((4, 8)))
    shape = (1, 80, 64)
    bright = np.zeros(shape, bool)
    bright[0, 10:45, 30:56] = True  # off-centre rectangle
    image = np.where(bright, 200.0, 30.0).astype(np.float32)
    geometry = Geometry(np.diag([-0.8, -1.2, 1.0, 1.0]), shape)  # LPS-like pixels
    node = loadVolume(scene, write_lps_nrrd(tmp_path / "chest_xray.nrrd", image, geometry))
    match = matchNodes([node], model.inputs)
    logic = SegmentationLogic(scene)
    logic.segmenter(model, TORCH_CPU).runner = torch_runner(
        Threshold(2, channels=(0,), levels=(0.5,))
    )

    result = logic.run(model, match.assigned, TORCH_CPU)

    seg, labels = read_seg_nrrd(saveSegmentation(result.segmentationNode, tmp_path / "c.seg.nrrd"))
    assert_geometry_is_the_volumes(seg, node)
    assert labels.shape == shape
    assert dice(labels == 1, bright) > 0.9
    assert [s["name"] for s in seg["segments"]] == ["Lungs"]
    assert result.statistics["segments"][0]["area_mm2"] == pytest.approx(
        (labels == 1).sum() * 0.8 * 1.2
    )


def test_runs_that_differ_only_in_window_options_share_the_loaded_network(scene, brain_model):
    logic = SegmentationLogic(scene)
    first = logic.segmenter(brain_model, TORCH_CPU)
    again = logic.segmenter(brain_model, TORCH_CPU)
    other = logic.segmenter(brain_model, TORCH_CPU.with_changes(overlap=0.1, uncertainty=True))
    reduced = logic.segmenter(brain_model, TORCH_CPU.with_changes(precision="reduced"))

    assert again is first
    assert other is not first and other.runner is first.runner
    assert other.window.overlap == 0.1 and other.options.mirroring
    assert reduced.runner is not first.runner
