"""Run options and runners for tests that need a known backend.

Most tests pin the torch backend on the CPU (`TORCH_CPU`): tiny untrained networks gain nothing
from OpenVINO's compilation, and analytic stand-in networks (`torch_runner`) are torch modules.
The OpenVINO backend has its own tests (Testing/engine/test_backends.py).
"""

from __future__ import annotations

import torch

from unetseg.engine.backends.torch_runner import TorchRunner
from unetseg.engine.options import SegmentOptions

TORCH_CPU = SegmentOptions(device="cpu", backend="torch")


def torch_runner(network: torch.nn.Module) -> TorchRunner:
    """A float32 CPU runner of `network` (e.g. an analytic stand-in for a trained model)."""
    return TorchRunner(network, torch.device("cpu"), None, window_batch=1)
