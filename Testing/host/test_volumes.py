"""Volume loading and volume -> (array, geometry), checked against nibabel and SimpleITK."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk

from unetseg.engine.geometry import Geometry
from unetseg.engine.manifest import InputSpec
from unetseg.engine.matching import match_inputs
from unetseg.host.scene_io import VolumeReadError, loadVolume
from unetseg.host.volumes import describeVolume, volumeGeometry, volumeToArray

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _ramp(shape, dtype=np.int16) -> np.ndarray:
    """Distinct values per voxel, so any axis swap or flip changes the array."""
    return np.arange(int(np.prod(shape))).reshape(shape).astype(dtype)


def _assertSameImage(array, geometry, ref_array, ref_geometry):
    """Every voxel of ``array`` lies on a voxel centre of the reference with the same value.

    Readers may store a left-handed grid flipped (Slicer reverses K), so compare physically.
    """
    kji = np.indices(array.shape).reshape(3, -1)
    ijk1 = np.vstack([kji[::-1], np.ones(kji.shape[1])])
    refIjk = (np.linalg.inv(ref_geometry.ijk_to_ras) @ geometry.ijk_to_ras @ ijk1)[:3]
    np.testing.assert_allclose(refIjk, np.round(refIjk), atol=1e-4)
    i, j, k = np.round(refIjk).astype(int)
    assert array.shape == ref_array.shape
    np.testing.assert_array_equal(array[tuple(kji)], ref_array[k, j, i])


def test_oblique_anisotropic_nifti_matches_nibabel(scene, tmp_path, oblique_affine):
    ijk = _ramp((5, 6, 7))  # nibabel order (I, J, K)
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(ijk, oblique_affine), path)

    node = loadVolume(scene, path)
    array, geometry = volumeToArray(node)

    reference = nib.load(path)
    assert node.GetName() == "oblique"
    assert array.shape == (7, 6, 5)
    np.testing.assert_array_equal(array, np.asarray(reference.dataobj).transpose(2, 1, 0))
    assert geometry.is_close(Geometry.from_nibabel(reference), atol=1e-5)
    np.testing.assert_allclose(geometry.spacing, [0.8, 1.1, 2.5], atol=1e-5)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_lps_file_matches_simpleitk(scene, tmp_path, suffix):
    kji = _ramp((4, 5, 6), np.float32)
    image = sitk.GetImageFromArray(kji)
    image.SetSpacing((0.7, 1.3, 3.0))
    image.SetOrigin((12.0, -8.5, 40.0))
    angle = np.radians(25.0)  # rotation about the LPS z axis, plus a flipped K axis
    direction = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, -1]]
    )
    image.SetDirection(direction.ravel().tolist())
    path = tmp_path / f"lps{suffix}"
    sitk.WriteImage(image, str(path))

    array, geometry = volumeToArray(loadVolume(scene, path))

    expected = np.eye(4)
    expected[:3, :3] = direction @ np.diag([0.7, 1.3, 3.0])
    expected[:3, 3] = [12.0, -8.5, 40.0]
    expected = Geometry(LPS_TO_RAS @ expected, (4, 5, 6))  # analytic LPS -> RAS
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    _assertSameImage(array, geometry, reference, expected)


def test_parent_linear_transform_is_hardened(make_volume, scene, oblique_affine):
    node = make_volume(_ramp((3, 4, 5)))
    parentToWorld = np.array(
        [[0.0, -1.0, 0.0, 5.0], [1.0, 0.0, 0.0, -2.0], [0.0, 0.0, 1.0, 7.5], [0, 0, 0, 1]]
    )
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(parentToWorld))
    node.SetAndObserveTransformNodeID(transform.GetID())

    geometry = volumeGeometry(node)

    np.testing.assert_allclose(geometry.ijk_to_ras, parentToWorld @ oblique_affine, atol=1e-5)


def test_nonlinear_parent_transform_is_refused(make_volume, scene):
    node = make_volume(_ramp((3, 4, 5)))
    source, target = vtk.vtkPoints(), vtk.vtkPoints()
    for point in ([0, 0, 0], [50, 0, 0], [0, 50, 0], [0, 0, 50]):
        source.InsertNextPoint(point)
        target.InsertNextPoint([c + (3.0 if i == 0 else 0.0) for i, c in enumerate(point)])
    spline = vtk.vtkThinPlateSplineTransform()
    spline.SetSourceLandmarks(source)
    spline.SetTargetLandmarks(target)
    transform = scene.AddNewNodeByClass("vtkMRMLTransformNode")
    transform.SetAndObserveTransformToParent(spline)
    node.SetAndObserveTransformNodeID(transform.GetID())

    with pytest.raises(ValueError, match="non-linear transform"):
        volumeToArray(node)


def test_single_slice_volume_keeps_k_axis(make_volume):
    kji = _ramp((1, 8, 9))
    array, geometry = volumeToArray(make_volume(kji, np.diag([0.5, 0.5, 1.0, 1.0])))

    assert array.shape == geometry.shape == (1, 8, 9)
    np.testing.assert_array_equal(array, kji)


def test_copy_and_view(make_volume):
    node = make_volume(_ramp((2, 3, 4)))
    copied, _ = volumeToArray(node)
    view, _ = volumeToArray(node, copy=False)

    assert np.shares_memory(view, slicer.util.arrayFromVolume(node))
    assert not np.shares_memory(copied, slicer.util.arrayFromVolume(node))


def test_rgb_volume_becomes_luminance(scene, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (1, 6, 7, 3)).astype(np.uint8)
    path = tmp_path / "xray.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(path))

    node = loadVolume(scene, path)
    array, geometry = volumeToArray(node)

    assert node.IsA("vtkMRMLVectorVolumeNode")
    expected = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    assert array.shape == geometry.shape == (1, 6, 7)
    np.testing.assert_allclose(array, expected, rtol=1e-5)


def test_two_component_volume_is_refused(scene, tmp_path):
    path = tmp_path / "two.nrrd"
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((2, 3, 4, 2), np.float32), isVector=True), str(path)
    )

    with pytest.raises(ValueError, match="2 components"):
        volumeToArray(loadVolume(scene, path))


def test_corrupt_and_missing_files_raise_clear_errors(scene, tmp_path):
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"not an image" * 20)
    nodesBefore = scene.GetNumberOfNodes()

    with pytest.raises(VolumeReadError, match=r"corrupt\.nii\.gz"):
        loadVolume(scene, corrupt)
    with pytest.raises(VolumeReadError, match="not found"):
        loadVolume(scene, tmp_path / "absent.nrrd")
    assert scene.GetNumberOfNodes() == nodesBefore


def test_repeated_loads_get_unique_names(scene, tmp_path):
    path = tmp_path / "t1c.nii.gz"
    nib.save(nib.Nifti1Image(_ramp((3, 3, 3)), np.eye(4)), path)

    names = [loadVolume(scene, path).GetName() for _ in range(2)]

    assert names[0] == "t1c"
    assert names[1] != "t1c" and names[1].startswith("t1c")


def test_new_scene_has_logics_and_is_global_without_app(scene):
    assert getattr(slicer, "app", None) is None  # slicer-core
    assert slicer.mrmlScene is scene
    assert scene.GetNodeByID("vtkMRMLColorTableNodeGrey") is not None  # colour logic alive
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode").GetSegmentation()
    assert segmentation.AddEmptySegment("a", "A") == "a"  # segmentations logic registered


def test_volume_nodes_match_by_name_file_and_dicom_attribute(make_volume):
    inputs = [
        InputSpec("t1c", name_patterns=("*t1c*", "*t1*gd*")),
        InputSpec("t1", name_patterns=("*t1*",)),
        InputSpec("t2", name_patterns=("*t2*",)),
        InputSpec("flair", required=False, series_description_patterns=("*flair*",)),
    ]
    zeros = np.zeros((2, 3, 4), np.int16)
    t1c = make_volume(zeros, name="BraTS_001_t1c")
    t2 = make_volume(zeros, name="case_T2w")
    t2.SetName("Volume")  # node renamed: the storage file name still matches
    flair = make_volume(zeros, name="series7")
    flair.SetAttribute("DICOM.SeriesDescription", "AX FLAIR")
    t1 = make_volume(zeros, name="series8")

    candidate = describeVolume(t2)
    nodes = [t1, flair, t2, t1c]
    result = match_inputs([describeVolume(n) for n in nodes], inputs, overrides={"t1": t1})

    assert candidate.file_name == "case_T2w.nii.gz" and candidate.item is t2
    assert result.assigned == {"t1": t1, "t1c": t1c, "t2": t2, "flair": flair}
    assert describeVolume(t1, seriesDescription="AX T1").series_description == "AX T1"
