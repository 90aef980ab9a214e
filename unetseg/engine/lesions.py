"""Lesion-wise analysis: connected components, a per-lesion table and lesion detection metrics.

Arrays are label maps in array order, ``(K, J, I)`` in 3D or ``(J, I)`` in 2D; ``spacing`` is in
mm in (I, J, K) order (2D: ``(I, J)`` or ``(I, J, K)``), reversed relative to the array axes as
everywhere (docs/CONVENTIONS.md).

A lesion is a connected component of the foreground: the voxels whose label is in
``label_values`` (default: every non-zero label), so a metastasis made of necrosis and enhancing
rim is one lesion. Connectivity defaults to full (26 neighbours in 3D, 8 in 2D);
``connectivity=1`` gives faces only (6 / 4). Components are numbered 1..n by decreasing size
(ties in raster order), identically in :func:`lesion_table` and :func:`lesion_detection`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
from scipy import ndimage

from unetseg.engine.metrics import array_order_spacing

__all__ = [
    "DEFAULT_SIZE_BUCKETS_MM",
    "aggregate_lesion_detection",
    "label_lesions",
    "lesion_detection",
    "lesion_table",
]

DEFAULT_SIZE_BUCKETS_MM = (0.0, 3.0, 6.0, 10.0, 20.0, math.inf)


def _foreground(labels: np.ndarray, label_values: Sequence[int] | None) -> np.ndarray:
    if label_values is None:
        return labels != 0
    return np.isin(labels, np.asarray(label_values))


def label_lesions(
    labels: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    label_values: Sequence[int] | None = None,
    min_volume_mm3: float = 0.0,
    connectivity: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the foreground, numbered by decreasing size.

    Args:
        labels: label map ``(K, J, I)`` or ``(J, I)``.
        spacing: voxel size in mm, (I, J, K) order.
        label_values: labels forming the foreground (default: all non-zero).
        min_volume_mm3: components smaller than this (mm² in 2D) are dropped.
        connectivity: 1 .. ndim (default ndim: 26-connectivity in 3D, 8 in 2D).

    Returns:
        ``(components, voxel_counts)``: int32 array of the shape of ``labels`` with lesion ids
        1..n (0 elsewhere), and ``voxel_counts`` of length n + 1 (entry 0 unused, 0).
    """
    labels = np.asarray(labels)
    sampling = array_order_spacing(spacing, labels.ndim)
    connectivity = labels.ndim if connectivity is None else connectivity
    if not 1 <= connectivity <= labels.ndim:
        raise ValueError(f"connectivity must be 1..{labels.ndim}, got {connectivity}")
    structure = ndimage.generate_binary_structure(labels.ndim, connectivity)
    components, n = ndimage.label(_foreground(labels, label_values), structure=structure)
    counts = np.bincount(components.ravel(), minlength=n + 1)
    counts[0] = 0
    voxel_size = float(np.prod(sampling))
    keep = np.flatnonzero((counts > 0) & (counts * voxel_size >= min_volume_mm3))
    order = keep[np.argsort(-counts[keep], kind="stable")]
    relabel = np.zeros(n + 1, dtype=np.int32)
    relabel[order] = np.arange(1, order.size + 1, dtype=np.int32)
    return relabel[components], np.concatenate([[0], counts[order]])


def _equivalent_diameter(size_mm: np.ndarray | float, ndim: int) -> np.ndarray:
    """Diameter of the sphere (3D, size in mm³) or disc (2D, size in mm²) of the same size."""
    size = np.asarray(size_mm, dtype=float)
    if ndim == 3:
        return np.cbrt(6.0 * size / math.pi)
    return np.sqrt(4.0 * size / math.pi)


