"""Building blocks of the U-Net, for 2D (N, C, J, I) and 3D (N, C, K, J, I) tensors.

Every block works on channel-first batches and keeps the spatial size, except the first
convolution of a downsampling level (stride 2: each spatial size halves) and `Upsample`
(each spatial size doubles).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional

Norm = Literal["batch", "instance", "none"]
UpsampleMode = Literal["transpose", "interpolate"]

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSE = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_DROPOUT = {2: nn.Dropout2d, 3: nn.Dropout3d}
_INTERPOLATION = {2: "bilinear", 3: "trilinear"}

#: Negative slope of the LeakyReLU activations (as nnU-Net).
NEGATIVE_SLOPE = 0.01
#: Channel reduction of the squeeze-and-excitation bottleneck.
SE_REDUCTION = 4


def conv(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    bias: bool = True,
) -> nn.Module:
    """Convolution with 'same' padding (odd `kernel_size`); stride 2 halves even sizes exactly."""
    return _CONV[spatial_dims](
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias
    )


def norm_layer(norm: Norm, spatial_dims: int, channels: int) -> nn.Module:
    """Normalisation layer; `Identity` for "none".

    "instance" is `GroupNorm(channels, channels)`: the same computation (and the same
    `weight`/`bias` parameters) as `InstanceNorm{2,3}d(channels, affine=True)`, but it keeps
    channels-last tensors channels-last on CPU, where `InstanceNorm` converts them back (slow).
    """
    if norm == "batch":
        return _BATCH_NORM[spatial_dims](channels)
    if norm == "instance":
        return nn.GroupNorm(channels, channels)
    return nn.Identity()


class SqueezeExcitation(nn.Module):
    """Channel squeeze-and-excitation (Hu et al. 2018): x * sigmoid(W2 act(W1 mean(x))).

    The bottleneck has max(1, channels // SE_REDUCTION) channels; W1, W2 are 1x1 convolutions
    with bias; act is the network's LeakyReLU (instead of ReLU: no dead bottleneck units in
    narrow layers). Shape is preserved.
    """

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        hidden = max(1, channels // SE_REDUCTION)
        self.squeeze = conv(spatial_dims, channels, hidden, 1)
        self.excite = conv(spatial_dims, hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)
        scale = torch.sigmoid(
            self.excite(functional.leaky_relu(self.squeeze(scale), NEGATIVE_SLOPE, inplace=True))
        )
        return x * scale


class LevelBlock(nn.Module):
    """One U-Net level: two conv-norm-LeakyReLU layers, optionally residual and SE.

    conv1 (stride `stride`) -> norm -> act -> [dropout] -> conv2 -> norm [+ skip(x)] -> act [-> SE]

    - Convolutions have no bias when followed by a norm layer (the norm's shift replaces it).
    - `residual`: the skip is the identity when the shape is unchanged, otherwise a 1x1
      projection convolution (stride `stride`) followed by a norm layer.
    - `dropout` > 0 inserts channel dropout (`Dropout{2,3}d`) between the two convolutions.
    - Input (N, in_channels, *S); output (N, out_channels, *S / stride).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        norm: Norm,
        dropout: float,
        residual: bool,
        squeeze_excitation: bool,
    ) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = conv(spatial_dims, in_channels, out_channels, kernel_size, stride, bias)
        self.norm1 = norm_layer(norm, spatial_dims, out_channels)
        self.dropout = _DROPOUT[spatial_dims](dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv(spatial_dims, out_channels, out_channels, kernel_size, 1, bias)
        self.norm2 = norm_layer(norm, spatial_dims, out_channels)
        self.residual = residual
        self.projection: nn.Module | None = None
        if residual and (in_channels != out_channels or stride != 1):
            self.projection = nn.Sequential(
                conv(spatial_dims, in_channels, out_channels, 1, stride, bias),
                norm_layer(norm, spatial_dims, out_channels),
            )
        self.se = SqueezeExcitation(spatial_dims, out_channels) if squeeze_excitation else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = functional.leaky_relu(self.norm1(self.conv1(x)), NEGATIVE_SLOPE, inplace=True)
        y = self.norm2(self.conv2(self.dropout(y)))
        if self.residual:
            y += x if self.projection is None else self.projection(x)
        y = functional.leaky_relu(y, NEGATIVE_SLOPE, inplace=True)
        return y if self.se is None else self.se(y)


class Upsample(nn.Module):
    """Double every spatial size and map `in_channels` to `out_channels`.

    - "transpose": transposed convolution, kernel 2, stride 2, with bias.
    - "interpolate": 1x1 convolution with bias, then (bi/tri)linear interpolation
      (align_corners=False). Both steps are linear and the interpolation weights sum to one,
      so this equals interpolation followed by the 1x1 convolution, at 2**spatial_dims times
      fewer operations.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, mode: UpsampleMode
    ) -> None:
        super().__init__()
        self.mode = mode
        if mode == "transpose":
            self.conv = _CONV_TRANSPOSE[spatial_dims](in_channels, out_channels, 2, stride=2)
        else:
            self.conv = conv(spatial_dims, in_channels, out_channels, 1)
        self.interpolation = _INTERPOLATION[spatial_dims]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.mode == "transpose":
            return y
        return functional.interpolate(
            y, scale_factor=2.0, mode=self.interpolation, align_corners=False
        )
