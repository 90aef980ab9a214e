"""The command line ``python -m unetseg`` (in-process and as a subprocess) and the Slicer batch
script ``unetseg/scripts/slicer_segment.py``.

Errors must come back as exit code 2 with one clear line on stderr, before any output is written.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import slicerio

from Testing.case_files import small_brain_model
from Testing.command_line import assert_one_line_error, run_cli, segment_args
from Training.synth import brain_mri_case
from unetseg.cli import main
from unetseg.cli import segment as segment_command
from unetseg.untrained import lung_cxr_manifest, untrained_package

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "unetseg" / "scripts" / "slicer_segment.py"


@pytest.mark.parametrize(
    ("case", "phrases"),
    [
        ("missing_required", ("Missing required input", "'flair'", "*flair*")),
        ("nonexistent_path", ("Input not found", "nope.nii.gz")),
        ("corrupt_nifti", ("Cannot read", "broken-t1c.nii.gz")),
        ("wrong_output_suffix", ("must end with .seg.nrrd, .nii.gz or .nii", "out.mha")),
        ("malformed_map", ("--map expects INPUT=PATH_OR_SERIES",)),
        ("map_unknown_input", ("unknown input 'dwi'",)),
        ("map_names_nothing", ("--map flair=Sag FLAIR", "no file or DICOM series")),
        ("dicom_seg_without_dicom", ("--dicom-seg", "DICOM series")),
        ("unknown_model", ("No model 'no-such-model'",)),
    ],
)
def test_errors_are_one_line_with_exit_code_2(
    case, phrases, brain_model, brats_files, tmp_path, capsys
):
    inputs = list(brats_files.values())
    output = tmp_path / "out.seg.nrrd"
    model = brain_model.path
    extra: list[str] = []
    if case == "missing_required":
        inputs = [brats_files["t1c"], brats_files["t2"]]
    elif case == "nonexistent_path":
        inputs.append(tmp_path / "nope.nii.gz")
    elif case == "corrupt_nifti":
        broken = tmp_path / "broken-t1c.nii.gz"
        broken.write_bytes(b"this is not a NIfTI file" * 20)
        inputs = [broken, brats_files["flair"]]
    elif case == "wrong_output_suffix":
        output = tmp_path / "out.mha"
    elif case == "malformed_map":
        extra = ["--map", "t1c"]
    elif case == "map_unknown_input":
        extra = ["--map", f"dwi={brats_files['t2']}"]
    elif case == "map_names_nothing":
        extra = ["--map", "flair=Sag FLAIR"]
    elif case == "dicom_seg_without_dicom":
        extra = ["--dicom-seg", str(tmp_path / "out.dcm")]
    elif case == "unknown_model":
        model = "no-such-model"

    code, _, err = run_cli(capsys, *segment_args(model, inputs, output), *extra)

    assert_one_line_error(code, err, *phrases)
    assert not output.exists()


def test_map_assigns_files_whose_names_match_nothing(brain_model, brats_files, tmp_path, capsys):
    post, dark = tmp_path / "scan_a.nii.gz", tmp_path / "scan_b.nii.gz"
    shutil.copy(brats_files["t1c"], post)
    shutil.copy(brats_files["flair"], dark)
    output = tmp_path / "mapped.seg.nrrd"

    code, _, err = run_cli(capsys, *segment_args(brain_model.path, [post, dark], output))
    assert_one_line_error(code, err, "'t1c'", "'flair'")

    code, out, err = run_cli(
        capsys,
        *segment_args(brain_model.path, [post, dark], output),
        "--map",
        f"t1c={post}",
        f"flair={dark}",
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert f"input t1c: {post} (map)" in out and f"input flair: {dark} (map)" in out
    assert "input t1: MISSING (optional; result flagged)" in out
    assert output.is_file()


def test_fast_option_runs_and_is_recorded_in_the_summary(
    brain_model, brats_files, tmp_path, capsys
):
    output, summary = tmp_path / "fast.seg.nrrd", tmp_path / "fast.json"
    args = segment_args(brain_model.path, brats_files.values(), output)

    code, _, err = run_cli(capsys, *args, "--fast", "--device", "cpu", "--summary", summary)

    assert code == 0, err
    report = json.loads(summary.read_text())
    assert report["options"]["fast"] is True
    seg = slicerio.read_segmentation(str(output))
    assert [s["name"] for s in seg["segments"]] == [label.name for label in brain_model.labels]
    reference = nib.load(brats_files["t1c"])
    assert seg["voxels"].shape == reference.shape


def test_models_lists_packages_of_extra_folders(brain_model, tmp_path, capsys):
    folder = brain_model.path.parent
    untrained_package(folder / "cxr", lung_cxr_manifest((4, 8)))
    (folder / "broken").mkdir(exist_ok=True)
    (folder / "broken" / "model.json").write_text("{not json")

    code, out, err = run_cli(capsys, "models", "--path", folder)

    assert code == 0
    assert f"{brain_model.id} {brain_model.version}" in out and str(brain_model.path) in out
    assert "demo-lung-cxr-untrained 0.0.1" in out and "[DX; cxr]" in out
    assert "skipped invalid package" in err and "broken" in err
    code, out, _ = run_cli(capsys, "models", "--path", folder, "--json")
    listed = {entry["id"]: entry for entry in json.loads(out)}
    assert listed[brain_model.id]["path"] == str(brain_model.path)
    assert [i["name"] for i in listed[brain_model.id]["inputs"]] == ["t1c", "flair", "t1", "t2"]


def test_models_info_prints_the_card_or_the_manifest(tmp_path, capsys):
    package = untrained_package(tmp_path / "cxr", lung_cxr_manifest((4, 8)))

    code, out, err = run_cli(capsys, "models", "info", package.id, "--path", tmp_path)

    assert code == 0, err
    assert out.splitlines()[:4] == [
        "# Lungs on chest X-ray (UNTRAINED demo network) - `demo-lung-cxr-untrained` 0.0.1",
        "",
        "Licence: Apache-2.0",
        "Intended use: Software testing only: untrained, its output is meaningless.",
    ]
    assert "Labels: 1 Lungs" in out and f"Model folder: {package.path}" in out

    card = "# A card\n\n## Intended use\nResearch only.\n"
    (package.path / "MODEL_CARD.md").write_text(card)
    code, out, _ = run_cli(capsys, "models", "info", str(package.path))

    assert code == 0
    assert out == f"{card}\nModel folder: {package.path}\n"

    code, _, err = run_cli(capsys, "models", "info", "no-such-model", "--path", tmp_path)

    assert code == 2 and err.startswith("unetseg models: error: No model 'no-such-model'")
    assert f"{package.id}@{package.version}" in err


def _environment() -> dict[str, str]:
    """This interpreter's environment without PYTHONPATH: the code must find the package."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def _run_python(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` with this interpreter in a subprocess (``env`` None: this process's
    environment), its output captured as text."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_python_m_unetseg_segment_in_a_subprocess(brain_model, brats_files, tmp_path):
    output, summary = tmp_path / "sub.seg.nrrd", tmp_path / "sub.json"
    args = segment_args(brain_model.path, brats_files.values(), output)

    done = _run_python("-m", "unetseg", *args, "--summary", str(summary))

    assert done.returncode == 0, done.stderr
    assert "Enhancing tumor:" in done.stdout
    seg = slicerio.read_segmentation(str(output))
    assert [s["name"] for s in seg["segments"]] == [label.name for label in brain_model.labels]
    report = json.loads(summary.read_text())
    assert set(report["inputs"]) == {"t1c", "flair", "t1", "t2"}


