"""Turn a slab of weighted sums into probabilities or labels, in place.

A slab is `values (C, *s)` (sum of weight * logits over the windows) with `weights (*s)` (sum of
the weights); `*s` is any spatial block. Voxels no window covered (weight 0) become
background: probability 1 for class 0 under softmax, 0 for every channel otherwise, label 0.
Channel loops replace `torch.argmax`/`amax` over dim 0, which are ~10x slower on CPU.
"""

from __future__ import annotations

import math

import torch

ACTIVATIONS = ("softmax", "sigmoid", None)
#: Label dtypes that support `masked_fill_` (torch has no masked_fill for uint16).
_FILLABLE = (torch.uint8, torch.int16, torch.int32, torch.int64)


def activate(logits: torch.Tensor, activation: str, dim: int = 1) -> torch.Tensor:
    """Probabilities from logits: softmax over the channel axis `dim`, or sigmoid per channel
    (a new tensor)."""
    return torch.softmax(logits, dim) if activation == "softmax" else torch.sigmoid(logits)


def normalise_(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor | None:
    """Divide `values` by `weights` in place; return the uncovered mask, or None if empty.

    Overwrites zero weights with 1 (the caller discards `weights` afterwards).
    """
    uncovered = weights == 0
    if bool(uncovered.any()):
        weights.masked_fill_(uncovered, 1.0)
    else:
        uncovered = None
    values.div_(weights)
    return uncovered


def softmax_(values: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 0 (channels), in place."""
    peak = values[0].clone()
    for channel in values[1:]:
        torch.maximum(peak, channel, out=peak)
    values.sub_(peak).exp_()
    total = values[0].clone()
    for channel in values[1:]:
        total.add_(channel)
    return values.div_(total)


def finalise_probabilities_(
    values: torch.Tensor, weights: torch.Tensor, activation: str | None
) -> None:
    """Average, apply `activation` ("softmax", "sigmoid" or None) and fill uncovered voxels."""
    uncovered = normalise_(values, weights)
    if activation == "softmax":
        softmax_(values)
    elif activation == "sigmoid":
        values.sigmoid_()
    if uncovered is not None:
        values.masked_fill_(uncovered, 0.0)
        if activation == "softmax":
            values[0].masked_fill_(uncovered, 1.0)


def labels_need_weights(activation: str | None, threshold: float) -> bool:
    """Whether label output needs the weight sum: only sigmoid at a threshold other than 0.5.

    The blended logits are `values / weights` with `weights > 0` where covered, so the softmax
    argmax and the sign of a logit are those of the weighted sums themselves, and voxels no
    window covered (all sums 0) come out as label 0 by the same rules.
    """
    return activation == "sigmoid" and threshold != 0.5


def finalise_labels_(
    values: torch.Tensor,
    weights: torch.Tensor | None,
    activation: str | None,
    threshold: float,
    out: torch.Tensor,
) -> None:
    """Write the label map of a slab into `out (*s)` (integer dtype).

    "sigmoid": channel c - 1 above `threshold` gives label c, later channels overwrite earlier
    ones (nested regions): `sigmoid(v / w) > t` is tested as `v > logit(t) * w`. Otherwise
    ("softmax"): argmax of the weighted logit sums, which is the argmax of the probabilities
    (ties go to the lower class). `weights` may be None where `labels_need_weights` is False.
    Uncovered voxels (weight 0, sums 0) get label 0.
    """
    target = out if out.dtype in _FILLABLE else torch.empty_like(out, dtype=torch.int32)
    target.zero_()
    if activation == "sigmoid":
        limit: torch.Tensor | float = 0.0  # logit(0.5)
        if labels_need_weights(activation, threshold):  # 0 < threshold < 1 (checked earlier)
            limit = weights * math.log(threshold / (1.0 - threshold))
        for label in range(1, values.shape[0] + 1):
            target.masked_fill_(values[label - 1] > limit, label)
    else:
        best = values[0].clone()
        for label in range(1, values.shape[0]):
            target.masked_fill_(values[label] > best, label)
            torch.maximum(best, values[label], out=best)
    if target is not out:
        out.copy_(target)
