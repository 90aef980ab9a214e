"""Per-window importance (blending) maps, equal to MONAI's `compute_importance_map`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: Smallest weight of a Gaussian map (MONAI clamps to this so that no voxel weighs zero).
MIN_WEIGHT = 1e-3


def importance_map(
    roi: Sequence[int],
    mode: str = "gaussian",
    sigma_scale: float | Sequence[float] = 0.125,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Float32 weight map of shape `roi` (array order).

    Args:
        roi: window size.
        mode: "gaussian" (separable Gaussian centred on the window, sigma = sigma_scale * roi
            per axis, peak ~1, clamped below at `max(min, 1e-3)`) or "constant" (all ones).
        sigma_scale: one value or one per axis.
        device: where to build the map.
    """
    roi = tuple(int(r) for r in roi)
    if mode == "constant":
        return torch.ones(roi, dtype=torch.float32, device=device)
    if mode != "gaussian":
        raise ValueError(f"mode must be 'gaussian' or 'constant', got {mode!r}")
    scales = (
        [float(sigma_scale)] * len(roi)
        if isinstance(sigma_scale, int | float)
        else [float(s) for s in sigma_scale]
    )
    if len(scales) != len(roi):
        raise ValueError(f"sigma_scale needs {len(roi)} values, got {len(scales)}")
    weights = torch.ones((), dtype=torch.float32, device=device)
    for axis, (size, scale) in enumerate(zip(roi, scales, strict=True)):
        sigma = size * scale
        x = torch.arange(
            -(size - 1) / 2.0, (size - 1) / 2.0 + 1, dtype=torch.float32, device=device
        )
        x = torch.exp(x**2 / (-2 * sigma**2))
        weights = weights.unsqueeze(-1) * x[(None,) * axis] if axis > 0 else x
    return weights.clamp_(min=max(weights.min().item(), MIN_WEIGHT))
