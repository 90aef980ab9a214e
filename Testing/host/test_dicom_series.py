"""DICOM series discovery and loading: synthetic series from the factory and real TCIA/CT data."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_modality_lut

from Testing.case_files import SHARED_DATA, needs_shared
from Testing.dicom_factory import rotationMatrix, writeDicomSeries
from unetseg.engine.geometry import Geometry
from unetseg.engine.manifest import InputSpec
from unetseg.engine.matching import MissingInputError, match_inputs
from unetseg.host.dicom_series import discoverSeries, loadSeries
from unetseg.host.sources import folderSources

BRAIN_INPUTS = [
    InputSpec("t1c", series_description_patterns=("*t1*post*", "*t1*gd*")),
    InputSpec("t1", name_patterns=("*t1*",), series_description_patterns=("*t1*pre*",)),
    InputSpec("flair", series_description_patterns=("*flair*",)),
    InputSpec("t2", series_description_patterns=("*t2*",)),
]
PGBM = SHARED_DATA / "tcia_brain_tumor_progression" / "PGBM-001"
CT_DICOM = SHARED_DATA / "ct_totalsegmentator" / "example_ct_dicom"
LUNGMASK = SHARED_DATA / "lungmask_dicom"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _expectedIjkToRas(spacing, origin, direction) -> np.ndarray:
    """Analytic IJKToRAS from LPS origin/direction columns and (I, J, K) spacing."""
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ np.asarray(direction) @ np.diag(spacing)
    matrix[:3, 3] = LPS_TO_RAS @ np.asarray(origin)
    return matrix


def _pydicomStack(files) -> np.ndarray:
    """Independent reference: pixel data in the given file order, modality LUT applied."""
    slices = []
    for path in files:
        ds = pydicom.dcmread(path)
        slices.append(apply_modality_lut(ds.pixel_array, ds).astype(np.float32))
    return np.stack(slices)


def _ramp(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, shape).astype(np.float32)


def _writeDicomdir(path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.FileSetID = "TEST"
    ds.DirectoryRecordSequence = []
    ds.save_as(path, enforce_file_format=True)


def test_discovery_groups_series_of_two_studies_and_skips_junk(tmp_path, caplog):
    study1, study2 = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    t1 = writeDicomSeries(tmp_path, _ramp((5, 6, 7)), seriesDescription="T1 post", studyUID=study1)
    flair = writeDicomSeries(
        tmp_path / "sub" / "deeper",
        _ramp((4, 6, 7)),
        seriesDescription="FLAIR",
        studyUID=study1,
        seriesNumber=2,
    )
    ct = writeDicomSeries(
        tmp_path,
        _ramp((3, 5, 5)) - 500,
        modality="CT",
        seriesDescription="Chest",
        studyUID=study2,
        patientID="OTHER",
        seriesNumber=7,
    )
    (tmp_path / "notes.txt").write_text("not dicom")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "sub" / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    _writeDicomdir(tmp_path / "DICOMDIR")
    truncated = tmp_path / "sub" / "truncated.dcm"
    truncated.write_bytes(t1[0].read_bytes()[:300])

    with caplog.at_level(logging.WARNING):
        found = discoverSeries(tmp_path)

    byDescription = {s.seriesDescription: s for s in found}
    assert sorted(byDescription) == ["Chest", "FLAIR", "T1 post"]
    assert set(byDescription["T1 post"].files) == set(t1)
    assert set(byDescription["FLAIR"].files) == set(flair)
    assert set(byDescription["Chest"].files) == set(ct)
    assert byDescription["FLAIR"].studyInstanceUID == study1
    assert byDescription["Chest"].studyInstanceUID == study2
    assert byDescription["Chest"].patientID == "OTHER"
    assert byDescription["Chest"].modality == "CT"
    assert byDescription["FLAIR"].seriesNumber == 2
    for series in found:
        assert not series.isSeg and not series.isMultiFrame
        assert series.numberOfFrames == len(series.files)
        assert series.warnings == () and series.errors == ()
    assert "truncated.dcm" in caplog.text


def test_files_are_sorted_by_position_not_name_or_instance_number(tmp_path):
    volume = _ramp((6, 4, 5))
    paths = writeDicomSeries(tmp_path, volume, instanceNumbers=[3, 9, 1, 7, 2, 5])
    assert sorted(paths) != paths  # names alone give the wrong order
    (series,) = discoverSeries(tmp_path)
    assert list(series.files) == paths
    assert series.sopInstanceUIDs == tuple(pydicom.dcmread(p).SOPInstanceUID for p in paths)
    array, _ = loadSeries(series)
    np.testing.assert_array_equal(array, volume)


def test_oblique_geometry_matches_analytic_matrix_and_simpleitk(tmp_path):
    spacing, origin = (0.7, 0.9, 3.0), (12.5, -40.0, 7.25)
    direction = rotationMatrix((1.0, 2.0, 0.5), 27.0)
    volume = _ramp((5, 8, 6))
    writeDicomSeries(tmp_path, volume, spacing=spacing, origin=origin, direction=direction)

    (series,) = discoverSeries(tmp_path)
    array, geometry = loadSeries(series)

    np.testing.assert_allclose(
        geometry.ijk_to_ras, _expectedIjkToRas(spacing, origin, direction), atol=1e-5
    )
    assert geometry.shape == (5, 8, 6)
    np.testing.assert_array_equal(array, volume)
    # SimpleITK with GDCM's own sorting of the folder agrees on voxels and geometry.
    reference = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path)))
    np.testing.assert_array_equal(array, sitk.GetArrayFromImage(reference))
    assert geometry.is_close(Geometry.from_sitk(reference), atol=1e-5)


def test_slices_stored_against_the_normal_are_reordered(tmp_path):
    # K axis pointing against the row x column normal: the loaded stack runs the other way.
    direction = np.diag([1.0, 1.0, -1.0])
    volume = _ramp((4, 5, 6))
    paths = writeDicomSeries(tmp_path, volume, spacing=(1.0, 1.0, 2.0), direction=direction)
    (series,) = discoverSeries(tmp_path)
    assert list(series.files) == paths[::-1]
    array, geometry = loadSeries(series)
    np.testing.assert_array_equal(array, volume[::-1])
    np.testing.assert_allclose(geometry.origin, [0.0, 0.0, -6.0], atol=1e-6)
    np.testing.assert_allclose(geometry.direction, np.diag([-1.0, -1.0, 1.0]), atol=1e-6)


@pytest.mark.parametrize(("slope", "intercept"), [(1.0, -1024.0), (0.5, -1000.0)])
def test_ct_rescale_gives_hounsfield_units(tmp_path, slope, intercept):
    hu = np.random.default_rng(1).integers(-1000, 2000, (3, 6, 7)).astype(np.float32)
    paths = writeDicomSeries(
        tmp_path, hu, modality="CT", rescaleSlope=slope, rescaleIntercept=intercept
    )
    assert pydicom.dcmread(paths[0]).RescaleIntercept == intercept
    array, _ = loadSeries(discoverSeries(tmp_path)[0])
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, hu)
    np.testing.assert_array_equal(array, _pydicomStack(paths))


def test_missing_slice_refuses_to_load(tmp_path):
    paths = writeDicomSeries(tmp_path, _ramp((5, 4, 4)), spacing=(1.0, 1.0, 2.0))
    paths[2].unlink()
    (series,) = discoverSeries(tmp_path)
    assert any("non-uniform slice spacing" in e for e in series.errors)
    with pytest.raises(ValueError, match="missing slices"):
        loadSeries(series)


def test_without_positions_sorts_by_instance_number_but_refuses_to_load(tmp_path):
    volume = _ramp((4, 3, 3))
    paths = writeDicomSeries(
        tmp_path,
        volume,
        instanceNumbers=[4, 2, 3, 1],
        attributes={"ImagePositionPatient": None, "ImageOrientationPatient": None},
    )
    (series,) = discoverSeries(tmp_path)
    assert list(series.files) == [paths[3], paths[1], paths[2], paths[0]]
    with pytest.raises(ValueError, match="missing or invalid on 4 of 4 slices"):
        loadSeries(series)


def test_inconsistent_orientation_refuses_to_load(tmp_path):
    uid = pydicom.uid.generate_uid()
    writeDicomSeries(tmp_path, _ramp((2, 4, 4)), seriesUID=uid)
    writeDicomSeries(
        tmp_path / "b",
        _ramp((1, 4, 4)),
        seriesUID=uid,
        origin=(0.0, 0.0, 5.0),
        direction=rotationMatrix((0.0, 0.0, 1.0), 10.0),
    )
    (series,) = discoverSeries(tmp_path)
    assert any("ImageOrientationPatient" in e for e in series.errors)


def test_mixed_sizes_refuse_to_load(tmp_path):
    uid = pydicom.uid.generate_uid()
    writeDicomSeries(tmp_path / "a", _ramp((3, 4, 4)), seriesUID=uid)
    writeDicomSeries(tmp_path / "b", _ramp((1, 5, 4)), seriesUID=uid, origin=(0.0, 0.0, 3.0))
    (series,) = discoverSeries(tmp_path)
    assert len(series.files) == 4
    with pytest.raises(ValueError, match="mixed image sizes"):
        loadSeries(series)


def test_duplicate_positions_refuse_to_load(tmp_path):
    uid = pydicom.uid.generate_uid()  # e.g. two echoes stored as one series
    writeDicomSeries(tmp_path / "echo1", _ramp((3, 4, 4)), seriesUID=uid)
    writeDicomSeries(tmp_path / "echo2", _ramp((3, 4, 4), seed=1), seriesUID=uid)
    (series,) = discoverSeries(tmp_path)
    assert len(series.files) == 6
    with pytest.raises(ValueError, match="share slice positions"):
        loadSeries(series)


@pytest.mark.parametrize("kept_bytes", [-60, 900])
def test_corrupt_file_is_named(tmp_path, kept_bytes):
    # Cut inside the pixel data (-60) or inside the header, after the series UID (900).
    paths = writeDicomSeries(tmp_path, _ramp((4, 8, 8)))
    paths[1].write_bytes(paths[1].read_bytes()[:kept_bytes])
    (series,) = discoverSeries(tmp_path)
    assert len(series.files) == 4
    with pytest.raises(ValueError, match=paths[1].name):
        loadSeries(series)


@needs_shared(PGBM)
def test_real_brain_tumor_progression_study():
    found = discoverSeries(PGBM)
    byDescription = {s.seriesDescription: s for s in found}
    assert sorted(byDescription) == ["FLAIR_reg", "Mask_Tumor", "T1post", "T1pre_reg", "T2_reg"]
    assert len({s.studyInstanceUID for s in found}) == 1
    assert {s.patientID for s in found} == {"PGBM-001"}
    t1post, reference = loadSeries(byDescription["T1post"])
    np.testing.assert_allclose(reference.spacing, [0.6875, 0.6875, 6.5], atol=1e-3)
    np.testing.assert_array_equal(t1post, _pydicomStack(byDescription["T1post"].files))
    folder = byDescription["T1post"].files[0].parent
    gdcm = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    assert reference.is_close(Geometry.from_sitk(gdcm), atol=1e-3)
    for series in found:
        assert len(series.files) == 24 and series.warnings == () and series.errors == ()
        array, geometry = loadSeries(series)
        assert array.shape == (24, 320, 260)
        assert geometry.is_close(reference, atol=1e-3)  # co-registered: one grid
        if series.seriesDescription == "Mask_Tumor":
            assert set(np.unique(array)) == {0.0, 1.0}


@needs_shared(CT_DICOM)
def test_real_ct_series_matches_its_nifti_grid():
    (series,) = discoverSeries(CT_DICOM)
    assert series.modality == "CT" and len(series.files) == 20
    assert any("SeriesInstanceUID" in w for w in series.warnings)  # the files have none
    array, geometry = loadSeries(series)
    assert array.shape == (20, 512, 512)
    np.testing.assert_allclose(geometry.spacing, [0.9765625, 0.9765625, 2.0], atol=1e-4)
    assert array.min() == -1024.0 and 500 < array.max() < 4000  # HU
    # The TotalSegmentator label map covers the same voxel centres (stored LAS).
    segmentation = nib.load(CT_DICOM.parent / "example_seg_dicom.nii.gz")
    corners = np.array(np.meshgrid([0, 511], [0, 511], [0, 19], indexing="ij")).reshape(3, -1)
    corners = np.vstack([corners, np.ones(corners.shape[1])])
    ours = {tuple(np.round(p, 2)) for p in (geometry.ijk_to_ras @ corners)[:3].T}
    theirs = {tuple(np.round(p, 2)) for p in (segmentation.affine @ corners)[:3].T}
    assert ours == theirs


@needs_shared(LUNGMASK)
def test_real_two_slice_ct():
    (series,) = discoverSeries(LUNGMASK)
    assert len(series.files) == 2 and series.errors == ()
    array, geometry = loadSeries(series)
    assert array.shape == (2, 512, 512)
    np.testing.assert_allclose(geometry.spacing, [0.625, 0.625, 1.0])
    np.testing.assert_array_equal(array, _pydicomStack(series.files))
    inside = array[array > -2048]  # -2048 pads outside the reconstruction circle
    assert np.percentile(inside, 5) < -900  # air
    assert np.mean((inside > -1000) & (inside < -400)) > 0.2  # lung
    assert np.mean((inside > -100) & (inside < 100)) > 0.15  # soft tissue


def _matchSeries(folder: Path, overrides=None):
    """The study's image series fed to the brain inputs by description, as ``segment`` does."""
    candidates = [source.candidate() for source in folderSources(folder)]
    return match_inputs(candidates, BRAIN_INPUTS, overrides=overrides)