NO_SLICER = "import sys\nsys.modules['slicer'] = None  # import slicer: ImportError\n"


@pytest.mark.parametrize("command", ["segment", "segment-batch", "demo"])
def test_without_slicer_core_the_cli_says_what_to_install(
    command, brain_model, brats_files, tmp_path
):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(NO_SLICER)
    case = tmp_path / "cases" / "case-1"
    case.mkdir(parents=True)
    for path in brats_files.values():
        shutil.copy(path, case)
    args = {
        "segment": segment_args(brain_model.path, brats_files.values(), tmp_path / "o.seg.nrrd"),
        "segment-batch": [
            "segment-batch",
            "--model",
            str(brain_model.path),
            "--input-dir",
            str(case.parent),
            "--output-dir",
            str(tmp_path / "b"),
        ],
        "demo": ["demo", "--out", str(tmp_path / "demo")],
    }[command]

    done = _run_python(
        "-m", "unetseg", *args, env=_environment() | {"PYTHONPATH": str(shim)}, timeout=120
    )

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"unetseg {command}: error: this command needs Slicer's MRML")
    assert "pip install slicer-core" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "o.seg.nrrd").exists()


@pytest.mark.parametrize(("extra", "hinted"), [([], True), (["--fast"], False), (["-q"], False)])
def test_a_slow_cpu_run_suggests_fast(
    extra, hinted, brain_model, brats_files, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(segment_command, "SLOW_INFERENCE_S", 0.0)
    args = segment_args(brain_model.path, brats_files.values(), tmp_path / "h.seg.nrrd")

    code, _, err = run_cli(capsys, *args, "--device", "cpu", *extra)

    assert code == 0, err
    hints = [line for line in err.splitlines() if line.startswith("hint: ")]
    assert len(hints) == int(hinted), err
    if hinted:
        assert "on the CPU" in hints[0] and "--fast" in hints[0] and "GPU" in hints[0]


def test_a_quick_cpu_run_gives_no_hint(brain_model, brats_files, tmp_path, capsys):
    args = segment_args(brain_model.path, brats_files.values(), tmp_path / "n.seg.nrrd")

    code, _, err = run_cli(capsys, *args, "--device", "cpu")

    assert code == 0 and "hint:" not in err, err


@pytest.mark.slow
def test_slicer_script_runs_the_same_command(brain_model, brats_files, tmp_path):
    """Fake of the Slicer launcher: ``Slicer --python-script SCRIPT -- ARGS`` runs SCRIPT as
    ``__main__`` with ``sys.argv = [SCRIPT, "--", *ARGS]``; plain Python on slicer-core does the
    same here (no ``slicer.app``, so the script leaves through ``sys.exit``)."""
    output = tmp_path / "slicer.seg.nrrd"
    args = segment_args(brain_model.path, [brats_files["t1c"], brats_files["flair"]], output)

    done = _run_python(
        str(SCRIPT), "--", *args, "--device", "cpu", cwd=tmp_path, env=_environment()
    )

    assert done.returncode == 0, done.stderr
    assert "input t2: MISSING (optional; result flagged)" in done.stdout
    seg = slicerio.read_segmentation(str(output))
    assert len(seg["segments"]) == len(brain_model.labels)

    listed = _run_python(  # without "--" every argument is passed on
        str(SCRIPT), "models", "--path", str(brain_model.path), cwd=tmp_path, env=_environment()
    )
    assert listed.returncode == 0, listed.stderr
    assert f"{brain_model.id} {brain_model.version}" in listed.stdout


@pytest.mark.slow
def test_demo_segments_every_sample_with_its_bundled_model(tmp_path, capsys):
    from PIL import Image

    from unetseg.engine.registry import default_search_paths, list_models, resolve_model
    from unetseg.sampledata import list_samples

    bundled = {package.id for package in list_models(default_search_paths()[:1])}
    assert bundled, "no bundled model in unetseg/models"
    code, out, err = run_cli(capsys, "demo", "--out", tmp_path, "--device", "cpu")
    assert code == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    expected = [s.id for s in list_samples() if s.model in bundled]
    assert [entry["sample"] for entry in summary] == expected
    for sample in list_samples():
        if sample.model not in bundled:
            assert f"{sample.id}: model {sample.model!r} is not installed, skipped" in out
    for entry in summary:
        model = resolve_model(entry["model"]["id"])
        seg = slicerio.read_segmentation(str(tmp_path / f"{entry['sample']}.seg.nrrd"))
        assert [s["name"] for s in seg["segments"]] == [label.name for label in model.labels]
        assert all(row["voxel_count"] > 0 for row in entry["statistics"]["segments"])
        montage = np.asarray(Image.open(tmp_path / f"{entry['sample']}.png").convert("L"))
        assert montage.std() > 20  # an image, not a blank page
        assert entry["sample"] in out


def test_version_prints_the_package_version(capsys):
    import unetseg

    with pytest.raises(SystemExit) as done:
        main(["--version"])

    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"unetseg {unetseg.__version__}"


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["segment", "--help"])

    out = " ".join(capsys.readouterr().out.split())
    assert "--device {auto,cpu,cuda} where the network runs (default: auto)" in out
    assert "-q, --quiet" in out and "-v, --verbose" in out
    assert "default: None" not in out and "default: False" not in out


