"""Foreground bounding boxes, cropping and uncropping, and body masks.

Masks and spatial shapes are in array order, e.g. (K, J, I); images may carry leading dims
(channels) in front of the mask's dims.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Default body thresholds: CT in HU; other modalities relative to the robust intensity range.
CT_BODY_THRESHOLD_HU = -500.0
ROBUST_RANGE_FRACTION = 0.1


@dataclass(frozen=True)
class CropBox:
    """A crop: ``slices`` over the last ``len(slices)`` axes of an array of ``spatial_shape``."""

    slices: tuple[slice, ...]
    spatial_shape: tuple[int, ...]

    def uncrop(
        self,
        array: np.ndarray,
        full_shape: Sequence[int] | None = None,
        fill: float = 0,
    ) -> np.ndarray:
        """Place a cropped ``array`` (..., *crop) back into a ``fill``-ed array of the full
        spatial shape (default: the shape the box was computed on); dtype is kept."""
        spatial = tuple(full_shape) if full_shape is not None else self.spatial_shape
        if len(spatial) != len(self.slices):
            raise ValueError(f"full_shape {spatial} needs {len(self.slices)} dims")
        crop_shape = tuple(s.stop - s.start for s in self.slices)
        if tuple(array.shape[-len(crop_shape) :]) != crop_shape:
            raise ValueError(f"array shape {array.shape} does not end with crop {crop_shape}")
        lead = array.shape[: array.ndim - len(crop_shape)]
        result = np.full((*lead, *spatial), fill, dtype=array.dtype)
        result[(..., *self.slices)] = array
        return result


def foreground_bbox(mask: np.ndarray, margin: int | Sequence[int] = 0) -> tuple[slice, ...]:
    """Smallest box holding every non-zero voxel of ``mask``, grown by ``margin`` voxels per
    side (one value, or one per axis in array order) and clipped to the array.

    Raises:
        ValueError: when ``mask`` has no non-zero voxel.
    """
    margins = np.broadcast_to(np.asarray(margin, dtype=int), (mask.ndim,))
    if np.any(margins < 0):
        raise ValueError(f"margin must be non-negative, got {margin}")
    slices = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(np.any(mask, axis=others))
        if present.size == 0:
            raise ValueError("mask is empty: no foreground to crop to")
        start = max(0, int(present[0]) - int(margins[axis]))
        stop = min(mask.shape[axis], int(present[-1]) + 1 + int(margins[axis]))
        slices.append(slice(start, stop))
    return tuple(slices)


def crop_to_foreground(
    array: np.ndarray, mask: np.ndarray, margin: int | Sequence[int] = 0
) -> tuple[np.ndarray, CropBox]:
    """Crop ``array`` (..., *mask.shape) to the bounding box of ``mask`` plus ``margin``.

    Returns:
        The cropped (contiguous) array and the ``CropBox`` that undoes it.
    """
    if tuple(array.shape[-mask.ndim :]) != mask.shape:
        raise ValueError(f"array shape {array.shape} does not end with mask shape {mask.shape}")
    slices = foreground_bbox(mask, margin)
    box = CropBox(slices, tuple(mask.shape))
    return np.ascontiguousarray(array[(..., *slices)]), box


def body_mask(
    image: np.ndarray,
    threshold: float | None = None,
    modality: str = "CT",
    max_voxels: int | None = 1 << 21,
) -> np.ndarray:
    """Approximate body (or head) mask, e.g. to skip empty windows during inference.

    Steps: ``image > threshold``; keep the largest connected component (face connectivity);
    fill holes in every slice along the first axis (axial slices K of a canonical (K, J, I)
    volume; a (J, I) image is one slice). Slice-wise filling keeps air-filled organs (lungs,
    airways, bowel) inside the mask even where they connect to air at the volume border.

    Args:
        image: (K, J, I) volume or (J, I) image.
        threshold: intensity threshold. Default: -500 HU for ``modality == "CT"``; otherwise
            ``p2 + 0.1 * (p98 - p2)`` with p2/p98 the 2nd/98th percentiles (the robust-range
            rule of FSL BET), which separates MR/X-ray signal from background air/noise.
        modality: manifest modality ("CT", "MR", "CR", "DX"); only selects the default threshold.
        max_voxels: larger images are processed on a grid subsampled by the smallest integer
            step that fits, and the result is expanded back and grown by one step, so that the
            mask stays inclusive (blocky at the step scale). ``None``: always full resolution.

    Returns:
        bool array of ``image.shape`` (all False when nothing exceeds the threshold).
    """
    step = 1
    if max_voxels is not None:
        while image[(slice(None, None, step),) * image.ndim].size > max_voxels:
            step += 1
    if step > 1:
        coarse = body_mask(
            image[(slice(None, None, step),) * image.ndim], threshold, modality, None
        )
        coarse = ndimage.binary_dilation(coarse)
        for axis in range(image.ndim):
            coarse = np.repeat(coarse, step, axis=axis)
        return np.ascontiguousarray(coarse[tuple(slice(0, n) for n in image.shape)])
    if threshold is None:
        if modality == "CT":
            threshold = CT_BODY_THRESHOLD_HU
        else:
            p2, p98 = np.percentile(image, [2.0, 98.0])
            threshold = float(p2 + ROBUST_RANGE_FRACTION * (p98 - p2))
    foreground = image > threshold
    labels, count = ndimage.label(foreground)
    if count == 0:
        return foreground
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    mask = labels == int(np.argmax(sizes))
    del labels
    if mask.ndim == 2:
        return ndimage.binary_fill_holes(mask)
    for k in range(mask.shape[0]):
        mask[k] = ndimage.binary_fill_holes(mask[k])
    return mask
