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


def _region(box: tuple[int, int], extent: int, roi: int, before: int) -> tuple[int, int]:
    """Box `[start, stop)` in image coordinates -> region of padded coordinates, grown
    symmetrically to at least `roi` and kept inside the padded extent `extent`."""
    lo, hi = box[0] + before, box[1] + before
    if hi - lo < roi:
        lo = min(max(lo - (roi - (hi - lo)) // 2, 0), extent - roi)
        hi = lo + roi
    return lo, hi


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
        crop_to_mask: place the windows (MONAI-style) inside each item's mask bounding box,
            grown to at least `roi`, instead of over the whole image.
    """
    pad = monai_padding(spatial, roi)
    padded = [s + b + a for s, (b, a) in zip(spatial, pad, strict=True)]
    crop = tuple(slice(b, b + min(s, r)) for s, r, (b, _) in zip(spatial, roi, pad, strict=True))
    full = tuple((0, p) for p in padded)

    windows: list[Window] = []
    for item in range(items):
        regions: Sequence[tuple[int, int]] = full
        if mask is not None and crop_to_mask:
            box = mask_bounding_box(mask[item])
            if box is None:
                continue
            regions = [
                _region(bx, p, r, b) for bx, p, r, (b, _) in zip(box, padded, roi, pad, strict=True)
            ]
        per_axis = [
            [lo + s for s in axis_starts(hi - lo, r, o)]
            for (lo, hi), r, o in zip(regions, roi, overlap, strict=True)
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