@pytest.mark.parametrize(
    ("extra", "phrases"),
    [
        (["--map", "t1c"], ("--map expects INPUT=PATH_OR_SERIES",)),
        (["--dicom-seg", "out.dcm"], ("--dicom-seg", "DICOM folder")),
        (["--statistics", "out.txt"], ("--statistics must end with .csv",)),
        (["--preview", "out.jpg"], ("--preview must end with .png",)),
        (["--overlap", "1.5"], ("--overlap must be in [0, 0.95]",)),
    ],
)
def test_argument_errors_come_before_the_model_and_inputs(extra, phrases, tmp_path, capsys):
    """The model does not exist and the input is no image: the argument is reported first."""
    not_an_image = tmp_path / "t1c.nii.gz"
    not_an_image.write_bytes(b"not read")
    args = segment_args("no-such-model", [not_an_image], tmp_path / "o.seg.nrrd")

    code, _, err = run_cli(capsys, *args, *extra)

    assert_one_line_error(code, err, *phrases)


def test_bad_arguments_are_refused_before_slicer_or_torch_is_imported(tmp_path):
    args = segment_args("no-such-model", [tmp_path / "x.nii.gz"], tmp_path / "o.mha")
    done = _run_python("-X", "importtime", "-m", "unetseg", *args, timeout=120)

    assert done.returncode == 2
    assert "--output must end with .seg.nrrd" in done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "unetseg.cli" in imported
    assert not {"slicer", "torch", "unetseg.host.batch"} & imported


