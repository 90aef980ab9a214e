"""Memory checks made before a case's large arrays are allocated.

A manifest with a tiny ``spacing_mm`` or a huge ``patch_size`` (or a huge image) would
otherwise fail deep inside numpy or torch with a bare ``MemoryError``, or drive the machine
into swap. ``check_case_memory`` computes what preparing a case and running one window surely
allocate, from the model grid and the manifest, and refuses with a message naming the manifest
values when even that exceeds the memory available now. It is a lower bound (the prepared
channels and one resampled volume on the model grid, two feature maps of the first network
level for one window), so a refusal is never wrong; a case that passes can still need more.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unetseg.engine.preprocessing.spec import PreparationSpec

#: float32 feature maps of the first network level alive at once for one window.
_WINDOW_FEATURE_MAPS = 2
_FLOAT_BYTES = 4
_MEMINFO = Path("/proc/meminfo")


class MemoryLimitError(ValueError):
    """A case would need more memory than is available (the message says which setting)."""


def available_memory_bytes() -> int | None:
    """Memory a new allocation can use now: ``MemAvailable`` (Linux), else the free pages of
    POSIX systems; None when unknown."""
    available = _meminfo_available()
    if available is not None:
        return available
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def case_memory_bytes(grid_shape: Sequence[int], model: PreparationSpec) -> int:
    """Bytes one case on the model grid ``grid_shape`` ((K, J, I)) surely needs (see the
    module docstring); the window term is left out for a model without a known patch size
    or first-level width."""
    grid_arrays = len(model.inputs) + 1  # the prepared channels and one resampled input
    window = math.prod(model.patch_size or (0,))
    window_bytes = window * model.first_filters * _WINDOW_FEATURE_MAPS * _FLOAT_BYTES
    return math.prod(int(n) for n in grid_shape) * grid_arrays * _FLOAT_BYTES + window_bytes


def check_window_memory(model: PreparationSpec, window_batch: int = 1) -> None:
    """Raise ``MemoryLimitError`` when ``window_batch`` windows of the model's ``patch_size``
    exceed the memory available: their input channels and first-level feature maps, each
    counted twice (a layer's input and output are alive together). Checked before a network
    is compiled for that window shape."""
    window = math.prod(model.patch_size or (0,))
    channels = len(model.inputs) + model.first_filters
    needed = window_batch * window * channels * _WINDOW_FEATURE_MAPS * _FLOAT_BYTES
    available = available_memory_bytes()
    if available is None or needed <= available:
        return
    raise MemoryLimitError(
        f"one window would need at least {_gib(needed)} of memory, {_gib(available)} is "
        f"available: manifest patch_size {_listed(model.patch_size)} with {window_batch} "
        "window(s) per pass. Check the manifest's patch_size, or free memory"
    )


def check_case_memory(
    grid_shape: Sequence[int], model: PreparationSpec, image_spacing: Sequence[float]
) -> None:
    """Raise ``MemoryLimitError`` when a case on the model grid ``grid_shape`` ((K, J, I))
    would need more memory than is available; ``image_spacing`` (I, J, K) mm is quoted."""
    needed = case_memory_bytes(grid_shape, model)
    available = available_memory_bytes()
    if available is None or needed <= available:
        return
    spacing = ", ".join(f"{s:.3g}" for s in image_spacing)
    raise MemoryLimitError(
        f"this case would need at least {_gib(needed)} of memory, {_gib(available)} is "
        "available: "
        f"the model grid would be {tuple(int(n) for n in grid_shape)} voxels (K, J, I) for "
        f"manifest spacing_mm {_listed(model.spacing_mm)} and patch_size "
        f"{_listed(model.patch_size)} (image spacing {spacing} mm). Check these manifest values, "
        "or free memory"
    )


def _listed(values: Sequence[float] | None) -> list[float] | None:
    """A manifest value as the manifest writes it (a list), for messages."""
    return None if values is None else list(values)


def _gib(count: int) -> str:
    return f"{count / 2**30:.3g} GiB"


def _meminfo_available() -> int | None:
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
