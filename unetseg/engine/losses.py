"""Segmentation losses for 2D and 3D U-Nets (torch).

Shapes (``*spatial`` is ``(K, J, I)`` in 3D or ``(J, I)`` in 2D, array order as everywhere):

- ``logits``: raw network output ``(N, C, *spatial)``, any float dtype (bf16 under autocast too).
- ``target``, softmax losses (mutually exclusive labels, channel c = label value c):
  a label map ``(N, *spatial)`` or ``(N, 1, *spatial)`` of integers in ``[0, C)``, or a one-hot
  ``(N, C, *spatial)``.
- ``target``, sigmoid losses (overlapping regions, e.g. BraTS WT/TC/ET, channel c - 1 = label c):
  a multi-channel binary ``(N, C, *spatial)``; with ``C == 1`` a binary label map ``(N, *spatial)``
  is accepted too.

Partial labels: every loss also takes an optional ``mask``, 1 where the target is known and 0
where it is not (a voxel, or one region at a voxel, that the annotation does not label):
``(N, C, *spatial)`` per channel or ``(N, 1, *spatial)`` per voxel. Unknown entries add nothing
to the loss and get zero gradient; overlap losses (Dice, Tversky) sum over the known voxels and
average over the (sample, channel) pairs with at least one known voxel, cross-entropies average
over the known entries. An all-ones mask gives the unmasked loss.

Every loss returns a scalar float32 tensor. Internally everything is computed in float32 with
autocast disabled, and cross-entropy uses log-softmax / ``binary_cross_entropy_with_logits``, so the
losses are numerically stable for large logits and for bf16 network outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as nnf
from torch import nn

Activation = Literal["softmax", "sigmoid"]

__all__ = [
    "Activation",
    "BinaryCrossEntropyLoss",
    "DeepSupervisionLoss",
    "DiceCELoss",
    "DiceLoss",
    "FocalTverskyLoss",
    "WeightedCrossEntropyLoss",
    "soft_dice_loss",
    "to_dense_target",
]


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


def _probabilities(logits: torch.Tensor, activation: Activation) -> torch.Tensor:
    return torch.softmax(logits, dim=1) if activation == "softmax" else torch.sigmoid(logits)


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


def _overlap_terms(
    logits: torch.Tensor,
    target: torch.Tensor,
    activation: Activation,
    include_background: bool,
    batch_dice: bool,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...], torch.Tensor | None]:
    """Float32 probabilities and dense target `(N, C', *spatial)` (background dropped unless
    asked; both zero where ``mask`` is 0), the axes to sum over, and with a mask the weight
    (1 or 0) of each reduced score: whether it has a known voxel. Shared by Dice and Tversky."""
    logits = logits.float()
    dense = to_dense_target(logits, target, activation)
    probs = _probabilities(logits, activation)
    axes = _reduce_axes(probs.ndim, batch_dice)
    present = None
    if mask is not None:
        known = _checked_mask(mask, logits).expand_as(probs)
        probs, dense = probs * known, dense * known
        known = _foreground(known, activation, include_background)
        present = (known.sum(dim=axes) > 0).float()
    probs = _foreground(probs, activation, include_background)
    dense = _foreground(dense, activation, include_background)
    return probs, dense, axes, present


def _checked_mask(mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``mask`` as float32 ``(N, C or 1, *spatial)`` fitting ``logits`` ``(N, C, *spatial)``."""
    fits = mask.ndim == logits.ndim and mask.shape[0] == logits.shape[0]
    fits = fits and mask.shape[1] in (1, logits.shape[1]) and mask.shape[2:] == logits.shape[2:]
    if not fits:
        raise ValueError(f"mask {tuple(mask.shape)} does not fit logits {tuple(logits.shape)}")
    return mask.to(device=logits.device, dtype=torch.float32)


