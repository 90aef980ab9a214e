"""Headless batch (``segmentFiles`` / ``python -m unetseg segment``) on real files and DICOM.

Every output is read back with independent readers: ``.seg.nrrd`` with slicerio, NIfTI inputs
with nibabel, DICOM series with pydicom and DICOM SEG with highdicom.
"""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from Testing.case_files import read_seg_nrrd
from Testing.dicom_factory import writeDicomSeries
from Testing.runners import TORCH_CPU
from Training.synth import brain_mri_case
from unetseg.cli import main
from unetseg.host.batch import segmentFiles
from unetseg.untrained import brain_mri_manifest, untrained_package

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# BraTS 2021 naming; the segmentation file is an input that matches no model input.
BRATS_2021 = {"t1c": "t1ce", "flair": "flair", "t1": "t1", "t2": "t2", None: "seg"}
# Series as a scanner names them; the localizer matches no model input.
SCANNER_SERIES = {
    "t1c": "Ax T1 MPRAGE +Gd",
    "flair": "AX T2 FLAIR",
    "t1": "Ax T1 SE",
    "t2": "Ax T2 FSE",
    None: "3-Plane Localizer",
}
STAGES = {"discover", "load", "read", "model", "prepare", "inference", "restore", "statistics"}
STAGES |= {"write", "save", "total"}  # + "dicom_seg" when one is written


#: The shared ``brain_model`` fixture with the seed chosen so that it predicts 3 labels.
BRAIN_MODEL = {"seed": 1}


@pytest.fixture(scope="module")
def case():
    """Synthetic skull-stripped 4-sequence brain case on an oblique anisotropic grid."""
    return brain_mri_case(np.random.default_rng(11), (40, 40, 24), (1.5, 1.8, 2.5), layout="brats")


