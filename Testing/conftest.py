"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from Testing.case_files import SHARED_DATA, brats_case, small_brain_model, write_brats_files


@pytest.fixture(autouse=True, scope="session")
def _private_model_cache(tmp_path_factory):
    """Compiled models (OpenVINO IR and blobs) go to a per-session folder, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNETSEG_CACHE_DIR", str(tmp_path_factory.mktemp("unetseg-cache")))
        yield


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not available")
    return SHARED_DATA


@pytest.fixture(scope="module")
def brain_model(request, tmp_path_factory):
    """The small untrained 4-input brain model (``case_files.small_brain_model``: 2 mm, 32^3
    windows, filters 4-8-16). A test module changes it with ``BRAIN_MODEL = {...}``, keyword
    arguments of ``small_brain_model`` (e.g. ``{"seed": 1}``)."""
    options = getattr(request.module, "BRAIN_MODEL", {})
    return small_brain_model(tmp_path_factory.mktemp("models") / "brain", **options)


@pytest.fixture(scope="module")
def brats_files(tmp_path_factory) -> dict[str, Path]:
    """``case_files.brats_case()`` as BraTS 2023 NIfTI files: model input -> path."""
    return write_brats_files(brats_case(), tmp_path_factory.mktemp("case"))
