"""Filling the panel's results tables from ``SegmentationResult.statistics``.

``statistics`` is ``unetseg.host.report.segmentStatistics`` output: ``segments`` (name,
volume_ml, and area_mm2 for single-slice images) and, for lesion models, ``lesions`` (index,
volume_ml, centroid_ras, label_volumes_ml), largest lesion first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import qt
from slicer.i18n import tr as _


def _item(value: Any) -> qt.QTableWidgetItem:
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    item = qt.QTableWidgetItem(text)
    if not isinstance(value, str):
        item.setTextAlignment(qt.Qt.AlignRight | qt.Qt.AlignVCenter)
    return item


def _fill(table, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table.clear()
    table.setColumnCount(len(header))
    table.setHorizontalHeaderLabels(list(header))
    table.setRowCount(len(rows))
    for row, values in enumerate(rows):
        for column, value in enumerate(values):
            table.setItem(row, column, _item(value))
    table.resizeColumnsToContents()


def showSegments(table, statistics: Mapping[str, Any]) -> None:
    """One row per segment: name, then its volume in mL, or its area in cm² for a single-slice
    image (a radiograph has no thickness to make a volume of)."""
    segments = statistics["segments"]
    if segments and "area_mm2" in segments[0]:
        rows = [(s["name"], float(s["area_mm2"]) / 100.0) for s in segments]
        _fill(table, [_("Segment"), _("Area (cm²)")], rows)
    else:
        rows = [(s["name"], float(s["volume_ml"])) for s in segments]
        _fill(table, [_("Segment"), _("Volume (mL)")], rows)


def showLesions(table, statistics: Mapping[str, Any]) -> list[tuple[float, float, float]]:
    """One row per lesion: number, volume in mL, then the mL of each label inside it.

    Returns:
        The lesions' centroids (R, A, S) in mm, by row, to jump the views to.
    """
    lesions = statistics.get("lesions", [])
    labelNames = [segment["name"] for segment in statistics["segments"]]
    header = [_("Lesion"), _("Volume (mL)")] + [
        _("{label} (mL)").format(label=name) for name in labelNames
    ]
    rows = [
        [lesion["index"], float(lesion["volume_ml"])]
        + [float(lesion["label_volumes_ml"].get(name, 0.0)) for name in labelNames]
        for lesion in lesions
    ]
    _fill(table, header, rows)
    return [tuple(lesion["centroid_ras"]) for lesion in lesions]
