"""Overlap and surface-distance metrics of label maps (numpy / scipy).

Arrays are in array order, ``(K, J, I)`` in 3D or ``(J, I)`` in 2D, with integer labels.
``spacing`` is in millimetres in **(I, J, K) = (x, y, z)** order, as Slicer's ``GetSpacing()``
(see docs/CONVENTIONS.md), i.e. reversed with respect to the array axes; for 2D arrays it may be
``(I, J)`` or ``(I, J, K)`` (K ignored). :func:`array_order_spacing` is the one conversion.

Definitions (pred P, reference R, binary masks of one label; TP, FP, FN, TN voxel counts):

- dice ``2TP / (2TP + FP + FN)``, iou ``TP / (TP + FP + FN)``,
  sensitivity ``TP / (TP + FN)``, specificity ``TN / (TN + FP)``, precision ``TP / (TP + FP)``,
  volume_similarity ``1 - |FN - FP| / (2TP + FP + FN)`` (= ``1 - |P - R| / (P + R)``).
- Surfaces are the mask voxels removed by one binary erosion with the 6-neighbourhood
  (4 in 2D), voxels on the array border counting as surface, as in MONAI's ``get_mask_edges``.
  Distances are Euclidean in mm between voxel centres, from ``distance_transform_edt`` with
  ``sampling`` = spacing in array order, from each surface voxel of one mask to the nearest
  surface voxel of the other.
- hd95_mm: the larger of the two directed 95th percentiles (linear interpolation) as MONAI's
  ``compute_hausdorff_distance(percentile=95)``; assd_mm: the mean of all distances of both
  directions together (``(sum d(P->R) + sum d(R->P)) / (|dP| + |dR|)``) as MONAI's
  ``compute_average_surface_distance(symmetric=True)``.

Empty cases give defined, finite, JSON-safe values, never NaN:

- a ratio whose denominator is 0 is 1.0 (nothing could go wrong): both masks empty give
  dice = iou = sensitivity = precision = volume_similarity = 1.0; an empty reference gives
  sensitivity 1.0, an empty prediction precision 1.0, a reference covering the whole image
  specificity 1.0. One empty mask and the other not gives dice = iou = volume_similarity = 0.0.
- both empty: hd95_mm = assd_mm = 0.0; exactly one empty: both equal the image diagonal in mm,
  ``sqrt(sum((shape * spacing) ** 2))``, the largest possible distance (BraTS uses the same
  worst-case convention, 373.13 mm for 240 x 240 x 155 at 1 mm).

Distances are computed inside the bounding box of both masks plus a one-voxel margin, which gives
the same result as on the whole image and keeps a full 240 x 240 x 155 volume fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "DISTANCE_METRICS",
    "OVERLAP_METRICS",
    "array_order_spacing",
    "binary_metrics",
    "compute_metrics",
    "surface_distances",
]

OVERLAP_METRICS = (
    "dice",
    "iou",
    "sensitivity",
    "specificity",
    "precision",
    "volume_similarity",
)
DISTANCE_METRICS = ("hd95_mm", "assd_mm")


def array_order_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    """Convert spacing in (I, J, K) mm order to the array order of an ``ndim``-D array.

    Returns ``(sK, sJ, sI)`` for 3D and ``(sJ, sI)`` for 2D; a 2D array accepts ``(sI, sJ)`` or
    ``(sI, sJ, sK)``.
    """
    values = tuple(float(s) for s in spacing)
    if ndim == 2 and len(values) == 3:
        values = values[:2]
    if len(values) != ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not fit a {ndim}D array")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be positive, got {tuple(spacing)}")
    return tuple(reversed(values))


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, and 1.0 when the denominator is 0 (see the module docstring)."""
    return float(numerator) / float(denominator) if denominator > 0 else 1.0


