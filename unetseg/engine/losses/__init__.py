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

from .composite import DeepSupervisionLoss, DiceCELoss
from .cross_entropy import BinaryCrossEntropyLoss, WeightedCrossEntropyLoss
from .overlap import DiceLoss, FocalTverskyLoss, SoftDiceLoss
from .terms import Activation, soft_dice_loss, to_dense_target

__all__ = [
    "Activation",
    "BinaryCrossEntropyLoss",
    "DeepSupervisionLoss",
    "DiceCELoss",
    "DiceLoss",
    "FocalTverskyLoss",
    "SoftDiceLoss",
    "WeightedCrossEntropyLoss",
    "soft_dice_loss",
    "to_dense_target",
]
