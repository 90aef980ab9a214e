"""The torch backend: the network as a torch module on the CPU or a CUDA device."""

from __future__ import annotations

import torch

from unetseg.engine.inference.precision import autocast

_PRECISION_NAMES = {None: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


class TorchRunner:
    """Runs `(B, C, *roi)` float32 windows through a torch network in eval mode.

    Args:
        network: the network, already on `device` and in eval mode.
        device: where the windows are computed.
        dtype: autocast dtype (bfloat16 / float16), or None for float32.
        window_batch: windows per forward pass the sliding window should send.
    """

    backend = "torch"

    def __init__(
        self,
        network: torch.nn.Module,
        device: torch.device,
        dtype: torch.dtype | None,
        window_batch: int,
    ) -> None:
        self.network = network
        self.device = device
        self.dtype = dtype
        self.window_batch = window_batch

    @property
    def precision(self) -> str:
        """ "float32", "bfloat16" or "float16"."""
        return _PRECISION_NAMES[self.dtype]

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        """`(B, C, *roi)` float32 on `device` -> `(B, C_out, *roi)` logits."""
        with autocast(self.device, self.dtype):
            return self.network(windows)

    def describe(self) -> str:
        return f"torch {torch.__version__}, {self.precision}"