def _descriptions(result) -> dict[str, str]:
    return {name: s.series.seriesDescription for name, s in result.assigned.items()}


def _byInput(*descriptions: str) -> dict[str, str]:
    """Brain input name -> series description, given in ``BRAIN_INPUTS`` order."""
    return dict(zip((spec.name for spec in BRAIN_INPUTS), descriptions, strict=True))


def test_match_series_by_description_with_override(tmp_path):
    descriptions = ["AX T1 POST GD", "Ax T1 pre", "FLAIR", "t2_tse"]
    for number, description in enumerate(descriptions, 1):
        writeDicomSeries(
            tmp_path / description,
            _ramp((2, 3, 3)),
            seriesDescription=description,
            seriesNumber=number,
        )
    result = _matchSeries(tmp_path)
    assert _descriptions(result) == _byInput(*descriptions)
    swapped = _matchSeries(tmp_path, overrides={"t1c": "Ax T1 pre"})
    assert _descriptions(swapped) == {
        **_descriptions(result),
        "t1c": "Ax T1 pre",
        "t1": "AX T1 POST GD",
    }
    for path in (tmp_path / "FLAIR").iterdir():
        path.unlink()
    with pytest.raises(MissingInputError, match="flair"):
        _matchSeries(tmp_path)


@needs_shared(PGBM)
def test_match_real_study_series():
    result = _matchSeries(PGBM)
    assert _descriptions(result) == _byInput("T1post", "T1pre_reg", "FLAIR_reg", "T2_reg")
    assert result.ambiguous == {}