def _mean_of_present(scores: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``scores``, over the entries with a known voxel when ``present`` is given."""
    if present is None:
        return scores.mean()
    return (scores * present).sum() / present.sum().clamp_min(1.0)


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


class BinaryCrossEntropyLoss(nn.Module):
    """Binary cross-entropy on logits (sigmoid, one binary problem per channel), mean over voxels.

    Args:
        pos_weight: optional weight of positive voxels per channel, length C (as in
            ``torch.nn.BCEWithLogitsLoss``), e.g. ``negatives / positives`` for rare regions.

    Shapes: ``logits (N, C, *spatial)``, ``target (N, C, *spatial)`` binary (or ``(N, *spatial)``
    when ``C == 1``), ``mask`` as in the module docstring (mean over the known entries);
    returns a scalar.
    """

    def __init__(self, pos_weight: Sequence[float] | None = None) -> None:
        super().__init__()
        self.pos_weight = None if pos_weight is None else tuple(float(w) for w in pos_weight)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            dense = to_dense_target(logits, target, "sigmoid")
            pos_weight = None
            if self.pos_weight is not None:
                if len(self.pos_weight) != logits.shape[1]:
                    raise ValueError(f"pos_weight needs {logits.shape[1]} values (one per channel)")
                shape = (-1,) + (1,) * (logits.ndim - 2)
                pos_weight = torch.tensor(self.pos_weight, device=logits.device).view(shape)
            if mask is None:
                return nnf.binary_cross_entropy_with_logits(logits, dense, pos_weight=pos_weight)
            known = _checked_mask(mask, logits).expand_as(logits)
            total = nnf.binary_cross_entropy_with_logits(
                logits, dense, weight=known, pos_weight=pos_weight, reduction="sum"
            )
            return total / known.sum().clamp_min(1.0)


class WeightedCrossEntropyLoss(nn.Module):
    """Softmax cross-entropy with class weights, background down-weighting or inverse frequency.

    ``loss = sum_v sum_c w_c q_vc (-log p_vc) / sum_v sum_c w_c q_vc`` (log-softmax, float32):
    with a one-hot target this is ``torch.nn.functional.cross_entropy(weight=w)`` (weighted mean).

    Class weights ``w`` (length C) are, in this order:

    1. ``class_weights`` when given; else, with ``inverse_frequency``, ``1 / frequency`` of each
       class among the target voxels of the batch (0 for absent classes), so every class present
       contributes equally: the loss becomes the mean over present classes of their mean CE;
       else all ones (plain cross-entropy);
    2. then ``w_0 *= background_weight`` (e.g. 0.1 to down-weight the background).

    Shapes: ``logits (N, C, *spatial)``, ``target`` label map or one-hot, ``mask`` (module
    docstring; unknown voxels weigh 0, also in the class frequencies); returns a scalar.
    """

    def __init__(
        self,
        class_weights: Sequence[float] | None = None,
        inverse_frequency: bool = False,
        background_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if class_weights is not None and inverse_frequency:
            raise ValueError("give class_weights or inverse_frequency, not both")
        self.class_weights = (
            None if class_weights is None else tuple(float(w) for w in class_weights)
        )
        self.inverse_frequency = inverse_frequency
        self.background_weight = float(background_weight)

    def weights(self, dense_target: torch.Tensor) -> torch.Tensor:
        """Class weights ``(C,)`` for a float one-hot target ``(N, C, *spatial)``."""
        n_channels = dense_target.shape[1]
        if self.class_weights is not None:
            if len(self.class_weights) != n_channels:
                raise ValueError(
                    f"class_weights has {len(self.class_weights)} values for {n_channels} classes"
                )
            weights = torch.tensor(self.class_weights, device=dense_target.device)
        elif self.inverse_frequency:
            counts = dense_target.detach().sum(dim=_reduce_axes(dense_target.ndim, batch=True))
            frequency = counts / counts.sum().clamp_min(1.0)
            weights = torch.where(
                counts > 0, 1.0 / frequency.clamp_min(1e-12), torch.zeros_like(frequency)
            )
        else:
            weights = torch.ones(n_channels, device=dense_target.device)
        weights = weights.clone()
        weights[0] *= self.background_weight
        return weights

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            dense = to_dense_target(logits, target, "softmax")
            if mask is not None:
                dense = dense * _checked_mask(mask, logits)
            shape = (1, -1) + (1,) * (logits.ndim - 2)
            weighted = dense * self.weights(dense).view(shape)
            log_probs = torch.log_softmax(logits, dim=1)
            return -(weighted * log_probs).sum() / weighted.sum().clamp_min(1e-12)


class DiceCELoss(nn.Module):
    """``lambda_dice * Dice + lambda_ce * CE`` (the nnU-Net / MONAI default).

    Dice is :class:`DiceLoss` with the given options. CE is :class:`WeightedCrossEntropyLoss`
    (softmax, over all classes including background; options ``class_weights``,
    ``inverse_frequency``, ``background_weight``) or :class:`BinaryCrossEntropyLoss` (sigmoid;
    option ``pos_weight``). Options of the other activation raise ``ValueError``.

    Shapes: ``logits (N, C, *spatial)``, ``target`` and ``mask`` as in the module docstring;
    returns a scalar.
    """

    def __init__(
        self,
        activation: Activation = "softmax",
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        include_background: bool = False,
        squared_denominator: bool = False,
        smooth: float = 1e-5,
        batch_dice: bool = False,
        class_weights: Sequence[float] | None = None,
        inverse_frequency: bool = False,
        background_weight: float = 1.0,
        pos_weight: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.dice = DiceLoss(
            activation, include_background, squared_denominator, smooth, batch_dice
        )
        self.ce: nn.Module
        if activation == "softmax":
            if pos_weight is not None:
                raise ValueError("pos_weight applies to sigmoid only")
            self.ce = WeightedCrossEntropyLoss(class_weights, inverse_frequency, background_weight)
        else:
            if class_weights is not None or inverse_frequency or background_weight != 1.0:
                raise ValueError(
                    "class_weights / inverse_frequency / background_weight apply to softmax only"
                )
            self.ce = BinaryCrossEntropyLoss(pos_weight)
        self.lambda_dice = lambda_dice
        self.lambda_ce = lambda_ce

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.lambda_dice * self.dice(logits, target, mask) + self.lambda_ce * self.ce(
            logits, target, mask
        )


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


def _downsample_target(target: torch.Tensor, logits_shape: Sequence[int]) -> torch.Tensor:
    """Resize a target to the spatial size of deep-supervision logits ``(N, C, *spatial_l)``.

    Label maps ``(N, *spatial)`` (or ``(N, 1, *spatial)`` when ``C > 1``) use nearest neighbour and
    keep their dtype; one-hot / multi-channel targets ``(N, C, *spatial)`` use max pooling, so a
    class or region present anywhere in a pooled window is kept (small structures survive).
    """
    size = tuple(int(s) for s in logits_shape[2:])
    plain_label_map = target.ndim == len(logits_shape) - 1
    channel_first = target.unsqueeze(1) if plain_label_map else target
    if tuple(channel_first.shape[2:]) == size:
        return target
    is_label_map = plain_label_map or (target.shape[1] == 1 and logits_shape[1] > 1)
    if is_label_map:
        resized = nnf.interpolate(channel_first.float(), size=size, mode="nearest-exact")
    else:
        pool = nnf.adaptive_max_pool3d if len(size) == 3 else nnf.adaptive_max_pool2d
        resized = pool(channel_first.float(), size)
    resized = resized.to(target.dtype)
    return resized[:, 0] if plain_label_map else resized


def _downsample_mask(mask: torch.Tensor, logits_shape: Sequence[int]) -> torch.Tensor:
    """Resize a known-voxel mask ``(N, C or 1, *spatial)`` to deep-supervision logits by min
    pooling: a coarse voxel is known only where all the voxels it pools are known."""
    size = tuple(int(s) for s in logits_shape[2:])
    if tuple(mask.shape[2:]) == size:
        return mask
    pool = nnf.adaptive_max_pool3d if len(size) == 3 else nnf.adaptive_max_pool2d
    return -pool(-mask.float(), size)


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of a loss over deep-supervision outputs of decreasing resolution.

    ``outputs`` is a sequence of logits ``(N, C, *spatial_l)``, full resolution first (a single
    tensor is treated as one output). The target (full resolution, any form accepted by ``loss``)
    is resized to each output: label maps by nearest neighbour, one-hot / multi-channel targets by
    max pooling (so prefer label maps for softmax losses: pooled one-hot targets may mark several
    classes at a boundary voxel). A ``mask`` (partial labels, module docstring) is resized by min
    pooling and passed on to ``loss``.

    Args:
        loss: the loss applied at every level, ``loss(logits, target) -> scalar``.
        weights: one weight per output; default ``1, 1/2, 1/4, ...``. Weights are normalised to
            sum to 1.
    """

    def __init__(self, loss: nn.Module, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.loss = loss
        self.weights = None if weights is None else tuple(float(w) for w in weights)

    def level_weights(self, n_levels: int) -> list[float]:
        """Normalised weights for ``n_levels`` outputs."""
        if self.weights is None:
            raw = [0.5**level for level in range(n_levels)]
        elif len(self.weights) != n_levels:
            raise ValueError(f"{len(self.weights)} weights for {n_levels} deep-supervision outputs")
        else:
            raw = list(self.weights)
        total = sum(raw)
        if total <= 0 or min(raw) < 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {raw}")
        return [w / total for w in raw]

    def forward(
        self,
        outputs: Sequence[torch.Tensor] | torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        weights = self.level_weights(len(outputs))
        total = torch.zeros((), dtype=torch.float32, device=outputs[0].device)
        for weight, logits in zip(weights, outputs, strict=True):
            if weight == 0:
                continue
            resized = _downsample_target(target, logits.shape)
            if mask is None:
                total = total + weight * self.loss(logits, resized)
            else:
                known = _downsample_mask(mask, logits.shape)
                total = total + weight * self.loss(logits, resized, known)
        return total
