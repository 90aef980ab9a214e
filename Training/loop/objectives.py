"""Training targets and the loss named in the config (``unetseg.engine.losses``)."""

from __future__ import annotations

import torch
from torch import nn

from Training.config import LossConfig
from unetseg.engine.losses import (
    BinaryCrossEntropyLoss,
    DeepSupervisionLoss,
    DiceCELoss,
    DiceLoss,
    FocalTverskyLoss,
    SoftDiceLoss,
    WeightedCrossEntropyLoss,
)


def build_loss(config: LossConfig, activation: str, deep_supervision: bool) -> nn.Module:
    """The configured loss, wrapped in ``DeepSupervisionLoss`` when the network has deep
    supervision (the wrapper also accepts a single output, as in evaluation mode)."""
    loss: nn.Module
    if config.name == "dice":
        loss = DiceLoss(activation, config.include_background, batch_dice=config.batch_dice)
    elif config.name == "dice_ce":
        loss = DiceCELoss(
            activation,
            lambda_dice=config.lambda_dice,
            lambda_ce=config.lambda_ce,
            include_background=config.include_background,
            batch_dice=config.batch_dice,
            class_weights=config.class_weights if activation == "softmax" else None,
            background_weight=config.background_weight if activation == "softmax" else 1.0,
            pos_weight=config.pos_weight if activation == "sigmoid" else None,
        )
    elif config.name == "ce":
        loss = WeightedCrossEntropyLoss(config.class_weights, False, config.background_weight)
    elif config.name == "bce":
        loss = BinaryCrossEntropyLoss(config.pos_weight)
    elif config.name == "focal_tversky":
        loss = FocalTverskyLoss(
            activation,
            config.alpha,
            config.beta,
            config.gamma,
            config.include_background,
            batch_dice=config.batch_dice,
        )
    else:
        loss = SoftDiceLoss(activation)
    if deep_supervision:
        return DeepSupervisionLoss(loss, config.deep_supervision_weights)
    return loss


def training_target(labels: torch.Tensor, activation: str, out_channels: int) -> torch.Tensor:
    """Loss target from a batch of training label maps ``(N, *P)`` (uint8).

    softmax: the label map as int64. sigmoid: ``(N, C, *P)`` float32 nested regions, channel
    ``c - 1`` = ``label >= c`` (the manifest's sigmoid convention: a later label lies inside an
    earlier one and overwrites it).
    """
    if activation == "softmax":
        return labels.long()
    values = torch.arange(1, out_channels + 1, device=labels.device)
    shape = (1, out_channels) + (1,) * (labels.ndim - 1)
    return (labels.unsqueeze(1) >= values.view(shape)).float()
