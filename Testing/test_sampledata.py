"""The shipped real samples: catalog, files, copies, the command line."""

from __future__ import annotations

import nibabel as nib
import pytest
from PIL import Image

from unetseg.cli import main
from unetseg.sampledata import copy_sample, get_sample, list_samples, sample_folder


def test_every_sample_file_exists_is_readable_and_small() -> None:
    samples = list_samples()
    assert {s.model for s in samples} == {"brain-tumor-mri", "lung-ct", "lung-cxr"}
    total = 0
    for sample in samples:
        assert sample.license and sample.citation and sample.source
        for item in sample.files:
            total += item.path.stat().st_size
            if item.path.name.endswith(".nii.gz"):
                assert len(nib.load(item.path).shape) == 3
            else:
                assert Image.open(item.path).size[0] >= 256
    assert total <= 15 * 2**20  # the limit for shipped samples


def test_catalog_lists_every_file_in_the_folder() -> None:
    folder = sample_folder()
    listed = {f.path for s in list_samples() for f in s.files}
    images = {p for p in folder.rglob("*") if p.is_file() and p.suffix in (".gz", ".jpg")}
    assert images == listed


def test_copy_keeps_bytes_and_refuses_to_replace_a_different_file(tmp_path) -> None:
    copies = copy_sample("chest-xray", tmp_path)
    assert copies[0].read_bytes() == get_sample("chest-xray").files[0].path.read_bytes()
    assert copy_sample("chest-xray", tmp_path) == copies  # identical: fine
    copies[0].write_bytes(b"edited by the user")
    with pytest.raises(FileExistsError, match="not replaced"):
        copy_sample("chest-xray", tmp_path)
    assert copies[0].read_bytes() == b"edited by the user"


def test_command_line_lists_and_copies(tmp_path, capsys) -> None:
    assert main(["sample", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(s.id in out for s in list_samples())
    assert main(["sample", "--out", str(tmp_path), "chest-ct"]) == 0
    assert (tmp_path / "chest-ct" / "chest_ct.nii.gz").is_file()
    assert main(["sample", "--out", str(tmp_path), "no-such-sample"]) == 2
    assert "available: " in capsys.readouterr().err


def test_catalog_inputs_name_the_models_inputs_when_installed() -> None:
    from unetseg.engine.registry import list_models

    models = {p.id: p for p in list_models()}
    for sample in list_samples():
        if sample.model not in models:
            continue
        names = {spec.name for spec in models[sample.model].inputs}
        assert {f.input for f in sample.files} <= names, sample.id
