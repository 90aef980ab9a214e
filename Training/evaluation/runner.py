"""Evaluate a model package on labelled cases, one case at a time.

For each case: read it (``load_case``), give the model its inputs (``model_inputs``), segment it
with the engine's ``Segmenter`` (the modules' code path), bring the reference into the model's
label values (``reference_labels``), save the prediction and compute the engine's metrics on the
case's own grid. Softmax models are scored per label value (``compute_metrics``); sigmoid models
per nested region (label ``c`` = values ``>= c``, as the model defines its labels). A case of a
source with partial labels is scored only on the regions that source labels and their known
voxels (``Training.loop.scoring``). Models with ``lesion_analysis`` also get lesion detection
(``lesion_detection``, pooled over cases with ``aggregate_lesion_detection``), of all non-zero
labels, or of the first scored region for partial labels. With several data sources,
``metrics.json`` also has the mean metrics and pooled lesion detection per source
(``sources``).

Files written in ``out_dir``:

- ``predictions/<case>.nii.gz``: predicted label map on the case grid (uint8);
- ``metrics_per_case.csv``: one row per case, columns ``<metric>_<label>`` and ``<metric>_mean``
  (+ lesion columns);
- ``metrics_mean.csv``: per label and metric the mean, standard deviation (population), median,
  minimum and maximum over cases;
- ``metrics.json``: all of it, per case in ``compute_metrics`` form (keys = label values and
  ``"mean"``);
- ``calibration.png``: reliability diagram (``metrics.json`` key ``calibration``: bins and
  expected calibration error per label; ``Training.evaluation.calibration``);
- ``overlays/*.png``, ``report.md``, ``report.html`` (``Training.evaluation.report``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from Training.data import CaseRecord, DatasetError, load_case
from Training.data.records import file_stem
from Training.evaluation.ablation import InputAblation
from Training.evaluation.calibration import Calibration, case_calibration, plot_reliability
from Training.evaluation.datasets import EvaluationData, model_inputs, reference_labels
from Training.evaluation.overlay import OverlayView, overlay_view, render_overlay
from Training.evaluation.report import write_report
from Training.loop.cases import known_regions
from Training.loop.scoring import labelled_lesions, labelled_metrics
from Training.loop.trainer import label_key
from Training.synth.writers import save_nifti
from unetseg.atomic import atomic_path, write_atomically
from unetseg.engine.device import describe_device
from unetseg.engine.geometry import Geometry
from unetseg.engine.lesions import aggregate_lesion_detection
from unetseg.engine.metrics import DISTANCE_METRICS, OVERLAP_METRICS, compute_metrics
from unetseg.engine.options import SegmentOptions
from unetseg.engine.package import ModelPackage
from unetseg.engine.predict import Segmenter

logger = logging.getLogger(__name__)

#: Lesion detection result key -> per-case CSV column.
LESION_COLUMNS = {
    "reference_lesions": "reference_lesions",
    "predicted_lesions": "predicted_lesions",
    "detected": "detected_lesions",
    "false_positives": "false_positive_lesions",
    "sensitivity": "lesion_sensitivity",
    "precision": "lesion_precision",
    "f1": "lesion_f1",
    "lesion_dice": "lesion_dice",
}
STATISTICS = ("mean", "std", "median", "min", "max")


def case_metrics(
    prediction: np.ndarray,
    reference: np.ndarray,
    values: Sequence[int],
    spacing: Sequence[float],
    *,
    nested: bool,
    distances: bool = True,
) -> dict[str, dict[str, float]]:
    """``compute_metrics`` of one case; for ``nested`` (sigmoid) models label ``c`` is the
    region ``>= c`` of both maps. Arrays (K, J, I) or (J, I); spacing (I, J, K) mm."""
    return compute_metrics(prediction, reference, values, spacing, distances, nested=nested)


@dataclass
class _Extremes:
    """The ``count`` lowest- and highest-scoring cases seen so far, with their overlay views."""

    count: int
    items: list[tuple[float, int, str, OverlayView]] = field(default_factory=list)

    def wants(self, score: float) -> bool:
        if self.count <= 0:
            return False
        if len(self.items) < 2 * self.count:
            return True
        scores = [item[0] for item in self.items]
        return score < scores[self.count - 1] or score > scores[-self.count]

    def add(self, score: float, order: int, case_id: str, view: OverlayView) -> None:
        self.items.append((score, order, case_id, view))
        self.items.sort(key=lambda item: (item[0], item[1]))
        if len(self.items) > 2 * self.count:
            self.items = self.items[: self.count] + self.items[-self.count :]

    def worst_and_best(self) -> tuple[list, list]:
        """Lowest first, highest first; a case is in one list only."""
        n_best = min(self.count, len(self.items) // 2)
        n_worst = min(self.count, len(self.items) - n_best)
        best = self.items[len(self.items) - n_best :][::-1]
        return self.items[:n_worst], best


def evaluate(
    package: ModelPackage,
    data: EvaluationData,
    out_dir: str | Path,
    *,
    device: str = "auto",
    distances: bool = True,
    overlays: int = 3,
    calibration: bool = True,
    ablate_inputs: bool = False,
) -> dict[str, Any]:
    """Evaluate ``package`` on ``data`` and write the files listed in the module docstring.

    Args:
        device: ``auto``, ``cpu`` or ``cuda``.
        distances: also compute ``hd95_mm`` and ``assd_mm`` (the slow part).
        overlays: number of worst and of best cases (by mean Dice) shown in the report.
        calibration: also score the calibration of the model's probabilities (a second,
            probability pass per case; ``Training.evaluation.calibration``).
        ablate_inputs: also measure the Dice without each optional input
            (``Training.evaluation.ablation``; more passes per complete case).

    Returns:
        The content of ``metrics.json``.

    Raises:
        DatasetError: unreadable case, unmatched inputs or label values the model lacks.
    """
    out = Path(out_dir)
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    nested = package.activation == "sigmoid"
    segmenter = Segmenter(package, SegmentOptions(device=device))
    extremes = _Extremes(overlays)
    labelled = [(label.value, label.region_name) for label in package.labels]
    calibrated = Calibration(labelled, package.activation) if calibration else None
    ablation = InputAblation(segmenter) if ablate_inputs else None
    cases: list[dict[str, Any]] = []
    started = time.perf_counter()
    for order, record in enumerate(data.records):
        entry, overlay_arrays = _evaluate_case(
            segmenter, record, data, out, distances, calibrated, ablation
        )
        cases.append(entry)
        dice = entry["metrics"]["mean"]["dice"]
        if extremes.wants(dice):
            extremes.add(dice, order, record.case_id, overlay_view(*overlay_arrays))
        logger.info(
            "case %d/%d %s: mean Dice %.4f (%.1f s)",
            order + 1,
            len(data.records),
            record.case_id,
            dice,
            entry["seconds"],
        )

    summary = _summary([case["metrics"] for case in cases])
    labels = [{"value": label.value, "name": label.region_name} for label in package.labels]
    result_json: dict[str, Any] = {
        "model": {
            "id": package.id,
            "version": package.version,
            "title": package.title,
            "path": str(package.path),
            "activation": package.activation,
        },
        "data": {
            "source": data.source,
            "part": data.part,
            "reader": data.data.reader,
            "root": data.data.root,
            "label_map": {str(k): v for k, v in data.data.label_map.items()},
            "regions": [list(r) for r in data.data.regions] if data.data.regions else None,
            "sources": [source.name for source in data.data.sources],
            "cases": len(cases),
        },
        "device": describe_device(segmenter.runner.device),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": round(time.perf_counter() - started, 2),
        "labels": labels,
        "metrics": list(OVERLAP_METRICS + (DISTANCE_METRICS if distances else ())),
        "mean": {
            key: {m: stats["mean"] for m, stats in row.items()} for key, row in summary.items()
        },
        "summary": summary,
        "lesion_detection": (
            aggregate_lesion_detection([case["lesion_detection"] for case in cases])
            if package.lesion_analysis
            else None
        ),
        "cases": cases,
    }
    if data.data.sources:
        result_json["sources"] = _by_source(cases, package.lesion_analysis)
    worst, best = extremes.worst_and_best()
    colours = [(label.value, tuple(label.color)) for label in package.labels]
    result_json["overlays"] = {
        kind: [
            _write_overlay(out, kind, rank, score, case_id, view, colours, nested)
            for rank, (score, _, case_id, view) in enumerate(items, start=1)
        ]
        for kind, items in (("worst", worst), ("best", best))
    }
    if calibrated is not None:
        result_json["calibration"] = calibrated.result()
        plot = plot_reliability(result_json["calibration"], out / "calibration.png", package.title)
        result_json["calibration"]["plot"] = None if plot is None else plot.name
    if ablation is not None:
        result_json["input_ablation"] = ablation.result()
    _write_tables(out, result_json)
    write_atomically(
        out / "metrics.json", json.dumps(result_json, indent=1, allow_nan=False).encode()
    )
    write_report(out, result_json)
    return result_json


def _evaluate_case(
    segmenter: Segmenter,
    record: CaseRecord,
    data: EvaluationData,
    out: Path,
    distances: bool,
    calibrated: Calibration | None = None,
    ablation: InputAblation | None = None,
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray, np.ndarray, Geometry]]:
    """Segment and score one case; saves its prediction, and adds it to ``calibrated`` and
    ``ablation``. Returns its ``metrics.json`` entry and what its overlay needs (first present
    input, reference, prediction, geometry)."""
    begin = time.perf_counter()
    package = segmenter.package
    images, label, geometry = load_case(record)
    assert label is not None  # EvaluationData holds labelled cases only
    source = data.data.source(record.source)
    arrays = model_inputs(images, record, source, package.inputs)
    reference = reference_labels(label, source, package, record.case_id)
    reference = reference.reshape(geometry.shape)
    known = known_regions(label.reshape(geometry.shape), source)
    nested = package.activation == "sigmoid"
    evaluated = source.evaluated_regions() if nested else None
    result = segmenter.segment(arrays, [None if a is None else geometry for a in arrays])
    prediction = np.asarray(result.labels, dtype=np.uint8).reshape(geometry.shape)
    if calibrated is not None:
        case_calibration(calibrated, segmenter, arrays, geometry, label, source, record.case_id)
    file_name = f"{file_stem(record.case_id)}.nii.gz"
    save_nifti(out / "predictions" / file_name, prediction, geometry, np.uint8)
    spacing = [float(s) for s in geometry.spacing]
    flat = geometry.shape[0] == 1  # a 2D case is scored in 2D (pixels, mm²)
    pred_eval = prediction[0] if flat else prediction
    ref_eval = reference[0] if flat else reference
    known_eval = known[:, 0] if flat and known is not None else known
    values = [label.value for label in package.labels]
    scoring = {"nested": nested, "evaluated": evaluated, "known": known_eval}
    metrics = labelled_metrics(pred_eval, ref_eval, values, spacing, distances=distances, **scoring)
    if metrics is None:
        raise DatasetError(f"case {record.case_id}: its source labels none of the model's labels")
    entry: dict[str, Any] = {
        "case_id": record.case_id,
        "patient_id": record.patient_id,
        "source": record.source,
        "metrics": metrics,
        "prediction": f"predictions/{file_name}",
        "missing_inputs": result.missing_inputs,
    }
    if package.lesion_analysis:
        entry["lesion_detection"] = labelled_lesions(
            pred_eval, ref_eval, values, spacing, **scoring
        )
    entry["seconds"] = round(time.perf_counter() - begin, 3)
    if ablation is not None:  # reuses this case and its full-input scores
        ablation.add_case(record.case_id, arrays, geometry, reference, known, evaluated, metrics)
    first_input = next(a for a in arrays if a is not None)
    return entry, (first_input, reference, prediction, geometry)


def _by_source(cases: Sequence[Mapping[str, Any]], lesions: bool) -> dict[str, Any]:
    """Per data source: its cases, mean metrics per label and pooled lesion detection."""
    result: dict[str, Any] = {}
    for name in dict.fromkeys(case["source"] for case in cases):
        mine = [case for case in cases if case["source"] == name]
        summary = _summary([case["metrics"] for case in mine])
        result[name] = {
            "cases": [case["case_id"] for case in mine],
            "mean": {key: {m: s["mean"] for m, s in row.items()} for key, row in summary.items()},
            "lesion_detection": (
                aggregate_lesion_detection([case["lesion_detection"] for case in mine])
                if lesions
                else None
            ),
        }
    return result


def _summary(per_case: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, Any]:
    """Statistics over cases per label key and metric (over the cases that score that label)."""
    summary: dict[str, Any] = {}
    keys = list(dict.fromkeys(key for case in per_case for key in case))
    keys = [key for key in keys if key != "mean"] + ["mean"]
    for key in keys:
        scored = [case for case in per_case if key in case]
        summary[key] = {}
        for metric in scored[0][key]:
            values = np.array([case[key][metric] for case in scored], dtype=np.float64)
            summary[key][metric] = {
                "mean": float(values.mean()),
                "std": float(values.std()),
                "median": float(np.median(values)),
                "min": float(values.min()),
                "max": float(values.max()),
            }
    return summary


def _label_keys(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(metrics key, column suffix) per label, then the mean."""
    keys = [(str(label["value"]), label_key(label["name"])) for label in result["labels"]]
    return [*keys, ("mean", "mean")]


