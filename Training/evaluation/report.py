"""Evaluation report as Markdown (``report.md``, images linked from ``overlays/``) and HTML
(``report.html``, images embedded, one self-contained file), from the ``metrics.json`` content.

Both are rendered from the same list of blocks: headings, paragraphs, tables and images.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetseg.atomic import write_atomically

#: Columns of the mean-metrics table: (metric, title, unit suffix).
SUMMARY_COLUMNS = (
    ("dice", "Dice", ""),
    ("iou", "IoU", ""),
    ("sensitivity", "Sensitivity", ""),
    ("precision", "Precision", ""),
    ("hd95_mm", "HD95", " mm"),
    ("assd_mm", "ASSD", " mm"),
)


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Figure:
    path: str  # relative to the report folder
    caption: str


Block = Heading | Paragraph | Table | Figure


def write_report(out_dir: str | Path, result: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` in ``out_dir``; returns their paths."""
    out = Path(out_dir)
    blocks = report_blocks(result)
    markdown = out / "report.md"
    write_atomically(markdown, to_markdown(blocks).encode("utf-8"))
    page = out / "report.html"
    html_text = to_html(blocks, out, str(result["model"]["title"]))
    write_atomically(page, html_text.encode("utf-8"))
    return markdown, page


def report_blocks(result: Mapping[str, Any]) -> list[Block]:
    """The report's content."""
    model, data = result["model"], result["data"]
    names = {str(label["value"]): label["name"] for label in result["labels"]}
    names["mean"] = "mean of labels"
    regions = " (nested sigmoid regions: label c = values >= c)" if data["regions"] else ""
    blocks: list[Block] = [
        Heading(1, f"Evaluation of {model['title']}"),
        Paragraph(
            f"Model `{model['id']}` {model['version']} ({model['activation']}{regions}) on "
            f"{data['cases']} labelled case(s) of {data['source']}, part `{data['part']}`"
            + (f", label map {data['label_map']}" if data["label_map"] else "")
            + f". {result['device']}; {result['elapsed_s']:.1f} s; {result['date']}."
        ),
        Heading(2, "Mean metrics"),
        Paragraph("Mean ± standard deviation over cases, on each case's own grid."),
        _summary_table(result, names),
    ]
    if result["lesion_detection"] is not None:
        blocks += _lesion_blocks(result["lesion_detection"])
    if result.get("calibration"):
        blocks += _calibration_blocks(result["calibration"])
    if result.get("input_ablation"):
        blocks += _ablation_blocks(result["input_ablation"])
    blocks += [
        Heading(2, "Cases (worst first)"),
        _case_table(result, names),
    ]
    for kind, title in (("worst", "Worst cases"), ("best", "Best cases")):
        figures = result["overlays"][kind]
        if figures:
            blocks.append(Heading(2, title))
            blocks.append(
                Paragraph("Reference contours solid, predicted contours dashed, label colours.")
            )
            blocks += [
                Figure(item["file"], f"{item['case_id']}: mean Dice {item['dice']:.3f}")
                for item in figures
            ]
    return blocks


def _summary_table(result: Mapping[str, Any], names: Mapping[str, str]) -> Table:
    columns = [c for c in SUMMARY_COLUMNS if c[0] in result["metrics"]]
    rows = []
    for key, row in result["summary"].items():
        cells = [names[key]]
        for metric, _, unit in columns:
            stats = row[metric]
            cells.append(f"{_number(stats['mean'])} ± {_number(stats['std'])}{unit}")
        rows.append(cells)
    return Table(["Label", *(title for _, title, _ in columns)], rows)


def _lesion_blocks(pooled: Mapping[str, Any]) -> list[Block]:
    overview = Table(
        [
            "Reference lesions",
            "Detected",
            "False positives",
            "Sensitivity",
            "Precision",
            "F1",
            "Lesion Dice",
            "FP per case",
        ],
        [
            [
                str(pooled["reference_lesions"]),
                str(pooled["detected"]),
                str(pooled["false_positives"]),
                _number(pooled["sensitivity"]),
                _number(pooled["precision"]),
                _number(pooled["f1"]),
                _number(pooled["lesion_dice"]),
                _number(pooled["false_positives_per_case"]),
            ]
        ],
    )
    by_size = Table(
        ["Diameter (mm)", "Reference lesions", "Detected", "Sensitivity"],
        [
            [
                _size_range(bucket["min_mm"], bucket["max_mm"]),
                str(bucket["reference_lesions"]),
                str(bucket["detected"]),
                "–" if bucket["sensitivity"] is None else _number(bucket["sensitivity"]),
            ]
            for bucket in pooled["by_size"]
        ],
    )
    return [
        Heading(2, "Lesion detection"),
        Paragraph("Lesions are connected components of all labels, pooled over cases."),
        overview,
        Heading(3, "Detection by lesion size"),
        by_size,
    ]


