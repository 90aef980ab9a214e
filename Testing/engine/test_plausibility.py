"""Inputs compared with the model's modality: DICOM Modality and intensity range."""

from __future__ import annotations

import numpy as np
import pytest

from Training.synth import brain_mri_case, lung_ct_case
from unetseg.engine.plausibility import intensity_warning, modality_warning

CT_WINDOW = {"method": "ct_window", "center": -600.0, "width": 1500.0}
ZSCORE = {"method": "zscore", "mask": "nonzero"}


@pytest.fixture(scope="module")
def ct() -> np.ndarray:
    return lung_ct_case(np.random.default_rng(0), 32, (8.0, 8.0, 8.0)).images["ct"]


@pytest.fixture(scope="module")
def mr() -> np.ndarray:
    case = brain_mri_case(np.random.default_rng(0), (32, 32, 16), (2.0, 2.0, 3.0), layout="brats")
    return case.images["t1c"]


@pytest.mark.parametrize(
    ("model", "given", "expected"),
    [("CT", "CT", None), ("CT", "", None), ("DX", "CR", None), ("MR", "mr", None)],
)
def test_the_same_or_an_unknown_modality_is_accepted(model, given, expected):
    assert modality_warning(model, given) is expected


def test_another_modality_is_named():
    assert modality_warning("CT", "MR") == "its DICOM Modality is MR, the model is for CT images"


def test_ct_and_mr_images_fit_their_models(ct, mr):
    assert intensity_warning("CT", CT_WINDOW, ct) is None
    assert intensity_warning("CT", CT_WINDOW, ct - 1024.0 - ct.min()) is None  # -2048 padding
    assert intensity_warning("MR", ZSCORE, mr) is None
    assert intensity_warning("MR", ZSCORE, (mr - mr.mean()) / mr.std()) is None  # z-scored
    assert intensity_warning("DX", {"method": "none"}, ct) is None


def test_an_mr_image_for_a_ct_model_gives_its_statistics(mr):
    warning = intensity_warning("CT", CT_WINDOW, mr)

    assert warning is not None
    assert warning.startswith("its intensities do not look like CT Hounsfield units (minimum 0")
    assert "a CT has a minimum near -1000" in warning


def test_stored_ct_values_without_rescale_are_not_hounsfield_units(ct):
    warning = intensity_warning("CT", CT_WINDOW, ct + 1024.0)  # RescaleIntercept ignored

    assert warning is not None and "minimum 0," in warning


def test_a_ct_image_for_an_mr_model_is_named(ct):
    warning = intensity_warning("MR", ZSCORE, ct)

    assert warning is not None
    assert warning.startswith(f"its intensities go down to {ct.min():.0f}, like CT Hounsfield")
