"""Overlap losses: soft Dice, the course notebook's V-Net soft Dice, and focal Tversky."""

from __future__ import annotations

import torch

from unetseg.engine.inference.finalize import activate

from .terms import (
    Activation,
    Float32Loss,
    OverlapTerms,
    _checked_mask,
    overlap_terms,
    soft_dice_loss,
)


class _OverlapLoss(Float32Loss):
    """Shared part of the overlap losses: the soft counts are computed in float32 (autocast
    off) by ``overlap_terms``; subclasses turn them into the loss in ``_overlap_loss``."""

    def __init__(
        self, activation: Activation, include_background: bool, smooth: float, batch_dice: bool
    ) -> None:
        super().__init__()
        self.activation: Activation = activation
        self.include_background = include_background
        self.smooth = smooth
        self.batch_dice = batch_dice

    def _loss(
        self, logits: torch.Tensor, dense: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        terms = overlap_terms(
            logits, dense, self.activation, self.include_background, self.batch_dice, mask
        )
        return self._overlap_loss(terms)

    def _overlap_loss(self, terms: OverlapTerms) -> torch.Tensor:
        """The scalar loss from the soft counts of ``terms``."""
        raise NotImplementedError


class DiceLoss(_OverlapLoss):
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
        super().__init__(activation, include_background, smooth, batch_dice)
        self.squared_denominator = squared_denominator

    def _overlap_loss(self, terms: OverlapTerms) -> torch.Tensor:
        probs, dense = terms.probs, terms.dense
        intersection = terms.sum(probs * dense)
        if self.squared_denominator:
            denominator = terms.sum(probs**2) + terms.sum(dense**2)
        else:
            denominator = terms.sum(probs) + terms.sum(dense)
        dice = (2.0 * intersection + self.smooth) / (denominator + self.smooth)
        return 1.0 - terms.mean(dice)


class FocalTverskyLoss(_OverlapLoss):
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
        super().__init__(activation, include_background, smooth, batch_dice)
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma

    def _overlap_loss(self, terms: OverlapTerms) -> torch.Tensor:
        probs, dense = terms.probs, terms.dense
        tp = terms.sum(probs * dense)
        fp = terms.sum(probs * (1.0 - dense))
        fn = terms.sum((1.0 - probs) * dense)
        tversky = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        # The clamp keeps the gradient of x ** gamma (gamma < 1) finite at a perfect score.
        return terms.mean((1.0 - tversky).clamp_min(1e-12) ** self.gamma)


class SoftDiceLoss(Float32Loss):
    """The course notebook's V-Net soft Dice (``soft_dice_loss``) over all output channels,
    background included, on softmax or sigmoid probabilities. A ``mask`` (partial labels,
    1 = known, ``(N, C or 1, *spatial)``) zeroes the unknown voxels of both terms.

    Shapes: ``logits (N, C, *spatial)``, ``target`` as in the module docstring; returns a
    scalar.
    """

    def __init__(self, activation: Activation) -> None:
        super().__init__()
        self.activation: Activation = activation

    def _loss(
        self, logits: torch.Tensor, dense: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        probs = activate(logits, self.activation)
        if mask is not None:
            known = _checked_mask(mask, logits)
            probs, dense = probs * known, dense * known
        return soft_dice_loss(probs, dense, axes=tuple(range(2, logits.ndim)))
