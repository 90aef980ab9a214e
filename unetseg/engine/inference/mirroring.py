"""Test-time augmentation by mirroring (as nnU-Net)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch

Predictor = Callable[[torch.Tensor], torch.Tensor]


def flip_combinations(axes: Sequence[int], spatial_dims: int) -> list[tuple[int, ...]]:
    """Every non-empty combination of the spatial `axes` (0-based, array order) as tensor dims
    of `(B, C, *spatial)` batches: the flips of mirroring test-time augmentation."""
    axes = sorted({int(a) for a in axes})
    if not axes or axes[0] < 0 or axes[-1] >= spatial_dims:
        raise ValueError(f"mirror_axes must be spatial axes in [0, {spatial_dims}), got {axes}")
    dims = [a + 2 for a in axes]
    return [c for n in range(1, len(dims) + 1) for c in itertools.combinations(dims, n)]


def mirrored(predictor: Predictor, axes: Sequence[int], spatial_dims: int) -> Predictor:
    """Wrap `predictor` to average its float32 logits over every flip combination of `axes`.

    Args:
        predictor: maps `(B, C_in, *roi)` to `(B, C_out, *roi)` logits.
        axes: spatial axes (0-based, array order) to mirror; all 2**len(axes) combinations
            of flips are predicted (the identity included) and flipped back before averaging.
        spatial_dims: number of spatial axes of the input.
    """
    flips = flip_combinations(axes, spatial_dims)

    def predict(x: torch.Tensor) -> torch.Tensor:
        total = predictor(x).to(torch.float32, copy=True)
        for flip in flips:
            total.add_(torch.flip(predictor(torch.flip(x, flip)), flip))
        return total.div_(len(flips) + 1)

    return predict