def _crop_to_union(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to their union's bounding box, padded by one background voxel per side."""
    union = pred | ref
    slices = []
    for axis in range(union.ndim):
        other_axes = tuple(a for a in range(union.ndim) if a != axis)
        present = np.flatnonzero(union.any(axis=other_axes))
        slices.append(slice(int(present[0]), int(present[-1]) + 1))
    box = tuple(slices)
    return np.pad(pred[box], 1), np.pad(ref[box], 1)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with at least one face neighbour outside it (erosion border)."""
    return mask & ~ndimage.binary_erosion(mask)


def surface_distances(
    pred_mask: np.ndarray, ref_mask: np.ndarray, sampling: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm between two non-empty binary masks.

    Args:
        pred_mask, ref_mask: boolean arrays of the same shape, array order, both non-empty.
        sampling: voxel size in mm **in array order** (see :func:`array_order_spacing`).

    Returns:
        ``(d_pred_to_ref, d_ref_to_pred)``: for every surface voxel of one mask, the distance to
        the nearest surface voxel of the other (float64, 1D).
    """
    if not pred_mask.any() or not ref_mask.any():
        raise ValueError("surface distances need two non-empty masks")
    pred_crop, ref_crop = _crop_to_union(pred_mask, ref_mask)
    pred_surface = _surface(pred_crop)
    ref_surface = _surface(ref_crop)
    to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=sampling)
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=sampling)
    return to_ref[pred_surface], to_pred[ref_surface]


def binary_metrics(
    pred_mask: np.ndarray,
    ref_mask: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    include_distances: bool = True,
) -> dict[str, float]:
    """All metrics of one binary prediction against one binary reference.

    Args:
        pred_mask, ref_mask: arrays of the same shape ``(K, J, I)`` or ``(J, I)``; non-zero is
            foreground (pass ``labels == value`` or a region such as ``labels > 0``).
        spacing: voxel size in mm in (I, J, K) order.
        include_distances: also compute ``hd95_mm`` and ``assd_mm``.

    Returns:
        ``{name: float}`` for :data:`OVERLAP_METRICS` (and :data:`DISTANCE_METRICS`), defined as in
        the module docstring, never NaN.
    """
    pred = np.asarray(pred_mask).astype(bool, copy=False)
    ref = np.asarray(ref_mask).astype(bool, copy=False)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    sampling = array_order_spacing(spacing, pred.ndim)
    tp = int(np.count_nonzero(pred & ref))
    n_pred = int(np.count_nonzero(pred))
    n_ref = int(np.count_nonzero(ref))
    fp = n_pred - tp
    fn = n_ref - tp
    tn = pred.size - tp - fp - fn
    result = {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": _ratio(tp, tp + fp + fn),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "volume_similarity": 1.0 - _ratio(abs(fn - fp), 2 * tp + fp + fn)
        if n_pred + n_ref
        else 1.0,
    }
    if include_distances:
        if n_pred == 0 and n_ref == 0:
            hd95 = assd = 0.0
        elif n_pred == 0 or n_ref == 0:
            extent = np.asarray(pred.shape, dtype=float) * np.asarray(sampling)
            hd95 = assd = float(np.sqrt(np.sum(extent**2)))
        else:
            to_ref, to_pred = surface_distances(pred, ref, sampling)
            hd95 = float(max(np.percentile(to_ref, 95), np.percentile(to_pred, 95)))
            assd = float((to_ref.sum() + to_pred.sum()) / (to_ref.size + to_pred.size))
        result["hd95_mm"] = hd95
        result["assd_mm"] = assd
    return result


def compute_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    labels: Sequence[int],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    include_distances: bool = True,
    *,
    nested: bool = False,
) -> dict[str, dict[str, float]]:
    """Per-label metrics of a predicted label map against a reference label map, and their mean.

    Args:
        pred, ref: integer label maps of the same shape, ``(K, J, I)`` or ``(J, I)``.
        labels: the label values to evaluate (background is normally left out).
        spacing: voxel size in mm in (I, J, K) order (reversed relative to the array axes).
        include_distances: also compute ``hd95_mm`` and ``assd_mm`` (the slow part).
        nested: score label ``c`` as the region ``>= c`` of both maps (sigmoid models whose
            later labels lie inside earlier ones, e.g. BraTS whole tumour / core / enhancing)
            instead of the voxels ``== c``.

    Returns:
        ``{"<label>": {metric: float}, ..., "mean": {metric: float}}`` with string keys (JSON
        round-trips unchanged); "mean" is the unweighted mean over ``labels``. All values are
        finite Python floats (see the module docstring for empty masks).
    """
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    if len(labels) == 0:
        raise ValueError("no labels to evaluate")

    def region(labels_map: np.ndarray, label: int) -> np.ndarray:
        return labels_map >= label if nested else labels_map == label

    per_label = {
        str(int(label)): binary_metrics(
            region(pred, label), region(ref, label), spacing, include_distances
        )
        for label in labels
    }
    names = next(iter(per_label.values())).keys()
    mean = {name: float(np.mean([m[name] for m in per_label.values()])) for name in names}
    return {**per_label, "mean": mean}