def lesion_table(
    labels: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    label_values: Sequence[int] | None = None,
    min_volume_mm3: float = 0.0,
    connectivity: int | None = None,
    ijk_to_ras: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One row per lesion, largest first: what a radiologist tracks between scans.

    Args:
        labels, spacing, label_values, min_volume_mm3, connectivity: as :func:`label_lesions`.
        ijk_to_ras: optional (4, 4) IJK-to-RAS matrix of the volume; adds ``centroid_ras``.

    Returns:
        JSON-serialisable dicts with keys

        - ``id``: 1..n, as numbered by :func:`label_lesions`;
        - ``labels``: the label values present in the lesion;
        - ``voxel_count``;
        - 3D: ``volume_mm3`` and ``volume_ml`` (mm³ / 1000); 2D: ``area_mm2``;
        - ``equivalent_diameter_mm``: diameter of the sphere (disc in 2D) of the same size;
        - ``centroid_index``: centre of mass in voxel indices, **array order** (k, j, i) / (j, i);
        - ``centroid_mm``: centre of mass in mm from the centre of voxel 0, **(x, y, z) = (I, J, K)
          order** (index times spacing, no origin or orientation);
        - ``centroid_ras``: centre of mass in RAS mm (only with ``ijk_to_ras``);
        - ``bbox_start`` / ``bbox_stop``: bounding box in array order, stop exclusive, so
          ``labels[tuple(slice(a, b) for a, b in zip(start, stop))]`` crops the lesion.
    """
    labels = np.asarray(labels)
    ndim = labels.ndim
    sampling = np.asarray(array_order_spacing(spacing, ndim))
    components, counts = label_lesions(labels, spacing, label_values, min_volume_mm3, connectivity)
    n = counts.size - 1
    if n == 0:
        return []
    boxes = ndimage.find_objects(components, max_label=n)
    voxel_size = float(np.prod(sampling))
    rows = []
    for lesion_id, box in enumerate(boxes, start=1):
        size_mm = float(counts[lesion_id]) * voxel_size
        inside = components[box] == lesion_id
        start = np.array([s.start for s in box])
        row: dict[str, Any] = {
            "id": int(lesion_id),
            "labels": [int(v) for v in np.unique(labels[box][inside])],
            "voxel_count": int(counts[lesion_id]),
        }
        if ndim == 3:
            row["volume_mm3"] = size_mm
            row["volume_ml"] = size_mm / 1000.0
        else:
            row["area_mm2"] = size_mm
        row["equivalent_diameter_mm"] = float(_equivalent_diameter(size_mm, ndim))
        index = np.argwhere(inside).mean(axis=0) + start
        row["centroid_index"] = [float(c) for c in index]
        row["centroid_mm"] = [float(c) for c in (index * sampling)[::-1]]
        if ijk_to_ras is not None:
            ijk = np.zeros(4)
            ijk[:ndim] = index[::-1]
            ijk[3] = 1.0
            row["centroid_ras"] = [float(c) for c in (np.asarray(ijk_to_ras) @ ijk)[:3]]
        row["bbox_start"] = [int(a) for a in start]
        row["bbox_stop"] = [int(s.stop) for s in box]
        rows.append(row)
    return rows


def _overlaps(
    ref_components: np.ndarray, pred_components: np.ndarray, n_ref: int, n_pred: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse overlap: arrays (ref id, pred id, voxel count) of every overlapping pair."""
    both = (ref_components > 0) & (pred_components > 0)
    pairs = ref_components[both].astype(np.int64) * (n_pred + 1) + pred_components[both]
    codes, counts = np.unique(pairs, return_counts=True)
    return codes // (n_pred + 1), codes % (n_pred + 1), counts


def _f1(sensitivity: float, precision: float) -> float:
    total = sensitivity + precision
    return 2.0 * sensitivity * precision / total if total > 0 else 0.0


def _bucket(low: float, high: float | None, n: int, hits: int) -> dict[str, Any]:
    return {
        "min_mm": low,
        "max_mm": high,
        "reference_lesions": n,
        "detected": hits,
        "sensitivity": hits / n if n else None,
    }


def _size_buckets(
    diameters: np.ndarray, detected: np.ndarray, edges: Sequence[float]
) -> list[dict[str, Any]]:
    """Detection per diameter bucket ``[low, high)``; an infinite edge becomes None."""
    buckets = []
    for low, high in pairwise(edges):
        inside = (diameters >= low) & (diameters < high)
        high_or_none = None if math.isinf(high) else float(high)
        buckets.append(
            _bucket(float(low), high_or_none, int(inside.sum()), int(detected[inside].sum()))
        )
    return buckets


def lesion_detection(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    label_values: Sequence[int] | None = None,
    overlap_threshold: float = 0.0,
    size_buckets_mm: Sequence[float] = DEFAULT_SIZE_BUCKETS_MM,
    min_volume_mm3: float = 0.0,
    connectivity: int | None = None,
) -> dict[str, Any]:
    """Lesion-wise detection of one case: predicted against reference lesions.

    Matching (by component overlap, no one-to-one assignment, so merging and splitting are
    neither rewarded nor punished twice):

    - a reference lesion is **detected** when the fraction of its voxels covered by predicted
      lesions is > 0 and >= ``overlap_threshold`` (default 0: any overlap); otherwise **missed**;
    - a predicted lesion is a **false positive** when the fraction of its voxels inside reference
      lesions is 0 or < ``overlap_threshold``. One prediction merging two reference lesions detects
      both; two predictions splitting one reference lesion are both true positives.

    Scores (a ratio with an empty denominator is 1.0, so an empty reference and prediction give
    sensitivity = precision = f1 = lesion_dice = 1.0 and 0 false positives):

    - ``sensitivity`` = detected / reference lesions; ``precision`` = predicted lesions that are
      not false positives / predicted lesions; ``f1`` their harmonic mean (0 when both are 0);
    - ``lesion_dice``: as BraTS 2023's lesion-wise Dice, the sum of per-reference-lesion Dice over
      (reference lesions + false-positive lesions). The Dice of a detected lesion compares it with
      the union of the predicted lesions touching it, a missed lesion scores 0 and every false
      positive adds a 0 term. Unlike BraTS, reference lesions are not dilated before matching.
    - ``by_size``: detection per equivalent-diameter bucket ``[min_mm, max_mm)`` of the
      reference lesions (``max_mm`` None = no upper bound); a bucket without reference lesions has
      ``sensitivity`` None.

    Args:
        pred, ref: label maps of the same shape, ``(K, J, I)`` or ``(J, I)``.
        spacing: voxel size in mm, (I, J, K) order.
        label_values: labels forming the foreground of both maps (default: all non-zero).
        overlap_threshold: minimum covered fraction, see above.
        size_buckets_mm: increasing bucket edges in mm (equivalent diameter).
        min_volume_mm3: ignore lesions (reference and predicted) smaller than this (mm² in 2D).
        connectivity: see :func:`label_lesions`.

    Returns:
        JSON-serialisable dict: ``reference_lesions``, ``predicted_lesions``, ``detected``,
        ``missed``, ``false_positives``, ``sensitivity``, ``precision``, ``f1``, ``lesion_dice``,
        ``by_size`` (list of buckets) and ``lesions`` (per reference lesion: ``id``,
        ``voxel_count``, ``equivalent_diameter_mm``, ``detected``, ``dice``).
    """
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    edges = [float(e) for e in size_buckets_mm]
    if len(edges) < 2 or any(b <= a for a, b in pairwise(edges)):
        raise ValueError(f"size_buckets_mm must increase, got {tuple(size_buckets_mm)}")
    lesion_options = (spacing, label_values, min_volume_mm3, connectivity)
    ref_components, ref_counts = label_lesions(ref, *lesion_options)
    pred_components, pred_counts = label_lesions(pred, *lesion_options)
    n_ref, n_pred = ref_counts.size - 1, pred_counts.size - 1
    ref_ids, pred_ids, shared = _overlaps(ref_components, pred_components, n_ref, n_pred)

    ref_covered = np.bincount(ref_ids, weights=shared, minlength=n_ref + 1)
    pred_covered = np.bincount(pred_ids, weights=shared, minlength=n_pred + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref_fraction = np.where(ref_counts > 0, ref_covered / ref_counts, 0.0)
        pred_fraction = np.where(pred_counts > 0, pred_covered / pred_counts, 0.0)
    detected = ((ref_covered > 0) & (ref_fraction >= overlap_threshold))[1:]
    pred_hit = ((pred_covered > 0) & (pred_fraction >= overlap_threshold))[1:]
    false_positives = int(n_pred - pred_hit.sum())

    touching = np.bincount(ref_ids, weights=pred_counts[pred_ids], minlength=n_ref + 1)
    dice = np.where(detected, 2.0 * ref_covered[1:] / (ref_counts[1:] + touching[1:]), 0.0)

    sampling = array_order_spacing(spacing, ref.ndim)
    diameters = _equivalent_diameter(ref_counts[1:] * float(np.prod(sampling)), ref.ndim)
    n_detected = int(detected.sum())
    sensitivity = n_detected / n_ref if n_ref else 1.0
    precision = int(pred_hit.sum()) / n_pred if n_pred else 1.0
    dice_terms = n_ref + false_positives
    return {
        "reference_lesions": n_ref,
        "predicted_lesions": n_pred,
        "detected": n_detected,
        "missed": n_ref - n_detected,
        "false_positives": false_positives,
        "sensitivity": sensitivity,
        "precision": precision,
        "f1": _f1(sensitivity, precision),
        "lesion_dice": float(dice.sum()) / dice_terms if dice_terms else 1.0,
        "by_size": _size_buckets(diameters, detected, edges),
        "lesions": [
            {
                "id": lesion_id,
                "voxel_count": int(ref_counts[lesion_id]),
                "equivalent_diameter_mm": float(diameters[lesion_id - 1]),
                "detected": bool(detected[lesion_id - 1]),
                "dice": float(dice[lesion_id - 1]),
            }
            for lesion_id in range(1, n_ref + 1)
        ],
    }


def aggregate_lesion_detection(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pool :func:`lesion_detection` results of several cases (lesion counts summed).

    Returns ``cases``, the summed counts, pooled ``sensitivity`` / ``precision`` / ``f1`` /
    ``lesion_dice`` (over all lesions of all cases, same empty rules as per case),
    ``false_positives_per_case`` and pooled ``by_size`` buckets. All cases must use the same size
    buckets.
    """
    if not results:
        raise ValueError("no results to aggregate")
    keys = ("reference_lesions", "predicted_lesions", "detected", "missed", "false_positives")
    totals = {key: int(sum(r[key] for r in results)) for key in keys}
    bounds = [(b["min_mm"], b["max_mm"]) for b in results[0]["by_size"]]
    if any([(b["min_mm"], b["max_mm"]) for b in r["by_size"]] != bounds for r in results):
        raise ValueError("results use different size buckets")
    n_ref, n_pred = totals["reference_lesions"], totals["predicted_lesions"]
    sensitivity = totals["detected"] / n_ref if n_ref else 1.0
    precision = (n_pred - totals["false_positives"]) / n_pred if n_pred else 1.0
    dice_sum = sum(lesion["dice"] for r in results for lesion in r["lesions"])
    dice_terms = n_ref + totals["false_positives"]
    by_size = []
    for index, (low, high) in enumerate(bounds):
        n = sum(r["by_size"][index]["reference_lesions"] for r in results)
        hits = sum(r["by_size"][index]["detected"] for r in results)
        by_size.append(_bucket(low, high, n, hits))
    return {
        "cases": len(results),
        **totals,
        "sensitivity": sensitivity,
        "precision": precision,
        "f1": _f1(sensitivity, precision),
        "lesion_dice": dice_sum / dice_terms if dice_terms else 1.0,
        "false_positives_per_case": totals["false_positives"] / len(results),
        "by_size": by_size,
    }