@pytest.fixture(scope="module")
def nifti_files(case, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("nifti")
    files = {}
    for name, suffix in BRATS_2021.items():
        array = case.images[name] if name else case.label.astype(np.float32)
        image = nib.Nifti1Image(np.rint(array).astype(np.int16).transpose(2, 1, 0), None)
        image.set_sform(case.geometry.ijk_to_ras, code=1)
        image.set_qform(case.geometry.ijk_to_ras, code=1)
        files[name] = folder / f"BraTS2021_00042_{suffix}.nii.gz"
        nib.save(image, files[name])
    return files


@pytest.fixture(scope="module")
def dicom_study(case, tmp_path_factory) -> tuple[Path, dict]:
    """The case as one DICOM study: 4 MR series plus a localizer, files shuffled in one folder.

    Returns the folder and the written file paths (slice order) per input name.
    """
    folder = tmp_path_factory.mktemp("dicom") / "study"
    lps = LPS_TO_RAS[:3, :3]
    geometry = case.geometry
    common = {
        "spacing": geometry.spacing,
        "origin": lps @ geometry.origin,
        "direction": lps @ geometry.direction,
        "studyUID": pydicom.uid.generate_uid(),
        "frameOfReferenceUID": pydicom.uid.generate_uid(),
        "patientID": "SYNTH-42",
    }
    files = {}
    for number, (name, description) in enumerate(SCANNER_SERIES.items(), start=1):
        array = case.images[name] if name else case.images["t1"][:3]
        files[name] = writeDicomSeries(
            folder, array, seriesDescription=description, seriesNumber=number, seed=number, **common
        )
    return folder, files


def series_ijk_to_lps(files: list[Path]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """IJK-to-LPS and (K, J, I) shape of a single-frame series, from pydicom headers alone.

    Slices are ordered along the normal of ImageOrientationPatient (row x column)."""
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in files]
    orientation = np.array(headers[0].ImageOrientationPatient, dtype=float)
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    headers.sort(key=lambda ds: float(normal @ np.array(ds.ImagePositionPatient, dtype=float)))
    first = np.array(headers[0].ImagePositionPatient, dtype=float)
    last = np.array(headers[-1].ImagePositionPatient, dtype=float)
    rowSpacing, columnSpacing = (float(v) for v in headers[0].PixelSpacing)
    matrix = np.eye(4)
    matrix[:3, 0] = row * columnSpacing
    matrix[:3, 1] = column * rowSpacing
    matrix[:3, 2] = (last - first) / (len(headers) - 1)
    matrix[:3, 3] = first
    return matrix, (len(headers), int(headers[0].Rows), int(headers[0].Columns))


def sorted_sop_uids(files: list[Path]) -> list[str]:
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in files]
    orientation = np.array(headers[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    headers.sort(key=lambda ds: float(normal @ np.array(ds.ImagePositionPatient, dtype=float)))
    return [str(ds.SOPInstanceUID) for ds in headers]


def check_dicom_seg(path: Path, sourceFiles: list[Path], labels: np.ndarray, model) -> None:
    """The SEG references the source series, lies on its slices and equals ``labels``."""
    seg = hd.seg.segread(path)
    source = pydicom.dcmread(sourceFiles[0], stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert (seg.Rows, seg.Columns) == (source.Rows, source.Columns)
    shared = seg.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose(
        [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient],
        [float(v) for v in source.ImageOrientationPatient],
        atol=1e-6,
    )
    positions = {
        str(ds.SOPInstanceUID): np.array(ds.ImagePositionPatient, dtype=float)
        for ds in (pydicom.dcmread(f, stop_before_pixels=True) for f in sourceFiles)
    }
    for frame in seg.PerFrameFunctionalGroupsSequence:
        referenced = frame.DerivationImageSequence[0].SourceImageSequence[0]
        np.testing.assert_allclose(
            np.array(frame.PlanePositionSequence[0].ImagePositionPatient, dtype=float),
            positions[str(referenced.ReferencedSOPInstanceUID)],
            atol=1e-3,
        )
    numbers = [int(d.SegmentNumber) for d in seg.SegmentSequence]
    assert [str(d.SegmentLabel) for d in seg.SegmentSequence] == [x.name for x in model.labels]
    pixels = seg.get_pixels_by_source_instance(
        sorted_sop_uids(sourceFiles),
        segment_numbers=numbers,
        combine_segments=True,
        assert_missing_frames_are_empty=True,
    )
    np.testing.assert_array_equal(pixels, labels)


def test_nifti_brats_case_through_the_command_line(brain_model, nifti_files, tmp_path, capsys):
    output, summary = tmp_path / "out" / "case.seg.nrrd", tmp_path / "case.json"
    files = [str(path) for path in nifti_files.values()]

    outputs = ["--output", str(output), "--summary", str(summary)]
    code = main(["segment", "--model", str(brain_model.path), "--input", *files, *outputs])

    assert code == 0, capsys.readouterr().err
    report = json.loads(summary.read_text())
    assert {name: Path(entry["path"]) for name, entry in report["inputs"].items()} == {
        name: path for name, path in nifti_files.items() if name
    }
    assert report["unused_inputs"] == [str(nifti_files[None])]
    assert report["missing_inputs"] == []
    assert report["options"]["fast"] is False
    assert set(report["timings_s"]) == STAGES
    assert report["outputs"] == {"seg_nrrd": str(output)}
    stdout = capsys.readouterr().out
    assert "input t1c: " + str(nifti_files["t1c"]) in stdout

    seg, labels = read_seg_nrrd(output)
    reference = nib.load(nifti_files["t1c"])
    np.testing.assert_allclose(seg["ijkToLPS"], LPS_TO_RAS @ reference.affine, atol=1e-4)
    assert labels.shape == reference.shape[::-1]
    voxelMl = abs(np.linalg.det(reference.affine[:3, :3])) / 1000.0
    segments = report["statistics"]["segments"]
    assert [row["name"] for row in segments] == [s["name"] for s in seg["segments"]]
    for row, segment in zip(segments, seg["segments"], strict=True):
        count = int((labels == segment["labelValue"]).sum())
        assert row["voxel_count"] == count
        assert row["volume_ml"] == pytest.approx(count * voxelMl, abs=0.05)  # summary: 0.1 mL
    lesions = report["statistics"]["lesions"]
    assert report["statistics"]["lesion_count"] == len(lesions) > 0
    assert sum(lesion["voxel_count"] for lesion in lesions) == int((labels > 0).sum())


def test_dicom_series_matched_by_description_with_dicom_seg(
    brain_model, dicom_study, tmp_path, capsys
):
    folder, files = dicom_study
    output, dicomSeg, summary = (tmp_path / name for name in ("d.seg.nrrd", "d.dcm", "d.json"))

    outputs = ["--output", str(output), "--dicom-seg", str(dicomSeg), "--summary", str(summary)]
    code = main(["segment", "--model", str(brain_model.path), "--input", str(folder), *outputs])

    assert code == 0, capsys.readouterr().err
    report = json.loads(summary.read_text())
    assert {name: entry["series_description"] for name, entry in report["inputs"].items()} == {
        name: description for name, description in SCANNER_SERIES.items() if name
    }
    assert len(report["unused_inputs"]) == 1 and "Localizer" in report["unused_inputs"][0]
    assert set(report["timings_s"]) == STAGES | {"dicom_seg"}
    assert report["outputs"] == {"seg_nrrd": str(output), "dicom_seg": str(dicomSeg)}
    seg, labels = read_seg_nrrd(output)
    ijkToLps, shape = series_ijk_to_lps(files["t1c"])
    np.testing.assert_allclose(seg["ijkToLPS"], ijkToLps, atol=1e-4)
    assert labels.shape == shape
    assert len(np.unique(labels)) >= 3, "the test network should predict several labels"
    check_dicom_seg(dicomSeg, files["t1c"], labels, brain_model)


def test_override_beats_automatic_matching(brain_model, dicom_study, nifti_files, tmp_path):
    folder, _ = dicom_study
    # T1c from the NIfTI file, FLAIR by SeriesDescription, T2 by path although unlisted.
    report = segmentFiles(
        brain_model,
        [folder],
        tmp_path / "o.seg.nrrd",
        overrides={"t1c": nifti_files["t1c"], "flair": "ax t2 flair", "t2": nifti_files["t2"]},
        options=TORCH_CPU,
    )

    assert report["inputs"]["t1c"] == {"path": str(nifti_files["t1c"]), "matched": "map"}
    assert report["inputs"]["flair"]["matched"] == "map"
    assert report["inputs"]["t2"]["path"] == str(nifti_files["t2"])
    assert report["inputs"]["t1"]["series_description"] == "Ax T1 SE"
    assert any("Ax T1 MPRAGE +Gd" in text for text in report["unused_inputs"])


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore:The string .* person name:UserWarning")  # TCIA's PGBM-001
def test_real_tcia_study_gives_seg_and_dicom_seg_on_the_t1post_grid(shared_data, tmp_path):
    study = shared_data / "tcia_brain_tumor_progression" / "PGBM-001"
    if not study.is_dir():
        pytest.skip(f"{study} not available")
    manifest = brain_mri_manifest((4, 8, 16), patch_size=(32, 32, 32))
    manifest["spacing_mm"] = [8.0, 8.0, 8.0]  # one window: this checks geometry, not accuracy
    model = untrained_package(tmp_path / "model", manifest)

    report = segmentFiles(
        model,
        [study],
        tmp_path / "pgbm.seg.nrrd",
        dicomSeg=tmp_path / "pgbm.dcm",
        options=TORCH_CPU,
    )

    assert {name: entry["series_description"] for name, entry in report["inputs"].items()} == {
        "t1c": "T1post",
        "flair": "FLAIR_reg",
        "t1": "T1pre_reg",
        "t2": "T2_reg",
    }
    assert len(report["unused_inputs"]) == 1 and "Mask_Tumor" in report["unused_inputs"][0]
    t1post = sorted(next(study.rglob("*T1post*")).glob("*.dcm"))
    seg, labels = read_seg_nrrd(report["outputs"]["seg_nrrd"])
    ijkToLps, shape = series_ijk_to_lps(t1post)
    np.testing.assert_allclose(seg["ijkToLPS"], ijkToLps, atol=1e-3)
    assert labels.shape == shape == (24, 320, 260)
    check_dicom_seg(Path(report["outputs"]["dicom_seg"]), t1post, labels, model)
