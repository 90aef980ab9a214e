"""Bad DICOM geometry, ambiguous series, DICOM SEG of anonymised series, and inputs on grids
that barely overlap are refused with one line naming the series, before any output; a DICOM
SEG is written for series that only lack optional patient/study attributes."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from Testing.case_files import save_nifti
from Testing.command_line import assert_one_line_error, run_cli, segment_args
from Testing.dicom_factory import rotationMatrix, writeDicomSeries
from Testing.faults.support import digests

SPACING = (2.0, 2.0, 3.0)


def _series(folder, brain_case, name, description, number, **options) -> list:
    return writeDicomSeries(
        folder,
        brain_case.images[name],
        spacing=SPACING,
        seriesDescription=description,
        seriesNumber=number,
        studyUID=options.pop("studyUID", "1.2.826.0.1.3680043.8.498.1"),
        frameOfReferenceUID="1.2.826.0.1.3680043.8.498.2",
        **options,
    )


@pytest.fixture
def study(brain_case, tmp_path):
    """A DICOM study (T1post + FLAIR, 16 slices each); returns (folder, {name: paths})."""
    folder = tmp_path / "study"
    files = {
        "t1c": _series(folder, brain_case, "t1c", "T1post", 1),
        "flair": _series(folder, brain_case, "flair", "FLAIR", 2),
    }
    return folder, files


def _edit(path, **changes) -> None:
    """Set (or delete, with None) attributes of one DICOM file in place."""
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)


def _segment(capsys, brain_model, folder, tmp_path, *extra):
    output = tmp_path / "out" / "r.seg.nrrd"
    args = segment_args(brain_model.path, [folder], output, "--device", "cpu", *extra)
    code, out, err = run_cli(capsys, *args)
    return code, out, err, output


def _missing_positions_on_two(files, tmp_path, brain_case):
    for path in files["flair"][2], files["flair"][9]:
        _edit(path, ImagePositionPatient=None)


def _missing_positions_on_all(files, tmp_path, brain_case):
    for path in files["flair"]:
        _edit(path, ImagePositionPatient=None)


def _missing_slice(files, tmp_path, brain_case):
    files["flair"][5].unlink()


def _rotated_slice(files, tmp_path, brain_case):
    row_column = rotationMatrix((0.0, 0.0, 1.0), 10.0)[:, :2].T.ravel()
    _edit(files["flair"][3], ImageOrientationPatient=[f"{v:.6f}" for v in row_column])


def _gantry_tilt_positions(files, tmp_path, brain_case):
    for k, path in enumerate(files["flair"]):
        x, y, z = (float(v) for v in pydicom.dcmread(path).ImagePositionPatient)
        _edit(path, ImagePositionPatient=[f"{x:.3f}", f"{y + 0.5 * k:.3f}", f"{z:.3f}"])


def _two_echoes(files, tmp_path, brain_case):
    uid = pydicom.dcmread(files["flair"][0]).SeriesInstanceUID
    _series(tmp_path / "study" / "echo2", brain_case, "flair", "FLAIR", 2, seriesUID=uid, seed=5)


def _pixel_spacing(files, tmp_path, brain_case):
    _edit(files["flair"][7], PixelSpacing=["2.5", "2.5"])


def _truncated_slice(files, tmp_path, brain_case):
    data = files["flair"][4].read_bytes()
    files["flair"][4].write_bytes(data[:-300])


def _same_description_twice(files, tmp_path, brain_case):
    _series(tmp_path / "study", brain_case, "t2", "FLAIR", 3, seed=3)


BAD_SERIES = {
    "ImagePositionPatient missing on some slices": (
        _missing_positions_on_two,
        ("FLAIR", "missing or invalid on 2 of 16 slices"),
    ),
    "ImagePositionPatient missing on every slice": (
        _missing_positions_on_all,
        ("missing or invalid on 16 of 16 slices",),
    ),
    "missing slice (uneven spacing)": (_missing_slice, ("FLAIR", "non-uniform slice spacing")),
    "one slice with another orientation": (
        _rotated_slice,
        ("inconsistent ImageOrientationPatient",),
    ),
    "gantry tilt (sheared positions)": (
        _gantry_tilt_positions,
        ("not stacked along their normal",),
    ),
    "two echoes in one series": (_two_echoes, ("share slice positions",)),
    "inconsistent PixelSpacing": (_pixel_spacing, ("inconsistent PixelSpacing",)),
    "truncated slice": (_truncated_slice, ("cannot read DICOM file",)),
    "two series match one input": (
        _same_description_twice,
        ("input 'flair' matches several inputs equally well", "--map flair="),
    ),
}


@pytest.mark.parametrize("case", list(BAD_SERIES))
def test_bad_series_is_refused_with_one_line(
    case, study, brain_case, brain_model, tmp_path, capsys
):
    folder, files = study
    damage, phrases = BAD_SERIES[case]
    damage(files, tmp_path, brain_case)

    code, _, err, output = _segment(capsys, brain_model, folder, tmp_path)

    assert_one_line_error(code, err, *phrases)
    assert not output.exists()


def test_ambiguous_match_lists_every_candidate(study, brain_case, brain_model, tmp_path, capsys):
    folder, files = study
    _same_description_twice(files, tmp_path, brain_case)
    code, _, err, _ = _segment(capsys, brain_model, folder, tmp_path)
    assert code == 2
    assert err.count("FLAIR [MR]") == 2  # both series named, with their UIDs
    # Choosing one with --map resolves it.
    uid = pydicom.dcmread(files["flair"][0]).SeriesInstanceUID
    code, _, err, output = _segment(capsys, brain_model, folder, tmp_path, "--map", f"flair={uid}")
    assert code == 0, err
    assert output.is_file()


def test_dicom_seg_of_an_anonymised_series_is_refused_before_any_work(
    study, brain_model, tmp_path, capsys
):
    folder, files = study
    for path in files["t1c"]:
        _edit(path, SOPClassUID="", StudyInstanceUID="")
    seg = tmp_path / "out" / "r.dcm"

    code, _, err, output = _segment(capsys, brain_model, folder, tmp_path, "--dicom-seg", seg)

    assert_one_line_error(code, err, "cannot write a DICOM SEG", "SOPClassUID, StudyInstanceUID")
    assert not output.exists() and not seg.exists()


def test_dicom_seg_is_written_for_a_series_without_optional_patient_attributes(
    study, brain_model, tmp_path, capsys
):
    folder, files = study
    for path in files["t1c"]:
        _edit(path, PatientID=None, StudyDate=None, AccessionNumber=None)
    seg = tmp_path / "out" / "r.dcm"

    code, _, err, output = _segment(capsys, brain_model, folder, tmp_path, "--dicom-seg", seg)

    assert code == 0, err
    assert output.is_file()
    assert hd.seg.segread(seg).PatientID == ""


def test_dicom_seg_that_is_an_input_slice_is_refused(study, brain_model, tmp_path, capsys):
    folder, files = study
    slice_file = files["t1c"][0]
    before = digests([slice_file])
    code, _, err, _ = _segment(capsys, brain_model, folder, tmp_path, "--dicom-seg", slice_file)
    assert_one_line_error(code, err, "--dicom-seg", "is the input")
    assert digests([slice_file]) == before


@pytest.mark.parametrize(("shift_mm", "accepted"), [(20.0, True), (40.0, False)])
def test_inputs_on_grids_that_barely_overlap_are_refused(
    shift_mm, accepted, brain_case, brain_model, case_files, tmp_path, capsys
):
    """The FLAIR moved by ``shift_mm`` along the reference's first axis (64 mm wide): 20 mm
    keeps ~70 % overlap (resampled), 40 mm leaves ~40 % (refused)."""
    moved = brain_case.geometry.ijk_to_ras.copy()
    moved[:3, 3] += moved[:3, 0] / np.linalg.norm(moved[:3, 0]) * shift_mm
    flair = save_nifti(
        tmp_path / "moved-flair.nii.gz", brain_case.images["flair"].astype(np.int16), moved
    )
    output = tmp_path / "r.seg.nrrd"
    args = segment_args(brain_model.path, [case_files["t1c"], flair], output, "--device", "cpu")

    code, _, err = run_cli(capsys, *args)

    if accepted:
        assert code == 0, err
    else:
        assert_one_line_error(code, err, "'flair' does not overlap the reference enough")
        assert not output.exists()