def _write_tables(out: Path, result: Mapping[str, Any]) -> None:
    keys = _label_keys(result)
    metric_names = result["metrics"]
    lesions = result["lesion_detection"] is not None
    header = ["case_id", "patient_id"]
    header += [f"{metric}_{suffix}" for metric in metric_names for _, suffix in keys]
    if lesions:
        header += list(LESION_COLUMNS.values())
    header.append("seconds")
    rows = []
    for case in result["cases"]:
        row: list[Any] = [case["case_id"], case["patient_id"]]
        row += [
            case["metrics"][key][metric] if key in case["metrics"] else ""
            for metric in metric_names
            for key, _ in keys
        ]
        if lesions:
            row += [case["lesion_detection"][name] for name in LESION_COLUMNS]
        row.append(case["seconds"])
        rows.append(row)
    _write_csv(out / "metrics_per_case.csv", header, rows)

    names = {key: ("mean of labels" if key == "mean" else suffix) for key, suffix in keys}
    summary_rows = [
        [key, names[key], metric, *(result["summary"][key][metric][s] for s in STATISTICS)]
        for key, _ in keys
        for metric in metric_names
    ]
    _write_csv(out / "metrics_mean.csv", ["label", "name", "metric", *STATISTICS], summary_rows)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_atomically(path, text.getvalue().encode("utf-8"))


def _write_overlay(
    out: Path,
    kind: str,
    rank: int,
    score: float,
    case_id: str,
    view: OverlayView,
    colours: Sequence[tuple[int, Sequence[int]]],
    nested: bool,
) -> dict[str, Any]:
    path = out / "overlays" / f"{kind}_{rank}_{file_stem(case_id)}.png"
    caption = f"{case_id}: mean Dice {score:.3f}"
    with atomic_path(path) as temporary:
        render_overlay(view, colours, nested=nested, caption=caption).save(temporary)
    return {"case_id": case_id, "dice": score, "file": path.relative_to(out).as_posix()}
