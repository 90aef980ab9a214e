"""Mixed-precision (autocast) choice for the forward passes."""

from __future__ import annotations

import contextlib
import logging

import torch

from unetseg.engine import device as _device

logger = logging.getLogger(__name__)

AMP_MODES = ("auto", "off", "fp16", "bf16")


def resolve_autocast(
    device: torch.device, amp: str, *, cpu_bf16: bool, prefer_bf16: bool = False
) -> tuple[torch.dtype | None, str | None]:
    """The autocast dtype for ``amp`` on ``device`` (None: float32), and a note when the
    request cannot be honoured as asked. The one mixed-precision policy of inference and
    training.

    - ``"off"``: float32.
    - ``"fp16"``: float16 on CUDA; float32 elsewhere (noted).
    - ``"bf16"``: bfloat16 on CUDA with bf16 support (else float16, noted) and on a CPU with
      native bf16 (``device.cpu_supports_bf16``; else float32, noted: emulated bf16 is far
      slower than float32).
    - ``"auto"``: CUDA: float16, or bfloat16 where supported when ``prefer_bf16`` (training:
      no loss scaling needed); CPU: bfloat16 as ``"bf16"`` when ``cpu_bf16``, else float32.
    """
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if amp == "off":
        return None, None
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if amp == "bf16" and not bf16_ok:
            return torch.float16, "this GPU has no bf16: using fp16 autocast"
        wants_bf16 = amp == "bf16" or (amp == "auto" and prefer_bf16 and bf16_ok)
        return (torch.bfloat16 if wants_bf16 else torch.float16), None
    if device.type != "cpu":
        return None, None
    if amp == "fp16":
        return None, "fp16 autocast needs CUDA: running float32"
    if amp == "auto" and not cpu_bf16:
        return None, None
    if _device.cpu_supports_bf16():
        return torch.bfloat16, None
    return None, (
        "this CPU has no native bf16 (avx512_bf16/amx_bf16): running float32 "
        "(emulated bf16 would be much slower)"
    )


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[object]:
    """`torch.autocast` for `dtype` on `device`, or a no-op context when `dtype` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
