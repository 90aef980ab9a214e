"""Mixed-precision (autocast) choice for the forward passes."""

from __future__ import annotations

import contextlib
import logging

import torch

from unetseg.engine import device as _device

logger = logging.getLogger(__name__)

AMP_MODES = ("auto", "off")


def autocast_dtype(device: torch.device, amp: str, cpu_bf16: bool) -> torch.dtype | None:
    """Autocast dtype for forward passes on `device`, or None for float32.

    amp="auto": float16 on CUDA; on the CPU bfloat16 only when `cpu_bf16` is requested and
    the CPU has native bf16 (`device.cpu_supports_bf16()`), since emulated bf16 is far
    slower than float32; a requested but unsupported bf16 is logged and float32 is used.
    amp="off": always float32.
    """
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if amp == "off":
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_bf16:
        if _device.cpu_supports_bf16():
            return torch.bfloat16
        logger.warning(
            "CPU bf16 requested but this CPU has no native bf16 (avx512_bf16/amx_bf16); "
            "running float32 (emulated bf16 would be much slower)"
        )
    return None


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[object]:
    """`torch.autocast` for `dtype` on `device`, or a no-op context when `dtype` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
