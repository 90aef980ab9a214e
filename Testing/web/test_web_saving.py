"""Saving and measuring of the web face (``unetseg.web.saving``, ``unetseg.web.results``) on
real MRML (slicer-core), read back with slicerio and pydicom; no server, no browser."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("slicer", reason="needs slicer-core")

from unetseg.engine.geometry import Geometry
from unetseg.engine.manifest import LabelSpec
from unetseg.host.scene_io import newScene
from unetseg.host.segmentation import writeLabelmapToSegmentation
from unetseg.host.volumes import addVolumeFromArray
from unetseg.web import results, saving

LABELS = [
    LabelSpec.from_manifest(entry)
    for entry in [
        {"value": 1, "name": "Tumour core", "color": [200, 40, 40]},
        {"value": 2, "name": "Oedema", "color": [230, 200, 60]},
    ]
]


@pytest.fixture
def segmented():
    """A 3D volume (2 mm voxels) and a two-segment segmentation of it."""
    scene = newScene()
    ijk_to_ras = np.diag([2.0, 2.0, 2.0, 1.0])
    volume = addVolumeFromArray(
        scene, np.zeros((6, 8, 10), np.float32), Geometry(ijk_to_ras, (6, 8, 10)), "T1c"
    )
    labels = np.zeros((6, 8, 10), np.uint8)
    labels[1:3, 2:5, 2:6] = 1  # 24 voxels
    labels[4, 1:3, 1:3] = 2  # 4 voxels
    labels[4, 6, 8] = 2  # 1 voxel, a second oedema component
    node = writeLabelmapToSegmentation(scene, labels, volume, LABELS, name="T1c - test model")
    return scene, volume, node, labels


def test_labels_from_segmentation_follow_the_node_order(segmented):
    _, volume, node, labels = segmented
    exported = results.labels_from_segmentation(node, volume)
    assert exported.shape == labels.shape
    np.testing.assert_array_equal(exported, labels)


def test_segment_table_sizes_and_lesions(segmented):
    _, volume, node, _ = segmented
    table = results.segment_table(node, volume, lesions=True)
    rows = {row["name"]: row for row in table["segments"]}
    assert rows["Tumour core"]["voxels"] == 24 and rows["Oedema"]["voxels"] == 5
    assert rows["Tumour core"]["size"] == "0.2 mL"  # 24 x 8 mm3
    assert rows["Tumour core"]["color"] == "#c82828"
    assert table["lesion_count"] == 3
    assert [lesion["voxels"] for lesion in table["lesions"]] == [24, 4, 1]
    assert results.segment_table(node, volume)["lesions"] == []


def test_output_folder_writes_inside_only_and_never_replaces(tmp_path, segmented):
    slicerio = pytest.importorskip("slicerio")
    _, _, node, labels = segmented
    folder = saving.OutputFolder(tmp_path / "out")
    node.SetName("../../escape me")
    first = folder.save_seg_nrrd(node)
    second = folder.save_seg_nrrd(node)
    assert first.parent == second.parent == (tmp_path / "out").resolve()
    assert (first.name, second.name) == ("escape_me.seg.nrrd", "escape_me-1.seg.nrrd")
    assert not list(tmp_path.glob("*.seg.nrrd"))
    segmentation = slicerio.read_segmentation(str(first))
    assert [s["name"] for s in segmentation["segments"]] == ["Tumour core", "Oedema"]
    assert int(np.count_nonzero(segmentation["voxels"])) == int(np.count_nonzero(labels))


def test_seg_nrrd_bytes_leave_the_node_pointing_to_its_file(tmp_path, segmented):
    _, _, node, _ = segmented
    saved = saving.OutputFolder(tmp_path).save_seg_nrrd(node)
    data = saving.seg_nrrd_bytes(node)
    assert data.startswith(b"NRRD") and data == saved.read_bytes()
    assert node.GetStorageNode().GetFileName() == str(saved)


def test_file_stem():
    assert saving.file_stem("Chest CT - Lungs (right/left)") == "Chest_CT_-_Lungs_right_left"
    assert saving.file_stem("///") == "segmentation"


def test_dicom_seg_needs_a_dicom_reference(segmented):
    _, volume, node, _ = segmented
    with pytest.raises(ValueError, match="loaded from DICOM"):
        saving.dicom_seg_bytes(node, volume, None)
