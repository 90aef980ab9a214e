"""Per-segment and per-lesion scores of an uncertainty map (see
`unetseg.engine.inference.uncertainty`), for the results table and summaries.

`LOW_CONFIDENCE` was chosen on the bundled brain model's held-out BraTS cases (pat0005,
pat0006), where the mean uncertainty of false-positive lesions was mostly above it and that of
the main, correct lesion below it (BENCHMARKS.md, "Uncertainty"). It is a reading aid, not a
calibrated probability.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unetseg.engine.lesions import label_lesions

#: A lesion whose mean uncertainty exceeds this is reported as "low confidence".
LOW_CONFIDENCE = 0.25


def segment_uncertainty(
    labels: np.ndarray, uncertainty: np.ndarray, values: Sequence[int]
) -> dict[int, float | None]:
    """Mean uncertainty inside each label value of `labels` (None for an empty segment).

    Args:
        labels: label map, any shape.
        uncertainty: float map of the same shape.
        values: label values to score.
    """
    _check_shapes(labels, uncertainty)
    flat = np.asarray(labels).ravel()
    count = np.bincount(flat, minlength=max(values, default=0) + 1)
    total = np.bincount(
        flat, weights=np.asarray(uncertainty, np.float64).ravel(), minlength=len(count)
    )
    return {
        value: (float(total[value] / count[value]) if value < len(count) and count[value] else None)
        for value in values
    }


def lesion_uncertainty(
    labels: np.ndarray,
    uncertainty: np.ndarray,
    spacing: Sequence[float],
    label_values: Sequence[int],
    min_volume_mm3: float = 0.0,
) -> list[float]:
    """Mean uncertainty of each lesion, in the order of `label_lesions` (lesion id 1 first),
    so that entry n - 1 belongs to row n of `lesion_table` called with the same arguments."""
    _check_shapes(labels, uncertainty)
    components, counts = label_lesions(labels, spacing, label_values, min_volume_mm3)
    totals = np.bincount(
        components.ravel(),
        weights=np.asarray(uncertainty, np.float64).ravel(),
        minlength=len(counts),
    )
    return [float(totals[n] / counts[n]) for n in range(1, len(counts))]


def _check_shapes(labels: np.ndarray, uncertainty: np.ndarray) -> None:
    if np.shape(labels) != np.shape(uncertainty):
        raise ValueError(
            f"uncertainty map {np.shape(uncertainty)} differs from the labels {np.shape(labels)}"
        )
