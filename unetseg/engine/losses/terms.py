"""Shared pieces of the losses: soft Dice, dense targets, masks and reductions (see the
package docstring for shapes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from unetseg.engine.inference.finalize import activate

Activation = Literal["softmax", "sigmoid"]


def soft_dice_loss(
    probs: torch.Tensor,
    target_onehot: torch.Tensor,
    axes: Sequence[int],
    eps: float = 1e-5,
) -> torch.Tensor:
    """V-Net soft Dice loss, as in the brain-tumour course notebook.

    ``1 - mean((2 * sum(p * q) + eps) / (sum(p ** 2) + sum(q ** 2) + eps))`` where the sums run
    over ``axes`` and the mean over all remaining axes (typically batch and class).

    Args:
        probs: probabilities, e.g. ``(N, C, *spatial)``.
        target_onehot: same shape as ``probs``, one-hot (or soft) target.
        axes: the (spatial) axes to sum over, e.g. ``(2, 3, 4)`` for ``(N, C, K, J, I)``.
        eps: smoothing added to numerator and denominator.
    """
    axes = tuple(axes)
    numerator = 2.0 * torch.sum(probs * target_onehot, dim=axes) + eps
    denominator = torch.sum(probs**2, dim=axes) + torch.sum(target_onehot**2, dim=axes) + eps
    return 1.0 - torch.mean(numerator / denominator)


def to_dense_target(
    logits: torch.Tensor, target: torch.Tensor, activation: Activation
) -> torch.Tensor:
    """Return ``target`` as float32 ``(N, C, *spatial)`` matching ``logits`` ``(N, C, *spatial)``.

    Label maps are one-hot encoded (softmax) or taken as the single region (sigmoid, ``C == 1``);
    one-hot / multi-channel targets are cast to float32. See the module docstring for shapes.
    """
    if activation not in ("softmax", "sigmoid"):
        raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")
    n_channels = logits.shape[1]
    spatial = logits.shape[2:]
    if target.ndim == logits.ndim and target.shape[1] == 1 and n_channels > 1:
        target = target[:, 0]
    if target.ndim == logits.ndim - 1:
        if target.shape[0] != logits.shape[0] or target.shape[1:] != spatial:
            raise ValueError(
                f"label map {tuple(target.shape)} does not fit logits {tuple(logits.shape)}"
            )
        if activation == "sigmoid":
            if n_channels != 1:
                raise ValueError(
                    "sigmoid losses with C > 1 need a multi-channel binary target (N, C, *spatial)"
                )
            return target.unsqueeze(1).to(torch.float32)
        dense = torch.zeros(logits.shape, dtype=torch.float32, device=logits.device)
        return dense.scatter_(1, target.unsqueeze(1).long(), 1.0)
    if target.shape != logits.shape:
        raise ValueError(f"target {tuple(target.shape)} does not fit logits {tuple(logits.shape)}")
    return target.to(torch.float32)


def _reduce_axes(ndim: int, batch: bool) -> tuple[int, ...]:
    """Spatial axes of an ``(N, C, *spatial)`` tensor, plus the batch axis when ``batch``."""
    return ((0,) if batch else ()) + tuple(range(2, ndim))


def _foreground(
    tensor: torch.Tensor, activation: Activation, include_background: bool
) -> torch.Tensor:
    """Drop softmax channel 0 unless ``include_background`` (sigmoid has no background)."""
    if activation == "softmax" and not include_background and tensor.shape[1] > 1:
        return tensor[:, 1:]
    return tensor


@dataclass(frozen=True)
class OverlapTerms:
    """What the overlap losses are computed from: float32 probabilities and dense target
    ``(N, C', *spatial)`` (background dropped unless asked; both zero where the mask is 0),
    the axes to sum over, and with a mask the weight (1 or 0) of each reduced score: whether
    it has a known voxel."""

    probs: torch.Tensor
    dense: torch.Tensor
    axes: tuple[int, ...]
    present: torch.Tensor | None

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` ``(N, C', *spatial)`` summed over the reduced axes."""
        return torch.sum(values, dim=self.axes)

    def mean(self, scores: torch.Tensor) -> torch.Tensor:
        """Mean of reduced ``scores``, over the entries with a known voxel under a mask."""
        if self.present is None:
            return scores.mean()
        return (scores * self.present).sum() / self.present.sum().clamp_min(1.0)


def overlap_terms(
    logits: torch.Tensor,
    dense: torch.Tensor,
    activation: Activation,
    include_background: bool,
    batch_dice: bool,
    mask: torch.Tensor | None = None,
) -> OverlapTerms:
    """The ``OverlapTerms`` of float32 ``logits`` against their dense target (shapes as in the
    module docstring); Dice and Tversky losses share it."""
    probs = activate(logits, activation)
    axes = _reduce_axes(probs.ndim, batch_dice)
    present = None
    if mask is not None:
        known = _checked_mask(mask, logits).expand_as(probs)
        probs, dense = probs * known, dense * known
        known = _foreground(known, activation, include_background)
        present = (known.sum(dim=axes) > 0).float()
    probs = _foreground(probs, activation, include_background)
    dense = _foreground(dense, activation, include_background)
    return OverlapTerms(probs, dense, axes, present)


def _checked_mask(mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``mask`` as float32 ``(N, C or 1, *spatial)`` fitting ``logits`` ``(N, C, *spatial)``."""
    fits = mask.ndim == logits.ndim and mask.shape[0] == logits.shape[0]
    fits = fits and mask.shape[1] in (1, logits.shape[1]) and mask.shape[2:] == logits.shape[2:]
    if not fits:
        raise ValueError(f"mask {tuple(mask.shape)} does not fit logits {tuple(logits.shape)}")
    return mask.to(device=logits.device, dtype=torch.float32)


class Float32Loss(nn.Module):
    """Base of the losses: computed in float32 with autocast off, from the logits and the
    dense target of ``activation`` (``to_dense_target``); subclasses implement ``_loss``."""

    activation: Activation

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            return self._loss(logits, to_dense_target(logits, target, self.activation), mask)

    def _loss(
        self, logits: torch.Tensor, dense: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The scalar loss of float32 ``logits`` and dense target ``(N, C, *spatial)``."""
        raise NotImplementedError
