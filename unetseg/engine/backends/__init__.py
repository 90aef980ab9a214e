"""What runs the network on the sliding window's batches: torch (CPU/CUDA) or OpenVINO (CPU).

`load_runner` resolves a run's `SegmentOptions` (device, backend, precision, window batch) into
a runner: a callable mapping `(B, C, *roi)` float32 windows to `(B, C_out, *roi)` logits, with
`backend`, `device`, `precision`, `window_batch` and `describe()`.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Protocol

import torch

from unetseg.engine.device import select_device
from unetseg.engine.inference.precision import resolve_autocast
from unetseg.engine.options import SegmentOptions
from unetseg.engine.package import ModelPackage
from unetseg.engine.resources import check_window_memory

from .torch_runner import TorchRunner

logger = logging.getLogger(__name__)

#: Windows per forward pass by backend when the options leave it open (BENCHMARKS.md).
DEFAULT_WINDOW_BATCH = {"torch": 1, "openvino": 1}


class Runner(Protocol):
    backend: str
    device: torch.device
    precision: str
    window_batch: int

    def __call__(self, windows: torch.Tensor) -> torch.Tensor: ...

    def describe(self) -> str: ...


def openvino_installed() -> bool:
    """Whether the `openvino` package can be imported (without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend a run uses: "auto" is torch on CUDA and OpenVINO on the CPU when installed."""
    if backend == "auto":
        return "openvino" if device.type == "cpu" and openvino_installed() else "torch"
    return backend


def wants_reduced_precision(
    options: SegmentOptions, package: ModelPackage, device: torch.device
) -> bool:
    """Whether a run uses reduced precision (see `SegmentOptions.precision`)."""
    if options.precision != "auto":
        return options.precision == "reduced"
    if device.type == "cuda":
        return True
    return options.fast and package.reduced_precision


def load_runner(package: ModelPackage, options: SegmentOptions) -> Runner:
    """Load the package's network for the run described by `options`.

    Raises:
        RuntimeError: the device or backend asked for is not available here.
        MemoryLimitError: one window of the manifest's patch size cannot fit in memory.
        ModelPackageError: the weights do not match the manifest.
    """
    # OpenVINO runs on the CPU: device "auto" means the CPU then (a CUDA device is refused by
    # SegmentOptions).
    openvino = options.backend == "openvino"
    device = torch.device("cpu") if openvino else select_device(options.device)
    backend = resolve_backend(options.backend, device)
    reduced = wants_reduced_precision(options, package, device)
    batch = options.window_batch or DEFAULT_WINDOW_BATCH[backend]
    check_window_memory(package.preparation, batch)
    if backend == "openvino":
        from .openvino_runner import OpenVinoRunner

        return OpenVinoRunner(package, batch, reduced)
    return TorchRunner(package.load_network(device), device, _torch_dtype(device, reduced), batch)


def _torch_dtype(device: torch.device, reduced: bool) -> torch.dtype | None:
    """float16 on CUDA and native bfloat16 on the CPU when reduced, else float32 (None)."""
    dtype, note = resolve_autocast(device, "auto" if reduced else "off", cpu_bf16=True)
    if note:
        logger.warning(note)
    return dtype
