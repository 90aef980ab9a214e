"""``python -m unetseg segment-batch``: many cases with one model, a bad case reported and
skipped, a summary CSV, and reruns that skip finished cases."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import slicerio

from Testing.case_files import BRATS_2023
from Testing.command_line import run_cli
from Testing.runners import TORCH_CPU
from Training.synth import brain_mri_case
from unetseg.host import cases, logic

SEGMENTS = ("Non-enhancing tumor core", "Edema", "Enhancing tumor")


#: The shared ``brain_model`` fixture with a two-level network.
BRAIN_MODEL = {"filters": (4, 8)}


def write_case(folder: Path, seed: int) -> Path:
    """A BraTS 2023 case folder (four NIfTI files) named ``folder``."""
    case = brain_mri_case(
        np.random.default_rng(seed), (24, 24, 12), (2.0, 2.0, 3.0), layout="brats"
    )
    folder.mkdir(parents=True)
    for name, suffix in BRATS_2023.items():
        image = np.rint(case.images[name]).astype(np.int16).transpose(2, 1, 0)
        nib.save(nib.Nifti1Image(image, case.geometry.ijk_to_ras), folder / f"x-{suffix}.nii.gz")
    return folder


@pytest.fixture
def input_dir(tmp_path) -> Path:
    """Cases "a" and "c", and "b" whose T1c is a truncated NIfTI file."""
    root = tmp_path / "cases"
    for seed, name in enumerate("abc"):
        write_case(root / name, seed)
    broken = root / "b" / "x-t1c.nii.gz"
    broken.write_bytes(broken.read_bytes()[:300])
    return root


def read_summary(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as stream:
        return {row["case"]: row for row in csv.DictReader(stream)}


def batch_args(model, input_dir: Path, out: Path) -> list:
    return ["segment-batch", "--model", model.path, "--input-dir", input_dir, "--output-dir", out]


def test_a_bad_case_is_reported_and_skipped_and_a_rerun_resumes(
    brain_model, input_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    args = batch_args(brain_model, input_dir, out)

    code, stdout, err = run_cli(capsys, *args, "--device", "cpu")

    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith(f"case b: failed: '{input_dir / 'b' / 'x-t1c.nii.gz'}' is damaged")
    assert "case a: done in" in stdout and "case c: done in" in stdout
    assert "3 cases: 2 segmented, 0 skipped (outputs exist), 1 failed" in stdout
    summary = read_summary(out / "summary.csv")
    assert list(summary) == ["a", "b", "c"]
    assert [row["status"] for row in summary.values()] == ["ok", "failed", "ok"]
    assert "x-t1c.nii.gz" in summary["b"]["error"] and summary["b"]["Edema (mL)"] == ""
    for name in "ac":
        seg = slicerio.read_segmentation(str(out / f"{name}.seg.nrrd"))
        assert [s["name"] for s in seg["segments"]] == list(SEGMENTS)
        report = json.loads((out / f"{name}.summary.json").read_text())
        volumes = {s["name"]: s["volume_ml"] for s in report["statistics"]["segments"]}
        assert {k: float(summary[name][f"{k} (mL)"]) for k in SEGMENTS} == pytest.approx(volumes)
        assert float(summary[name]["seconds"]) == report["timings_s"]["total"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["summary.csv", "a.seg.nrrd", "a.summary.json", "c.seg.nrrd", "c.summary.json"]
    )

    finished = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "summary.csv"}
    code, stdout, err = run_cli(capsys, *args, "--device", "cpu")

    assert code == 1 and "case b: failed" in err
    assert "case a: skipped, outputs exist" in stdout and "case c: skipped" in stdout
    assert {name: (out / name).stat().st_mtime_ns for name in finished} == finished
    rerun = read_summary(out / "summary.csv")
    assert [row["status"] for row in rerun.values()] == ["skipped", "failed", "skipped"]
    assert rerun["a"]["Edema (mL)"] == summary["a"]["Edema (mL)"]

    shutil.rmtree(input_dir / "b")
    write_case(input_dir / "b", 1)  # repaired
    code, stdout, err = run_cli(capsys, *args, "--device", "cpu", "-q")

    assert (code, stdout, err) == (0, "", "")
    statuses = [row["status"] for row in read_summary(out / "summary.csv").values()]
    assert statuses == ["skipped", "ok", "skipped"]


def test_an_output_dir_inside_the_input_dir_is_no_case(brain_model, tmp_path, capsys):
    root = tmp_path / "cases"
    write_case(root / "a", 0)
    out = root / "results"

    for _ in range(2):  # the second run sees results/ in the input folder
        code, stdout, err = run_cli(capsys, *batch_args(brain_model, root, out), "--device", "cpu")
        assert code == 0, err
        assert "1 case:" in stdout and "case results" not in stdout


def test_the_network_is_loaded_once_for_the_batch(brain_model, tmp_path, monkeypatch):
    loaded = []

    class CountingSegmenter(logic.Segmenter):
        def __init__(self, *args, **kwargs) -> None:
            loaded.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(logic, "Segmenter", CountingSegmenter)
    found = [cases.Case(n, (write_case(tmp_path / n, seed),)) for seed, n in enumerate("xyz")]

    rows = cases.segmentCases(brain_model, found, tmp_path / "out", options=TORCH_CPU)

    assert [row["status"] for row in rows] == ["ok", "ok", "ok"]
    assert len(loaded) == 1


def test_a_case_finished_without_uncertainty_is_not_taken_as_finished_with_it(
    brain_model, tmp_path
):
    """Like ``--statistics`` added on a rerun: the missing file makes the case unfinished, and
    its existing outputs need ``overwrite``."""
    found = [cases.Case("a", (write_case(tmp_path / "a", 0),))]
    out = tmp_path / "out"
    uncertain = TORCH_CPU.with_changes(uncertainty=True)

    (first,) = cases.segmentCases(brain_model, found, out, options=TORCH_CPU)
    (refused,) = cases.segmentCases(brain_model, found, out, options=uncertain)
    (again,) = cases.segmentCases(brain_model, found, out, options=uncertain, overwrite=True)
    (finished,) = cases.segmentCases(brain_model, found, out, options=uncertain)

    assert first["status"] == "ok" and refused["status"] == "failed"
    assert "--overwrite" in refused["error"]
    assert (again["status"], finished["status"]) == ("ok", "skipped")
    assert (out / "a.uncertainty.nrrd").is_file()


def test_a_csv_of_cases_with_nifti_outputs_and_statistics(brain_model, tmp_path, capsys):
    """Relative paths are relative to the CSV; the "t1c" column chooses the T1c input of a
    file whose name matches nothing."""
    folder = write_case(tmp_path / "data" / "p1", 3)
    (folder / "x-t1c.nii.gz").rename(folder / "post.nii.gz")
    table = tmp_path / "data" / "cases.csv"
    table.write_text(
        "case_id,t1c,other\n"
        "p1,p1/post.nii.gz,p1\n"
        f"p2,{folder / 'post.nii.gz'},{folder / 'x-t2f.nii.gz'}\n"
    )
    out = tmp_path / "out"

    code, stdout, err = run_cli(
        capsys,
        "segment-batch",
        "--model",
        brain_model.path,
        "--cases",
        table,
        "--output-dir",
        out,
        "--output-format",
        "nii.gz",
        "--statistics",
        "--device",
        "cpu",
    )

    assert code == 0, err
    assert "2 cases: 2 segmented" in stdout
    for case in ("p1", "p2"):
        labels = nib.load(out / f"{case}.nii.gz")
        assert labels.shape == nib.load(folder / "post.nii.gz").shape
        assert json.loads((out / f"{case}.json").read_text())["file"] == f"{case}.nii.gz"
        report = json.loads((out / f"{case}.summary.json").read_text())
        assert report["inputs"]["t1c"] == {"path": str(folder / "post.nii.gz"), "matched": "map"}
        assert (out / f"{case}_statistics.csv").is_file()
        assert (out / f"{case}_statistics_lesions.csv").is_file()
    assert "t1" not in json.loads((out / "p2.summary.json").read_text())["inputs"]


@pytest.mark.parametrize(
    ("table", "phrases"),
    [
        ("case,input\np1,a.nii.gz\n", ("no 'case_id' column",)),
        ("case_id,input\np1,\n", ("line 2: a case needs a case_id and inputs",)),
        ("case_id,input\np1,a.nii.gz\np1,b.nii.gz\n", ("case id 'p1' is given twice",)),
        ("case_id,input\n../p1,a.nii.gz\n", ("case id '../p1' cannot name output files",)),
    ],
)
def test_bad_case_lists_are_refused_before_the_model_is_loaded(table, phrases, tmp_path, capsys):
    path = tmp_path / "cases.csv"
    path.write_text(table)

    code, _, err = run_cli(
        capsys,
        "segment-batch",
        "--model",
        "no-such-model",
        "--cases",
        path,
        "--output-dir",
        tmp_path,
    )

    assert code == 2
    assert err.startswith("unetseg segment-batch: error: ") and len(err.strip().splitlines()) == 1
    assert all(phrase in err for phrase in phrases)


def test_an_input_dir_without_case_folders_is_refused(tmp_path, capsys):
    (tmp_path / "loose.nii.gz").write_bytes(b"")

    code, _, err = run_cli(
        capsys, "segment-batch", "--model", "m", "--input-dir", tmp_path, "--output-dir", tmp_path
    )

    assert code == 2 and "has no sub-folder: one case per sub-folder" in err
