"""U-Net for 2D and 3D segmentation (logits out).

Architecture (L = len(filters) levels, level i works at 1 / 2**i of the input size):
- Encoder level 0: `LevelBlock(in_channels -> filters[0])` at full resolution. Encoder level
  i > 0: `LevelBlock(filters[i-1] -> filters[i])` whose first convolution has stride 2
  (downsampling by strided convolution, no pooling). Level L-1 is the bottleneck.
- Decoder level i (L-2 ... 0): `Upsample(filters[i+1] -> filters[i])`, concatenation
  [upsampled, encoder skip] -> `LevelBlock(2 * filters[i] -> filters[i])`.
- Head: 1x1 convolution filters[0] -> out_channels, no activation.
- Deep supervision: extra 1x1 heads on decoder levels 1 and 2 (1/2 and 1/4 of the input
  size, the finest levels below full resolution; only level 1 when L == 3).

Activations are LeakyReLU(0.01), in place. On CPU the forward pass runs channels-last
(`channels_last_3d` / `channels_last`): oneDNN convolves these about 1.7x faster than
contiguous (N, C, ...) tensors. The returned tensors are contiguous. Run inference under
`torch.inference_mode()` (or `no_grad`): instance normalisation then works in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

import torch
from torch import nn

from .blocks import LevelBlock, Norm, Upsample, UpsampleMode, conv, cpu_fast_path

#: Number of extra deep-supervision heads (decoder levels 1 .. DEEP_SUPERVISION_HEADS).
DEEP_SUPERVISION_HEADS = 2

_AXES = {2: "(N, C, J, I)", 3: "(N, C, K, J, I)"}
_CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}


class UNet(nn.Module):
    """U-Net returning logits; see the module docstring for the architecture.

    Args:
        spatial_dims: 3 for (N, C, K, J, I) input, 2 for (N, C, J, I).
        in_channels: input channels (image sequences).
        out_channels: output channels (classes, logits).
        filters: channels per level, full resolution first; at least 2 levels. Each spatial
            input size must be divisible by `size_divisor` = 2 ** (len(filters) - 1).
        norm: "instance" (per sample and channel, affine), "batch", or "none" (then the
            convolutions have a bias).
        dropout: channel-dropout rate inside every level (0 disables it).
        residual: residual levels (1x1 projection skip where the shape changes).
        squeeze_excitation: channel squeeze-and-excitation after every level.
        deep_supervision: in `train()` mode `forward` returns a list of logits
            [full resolution, 1/2, 1/4]; in `eval()` mode only the full-resolution tensor.
        upsample: "transpose" (transposed convolution) or "interpolate" ((bi/tri)linear
            interpolation with a 1x1 convolution).
        kernel_size: odd convolution kernel size of the levels.

    With the defaults, `UNet(3, 4, 4, residual=True)` has about 5.7 M parameters.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        filters: Sequence[int] = (16, 32, 64, 128, 256),
        norm: Norm = "instance",
        dropout: float = 0.0,
        residual: bool = False,
        squeeze_excitation: bool = False,
        deep_supervision: bool = False,
        upsample: UpsampleMode = "transpose",
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        filters = tuple(int(f) for f in filters)
        _validate(spatial_dims, in_channels, out_channels, filters, norm, dropout, upsample)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        if deep_supervision and len(filters) < 3:
            raise ValueError("deep_supervision needs at least 3 levels (len(filters) >= 3)")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.filters = filters
        self.norm = norm
        self.dropout = float(dropout)
        self.residual = bool(residual)
        self.squeeze_excitation = bool(squeeze_excitation)
        self.deep_supervision = bool(deep_supervision)
        self.upsample = upsample
        self.kernel_size = kernel_size

        def level(cin: int, cout: int, stride: int) -> LevelBlock:
            return LevelBlock(
                spatial_dims, cin, cout, kernel_size, stride, norm, self.dropout,
                self.residual, self.squeeze_excitation,
            )  # fmt: skip

        self.encoder = nn.ModuleList(
            level(cin, cout, 1 if i == 0 else 2)
            for i, (cin, cout) in enumerate(zip((in_channels, *filters[:-1]), filters, strict=True))
        )
        # up[i] / decoder[i] produce decoder level i (i = 0 is full resolution).
        self.up = nn.ModuleList(
            Upsample(spatial_dims, filters[i + 1], filters[i], upsample)
            for i in range(len(filters) - 1)
        )
        self.decoder = nn.ModuleList(
            level(2 * filters[i], filters[i], 1) for i in range(len(filters) - 1)
        )
        self.head = conv(spatial_dims, filters[0], out_channels, 1)
        n_heads = min(DEEP_SUPERVISION_HEADS, len(filters) - 2) if self.deep_supervision else 0
        # deep_heads[j] reads decoder level j + 1.
        self.deep_heads = nn.ModuleList(
            conv(spatial_dims, filters[j + 1], out_channels, 1) for j in range(n_heads)
        )

    @property
    def size_divisor(self) -> int:
        """Every spatial input size must be a multiple of this (2 ** (len(filters) - 1))."""
        return 2 ** (len(self.filters) - 1)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-serialisable); `UNet(**net.config)` rebuilds it."""
        return {
            "spatial_dims": self.spatial_dims,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "filters": list(self.filters),
            "norm": self.norm,
            "dropout": self.dropout,
            "residual": self.residual,
            "squeeze_excitation": self.squeeze_excitation,
            "deep_supervision": self.deep_supervision,
            "upsample": self.upsample,
            "kernel_size": self.kernel_size,
        }

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless `x` is (N, in_channels, *S) with S divisible by size_divisor."""
        dims = self.spatial_dims
        if x.ndim != dims + 2:
            raise ValueError(
                f"UNet({dims}D) expects a {dims + 2}D tensor {_AXES[dims]}, "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet expects {self.in_channels} input channel(s), got {x.shape[1]} "
                f"(shape {tuple(x.shape)})"
            )
        size = tuple(x.shape[2:])
        if any(s < 1 or s % self.size_divisor for s in size):
            raise ValueError(
                f"UNet spatial size {size} must be positive multiples of {self.size_divisor} "
                f"(2 ** (len(filters) - 1)); pad the input"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """(N, in_channels, *S) -> logits (N, out_channels, *S).

        With deep supervision in training mode: a list [(N, out, *S), (N, out, *S / 2),
        (N, out, *S / 4)] (fewer entries for 3 levels).
        """
        self.check_input(x)
        # PyTorch runs small convolutions through a native kernel whose output is contiguous:
        # restore the memory format after every level.
        fmt = torch.contiguous_format
        if cpu_fast_path(x):
            fmt = _CHANNELS_LAST[self.spatial_dims]
        skips = []
        x = x.contiguous(memory_format=fmt)
        for level in self.encoder:
            x = level(x).contiguous(memory_format=fmt)
            skips.append(x)
        x = skips.pop()
        deep: list[torch.Tensor] = []
        want_deep = self.training and len(self.deep_heads) > 0
        for i in reversed(range(len(self.decoder))):
            # Popping the skip frees it (and the upsampled tensor) once concatenated.
            x = torch.cat((self.up[i](x).contiguous(memory_format=fmt), skips.pop()), dim=1)
            x = self.decoder[i](x).contiguous(memory_format=fmt)
            if want_deep and 1 <= i <= len(self.deep_heads):
                deep.append(self.deep_heads[i - 1](x).contiguous())
        logits = self.head(x).contiguous()
        if want_deep:
            return [logits, *reversed(deep)]
        return logits


def _validate(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    filters: tuple[int, ...],
    norm: str,
    dropout: float,
    upsample: str,
) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if in_channels < 1 or out_channels < 1:
        raise ValueError(
            f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}"
        )
    if len(filters) < 2 or min(filters) < 1:
        raise ValueError(f"filters needs >= 2 positive channel counts, got {list(filters)}")
    if norm not in get_args(Norm):
        raise ValueError(f"norm must be one of {get_args(Norm)}, got {norm!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if upsample not in get_args(UpsampleMode):
        raise ValueError(f"upsample must be one of {get_args(UpsampleMode)}, got {upsample!r}")
