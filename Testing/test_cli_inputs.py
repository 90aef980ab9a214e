"""How ``python -m unetseg segment`` finds its inputs: case folders of image files, a lone input
for a single-input model, ``--map`` values, and matching errors that list what was found."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from Testing.case_files import BRATS_2023, save_nifti
from Testing.command_line import assert_one_line_error, run_cli, segment_args
from Testing.dicom_factory import writeDicomSeries
from Training.synth import brain_mri_case, lung_ct_case
from unetseg.untrained import lung_ct_manifest, untrained_package

LPS = np.diag([-1.0, -1.0, 1.0])


#: The shared ``brain_model`` fixture with a two-level network.
BRAIN_MODEL = {"filters": (4, 8)}


@pytest.fixture(scope="module")
def lung_model(tmp_path_factory):
    """The lung CT model (one input "ct", CT windowing) at 8 mm with small windows."""
    manifest = lung_ct_manifest((4, 8))
    manifest["spacing_mm"] = [8.0, 8.0, 8.0]
    manifest["patch_size"] = [32, 32, 32]
    return untrained_package(tmp_path_factory.mktemp("models") / "lung", manifest)


@pytest.fixture(scope="module")
def brain_case():
    return brain_mri_case(np.random.default_rng(6), (24, 24, 12), (2.0, 2.0, 3.0), layout="brats")


@pytest.fixture(scope="module")
def ct_case():
    return lung_ct_case(np.random.default_rng(2), 24, (8.0, 8.0, 8.0), canonical=True)


@pytest.fixture(scope="module")
def brats_folder(brain_case, tmp_path_factory) -> Path:
    """A BraTS 2023 case folder: ``<case>-t1c.nii.gz``, ``<case>-t2f.nii.gz``, ..."""
    folder = tmp_path_factory.mktemp("cases") / "BraTS-MET-00012-000"
    folder.mkdir()
    for name, suffix in BRATS_2023.items():
        path = folder / f"{folder.name}-{suffix}.nii.gz"
        save_nifti(path, brain_case.images[name], brain_case.geometry.ijk_to_ras, dtype=np.int16)
    return folder


@pytest.fixture(scope="module")
def dicom_folder(brain_case, tmp_path_factory) -> Path:
    """Series 3 "Ax 3D SPGR" (the T1c, a name that matches no input) and 4 "FLAIR"."""
    folder = tmp_path_factory.mktemp("dicom")
    geometry = brain_case.geometry
    for number, (name, description) in {3: ("t1c", "Ax 3D SPGR"), 4: ("flair", "FLAIR")}.items():
        writeDicomSeries(
            folder,
            brain_case.images[name],
            spacing=geometry.spacing,
            origin=LPS @ geometry.origin,
            direction=LPS @ geometry.direction,
            seriesDescription=description,
            seriesNumber=number,
            studyUID="1.2.826.0.1.3680043.8.498.11",
            frameOfReferenceUID="1.2.826.0.1.3680043.8.498.12",
        )
    return folder


def test_a_case_folder_of_nifti_files_is_matched_like_dicom_series(
    brain_model, brats_folder, tmp_path, capsys
):
    output = tmp_path / "case.seg.nrrd"

    code, out, err = run_cli(capsys, *segment_args(brain_model.path, [brats_folder], output))

    assert code == 0, err
    for name, suffix in BRATS_2023.items():
        assert (
            f"input {name}: {brats_folder / f'{brats_folder.name}-{suffix}.nii.gz'} (auto)" in out
        )
    assert output.is_file()


def test_outputs_written_into_the_case_folder_are_not_taken_as_inputs(
    lung_model, ct_case, tmp_path, capsys
):
    folder = tmp_path / "case"
    folder.mkdir()
    save_nifti(
        folder / "scan.nii.gz", ct_case.images["ct"], ct_case.geometry.ijk_to_ras, dtype=np.int16
    )
    args = segment_args(lung_model.path, [folder], folder / "lungs.nii.gz")

    for extra in ([], ["--overwrite"]):  # the rerun sees lungs.nii.gz in the folder
        code, out, err = run_cli(capsys, *args, *extra)
        assert code == 0, err
        assert f"input ct: {folder / 'scan.nii.gz'} (auto)" in out
        assert "not used" not in out


def test_a_single_input_model_takes_a_lone_input_whatever_its_name(
    lung_model, ct_case, tmp_path, capsys
):
    geometry = ct_case.geometry
    nifti = save_nifti(
        tmp_path / "scan_0001.nii.gz", ct_case.images["ct"], geometry.ijk_to_ras, dtype=np.int16
    )
    series = tmp_path / "series"
    writeDicomSeries(
        series,
        ct_case.images["ct"],
        spacing=geometry.spacing,
        origin=LPS @ geometry.origin,
        direction=LPS @ geometry.direction,
        modality="CT",
        seriesNumber=7,
        attributes={"SeriesDescription": None},
    )

    code, out, err = run_cli(capsys, *segment_args(lung_model.path, [nifti], tmp_path / "a.nii.gz"))
    assert (code, err) == (0, "")  # a CT: no plausibility warning
    assert f"input ct: {nifti} (auto)" in out

    code, out, err = run_cli(
        capsys, *segment_args(lung_model.path, [series], tmp_path / "b.nii.gz")
    )
    assert (code, err) == (0, "")
    assert f"input ct: {series} [series 7: '(no description)' CT] (auto)" in out


def series_uid(folder: Path, description: str) -> str:
    for path in folder.iterdir():
        header = pydicom.dcmread(path, stop_before_pixels=True)
        if header.SeriesDescription == description:
            return str(header.SeriesInstanceUID)
    raise AssertionError(description)


@pytest.mark.parametrize("kind", ["series_number", "description", "uid", "folder", "file_name"])
def test_map_accepts_a_series_number_description_uid_folder_or_file_name(
    kind, brain_model, brats_folder, dicom_folder, tmp_path, capsys
):
    """``--map`` chooses the T1c (by its series, a folder holding it, or a file name), and
    FLAIR is still found automatically."""
    inputs: list[Path] = [dicom_folder]
    value = {"series_number": "3", "description": "ax 3d SPGR"}.get(kind, "")
    if kind == "uid":
        value = series_uid(dicom_folder, "Ax 3D SPGR")
    elif kind == "folder":
        single = tmp_path / "t1c_only"
        single.mkdir()
        shutil.copy(brats_folder / f"{brats_folder.name}-t1c.nii.gz", single / "post.nii.gz")
        value = str(single)
    elif kind == "file_name":
        inputs = [brats_folder]
        value = f"{brats_folder.name}-t1n.nii.gz"  # T1 native, deliberately, as t1c

    code, out, err = run_cli(
        capsys,
        *segment_args(brain_model.path, inputs, tmp_path / "m.seg.nrrd"),
        "--map",
        f"t1c={value}",
    )

    assert code == 0, err
    mapped = next(line for line in out.splitlines() if "input t1c:" in line)
    assert mapped.endswith("(map)")
    if kind == "folder":
        assert f"input t1c: {tmp_path / 't1c_only' / 'post.nii.gz'} (map)" in out
    elif kind == "file_name":
        assert f"{brats_folder.name}-t1n.nii.gz (map)" in mapped
    else:
        assert "[series 3: 'Ax 3D SPGR' MR]" in mapped


def test_matching_errors_list_the_candidates_and_the_map_to_give(
    brain_model, brats_folder, dicom_folder, tmp_path, capsys
):
    renamed = tmp_path / "scan_a.nii.gz"
    shutil.copy(brats_folder / f"{brats_folder.name}-t2f.nii.gz", renamed)
    args = segment_args(brain_model.path, [renamed, dicom_folder], tmp_path / "x.seg.nrrd")

    code, _, err = run_cli(capsys, *args)

    assert_one_line_error(
        code,
        err,
        "Missing required input(s) 't1c' (T1 post-contrast",
        f"Found: {renamed}; DICOM series 3: Ax 3D SPGR [MR] in {dicom_folder}; "
        f"DICOM series 4: FLAIR [MR] in {dicom_folder}.",
        "--map t1c=PATH_OR_SERIES",
    )
    assert "by hand" not in err and "rename" not in err

    code, _, err = run_cli(capsys, *args, "--map", "t1c=9")

    assert_one_line_error(code, err, "--map t1c=9: no file or DICOM series match(es) it")
    assert "DICOM series 4: FLAIR [MR]" in err and str(renamed) in err


def test_an_empty_folder_is_refused_with_what_was_looked_for(brain_model, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")

    code, _, err = run_cli(
        capsys, *segment_args(brain_model.path, [empty], tmp_path / "e.seg.nrrd")
    )

    assert_one_line_error(code, err, "No image files (.nii.gz", "or DICOM image series found")


HU_WARNING = "input ct: its intensities do not look like CT Hounsfield units (minimum 0,"


def test_a_ct_model_on_an_mr_volume_warns_and_strict_refuses_it(
    lung_model, brain_case, tmp_path, capsys
):
    mr = save_nifti(
        tmp_path / "chest.nii.gz",
        brain_case.images["t1c"],
        brain_case.geometry.ijk_to_ras,
        dtype=np.int16,
    )
    summary = tmp_path / "w.json"
    args = segment_args(lung_model.path, [mr], tmp_path / "w.seg.nrrd")

    code, out, err = run_cli(capsys, *args, "--summary", summary)

    assert code == 0
    (line,) = err.strip().splitlines()
    assert line.startswith(f"warning: {HU_WARNING}")
    assert json.loads(summary.read_text())["warnings"] == [line.removeprefix("warning: ")]
    assert "warning" not in out

    strict = segment_args(lung_model.path, [mr], tmp_path / "s.seg.nrrd")
    code, _, err = run_cli(capsys, *strict, "--strict")

    assert_one_line_error(code, err, HU_WARNING, "(refused by --strict)")
    assert not (tmp_path / "s.seg.nrrd").exists()


def test_an_mr_dicom_series_for_a_ct_model_names_its_modality(
    lung_model, dicom_folder, tmp_path, capsys
):
    args = segment_args(lung_model.path, [dicom_folder], tmp_path / "m.seg.nrrd")

    code, out, err = run_cli(capsys, *args, "--map", "ct=FLAIR", "-q")

    assert (code, out) == (0, "")
    modality, intensities = err.splitlines()
    assert modality == "warning: input ct: its DICOM Modality is MR, the model is for CT images"
    assert intensities.startswith(f"warning: {HU_WARNING}")


def test_segment_batch_strict_fails_only_the_implausible_case(
    lung_model, brain_case, ct_case, tmp_path, capsys
):
    root = tmp_path / "cases"
    for name, case, image in (("ct", ct_case, "ct"), ("mr", brain_case, "t1c")):
        (root / name).mkdir(parents=True)
        save_nifti(
            root / name / "scan.nii.gz",
            case.images[image],
            case.geometry.ijk_to_ras,
            dtype=np.int16,
        )
    out = tmp_path / "out"
    args = ["segment-batch", "--model", lung_model.path, "--input-dir", root, "--output-dir", out]

    code, _, err = run_cli(capsys, *args, "--strict")

    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith(f"case mr: failed: {HU_WARNING}") and "--strict" in line
    with (out / "summary.csv").open(newline="") as stream:
        rows = {row["case"]: row for row in csv.DictReader(stream)}
    assert (rows["ct"]["status"], rows["ct"]["warnings"]) == ("ok", "")
    assert rows["mr"]["status"] == "failed" and HU_WARNING in rows["mr"]["error"]

    code, _, err = run_cli(capsys, *args)  # without --strict: segmented, with the warning

    assert code == 0
    assert err.strip().splitlines()[0].startswith(f"warning: case mr: {HU_WARNING}")
    with (out / "summary.csv").open(newline="") as stream:
        rows = {row["case"]: row for row in csv.DictReader(stream)}
    assert rows["mr"]["status"] == "ok" and rows["mr"]["warnings"].startswith(HU_WARNING)
