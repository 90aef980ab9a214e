"""Scores of a prediction against a reference that may label only some regions (partial labels).

Shared by validation during training and ``python -m Training evaluate``: a case is scored only
on the regions its source labels (``SourceConfig.evaluated_regions``), each only on the voxels
where that region is known (``known_regions``); lesion detection runs on the first scored region.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from unetseg.engine.lesions import lesion_detection
from unetseg.engine.metrics import binary_metrics, compute_metrics


def labelled_metrics(
    prediction: np.ndarray,
    reference: np.ndarray,
    values: Sequence[int],
    spacing: Sequence[float],
    *,
    nested: bool,
    distances: bool,
    evaluated: Sequence[bool] | None = None,
    known: np.ndarray | None = None,
) -> dict[str, dict[str, float]] | None:
    """``compute_metrics`` restricted to what the reference labels.

    Args:
        prediction, reference: label maps ``(K, J, I)`` (model label values; nested index for
            sigmoid models).
        values: the model's label values, in region order.
        spacing: voxel size (I, J, K) in mm.
        nested: label ``c`` is the region ``>= c`` (sigmoid models).
        distances: also compute the surface distances.
        evaluated: per label, whether to score it (None: all).
        known: ``(R, K, J, I)``, 1 where region ``r`` is labelled (None: everywhere).

    Returns:
        ``{"<label>": {metric: value}, ..., "mean": ...}`` over the scored labels only, or None
        when no label is scored. Without ``evaluated`` and ``known``, exactly
        ``compute_metrics``.
    """
    if known is None and (evaluated is None or all(evaluated)):
        return compute_metrics(prediction, reference, values, spacing, distances, nested=nested)
    per_label = {}
    for c, value in enumerate(values):
        if evaluated is not None and not evaluated[c]:
            continue
        pred, ref = _region(prediction, value, nested), _region(reference, value, nested)
        if known is not None:
            mask = np.asarray(known[c]).astype(bool)
            pred, ref = pred & mask, ref & mask
        per_label[str(value)] = binary_metrics(pred, ref, spacing, distances)
    if not per_label:
        return None
    names = next(iter(per_label.values())).keys()
    mean = {name: float(np.mean([m[name] for m in per_label.values()])) for name in names}
    return {**per_label, "mean": mean}


def labelled_lesions(
    prediction: np.ndarray,
    reference: np.ndarray,
    values: Sequence[int],
    spacing: Sequence[float],
    *,
    nested: bool,
    evaluated: Sequence[bool] | None = None,
    known: np.ndarray | None = None,
) -> dict[str, Any]:
    """``lesion_detection`` of the non-zero labels, or, when the reference does not label all
    regions everywhere, of the first scored region on its known voxels (its label value is
    ``"label"`` in the result; None = all non-zero labels)."""
    if known is None and (evaluated is None or all(evaluated)):
        return {**lesion_detection(prediction, reference, spacing), "label": None}
    c = next(c for c, scored in enumerate(evaluated or [True] * len(values)) if scored)
    pred, ref = _region(prediction, values[c], nested), _region(reference, values[c], nested)
    if known is not None:
        mask = np.asarray(known[c]).astype(bool)
        pred, ref = pred & mask, ref & mask
    return {**lesion_detection(pred, ref, spacing), "label": int(values[c])}


def _region(labels: np.ndarray, value: int, nested: bool) -> np.ndarray:
    return labels >= value if nested else labels == value
