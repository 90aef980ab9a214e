"""The rows of the panel's results tables, from ``SegmentationResult.statistics`` (no Qt, so
they are tested on slicer-core; ``resultsView`` puts them into the Qt tables).

``statistics`` is ``unetseg.host.report.segmentStatistics`` output: ``segments`` (name,
volume_ml, area_mm2 for single-slice images, uncertainty_mean when scored) and, for lesion
models, ``lesions`` (id, labels, volume_ml, centroid_ras, and uncertainty_mean /
low_confidence when scored), largest lesion first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def isSingleSlice(statistics: Mapping[str, Any]) -> bool:
    """Whether the segments have areas (a radiograph) rather than volumes."""
    segments = statistics["segments"]
    return bool(segments) and "area_mm2" in segments[0]


def isScored(rows: list[Mapping[str, Any]]) -> bool:
    """Whether the rows carry uncertainty scores (a run with uncertainty)."""
    return bool(rows) and "uncertainty_mean" in rows[0]


def segmentRows(statistics: Mapping[str, Any]) -> list[list[Any]]:
    """Per segment: name, area in cm² (single slice) or volume in mL, and the mean
    uncertainty when scored (None for an empty segment)."""
    segments = statistics["segments"]
    single, scored = isSingleSlice(statistics), isScored(segments)
    rows = []
    for segment in segments:
        size = segment["area_mm2"] / 100.0 if single else segment["volume_ml"]
        row = [segment["name"], float(size)]
        if scored:
            row.append(segment["uncertainty_mean"])
        rows.append(row)
    return rows


def lesionRows(statistics: Mapping[str, Any]) -> list[list[Any]]:
    """Per lesion: number, volume in mL, the names of the labels in it, and when scored the
    mean uncertainty and whether it is low-confidence."""
    names = {segment["value"]: segment["name"] for segment in statistics["segments"]}
    lesions = statistics.get("lesions", [])
    scored = isScored(lesions)
    rows = []
    for lesion in lesions:
        labels = ", ".join(names.get(value, str(value)) for value in lesion["labels"])
        row = [lesion["id"], float(lesion["volume_ml"]), labels]
        if scored:
            row += [lesion["uncertainty_mean"], bool(lesion["low_confidence"])]
        rows.append(row)
    return rows


def lesionCentroids(statistics: Mapping[str, Any]) -> list[tuple[float, float, float]]:
    """The lesions' centroids (R, A, S) in mm, by row, to jump the views to."""
    return [tuple(lesion["centroid_ras"]) for lesion in statistics.get("lesions", [])]
