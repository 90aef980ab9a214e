"""Filling the panel's results tables (Qt) with the rows of ``resultsRows``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import qt
from slicer.i18n import tr as _

from unetseg.gui import resultsRows


def _item(value: Any) -> qt.QTableWidgetItem:
    text = f"{value:.2f}" if isinstance(value, float) else "" if value is None else str(value)
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
    image (a radiograph has no thickness to make a volume of), and its mean uncertainty when
    the run scored it."""
    size = _("Area (cm²)") if resultsRows.isSingleSlice(statistics) else _("Volume (mL)")
    header = [_("Segment"), size]
    if resultsRows.isScored(statistics["segments"]):
        header.append(_("Mean uncertainty"))
    _fill(table, header, resultsRows.segmentRows(statistics))


def showLesions(table, statistics: Mapping[str, Any]) -> list[tuple[float, float, float]]:
    """One row per lesion: number, volume in mL, its labels, and when scored its mean
    uncertainty and "low confidence".

    Returns:
        The lesions' centroids (R, A, S) in mm, by row, to jump the views to.
    """
    header = [_("Lesion"), _("Volume (mL)"), _("Labels")]
    rows = resultsRows.lesionRows(statistics)
    if resultsRows.isScored(statistics.get("lesions", [])):
        header += [_("Mean uncertainty"), _("Confidence")]
        rows = [[*row[:-1], _("low") if row[-1] else ""] for row in rows]
    _fill(table, header, rows)
    return resultsRows.lesionCentroids(statistics)
