"""One error policy for both command lines: every failure is one line and exit code 2
(``--debug`` shows the traceback), resource limits are checked before allocation, and
SIGINT/SIGTERM stop a run within seconds with exit code 130 and no output."""

from __future__ import annotations

import signal
import time

import nibabel as nib
import numpy as np
import pytest

import Training.commands.export as export_command
import unetseg.host.batch as batch
from Testing.command_line import assert_one_line_error, run_cli, segment_args
from Testing.faults.support import (
    digests,
    hidden_files,
    ignore_sigint,
    start_child,
    visible_files,
    wait_for_marker,
)
from Training.cli import main as training_main
from Training.synth import brain_mri_case
from unetseg.untrained import brain_mri_manifest, untrained_package

#: Seconds a run may take to stop after SIGINT/SIGTERM on a loaded shared CPU (about 1 s idle).
STOP_LIMIT_S = 15


@pytest.fixture(scope="module")
def slow_run(tmp_path_factory):
    """A case with many windows (1 mm, 64 x 96 x 96) and its model: inference takes long."""
    folder = tmp_path_factory.mktemp("slow")
    manifest = brain_mri_manifest((8, 16, 32), patch_size=(32, 32, 32))
    manifest["spacing_mm"] = [1.0, 1.0, 1.0]
    model = untrained_package(folder / "model", manifest)
    case = brain_mri_case(np.random.default_rng(4), (96, 96, 64), (1.0, 1.0, 1.0), layout="brats")
    files = []
    for name in ("t1c", "flair"):
        files.append(folder / f"case-{name}.nii.gz")
        image = case.images[name].transpose(2, 1, 0).astype(np.int16)
        nib.save(nib.Nifti1Image(image, case.geometry.ijk_to_ras), files[-1])
    return model, files


def _with_manifest(tmp_path, **changes):
    manifest = brain_mri_manifest((4, 8, 16), patch_size=(32, 32, 32))
    manifest.update(changes)
    return untrained_package(tmp_path / "model", manifest)


@pytest.mark.parametrize(
    ("changes", "phrases"),
    [
        ({"spacing_mm": [0.001, 0.001, 0.001]}, ("spacing_mm [0.001, 0.001, 0.001]", "GiB")),
        ({"patch_size": [2048, 2048, 2048]}, ("patch_size [2048, 2048, 2048]", "GiB")),
    ],
)
def test_manifest_that_needs_too_much_memory_is_refused_before_allocation(
    changes, phrases, case_files, tmp_path, capsys
):
    model = _with_manifest(tmp_path, **changes)
    output = tmp_path / "r.seg.nrrd"
    args = segment_args(model.path, case_files.values(), output, "--device", "cpu")

    code, _, err = run_cli(capsys, *args)

    assert_one_line_error(code, err, "would need at least", *phrases)
    assert not output.exists()


def test_unexpected_error_is_one_line_and_debug_shows_the_traceback(
    brain_model, case_files, tmp_path, capsys, monkeypatch
):
    def broken(paths, exclude=()):
        raise KeyError("")  # as highdicom did on an empty SOPClassUID

    monkeypatch.setattr(batch, "findSources", broken)
    args = segment_args(brain_model.path, case_files.values(), tmp_path / "r.seg.nrrd")

    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, "unexpected KeyError: ''", "rerun with --debug")

    code, _, err = run_cli(capsys, *args, "--debug")
    assert code == 2
    assert "Traceback (most recent call last)" in err and "in broken" in err
    assert err.strip().splitlines()[-1] == "unetseg segment: error: unexpected KeyError: ''"


def test_memory_error_is_one_line(brain_model, case_files, tmp_path, capsys, monkeypatch):
    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(batch.SegmentationLogic, "run", exhausted)
    args = segment_args(brain_model.path, case_files.values(), tmp_path / "r.seg.nrrd")
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, "out of memory (nothing was written)")
    assert not (tmp_path / "r.seg.nrrd").exists()


def test_training_command_line_follows_the_same_policy(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("best")

    monkeypatch.setattr(export_command, "export_run", broken)
    code = training_main(["export", "--run", str(tmp_path), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, "unexpected KeyError: 'best'", prefix="python -m Training")


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_inference_stops_at_once_without_output(number, slow_run, tmp_path):
    """The child ignores SIGINT on entry, as a background job of a script does; the command
    line still stops on it."""
    model, files = slow_run
    out = tmp_path / "out"
    out.mkdir()
    old = {out / "r.seg.nrrd": b"old result", out / "r.json": b"{}"}
    for path, data in old.items():
        path.write_bytes(data)
    args = segment_args(model.path, files, out / "r.seg.nrrd", "--summary", out / "r.json")
    marker = tmp_path / "marker"
    process = start_child(
        "mark-inference",
        marker,
        "unetseg",
        *args,
        "--overwrite",
        "--device",
        "cpu",
        preexec_fn=ignore_sigint,
    )
    wait_for_marker(process, marker)  # the first window is done
    sent = time.monotonic()
    process.send_signal(number)
    _, err = process.communicate(timeout=600)
    stopped_after = time.monotonic() - sent
    print(f"stopped {stopped_after:.2f} s after {signal.Signals(number).name}")

    assert process.returncode == 130, err
    assert stopped_after < STOP_LIMIT_S
    assert err.strip().splitlines()[-1] == (
        f"unetseg segment: interrupted ({signal.Signals(number).name}); outputs left as they were"
    )
    assert {path: path.read_bytes() for path in old} == old
    assert visible_files(out) == {"r.seg.nrrd", "r.json"} and hidden_files(out) == set()
    assert digests(files)  # inputs still readable
