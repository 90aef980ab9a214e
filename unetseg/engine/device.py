"""Compute-device selection and description (CPU / CUDA)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

_CPUINFO = Path("/proc/cpuinfo")
#: /proc/cpuinfo flags of native bf16 arithmetic (x86: AVX512-BF16, AMX; aarch64: BF16).
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def select_device(name: str = "auto") -> torch.device:
    """Return the torch device for `name`: "auto", "cpu", "cuda" or "cuda:<index>".

    "auto" picks the first CUDA device when one is usable, else the CPU.

    Raises:
        ValueError: unknown name.
        RuntimeError: CUDA requested but this torch build has no CUDA, or no GPU is visible.
    """
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"invalid CUDA device name {name!r}") from exc
        if torch.version.cuda is None:
            raise RuntimeError(
                "CUDA requested but torch has no CUDA build; install a CUDA build of torch, "
                "see README"
            )
        if not torch.cuda.is_available():
            raise RuntimeError(
                "CUDA requested but no CUDA device is usable (no GPU visible or driver missing); "
                "use device 'cpu' or check the NVIDIA driver"
            )
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise RuntimeError(
                f"CUDA device {index} requested but only {torch.cuda.device_count()} visible"
            )
        return device
    raise ValueError(f"unknown device {name!r}; use 'auto', 'cpu' or 'cuda'")


def cpuinfo_has_bf16(cpuinfo: str) -> bool:
    """True when a /proc/cpuinfo text lists a native bf16 flag (first processor entry)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return not _BF16_FLAGS.isdisjoint(value.split())
    return False


@functools.cache
def cpu_supports_bf16() -> bool:
    """True when the CPU computes bf16 natively (avx512_bf16 / amx_bf16 / aarch64 bf16).

    Reads /proc/cpuinfo; False where it is unreadable (non-Linux). Without these instructions
    torch emulates bf16 and CPU autocast is far slower than float32 (about 100x measured on
    an AMD EPYC without avx512_bf16), so callers must not enable it then.
    """
    try:
        return cpuinfo_has_bf16(_CPUINFO.read_text())
    except OSError:
        return False


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, else `platform.processor()`, else "unknown CPU"."""
    try:
        for line in _CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_device(device: torch.device | str | None = None) -> str:
    """One line describing `device` (default: `select_device("auto")`) and the torch build."""
    device = select_device("auto") if device is None else torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return (
            f"CUDA {index}: {props.name}, {props.total_memory / 2**30:.0f} GiB, "
            f"torch {torch.__version__} (CUDA {torch.version.cuda})"
        )
    bf16 = "native bf16" if cpu_supports_bf16() else "no native bf16"
    return (
        f"CPU: {cpu_model()}, {torch.get_num_threads()} torch threads, {bf16}, "
        f"torch {torch.__version__}"
    )
