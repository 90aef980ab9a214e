"""The inspection report page: ``report.html`` (no scripts, no external resources; the figures
are the PNG files next to it, referenced by relative path) from the ``inspect.json`` content."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unetseg.atomic import write_atomically

#: Cases listed in the geometry table (flagged ones first); all are in ``cases.csv``.
TABLE_ROWS = 40

_STYLE = (
    "body{font-family:sans-serif;max-width:72em;margin:1em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}"
    "th,td{border:1px solid #bbb;padding:0.15em 0.5em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}td.flags{text-align:left;color:#b00}"
    "tr.flagged td{background:#fdecea}img{max-width:100%;border:1px solid #ddd}"
    "figure{margin:0.6em 0}figcaption{font-size:0.9em;color:#555}"
    ".summary td{text-align:left}"
)


def _table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], flagged: Sequence[bool] = ()
) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for n, row in enumerate(rows):
        mark = ' class="flagged"' if n < len(flagged) and flagged[n] else ""
        cells = []
        for column, cell in enumerate(row):
            css = ' class="flags"' if header[column] == "Flags" else ""
            cells.append(f"<td{css}>{html.escape(str(cell))}</td>")
        body.append(f"<tr{mark}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(path: str | None, caption: str) -> str:
    if not path:
        return ""
    return (
        f'<figure><img src="{html.escape(path)}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}g}"


def _label_cell(value: int, names: Mapping[int, str]) -> str:
    name = names.get(value, f"label {value}")
    return name if name == f"label {value}" else f"{value} {name}"


def render(result: Mapping[str, Any]) -> str:
    """The page's HTML."""
    data, figures = result["data"], result["figures"]
    names = {int(k): v for k, v in result["label_names"].items()}
    unit = result["volume_unit"]
    cases = result["cases"]
    flagged = [case for case in cases if case["flags"]]
    parts = [
        f"<h1>Dataset inspection: {html.escape(data['source'])}</h1>",
        f"<p>{len(cases)} labelled case(s), part <code>{html.escape(data['part'])}</code>, "
        f"reader <code>{html.escape(str(data['reader']))}</code>; sequences "
        f"{html.escape(', '.join(result['sequences']))}; mask {html.escape(result['mask'])}. "
        f"{result['sample']['voxels']} voxels sampled (seed {result['sample']['seed']}, at most "
        f"{result['sample']['per_case']} per case). {len(flagged)} case(s) flagged.</p>",
    ]
    parts.append("<h2>Geometry</h2>")
    geometry_rows = sorted(cases, key=lambda case: not case["flags"])[:TABLE_ROWS]
    parts.append(
        _table(
            ["Case", "Source", "Size", "Spacing (mm)", "Orientation", "Lesions", "Flags"],
            [
                [
                    case["case_id"],
                    case["source"] or "",
                    " × ".join(str(s) for s in case["shape"]),
                    " × ".join(f"{s:g}" for s in case["spacing"]),
                    case["orientation"],
                    case["lesions"],
                    "; ".join(case["flags"]),
                ]
                for case in geometry_rows
            ],
            [bool(case["flags"]) for case in geometry_rows],
        )
    )
    if len(cases) > TABLE_ROWS:
        parts.append(
            f"<p>{TABLE_ROWS} of {len(cases)} cases shown (flagged first); all in "
            f'<a href="cases.csv">cases.csv</a>.</p>'
        )
    parts.append(_figure(figures.get("geometry"), "Spacing and size per case"))
    parts.append("<h2>Labels</h2>")
    parts.append(
        _table(
            [
                "Label",
                "Cases",
                f"Mean ({unit})",
                f"Median ({unit})",
                f"Min ({unit})",
                f"Max ({unit})",
            ],
            [
                [
                    _label_cell(int(value), names),
                    stats["cases"],
                    _number(stats["mean"]),
                    _number(stats["median"]),
                    _number(stats["min"]),
                    _number(stats["max"]),
                ]
                for value, stats in result["labels"].items()
            ],
        )
    )
    lesions = result["lesions"]
    parts.append(
        f"<p>Connected components of the non-zero labels: {lesions['count']} in all, "
        f"{_number(lesions['per_case_mean'])} per case on average; equivalent diameter median "
        f"{_number(lesions['diameter_median_mm'])} mm (range {_number(lesions['diameter_min_mm'])}"
        f"–{_number(lesions['diameter_max_mm'])} mm).</p>"
    )
    parts.append(_figure(figures.get("label_volumes"), "Label volumes per case"))
    parts.append(_figure(figures.get("lesion_sizes"), "Connected components"))
    parts.append("<h2>Intensities</h2>")
    parts.append(_figure(figures.get("histograms"), "Intensity histograms inside the mask"))
    parts.append(_figure(figures.get("intensities"), "Intensity range per case"))
    if len(result["sequences"]) > 1:
        parts.append("<h2>Correlation between sequences</h2>")
        sequences = result["sequences"]
        parts.append(
            _table(
                ["", *sequences],
                [
                    [a, *(_number(v, 2) for v in row)]
                    for a, row in zip(sequences, result["correlation"], strict=True)
                ],
            )
        )
        parts.append(_figure(figures.get("correlation"), "Mean Pearson correlation"))
    if figures.get("embedding"):
        parts.append("<h2>Voxel map</h2>")
        parts.append(
            f"<p>{html.escape(result['embedding']['method'])} of "
            f"{result['embedding']['points']} sampled voxels (features: "
            f"{html.escape(', '.join(result['embedding']['features']))}).</p>"
        )
        parts.append(_figure(figures["embedding"], "Voxel map"))
    if figures.get("examples"):
        parts.append("<h2>Examples</h2>")
        parts += [_figure(item["file"], item["case_id"]) for item in figures["examples"]]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Dataset inspection: {html.escape(data['source'])}</title>"
        f"<style>{_STYLE}</style></head><body>\n"
        + "\n".join(p for p in parts if p)
        + "\n</body></html>\n"
    )


def write_page(out: Path, result: Mapping[str, Any]) -> Path:
    """Write ``report.html`` in ``out``."""
    return write_atomically(out / "report.html", render(result).encode("utf-8"))
