"""Outputs are replaced atomically: kill -9 at several points of the write, a full disk (file
size limit), and exceptions leave the old files intact and no partial file under their names."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import slicerio

from Testing.command_line import assert_one_line_error, run_cli, segment_args
from Testing.faults.support import (
    digests,
    file_size_limit,
    hidden_files,
    kill_at,
    run_child,
    start_child,
    visible_files,
)
from unetseg.atomic import atomic_path, write_atomically
from unetseg.host.image_files import DamagedImageError, checkNrrdFile


def _args(model, case_files, outputs, *extra) -> list[str]:
    args = segment_args(model.path, case_files.values(), outputs["seg"], *extra)
    return [*args, "--summary", str(outputs["summary"]), "--device", "cpu", "--overwrite"]


def _assert_readable(outputs) -> None:
    assert slicerio.read_segmentation(str(outputs["seg"]))["voxels"].shape == (32, 32, 16)
    json.loads(outputs["summary"].read_text())


@pytest.mark.parametrize("hook", ["mid-write", "before-rename"])
def test_kill_9_while_writing_leaves_the_old_outputs(
    hook, brain_model, case_files, old_outputs, tmp_path, capsys
):
    before = digests(old_outputs.values())
    marker = tmp_path / "marker"
    process = start_child(hook, marker, "unetseg", *_args(brain_model, case_files, old_outputs))

    kill_at(process, marker)

    out = old_outputs["seg"].parent
    assert digests(old_outputs.values()) == before
    assert visible_files(out) == {"r.seg.nrrd", "r.json"}
    _assert_readable(old_outputs)
    assert any(".tmp" in name for name in hidden_files(out))  # what the killed run left
    # The next run removes the dead run's temporaries; its lock did not survive it.
    code, _, err = run_cli(capsys, *_args(brain_model, case_files, old_outputs))
    assert code == 0, err
    assert hidden_files(out) == set()
    assert digests(old_outputs.values()) != before
    _assert_readable(old_outputs)


def test_kill_9_between_the_renames_leaves_each_output_old_or_new(
    brain_model, case_files, old_outputs, tmp_path
):
    before = digests(old_outputs.values())
    marker = tmp_path / "marker"
    process = start_child(
        "between-renames", marker, "unetseg", *_args(brain_model, case_files, old_outputs)
    )

    kill_at(process, marker)

    # The summary was renamed first (complete and new), the segmentation not yet (old).
    assert json.loads(old_outputs["summary"].read_text())["model"]["id"] == brain_model.id
    assert digests([old_outputs["seg"]]) == {old_outputs["seg"]: before[old_outputs["seg"]]}
    _assert_readable(old_outputs)


@pytest.mark.parametrize(("limit", "extra"), [(4000, ()), (6000, ("--preview",))])
def test_full_disk_fails_with_one_line_and_keeps_the_old_outputs(
    limit, extra, brain_model, case_files, old_outputs
):
    """4000 bytes: the .seg.nrrd data is cut (Slicer's writer reports success there); 6000:
    the .seg.nrrd fits, the PNG preview does not."""
    before = digests(old_outputs.values())
    out = old_outputs["seg"].parent
    args = _args(brain_model, case_files, old_outputs)
    if extra:
        args += ["--preview", str(out / "r.png")]

    done = run_child("unetseg", *args, preexec_fn=file_size_limit(limit))

    phrase = "File too large" if extra else "disk full"
    assert_one_line_error(done.returncode, done.stderr, phrase)
    assert digests(old_outputs.values()) == before
    assert visible_files(out) == {"r.seg.nrrd", "r.json"}
    assert hidden_files(out) == set()  # temporaries removed on the way out, locks released


def test_full_disk_while_saving_a_training_checkpoint_keeps_the_old_one(tmp_path):
    from Training.loop.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "last.safetensors"
    save_checkpoint(path, {"step": 1})
    before = digests([path])
    code = (
        "import torch; from Training.loop.checkpoint import save_checkpoint; "
        f"save_checkpoint({str(path)!r}, {{'step': 2, 'w': torch.zeros(100_000)}})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=file_size_limit(50_000),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode != 0 and "File too large" in done.stderr
    assert digests([path]) == before and load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


def test_an_error_inside_the_write_leaves_nothing(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="renderer failed"), atomic_path(path) as temporary:
        temporary.write_text("half")
        raise RuntimeError("renderer failed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["report.json"]


def test_a_writer_that_writes_nothing_fails_loudly(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"old")
    with pytest.raises(FileNotFoundError), atomic_path(path):
        pass  # e.g. a library that silently skipped the write
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["image.png"]


def test_temporaries_of_running_writers_are_kept_and_of_dead_ones_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    pid = int(dead.stdout)
    stale = tmp_path / f".a.json.{pid}-0000.tmp.json"
    alive = tmp_path / f".a.json.{os.getppid()}-0000.tmp.json"
    stale.write_text("partial")
    alive.write_text("in progress")
    write_atomically(tmp_path / "a.json", b"{}")
    assert not stale.exists() and alive.exists()
    assert (tmp_path / "a.json").read_bytes() == b"{}"


@pytest.mark.parametrize("kept", [100, 2000, -500, -4])
def test_written_segmentations_are_checked_against_their_header(kept, old_outputs, tmp_path):
    """What a full disk leaves from Slicer's NRRD writer: the header cut (100), the data
    cut inside the gzip stream (2000, -500) or only the gzip trailer missing (-4)."""
    data = old_outputs["seg"].read_bytes()
    cut = tmp_path / "cut.seg.nrrd"
    cut.write_bytes(data[:kept])
    checkNrrdFile(old_outputs["seg"])
    with pytest.raises(DamagedImageError, match=r"truncated|not a complete NRRD"):
        checkNrrdFile(cut)
