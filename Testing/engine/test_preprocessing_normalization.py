"""Normalisation against MONAI transforms and numpy formulas."""

import numpy as np
import pytest
from monai.transforms import NormalizeIntensity, ScaleIntensityRange, ScaleIntensityRangePercentiles

from unetseg.engine.preprocessing.normalization import (
    ct_window,
    normalize,
    per_slice_standardize,
    percentile_minmax,
    zscore,
)


def brain_like(seed: int = 0) -> np.ndarray:
    """(K, J, I) float32: a bright ellipsoid on an exactly-zero background."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices((12, 20, 24))
    inside = ((k - 6) / 5) ** 2 + ((j - 10) / 8) ** 2 + ((i - 12) / 10) ** 2 < 1
    return np.where(inside, rng.normal(300, 40, size=inside.shape), 0).astype(np.float32)


def test_zscore_nonzero_matches_monai() -> None:
    image = brain_like()
    ours = normalize(image, {"method": "zscore", "mask": "nonzero"}, "t1c")
    expected = NormalizeIntensity(nonzero=True)(image[None])[0]
    np.testing.assert_allclose(ours, np.asarray(expected), atol=1e-5)
    assert ours.dtype == np.float32
    assert np.all(ours[image == 0] == 0)
    inside = ours[image != 0]
    assert abs(inside.mean()) < 1e-5 and abs(inside.std() - 1) < 1e-5


def test_zscore_whole_volume_matches_monai() -> None:
    image = brain_like(1).astype(np.int16)
    ours = normalize(image, {"method": "zscore", "mask": "none"})
    expected = NormalizeIntensity()(image[None].astype(np.float32))[0]
    np.testing.assert_allclose(ours, np.asarray(expected), atol=1e-5)


def test_zscore_explicit_mask_and_constant() -> None:
    image = brain_like(2)
    mask = np.zeros(image.shape, dtype=bool)
    mask[3:9, 5:15, 6:18] = True
    ours = zscore(image, mask)
    values = image[mask].astype(np.float64)
    np.testing.assert_allclose(ours[mask], (values - values.mean()) / values.std(), atol=1e-5)
    assert np.all(ours[~mask] == 0)
    constant = np.full((3, 4, 5), 7.5, dtype=np.float32)
    np.testing.assert_array_equal(zscore(constant), 0)
    with pytest.raises(ValueError, match="mask is empty"):
        zscore(image, np.zeros(image.shape, dtype=bool))


def test_percentile_minmax_matches_monai() -> None:
    image = np.random.default_rng(3).gamma(2.0, 100.0, size=(6, 10, 12)).astype(np.float32)
    ours = normalize(image, {"method": "percentile_minmax", "lower": 0.5, "upper": 99.5})
    expected = ScaleIntensityRangePercentiles(0.5, 99.5, 0.0, 1.0, clip=True)(image[None])[0]
    np.testing.assert_allclose(ours, np.asarray(expected), atol=1e-5)
    assert ours.min() == 0 and ours.max() == 1
    np.testing.assert_array_equal(percentile_minmax(np.ones((2, 3, 4))), 0)


def test_ct_window_matches_monai() -> None:
    image = np.random.default_rng(4).uniform(-1100, 1500, size=(5, 8, 9)).astype(np.int16)
    ours = normalize(image, {"method": "ct_window", "center": -600, "width": 1500})
    expected = ScaleIntensityRange(-1350, 150, 0.0, 1.0, clip=True)(image[None].astype(float))[0]
    np.testing.assert_allclose(ours, np.asarray(expected), atol=1e-6)
    np.testing.assert_allclose(ct_window(np.array([40.0]), 40, 400), [0.5])
    with pytest.raises(ValueError, match="width"):
        ct_window(image, 0, 0)


def test_per_slice_standardize() -> None:
    image = brain_like(5)
    image[0] = 3.0  # a constant slice
    ours = per_slice_standardize(image)
    np.testing.assert_array_equal(ours[0], 0)
    for k in range(2, 11):  # slices cutting the ellipsoid
        s = image[k].astype(np.float64)
        np.testing.assert_allclose(ours[k], (s - s.mean()) / s.std(), atol=1e-5)
    flat = per_slice_standardize(image[6])
    np.testing.assert_allclose(flat, ours[6], atol=1e-6)


def test_per_slice_flag_runs_after_method() -> None:
    image = brain_like(6)
    ours = normalize(image, {"method": "ct_window", "center": 300, "width": 200, "per_slice": True})
    np.testing.assert_allclose(ours, per_slice_standardize(ct_window(image, 300, 200)), atol=1e-6)
    np.testing.assert_allclose(ours[6].mean(), 0, atol=1e-6)


def test_none_copies_as_float32() -> None:
    image = np.arange(1, 25, dtype=np.uint16).reshape(2, 3, 4)
    ours = normalize(image, {"method": "none"})
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, image)


@pytest.mark.parametrize(("bad", "message"), [(np.nan, "NaN"), (np.inf, "infinite")])
def test_non_finite_input_is_named(bad: float, message: str) -> None:
    image = brain_like()
    image[2, 3, 4] = bad
    with pytest.raises(ValueError, match=f"input 't1c' contains {message} values"):
        normalize(image, {"method": "zscore", "mask": "nonzero"}, name="t1c")


def test_empty_input_and_bad_specs() -> None:
    with pytest.raises(ValueError, match="input 'flair' is empty"):
        normalize(np.zeros((2, 3, 4), dtype=np.float32), {"method": "none"}, name="flair")
    image = brain_like()
    with pytest.raises(ValueError, match="unknown normalisation method"):
        normalize(image, {"method": "minmax"})
    with pytest.raises(ValueError, match="mask"):
        normalize(image, {"method": "zscore", "mask": "brain"})
    with pytest.raises(ValueError, match="center"):
        normalize(image, {"method": "ct_window", "width": 100})
    with pytest.raises(ValueError, match="lower < upper"):
        percentile_minmax(image, 99.0, 1.0)
