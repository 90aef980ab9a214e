"""Segment volumes and per-lesion tables for a label map (numpy only, no Slicer needed).

Volumes are voxel counts times the voxel volume ``|det(IJKToRAS[:3, :3])|`` in mm³, reported
in millilitres. Lesions come from ``unetseg.engine.lesions.lesion_table``: 26-connected
components of the union of the lesion labels (a metastasis with a necrotic core is one lesion),
largest first, with RAS centroids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from unetseg.engine.confidence import LOW_CONFIDENCE, lesion_uncertainty, segment_uncertainty
from unetseg.engine.geometry import Geometry
from unetseg.engine.lesions import lesion_table
from unetseg.engine.manifest import LabelSpec

MM3_PER_ML = 1000.0


def formatSize(segment: Mapping[str, Any]) -> str:
    """A ``segmentStatistics`` segment's size in words: area for single-slice images (an
    X-ray has no volume), else volume."""
    if "area_mm2" in segment:
        return f"{segment['area_mm2'] / 100.0:.1f} cm2"
    return f"{segment['volume_ml']:.1f} mL"


#: Decimals of the numbers in summaries (``roundedStatistics``): volumes 0.1 mL / 0.1 mm³,
#: areas 0.1 mm², lengths and coordinates 0.01 mm; counts and indices stay exact.
_DECIMALS = {
    "volume_ml": 1,
    "area_mm2": 1,
    "volume_mm3": 1,
    "voxel_volume_mm3": 4,
    "equivalent_diameter_mm": 2,
    "centroid_index": 2,
    "centroid_mm": 2,
    "centroid_ras": 2,
    "uncertainty_mean": 3,
}
#: Lesion volumes in mL keep the precision of ``volume_mm3`` (a metastasis may be 0.01 mL).
_LESION_DECIMALS = _DECIMALS | {"volume_ml": 4}


def roundedStatistics(statistics: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``segmentStatistics`` output with its numbers rounded for summaries."""

    def rounded(row: Mapping[str, Any], decimals: Mapping[str, int]) -> dict[str, Any]:
        def one(key: str, value: Any) -> Any:
            if key not in decimals or value is None:
                return value
            if isinstance(value, list):
                return [round(v, decimals[key]) for v in value]
            return round(value, decimals[key])

        return {key: one(key, value) for key, value in row.items()}

    result = rounded(statistics, _DECIMALS)
    result["segments"] = [rounded(row, _DECIMALS) for row in statistics["segments"]]
    if "lesions" in statistics:
        result["lesions"] = [rounded(row, _LESION_DECIMALS) for row in statistics["lesions"]]
    return result


def segmentStatistics(
    labels: np.ndarray,
    geometry: Geometry,
    labelSpecs: Sequence[LabelSpec],
    lesionLabels: Iterable[int] | None = None,
    minLesionVolumeMm3: float = 0.0,
    uncertainty: np.ndarray | None = None,
) -> dict[str, Any]:
    """Per-segment volumes and, for lesion models, a per-lesion table.

    Args:
        labels: label map (K, J, I) on ``geometry`` (``(J, I)`` accepted when ``K = 1``).
        geometry: the label map's geometry.
        labelSpecs: the model's ``LabelSpec`` objects (value 0 ignored).
        lesionLabels: label values whose union is split into lesions; None: no lesion table.
        minLesionVolumeMm3: lesions smaller than this are left out of the table and count.
        uncertainty: per-voxel uncertainty shaped like ``labels``: adds ``uncertainty_mean``
            to every segment and lesion, and ``low_confidence`` to every lesion (mean above
            ``unetseg.engine.confidence.LOW_CONFIDENCE``).

    Returns:
        ``{"voxel_volume_mm3": float, "segments": [{"value", "name", "voxel_count",
        "volume_ml"}, ...]}`` in spec order (single-slice images add ``"area_mm2"`` per
        segment), plus, when ``lesionLabels`` is given, ``"lesion_count"`` and ``"lesions"``:
        the rows of ``lesion_table`` (``id``, ``labels``, ``voxel_count``, ``volume_ml``,
        ``equivalent_diameter_mm``, ``centroid_ras``, bounding box, ...), largest first.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2 and geometry.shape[0] == 1:
        labels = labels[np.newaxis]
    if labels.shape != geometry.shape:
        raise ValueError(f"Label map shape {labels.shape} differs from geometry {geometry.shape}")
    if labels.dtype.kind not in "ui" or (labels.size and labels.min() < 0):
        raise ValueError("Label map must hold non-negative integers")
    specs = [spec for spec in labelSpecs if spec.value != 0]
    if uncertainty is not None:
        uncertainty = uncertainty.reshape(labels.shape)
    axes = geometry.ijk_to_ras[:3, :3]
    voxelMm3 = float(abs(np.linalg.det(axes)))
    pixelMm2 = float(np.linalg.norm(np.cross(axes[:, 0], axes[:, 1])))
    counts = np.bincount(labels.ravel(), minlength=max([s.value for s in specs], default=0) + 1)
    segments = []
    for spec in specs:
        row = {
            "value": spec.value,
            "name": spec.name,
            "voxel_count": int(counts[spec.value]),
            "volume_ml": float(counts[spec.value]) * voxelMm3 / MM3_PER_ML,
        }
        if geometry.shape[0] == 1:
            row["area_mm2"] = float(counts[spec.value]) * pixelMm2
        segments.append(row)
    result: dict[str, Any] = {"voxel_volume_mm3": voxelMm3, "segments": segments}
    if lesionLabels is not None:
        lesionValues = sorted(set(lesionLabels))
        unknown = set(lesionValues) - {spec.value for spec in specs}
        if unknown:
            raise ValueError(f"Lesion labels {sorted(unknown)} are not in the label specs")
        lesions = lesion_table(
            labels,
            spacing=geometry.spacing,
            label_values=lesionValues,
            min_volume_mm3=minLesionVolumeMm3,
            ijk_to_ras=geometry.ijk_to_ras,
        )
        result["lesion_count"] = len(lesions)
        result["lesions"] = lesions
        if uncertainty is not None:
            scores = lesion_uncertainty(
                labels, uncertainty, geometry.spacing, lesionValues, minLesionVolumeMm3
            )
            for row, score in zip(lesions, scores, strict=True):
                row["uncertainty_mean"] = score
                row["low_confidence"] = score > LOW_CONFIDENCE
    if uncertainty is not None:
        means = segment_uncertainty(labels, uncertainty, [row["value"] for row in segments])
        for row in segments:
            row["uncertainty_mean"] = means[row["value"]]
    return result
