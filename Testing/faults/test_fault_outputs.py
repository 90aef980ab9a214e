"""Output paths are checked before any work: never an input (links included), never another
output, a writable folder, existing files only with --overwrite, and one run at a time."""

from __future__ import annotations

import os

import pytest

from Testing.command_line import assert_one_line_error, run_cli, segment_args
from Testing.faults.support import (
    digests,
    hidden_files,
    start_child,
    visible_files,
    wait_for_marker,
)
from unetseg.outputs import OutputLockedError, reserve_outputs


@pytest.fixture
def inputs_unchanged(case_files, brain_model):
    """Asserts after the test that no input file and no model file changed."""
    files = [*case_files.values(), brain_model.path / "model.json", brain_model.weights_path]
    before = digests(files)
    yield
    assert digests(files) == before


def _refused(capsys, brain_model, case_files, output, *extra) -> str:
    args = segment_args(brain_model.path, case_files.values(), output, *extra, "--device", "cpu")
    code, _, err = run_cli(capsys, *args)
    return assert_one_line_error(code, err)


def test_summary_that_is_an_input_is_refused(
    brain_model, case_files, tmp_path, capsys, inputs_unchanged
):
    t1c = case_files["t1c"]
    line = _refused(capsys, brain_model, case_files, tmp_path / "r.seg.nrrd", "--summary", t1c)
    assert f"--summary {t1c} is the input {t1c}" in line
    assert not (tmp_path / "r.seg.nrrd").exists()


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_output_that_links_to_an_input_is_refused(
    link, brain_model, case_files, tmp_path, capsys, inputs_unchanged
):
    output = tmp_path / "result.seg.nrrd"
    (os.symlink if link == "symbolic" else os.link)(case_files["flair"], output)
    line = _refused(capsys, brain_model, case_files, output)
    assert "is the input" in line and "inputs are never overwritten" in line


def test_output_that_is_a_model_file_is_refused(
    brain_model, case_files, tmp_path, capsys, inputs_unchanged
):
    manifest = brain_model.path / "model.json"
    line = _refused(capsys, brain_model, case_files, tmp_path / "r.seg.nrrd", "--summary", manifest)
    assert "model.json" in line and "is the input" in line


def test_two_outputs_on_one_file_are_refused(brain_model, case_files, tmp_path, capsys):
    output = tmp_path / "r.seg.nrrd"
    line = _refused(capsys, brain_model, case_files, output, "--summary", output)
    assert f"--summary {output} is --output" in line
    assert not output.exists()


def test_existing_output_is_only_replaced_with_overwrite(
    brain_model, case_files, old_outputs, capsys, inputs_unchanged
):
    before = digests(old_outputs.values())
    line = _refused(capsys, brain_model, case_files, old_outputs["seg"])
    assert "already exists; pass --overwrite to replace it" in line
    assert digests(old_outputs.values()) == before


@pytest.mark.parametrize("problem", ["parent is a file", "output is a folder"])
def test_unwritable_output_is_refused_before_any_work(
    problem, brain_model, case_files, tmp_path, capsys
):
    blocker = tmp_path / "blocker"
    if problem == "parent is a file":
        blocker.write_text("a file")
        output, phrase = blocker / "r.seg.nrrd", "is not a folder"
    else:
        output, phrase = tmp_path / "folder.seg.nrrd", "is a folder"
        output.mkdir()
    line = _refused(capsys, brain_model, case_files, output, "--overwrite")
    assert phrase in line


def test_two_runs_to_the_same_output_cannot_interleave(
    brain_model, case_files, tmp_path, capsys, inputs_unchanged
):
    output = tmp_path / "out" / "r.seg.nrrd"
    args = segment_args(brain_model.path, case_files.values(), output, "--device", "cpu")
    marker = tmp_path / "marker"
    first = start_child("hold-inference", marker, "unetseg", *args)
    wait_for_marker(first, marker)  # the first run holds the lock, inside inference

    code, _, err = run_cli(capsys, *args, "--overwrite")
    assert_one_line_error(code, err, "is being written by another run")
    assert not output.exists()

    marker.with_name("marker.go").touch()
    _, first_err = first.communicate(timeout=240)
    assert first.returncode == 0, first_err
    assert visible_files(output.parent) == {"r.seg.nrrd"}
    assert hidden_files(output.parent) == set()  # lock released and removed
    code, _, err = run_cli(capsys, *args)  # a third run, later, without --overwrite
    assert_one_line_error(code, err, "already exists")


def test_the_lock_is_held_for_the_whole_block_in_process_too(tmp_path):
    output = tmp_path / "a.json"
    with reserve_outputs({"--summary": output}, []):
        with (
            pytest.raises(OutputLockedError, match="being written by another run"),
            reserve_outputs({"--summary": output}, []),
        ):
            pass
        output.write_text("{}")
    with reserve_outputs({"--summary": output}, [], overwrite=True):
        pass
    assert os.listdir(tmp_path) == ["a.json"]
