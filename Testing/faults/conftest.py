"""Fixtures of the fault and bad-input suite: a synthetic case and its files, a second model
(the brain model is the shared one of Testing/conftest.py; helpers in support.py, the
subprocess runner in child.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from Testing.case_files import brats_case, small_brain_model, write_brats_files
from Testing.command_line import segment_args
from unetseg.cli import main


@pytest.fixture(scope="session")
def brain_case():
    """A synthetic 4-sequence brain case, (K, J, I) = (16, 32, 32) at (2, 2, 3) mm."""
    return brats_case()


@pytest.fixture
def case_files(brain_case, tmp_path) -> dict[str, Path]:
    """The case as four NIfTI files in ``tmp_path/case`` (a fresh copy per test)."""
    folder = tmp_path / "case"
    folder.mkdir()
    return write_brats_files(brain_case, folder)


@pytest.fixture(scope="session")
def other_model(tmp_path_factory):
    """The brain model with other weights: its outputs tell an old result from a new one."""
    return small_brain_model(tmp_path_factory.mktemp("models") / "other", seed=3)


@pytest.fixture
def old_outputs(other_model, case_files, tmp_path) -> dict[str, Path]:
    """A previous good result in ``tmp_path/out``: ``seg`` (.seg.nrrd) and ``summary`` (JSON),
    made by ``other_model``."""
    out = tmp_path / "out"
    paths = {"seg": out / "r.seg.nrrd", "summary": out / "r.json"}
    args = segment_args(other_model.path, case_files.values(), paths["seg"])
    assert main([*args, "--summary", str(paths["summary"]), "--device", "cpu"]) == 0
    return paths
