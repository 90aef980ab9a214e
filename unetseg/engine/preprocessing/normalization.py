"""Intensity normalisation of one input channel (arrays (K, J, I), 2D images (J, I)).

All functions return new float32 arrays; statistics are accumulated in float64 without
full-volume float64 temporaries. ``normalize`` applies a manifest normalisation spec:
``{"method": "zscore", "mask": "nonzero" | "none"}``,
``{"method": "percentile_minmax", "lower": 0.5, "upper": 99.5}``,
``{"method": "ct_window", "center": -600, "width": 1500}``, ``{"method": "none"}``, each
optionally with ``"per_slice": true`` (per-slice standardisation afterwards).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

METHODS = ("zscore", "percentile_minmax", "ct_window", "none")
# Standard deviations below this are treated as a constant image (no division).
_MIN_STD = 1e-8


def check_finite(array: np.ndarray, name: str = "input") -> None:
    """Raise ``ValueError`` naming ``name`` when ``array`` holds NaN or infinite values."""
    if not np.issubdtype(array.dtype, np.floating) or array.size == 0:
        return
    if np.isfinite(array.min()) and np.isfinite(array.max()):
        return
    kind = "NaN" if np.isnan(array).any() else "infinite"
    raise ValueError(f"input {name!r} contains {kind} values")


def check_not_empty(array: np.ndarray, name: str = "input") -> None:
    """Raise ``ValueError`` naming ``name`` when ``array`` has no voxels or only zeros."""
    if array.size == 0 or not np.any(array):
        raise ValueError(f"input {name!r} is empty (all voxels are zero)")


def _float32(array: np.ndarray) -> np.ndarray:
    return np.array(array, dtype=np.float32, copy=True)


def _mean_std(values: torch.Tensor) -> tuple[float, float]:
    std, mean = torch.std_mean(values, correction=0)  # CPU accumulates in float64
    return float(mean), float(std)


def zscore(array: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Subtract the mean and divide by the standard deviation.

    Args:
        array: intensities.
        mask: bool array of the same shape. When given, statistics come from the voxels inside
            and voxels outside are set to 0. ``None`` uses all voxels.

    A constant region (std ~ 0) only has its mean removed, so it becomes 0 (never NaN).
    """
    result = _float32(array)
    tensor = torch.from_numpy(result)
    if mask is None:
        mean, std = _mean_std(tensor)
    else:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != array.shape:
            raise ValueError(f"mask shape {mask.shape} differs from image shape {array.shape}")
        if not mask.any():
            raise ValueError("z-score mask is empty")
        mask_tensor = torch.from_numpy(mask)
        mean, std = _mean_std(tensor[mask_tensor])
    tensor.sub_(mean).div_(std if std > _MIN_STD else 1.0)
    if mask is not None:
        tensor.masked_fill_(~mask_tensor, 0.0)
    return result


def percentile_minmax(array: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """Clip to the ``lower`` and ``upper`` percentiles (0-100, of all voxels, linear
    interpolation as ``np.percentile``) and scale that range to [0, 1]. A range of zero width
    gives all zeros."""
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}")
    low, high = np.percentile(array, [lower, upper])
    return _scale_to_unit(array, float(low), float(high))


def ct_window(array: np.ndarray, center: float, width: float) -> np.ndarray:
    """Clip to the window ``[center - width / 2, center + width / 2]`` and scale it to [0, 1]."""
    if width <= 0:
        raise ValueError(f"CT window width must be positive, got {width}")
    return _scale_to_unit(array, center - width / 2.0, center + width / 2.0)


def _scale_to_unit(array: np.ndarray, low: float, high: float) -> np.ndarray:
    result = _float32(array)
    tensor = torch.from_numpy(result)
    if high - low <= 0:
        return tensor.zero_().numpy()
    tensor.clamp_(low, high).sub_(low).div_(high - low).clamp_(0.0, 1.0)  # exact ends
    return result


def per_slice_standardize(array: np.ndarray) -> np.ndarray:
    """Standardise each slice over its last two axes (J, I) to zero mean and unit std; each
    K slice of a (K, J, I) volume separately, a (J, I) image as one slice. Constant slices
    become 0."""
    if array.ndim < 2:
        raise ValueError(f"need at least 2 dims (J, I), got shape {array.shape}")
    result = _float32(array)
    tensor = torch.from_numpy(result)
    std, mean = torch.std_mean(tensor, dim=(-2, -1), keepdim=True, correction=0)
    std = torch.where(std > _MIN_STD, std, torch.ones_like(std))
    tensor.sub_(mean).div_(std)
    return result


def normalize(array: np.ndarray, spec: Mapping[str, Any], name: str = "input") -> np.ndarray:
    """Apply a manifest normalisation ``spec`` to one channel (see module docstring).

    Raises:
        ValueError: on NaN/inf or all-zero input (message names ``name``), or an invalid spec.
    """
    check_finite(array, name)
    check_not_empty(array, name)
    method = spec.get("method")
    if method == "zscore":
        mask_kind = spec.get("mask", "none")
        if mask_kind not in ("nonzero", "none"):
            raise ValueError(f"zscore mask must be 'nonzero' or 'none', got {mask_kind!r}")
        result = zscore(array, array != 0 if mask_kind == "nonzero" else None)
    elif method == "percentile_minmax":
        result = percentile_minmax(array, spec.get("lower", 0.5), spec.get("upper", 99.5))
    elif method == "ct_window":
        if "center" not in spec or "width" not in spec:
            raise ValueError("ct_window normalisation needs 'center' and 'width'")
        result = ct_window(array, float(spec["center"]), float(spec["width"]))
    elif method == "none":
        result = _float32(array)
    else:
        raise ValueError(f"unknown normalisation method {method!r}; expected one of {METHODS}")
    if spec.get("per_slice", False):
        result = per_slice_standardize(result)
    return result
