"""Model packages: weights are regular files inside the package whose size is known before
they are read, and model ids are never resolved from the current directory."""

from __future__ import annotations

import os
import shutil

import pytest

from Testing.command_line import assert_one_line_error, run_cli, segment_args
from unetseg.engine.manifest import ModelPackageError
from unetseg.engine.package import load_model_package
from unetseg.engine.registry import resolve_model
from unetseg.untrained import brain_mri_manifest, untrained_package


@pytest.fixture
def package(tmp_path):
    manifest = brain_mri_manifest((4, 8, 16), patch_size=(32, 32, 32))
    return untrained_package(tmp_path / "models" / "brain", manifest)


def _replace_weights(package, make) -> None:
    weights = package.weights_path
    data = weights.read_bytes()
    weights.unlink()
    make(weights, data)


def _link_outside(weights, data):
    outside = weights.parents[2] / "elsewhere.safetensors"
    outside.write_bytes(data)
    weights.symlink_to(outside)


def _link_to_device(weights, data):
    weights.symlink_to("/dev/zero")  # endless: must never be read


def _link_inside(weights, data):
    (weights.parent / "data").mkdir()
    (weights.parent / "data" / "w.safetensors").write_bytes(data)
    weights.symlink_to(weights.parent / "data" / "w.safetensors")


DAMAGED = {
    "symlink out of the package": (_link_outside, "outside the package folder"),
    "symlink to /dev/zero": (_link_to_device, "outside the package folder"),
    "truncated": (lambda w, d: w.write_bytes(d[: len(d) // 2]), "truncated or extended"),
    "extra bytes appended": (lambda w, d: w.write_bytes(d + b"\0" * 64), "truncated or extended"),
    "folder instead of a file": (lambda w, d: w.mkdir(), "is not a regular file"),
    "missing": (lambda w, d: None, "is missing"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_bad_weights_file_is_refused_before_reading_it(case, package, case_files, tmp_path, capsys):
    make, phrase = DAMAGED[case]
    _replace_weights(package, make)
    with pytest.raises(ModelPackageError, match=phrase):
        load_model_package(package.path)
    output = tmp_path / "r.seg.nrrd"
    code, _, err = run_cli(capsys, *segment_args(package.path, case_files.values(), output))
    assert_one_line_error(code, err, phrase)
    assert not output.exists()


def test_flipped_weight_byte_fails_the_checksum(package):
    data = bytearray(package.weights_path.read_bytes())
    data[-10] ^= 0x01
    package.weights_path.write_bytes(bytes(data))
    with pytest.raises(ModelPackageError, match="SHA-256"):
        load_model_package(package.path).load_network()


def test_symlink_inside_the_package_is_accepted(package):
    _replace_weights(package, _link_inside)
    assert load_model_package(package.path).load_network() is not None


def test_model_id_is_never_resolved_from_the_current_folder(
    package, tmp_path, monkeypatch, capsys, case_files
):
    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copytree(package.path, workdir / package.id)  # a folder named like the model id
    monkeypatch.chdir(workdir)
    with pytest.raises(ModelPackageError, match=f"give ./{package.id}"):
        resolve_model(package.id, search_paths=[tmp_path / "none"])
    # The installed package wins over the folder of the same name here.
    installed = resolve_model(package.id, search_paths=[package.path.parent])
    assert installed.path == package.path
    assert load_model_package(f".{os.sep}{package.id}").path == workdir / package.id
    code, _, err = run_cli(capsys, *segment_args(package.id, case_files.values(), "r.seg.nrrd"))
    assert_one_line_error(code, err, f"No model '{package.id}' found")
    assert not (workdir / "r.seg.nrrd").exists()
