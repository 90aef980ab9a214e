"""Combined losses: Dice + cross-entropy, and deep supervision over several resolutions."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as nnf
from torch import nn

from .cross_entropy import BinaryCrossEntropyLoss, WeightedCrossEntropyLoss
from .overlap import DiceLoss
from .terms import Activation


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
