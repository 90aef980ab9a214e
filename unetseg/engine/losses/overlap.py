"""Overlap losses: soft Dice and focal Tversky."""

from __future__ import annotations

import torch
from torch import nn

from .terms import Activation, _mean_of_present, _overlap_terms


class DiceLoss(nn.Module):
    """Multi-class soft Dice loss: ``1 - mean_c (2 sum(p q) + s) / (den + s)``.

    ``den = sum(p) + sum(q)``, or ``sum(p^2) + sum(q^2)`` with ``squared_denominator`` (V-Net).
    Sums run over the spatial axes per sample (and over the batch too with ``batch_dice``, which is
    steadier when many patches hold no foreground); the mean runs over samples and classes.

    Args:
        activation: ``"softmax"`` (exclusive labels) or ``"sigmoid"`` (overlapping regions).
        include_background: keep softmax channel 0 in the mean; ignored for sigmoid, which has no
            background channel.
        squared_denominator: use squared sums in the denominator.
        smooth: added to numerator and denominator (an empty class predicted empty scores 1).
        batch_dice: sum over the batch axis as well.

    Shapes: ``logits (N, C, *spatial)``, ``target`` and ``mask`` as in the module docstring;
    returns a scalar.
    """

    def __init__(
        self,
        activation: Activation = "softmax",
        include_background: bool = False,
        squared_denominator: bool = False,
        smooth: float = 1e-5,
        batch_dice: bool = False,
    ) -> None:
        super().__init__()
        self.activation: Activation = activation
        self.include_background = include_background
        self.squared_denominator = squared_denominator
        self.smooth = smooth
        self.batch_dice = batch_dice

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            probs, dense, axes, present = _overlap_terms(
                logits, target, self.activation, self.include_background, self.batch_dice, mask
            )
            intersection = torch.sum(probs * dense, dim=axes)
            if self.squared_denominator:
                denominator = torch.sum(probs**2, dim=axes) + torch.sum(dense**2, dim=axes)
            else:
                denominator = torch.sum(probs, dim=axes) + torch.sum(dense, dim=axes)
            dice = (2.0 * intersection + self.smooth) / (denominator + self.smooth)
            return 1.0 - _mean_of_present(dice, present)


class FocalTverskyLoss(nn.Module):
    """Focal Tversky loss: ``mean_c (1 - TI_c) ** gamma`` (Abraham & Khan 2019).

    ``TI = (TP + s) / (TP + alpha FP + beta FN + s)`` with soft counts ``TP = sum(p q)``,
    ``FP = sum(p (1 - q))``, ``FN = sum((1 - p) q)`` over the spatial axes (and the batch with
    ``batch_dice``), mean over samples and classes. ``alpha`` weighs false positives and ``beta``
    false negatives, as in MONAI's ``TverskyLoss``; ``beta > alpha`` favours recall (small lesions).
    ``gamma = 1`` is the plain Tversky loss; ``gamma < 1`` (0.75 = 1 / (4/3) in the paper)
    emphasises badly segmented classes. ``alpha = beta = 0.5, gamma = 1`` is the Dice loss.

    Shapes: ``logits (N, C, *spatial)``, ``target`` and ``mask`` as in the module docstring;
    returns a scalar.
    """

    def __init__(
        self,
        activation: Activation = "softmax",
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 0.75,
        include_background: bool = False,
        smooth: float = 1e-5,
        batch_dice: bool = False,
    ) -> None:
        super().__init__()
        self.activation: Activation = activation
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.include_background = include_background
        self.smooth = smooth
        self.batch_dice = batch_dice

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            probs, dense, axes, present = _overlap_terms(
                logits, target, self.activation, self.include_background, self.batch_dice, mask
            )
            tp = torch.sum(probs * dense, dim=axes)
            fp = torch.sum(probs * (1.0 - dense), dim=axes)
            fn = torch.sum((1.0 - probs) * dense, dim=axes)
            tversky = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
            # The clamp keeps the gradient of x ** gamma (gamma < 1) finite at a perfect score.
            return _mean_of_present((1.0 - tversky).clamp_min(1e-12) ** self.gamma, present)
