"""Window placement for sliding-window inference, identical to MONAI's.

All shapes, sizes and positions are in array order: the spatial axes of an `(N, C, *spatial)`
tensor, i.e. (K, J, I) for 3D and (J, I) for 2D.

MONAI's rules, reproduced here: an image axis shorter than the window is padded to the window
size (`diff // 2` before, the rest after); windows start every `int(roi * (1 - overlap))`
voxels (at least 1; a whole window when the axis equals the window) and the last window is
shifted back to end at the image end. Windows are ordered with axis 0 slowest (C order), so
their axis-0 starts never decrease; the aggregation relies on that.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Window:
    """One window: batch item and the image region it covers (padding excluded)."""

    item: int
    source: tuple[slice, ...]


@dataclass(frozen=True)
class Tiling:
    """Windows of one inference and the geometry shared by all of them.

    Attributes:
        windows: windows in processing order (item, then C order of their starts).
        pad: MONAI padding `(before, after)` per spatial axis, non-zero only where the image
            is shorter than the window.
        crop: part of a window (size `roi`) that lies inside the image; the same for every
            window because padded axes have a single window covering the padded extent.
    """

    windows: tuple[Window, ...]
    pad: tuple[tuple[int, int], ...]
    crop: tuple[slice, ...]


def scan_interval(extent: int, roi: int, overlap: float) -> int:
    """Distance between window starts along one axis (MONAI `_get_scan_interval`)."""
    if roi == extent:
        return roi
    return max(int(roi * (1 - overlap)), 1)


def axis_starts(extent: int, roi: int, overlap: float) -> list[int]:
    """Window starts along an axis of `extent >= roi` voxels (MONAI `dense_patch_slices`)."""
    step = scan_interval(extent, roi, overlap)
    count = next(d for d in range(math.ceil(extent / step)) if d * step + roi >= extent) + 1
    return [i * step - max(i * step + roi - extent, 0) for i in range(count)]


def monai_padding(spatial: Sequence[int], roi: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """(before, after) padding per axis that brings each axis up to at least `roi`."""
    pads = []
    for size, r in zip(spatial, roi, strict=True):
        diff = max(r - size, 0)
        pads.append((diff // 2, diff - diff // 2))
    return tuple(pads)


def mask_bounding_box(mask: torch.Tensor) -> tuple[tuple[int, int], ...] | None:
    """Half-open `(start, stop)` per axis of the True voxels of a bool mask; None if empty."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = torch.nonzero(mask.any(dim=others) if others else mask).flatten()
        if hits.numel() == 0:
            return None
        box.append((int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def covering_starts(starts: Sequence[int], roi: int, box: tuple[int, int]) -> list[int]:
    """The fewest of `starts` (sorted window starts of one axis, consecutive starts at most
    `roi` apart, covering the axis) whose windows together cover `[box[0], box[1])`: greedy,
    each time the latest start that still covers the first uncovered voxel."""
    chosen: list[int] = []
    position = box[0]
    while position < box[1]:
        start = max(s for s in starts if s <= position)
        chosen.append(start)
        position = start + roi
    return chosen


def plan_tiling(
    spatial: Sequence[int],
    roi: Sequence[int],
    overlap: Sequence[float],
    items: int,
    mask: torch.Tensor | None = None,
    crop_to_mask: bool = False,
) -> Tiling:
    """Place the windows of an `(items, C, *spatial)` image.

    Args:
        spatial: image spatial shape (array order).
        roi: window size (array order).
        overlap: overlap fraction in [0, 1) per axis.
        items: batch size N.
        mask: optional bool foreground mask `(items, *spatial)` on the CPU. Windows whose
            image region holds no foreground are dropped.
        crop_to_mask: keep, along each axis, only the fewest windows of the full tiling that
            cover the mask's bounding box (`covering_starts`). The windows do not move, so each
            one sees exactly what it sees in the full tiling; fewer of them overlap.
    """
    pad = monai_padding(spatial, roi)
    padded = [s + b + a for s, (b, a) in zip(spatial, pad, strict=True)]
    crop = tuple(slice(b, b + min(s, r)) for s, r, (b, _) in zip(spatial, roi, pad, strict=True))

    grid = [axis_starts(p, r, o) for p, r, o in zip(padded, roi, overlap, strict=True)]
    windows: list[Window] = []
    for item in range(items):
        per_axis = grid
        if mask is not None and crop_to_mask:
            box = mask_bounding_box(mask[item])
            if box is None:
                continue
            per_axis = [
                covering_starts(starts, r, (lo + b, hi + b))
                for starts, r, (lo, hi), (b, _) in zip(grid, roi, box, pad, strict=True)
            ]
        for starts in itertools.product(*per_axis):
            source = tuple(
                slice(max(s - b, 0), min(s - b + r, size))
                for s, r, size, (b, _) in zip(starts, roi, spatial, pad, strict=True)
            )
            if mask is not None and not bool(mask[(item, *source)].any()):
                continue
            windows.append(Window(item, source))
    return Tiling(tuple(windows), pad, crop)