def test_quiet_prints_nothing_and_still_writes(brain_model, brats_files, tmp_path, capsys):
    output = tmp_path / "q.nii.gz"

    code, out, err = run_cli(
        capsys, *segment_args(brain_model.path, brats_files.values(), output), "-q"
    )

    assert code == 0 and out == "" and err == ""
    assert nib.load(output).shape == nib.load(brats_files["t1c"]).shape


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory) -> Path:
    """T1c and FLAIR of a synthetic case as two DICOM series in one folder."""
    from Testing.dicom_factory import writeDicomSeries

    case = brain_mri_case(np.random.default_rng(5), (24, 24, 12), (2.0, 2.0, 3.0), layout="brats")
    folder = tmp_path_factory.mktemp("dicom")
    lps = np.diag([-1.0, -1.0, 1.0])
    for number, (name, description) in enumerate({"t1c": "T1 post", "flair": "FLAIR"}.items()):
        writeDicomSeries(
            folder,
            case.images[name],
            spacing=case.geometry.spacing,
            origin=lps @ case.geometry.origin,
            direction=lps @ case.geometry.direction,
            seriesDescription=description,
            seriesNumber=number + 1,
            studyUID="1.2.826.0.1.3680043.8.498.1",
            frameOfReferenceUID="1.2.826.0.1.3680043.8.498.2",
        )
    return folder


@pytest.mark.parametrize("verbose", [False, True])
def test_highdicom_logs_only_with_verbose(
    verbose, brain_model, dicom_case, tmp_path, capsys, caplog
):
    caplog.set_level(logging.INFO)
    args = segment_args(brain_model.path, [dicom_case], tmp_path / "d.seg.nrrd")
    args += ["--dicom-seg", tmp_path / "d.dcm", "--device", "cpu"] + (["-v"] if verbose else [])

    code, _, err = run_cli(capsys, *args)

    assert code == 0, err
    from_highdicom = [r for r in caplog.records if r.name.startswith("highdicom")]
    assert bool(from_highdicom) == verbose
    assert logging.getLogger("highdicom").level == logging.NOTSET  # restored after the run


def test_without_highdicom_dicom_seg_says_what_to_install(
    brain_model, dicom_case, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "highdicom", None)  # import highdicom: ImportError
    output = tmp_path / "d.seg.nrrd"
    args = segment_args(brain_model.path, [dicom_case], output)

    code, _, err = run_cli(capsys, *args, "--dicom-seg", tmp_path / "d.dcm")

    assert_one_line_error(code, err, "--dicom-seg needs highdicom", "pip install highdicom")
    assert not output.exists()


def test_summary_numbers_are_rounded(brain_model, brats_files, tmp_path, capsys):
    summary = tmp_path / "s.json"
    args = segment_args(brain_model.path, brats_files.values(), tmp_path / "s.seg.nrrd")

    code, out, err = run_cli(capsys, *args, "--summary", summary, "--device", "cpu")

    assert code == 0, err
    report = json.loads(summary.read_text())
    assert all(round(t, 2) == t for t in report["timings_s"].values())
    assert all(round(s["volume_ml"], 1) == s["volume_ml"] for s in report["statistics"]["segments"])
    lesion = report["statistics"]["lesions"][0]
    assert round(lesion["volume_mm3"], 1) == lesion["volume_mm3"]
    assert all(round(c, 2) == c for c in lesion["centroid_ras"])
    timings = next(line for line in out.splitlines() if "timings:" in line)
    assert all(len(t.split(".")[-1]) == 3 for t in timings.split(", "))  # "1.23s"


class Terminal(io.StringIO):
    """A captured stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def small_patch_model(tmp_path_factory):
    """The brain model with 16^3 windows: several windows per case."""
    return small_brain_model(tmp_path_factory.mktemp("models") / "small", filters=(4, 8), patch=16)


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_of_the_windows_on_a_terminal(
    quiet, small_patch_model, brats_files, tmp_path, monkeypatch, capsys
):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    args = segment_args(small_patch_model.path, brats_files.values(), tmp_path / "p.seg.nrrd")

    code = main([*map(str, args), "--device", "cpu", *(["-q"] if quiet else [])])

    assert code == 0, terminal.getvalue()
    if quiet:
        assert terminal.getvalue() == ""
        return
    output = terminal.getvalue()
    states = re.findall(r"windows: +(\d+)%\|.*?\| (\d+)/(\d+)", output)
    assert states[0][:2] == ("0", "0") and states[-1][0] == "100"
    done, total = states[-1][1:]
    assert done == total and int(total) > 1
    # Stage lines around the bar, in order: loading, segmenting (the bar), writing.
    stages = [output.index(f"{name}...\n") for name in ("loading inputs", "segmenting")]
    writing = output.index("writing outputs...\n")
    assert stages[0] < stages[1] < output.index("windows:") < writing