def _calibration_blocks(calibration: Mapping[str, Any]) -> list[Block]:
    """Expected calibration error per label (and of the top label) and the reliability
    diagram."""
    curves = [(item["name"], item) for item in calibration["labels"]]
    if calibration.get("top_label"):
        curves.insert(0, ("top label (arg-max)", calibration["top_label"]))
    table = Table(
        ["Label", "ECE", "Voxels"],
        [
            [name, "–" if c["ece"] is None else _number(c["ece"]), str(c["voxels"])]
            for name, c in curves
        ],
    )
    kind = "label" if calibration["activation"] == "softmax" else "nested region"
    blocks: list[Block] = [
        Heading(2, "Calibration"),
        Paragraph(
            f"Predicted probability of each {kind} against how often it is there, in "
            f"{calibration['bins']} probability bins, over the voxels of the model's foreground "
            "mask (model grid) of all cases. ECE: expected calibration error (voxel-weighted "
            "mean gap between predicted probability and observed frequency; 0 is perfect)."
        ),
        table,
    ]
    if calibration.get("plot"):
        blocks.append(Figure(calibration["plot"], "Reliability diagram"))
    return blocks


def _ablation_blocks(ablation: Mapping[str, Any]) -> list[Block]:
    """Mean Dice with every input and without optional inputs (``ablation.input_ablation``)."""
    regions = list(ablation["full"])
    rows = [["all inputs", *(_number(ablation["full"][r]) for r in regions)]]
    for left_out, scores in ablation["without"].items():
        rows.append(
            [f"without {left_out}"]
            + [f"{_number(scores['dice'][r])} ({scores['change'][r]:+.3f})" for r in regions]
        )
    cases = ", ".join(ablation["cases"])
    return [
        Heading(2, "Missing inputs"),
        Paragraph(
            f"Mean Dice over the {len(ablation['cases'])} case(s) that have every input "
            f"({cases}), segmented with all of them and again with optional inputs left out "
            "(change in brackets)."
        ),
        Table(["Inputs", *regions], rows),
    ]


def _size_range(low: float, high: float | None) -> str:
    return f">= {low:g}" if high is None else f"{low:g} – {high:g}"


def _case_table(result: Mapping[str, Any], names: Mapping[str, str]) -> Table:
    keys = [str(label["value"]) for label in result["labels"]]
    distances = "hd95_mm" in result["metrics"]
    lesions = result["lesion_detection"] is not None
    header = ["Case", "Mean Dice", *(f"Dice {names[k]}" for k in keys)]
    if distances:
        header.append("Mean HD95")
    if lesions:
        header += ["Lesions detected", "False positives"]
    rows = []
    ordered = sorted(result["cases"], key=lambda case: case["metrics"]["mean"]["dice"])
    for case in ordered:
        metrics = case["metrics"]
        cells = [case["case_id"], _number(metrics["mean"]["dice"])]
        cells += [_number(metrics[k]["dice"]) if k in metrics else "–" for k in keys]
        if distances:
            cells.append(f"{_number(metrics['mean']['hd95_mm'])} mm")
        if lesions:
            found = case["lesion_detection"]
            cells += [
                f"{found['detected']} / {found['reference_lesions']}",
                str(found["false_positives"]),
            ]
        rows.append(cells)
    return Table(header, rows)


def _number(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


# ----------------------------------------------------------------------------- renderers


def to_markdown(blocks: Sequence[Block]) -> str:
    """GitHub-flavoured Markdown."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            lines = [_md_row(block.header), _md_row(["---"] * len(block.header))]
            lines += [_md_row(row) for row in block.rows]
            parts.append("\n".join(lines))
        else:
            parts.append(f"![{block.caption}]({block.path})\n\n*{block.caption}*")
    return "\n\n".join(parts) + "\n"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def to_html(blocks: Sequence[Block], folder: Path, title: str) -> str:
    """One HTML page; figures are read from ``folder`` and embedded as data URIs."""
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(c)}</th>" for c in block.header)
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                for row in block.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            data = base64.b64encode((folder / block.path).read_bytes()).decode("ascii")
            caption = html.escape(block.caption)
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Evaluation of {html.escape(title)}</title><style>{_STYLE}</style></head>"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _inline(text: str) -> str:
    """Escaped text with Markdown ``code`` spans as <code>."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


_STYLE = (
    "body{font-family:sans-serif;max-width:70em;margin:1em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:0.5em 0}"
    "th,td{border:1px solid #bbb;padding:0.2em 0.6em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}"
    "figure{display:inline-block;margin:0.5em}figcaption{text-align:center}"
)
