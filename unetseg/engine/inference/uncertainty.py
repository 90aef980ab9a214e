"""Per-voxel uncertainty from mirroring test-time augmentation.

Each window is predicted on every mirrored copy (2**len(axes) forward passes, as
`mirrored`); the member probabilities are averaged, and the uncertainty of a voxel is the
entropy of that average, normalised to [0, 1]: 0 when every copy gives the same certain answer,
1 when the averaged prediction is uniform. It counts both the network's own hesitation (soft
probabilities) and the disagreement between mirrored copies. For nested sigmoid outputs it is
the mean over channels of the binary entropy. The windows' uncertainties are blended by the
sliding window like logits (Gaussian-weighted mean).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .finalize import activate
from .mirroring import flip_combinations

Predictor = Callable[[torch.Tensor], torch.Tensor]


def with_uncertainty(
    predictor: Predictor, axes: Sequence[int], spatial_dims: int, activation: str
) -> Predictor:
    """Wrap `predictor` to return `(B, C + 1, *roi)`: the logits averaged over every mirrored
    copy (channels 0..C-1, the same as `mirrored`) and the normalised entropy of the averaged
    member probabilities (channel C, in [0, 1]).

    Args:
        predictor: maps `(B, C_in, *roi)` to `(B, C, *roi)` logits.
        axes: spatial axes (array order) to mirror; all combinations of flips are predicted.
        spatial_dims: number of spatial axes of the input.
        activation: "softmax" (C classes) or "sigmoid" (C independent channels).
    """
    if activation not in ("softmax", "sigmoid"):
        raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")
    flips = [(), *flip_combinations(axes, spatial_dims)]

    def predict(x: torch.Tensor) -> torch.Tensor:
        logits_sum = probability_sum = None
        for flip in flips:
            logits = predictor(torch.flip(x, flip) if flip else x).to(torch.float32)
            if flip:
                logits = torch.flip(logits, flip)
            probabilities = activate(logits, activation)
            if logits_sum is None:
                logits_sum, probability_sum = logits.clone(), probabilities
            else:
                logits_sum += logits
                probability_sum += probabilities
        mean = probability_sum / len(flips)
        entropy = normalised_entropy(mean, activation)
        return torch.cat([logits_sum / len(flips), entropy.unsqueeze(1)], dim=1)

    return predict


def normalised_entropy(probabilities: torch.Tensor, activation: str) -> torch.Tensor:
    """Entropy of `(B, C, ...)` probabilities in [0, 1] per voxel, `(B, ...)`: over the C
    classes / log C (softmax), or the mean binary entropy of the C channels / log 2 (sigmoid)."""
    p = probabilities.clamp(1e-7, 1.0)
    if activation == "softmax":
        channels = probabilities.shape[1]
        return -(p * p.log()).sum(1) / math.log(max(channels, 2))
    q = (1.0 - probabilities).clamp(1e-7, 1.0)
    return (-(p * p.log()) - q * q.log()).mean(1) / math.log(2.0)
