"""Cross-entropy losses: binary (sigmoid) and weighted multi-class (softmax)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as nnf

from .terms import Float32Loss, _checked_mask, _reduce_axes


class BinaryCrossEntropyLoss(Float32Loss):
    """Binary cross-entropy on logits (sigmoid, one binary problem per channel), mean over voxels.

    Args:
        pos_weight: optional weight of positive voxels per channel, length C (as in
            ``torch.nn.BCEWithLogitsLoss``), e.g. ``negatives / positives`` for rare regions.

    Shapes: ``logits (N, C, *spatial)``, ``target (N, C, *spatial)`` binary (or ``(N, *spatial)``
    when ``C == 1``), ``mask`` as in the module docstring (mean over the known entries);
    returns a scalar.
    """

    activation = "sigmoid"

    def __init__(self, pos_weight: Sequence[float] | None = None) -> None:
        super().__init__()
        self.pos_weight = None if pos_weight is None else tuple(float(w) for w in pos_weight)

    def _loss(
        self, logits: torch.Tensor, dense: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
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


class WeightedCrossEntropyLoss(Float32Loss):
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

    activation = "softmax"

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

    def _loss(
        self, logits: torch.Tensor, dense: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        if mask is not None:
            dense = dense * _checked_mask(mask, logits)
        shape = (1, -1) + (1,) * (logits.ndim - 2)
        weighted = dense * self.weights(dense).view(shape)
        log_probs = torch.log_softmax(logits, dim=1)
        return -(weighted * log_probs).sum() / weighted.sum().clamp_min(1e-12)
