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
    """Convolution with "same" padding (odd `kernel_size`); stride 2 halves even sizes exactly.

    Unstrided 1x1 convolutions are `PointwiseConv{2,3}d`.
    """
    if kernel_size == 1 and stride == 1:
        return _POINTWISE[spatial_dims](in_channels, out_channels, 1, bias=bias)
    return _CONV[spatial_dims](
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias
    )


def cpu_fast_path(x: torch.Tensor) -> bool:
    """Whether to take the CPU-only fast paths (channels-last, in-place normalisation, 1x1
    convolutions as matrix products): on the CPU, except while the network is being traced or
    exported (ONNX, OpenVINO), which need the plain, portable operators."""
    if x.device.type != "cpu" or torch.jit.is_tracing():
        return False
    return not (torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting())


def _pointwise_forward(module: nn.Conv2d | nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    if not cpu_fast_path(x):
        return module._conv_forward(x, module.weight, module.bias)
    # Channels-last: a matrix product over the last axis, no copy. Single-threaded, PyTorch
    # would run a 1x1 convolution through its slow native kernel (~7x slower at 128^3).
    y = functional.linear(x.movedim(1, -1), module.weight.flatten(1), module.bias)
    return y.movedim(-1, 1)


class PointwiseConv2d(nn.Conv2d):
    """1x1 `Conv2d` (same parameters) computed as a channel matrix product on CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _pointwise_forward(self, x)


class PointwiseConv3d(nn.Conv3d):
    """1x1x1 `Conv3d` (same parameters) computed as a channel matrix product on CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _pointwise_forward(self, x)


_POINTWISE = {2: PointwiseConv2d, 3: PointwiseConv3d}


class InstanceNorm(nn.Module):
    """Instance normalisation of (N, C, *S) tensors with affine `weight` and `bias` (C,).

    Same parameters and result as `InstanceNorm{2,3}d(channels, affine=True)`.
    On CPU with autograd off it normalises its input IN PLACE (only apply it to a fresh
    tensor, such as a convolution output), keeping channels-last tensors channels-last:
    centre on the mean, then take the variance from the diagonal of a batched Gram matrix.
    (PyTorch's CPU `instance_norm` converts channels-last tensors to contiguous, which is slow;
    its channels-last `group_norm`/`batch_norm` kernels use one-pass sums that err by ~1e-3 at
    128^3.) Otherwise it calls `functional.instance_norm`.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or not cpu_fast_path(x):
            return functional.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
        x -= x.mean(tuple(range(2, x.ndim)), keepdim=True)
        flat = x.flatten(2)  # (N, C, voxels): a view for contiguous and channels-last layouts
        variance = torch.bmm(flat, flat.transpose(1, 2)).diagonal(dim1=1, dim2=2) / flat.shape[2]
        scale = self.weight * torch.rsqrt(variance + self.eps)  # (N, C)
        broadcast = (1,) * (x.ndim - 2)
        shift = self.bias.view(1, -1, *broadcast)
        return torch.addcmul(shift, x, scale.view(*scale.shape, *broadcast), out=x)


def norm_layer(norm: Norm, spatial_dims: int, channels: int) -> nn.Module:
    """Normalisation layer for `spatial_dims`; `Identity` for "none"."""
    if norm == "batch":
        return _BATCH_NORM[spatial_dims](channels)
    if norm == "instance":
        return InstanceNorm(channels)
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
