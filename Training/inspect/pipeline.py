"""Inspect a labelled dataset: stream its cases once, keep per-case numbers and a bounded voxel
sample, then write the figures, ``inspect.json``, ``cases.csv`` and ``report.html``.

Cases are read one at a time with the project's readers (``Training.data.load_case``) and
dropped before the next one; what is kept is a ``CaseSummary`` per case and at most
``max_voxels`` sampled voxels in all (``voxels_per_case`` per case, fewer when the cases would
exceed ``max_voxels``). Labels are the source's ``label_map`` applied (as training sees them,
before ``regions``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from Training.data import load_case, remap_labels
from Training.data.records import file_stem
from Training.evaluation.datasets import EvaluationData
from Training.inspect import figures
from Training.inspect.embedding import DEFAULT_POINTS, embed
from Training.inspect.html import write_page
from Training.inspect.sampling import case_rng, foreground_mask, sample_case
from Training.inspect.statistics import (
    CaseSummary,
    equivalent_diameter_mm,
    flag_outliers,
    label_summary,
    mean_correlation,
    summarise_case,
    volume_unit,
    weighted_histograms,
)
from unetseg.atomic import write_atomically

logger = logging.getLogger(__name__)

DEFAULT_VOXELS_PER_CASE = 20_000
DEFAULT_MAX_VOXELS = 400_000
DEFAULT_EXAMPLES = 4


def example_positions(cases: int, examples: int) -> set[int]:
    """Positions of the cases shown as examples: ``examples`` evenly spread ones."""
    if examples <= 0 or cases == 0:
        return set()
    positions = np.linspace(0, cases - 1, min(examples, cases))
    return {int(p) for p in np.rint(positions)}


def inspect_dataset(
    data: EvaluationData,
    out_dir: str | Path,
    *,
    seed: int = 0,
    voxels_per_case: int = DEFAULT_VOXELS_PER_CASE,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    embedding_points: int = DEFAULT_POINTS,
    examples: int = DEFAULT_EXAMPLES,
    foreground: str = "auto",
    label_names: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """Inspect ``data``'s cases and write the report in ``out_dir`` (see module docstring).

    Returns:
        The content of ``inspect.json``.

    Raises:
        DatasetError: an unreadable case.
        ImportError: matplotlib missing.
    """
    figures.pyplot()  # fail before reading any case when matplotlib is missing
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    records = data.records
    per_case = max(1, min(int(voxels_per_case), int(max_voxels) // max(len(records), 1)))
    shown = example_positions(len(records), examples)
    summaries: list[CaseSummary] = []
    pooled: dict[str, list[np.ndarray]] = {"values": [], "local": [], "strata": [], "weights": []}
    pooled_case: list[np.ndarray] = []
    sequences: list[str] = []
    example_files: list[dict[str, str]] = []
    mask_modes: set[str] = set()
    seen_labels: set[int] = set()
    for position, record in enumerate(records):
        logger.info("inspecting case %d/%d %s", position + 1, len(records), record.case_id)
        images, label, geometry = load_case(record)
        source = data.data.source(record.source)
        if label is not None and source.label_map:
            label = remap_labels(label, source.label_map)
        arrays = [np.asarray(image).reshape(geometry.shape) for image in images.values()]
        label = None if label is None else label.reshape(geometry.shape)
        images = dict(zip(images, arrays, strict=True))
        mask, mode = foreground_mask(arrays, label, foreground)
        mask_modes.add(mode)
        summary = summarise_case(record.case_id, record.source, images, label, geometry, mask, mode)
        summaries.append(summary)
        seen_labels.update(summary.label_voxels)
        sample = sample_case(arrays, label, mask, per_case, case_rng(seed, position))
        sequences += [name for name in images if name not in sequences]
        # Columns in the order of all sequences seen so far; NaN for those the case lacks.
        for key, block in (("values", sample.values), ("local", sample.local)):
            pooled[key].append(_columns(block, list(images), sequences))
        pooled["strata"].append(sample.strata)
        pooled["weights"].append(sample.weights)
        pooled_case.append(np.full(len(sample), position, dtype=np.int32))
        if position in shown:
            file = f"figures/example_{len(example_files) + 1}_{file_stem(record.case_id)}.png"
            names = _names(seen_labels | set(summary.label_voxels), label_names)
            figures.example(out / file, images, label, geometry, names, record.case_id)
            example_files.append({"case_id": record.case_id, "file": file})
        del images, arrays, label, mask, sample

    flag_outliers(summaries)
    names = _names({0, *seen_labels}, label_names)
    width = len(sequences)
    values = np.concatenate([_pad(b, width) for b in pooled["values"]])
    local = np.concatenate([_pad(b, width) for b in pooled["local"]])
    strata = np.concatenate(pooled["strata"])
    weights = np.concatenate(pooled["weights"])
    case_of = np.concatenate(pooled_case)
    # Per data source (their intensities may differ in scale), per sequence.
    group_of_case = np.array([s.source or "all" for s in summaries])
    groups = list(dict.fromkeys(group_of_case.tolist()))
    group_of = group_of_case[case_of] if case_of.size else np.zeros(0, dtype=str)
    histograms = {
        group: {
            name: weighted_histograms(
                values[group_of == group, n], strata[group_of == group], weights[group_of == group]
            )
            for n, name in enumerate(sequences)
            if not np.isnan(values[group_of == group, n]).all()
        }
        for group in groups
    }
    correlation = mean_correlation(summaries, sequences)
    files: dict[str, Any] = {"examples": example_files}
    files["histograms"] = _relative(
        figures.histograms(
            out / "figures/histograms.png", histograms, names, ", ".join(sorted(mask_modes))
        ),
        out,
    )
    files["intensities"] = _relative(
        figures.intensities(out / "figures/intensities.png", summaries, sequences), out
    )
    if width > 1:
        files["correlation"] = _relative(
            figures.correlation(out / "figures/correlation.png", sequences, correlation), out
        )
    files["geometry"] = _relative(figures.geometry(out / "figures/geometry.png", summaries), out)
    if seen_labels:
        files["label_volumes"] = _relative(
            figures.label_volumes(out / "figures/label_volumes.png", summaries, names), out
        )
        files["lesion_sizes"] = _relative(
            figures.lesion_sizes(out / "figures/lesion_sizes.png", summaries), out
        )
    shared = [n for n, name in enumerate(sequences) if not np.isnan(values[:, n]).any()]
    feature_names = tuple(sequences[n] for n in shared) + tuple(
        f"{sequences[n]} local mean" for n in shared
    )
    embedded = None
    if shared:
        features = np.concatenate([values[:, shared], local[:, shared]], axis=1)
        embedded = embed(
            features, strata, case_of, feature_names, points=embedding_points, seed=seed
        )
    by_source = len({s.source for s in summaries}) > 1
    if embedded is not None:
        groups = [(s.source or "") if by_source else s.case_id for s in summaries]
        files["embedding"] = _relative(
            figures.embedding(
                out / "figures/embedding.png",
                embedded,
                names,
                groups,
                "data source" if by_source else "case",
            ),
            out,
        )

    dims = summaries[0].dims if summaries else 3
    diameters = [equivalent_diameter_mm(s, c.dims) for c in summaries for s in c.lesion_sizes]
    result: dict[str, Any] = {
        "data": {
            "source": data.source,
            "part": data.part,
            "reader": data.data.reader
            or ", ".join(f"{s.name}: {s.reader}" for s in data.data.source_list()),
            "cases": len(summaries),
        },
        "sequences": sequences,
        "mask": ", ".join(sorted(mask_modes)),
        "volume_unit": volume_unit(dims),
        "label_names": {str(k): v for k, v in names.items()},
        "sample": {
            "seed": seed,
            "per_case": per_case,
            "max_voxels": max_voxels,
            "voxels": int(strata.size),
        },
        "labels": {str(k): v for k, v in label_summary(summaries).items()},
        "lesions": {
            "count": len(diameters),
            "per_case_mean": float(np.mean([len(c.lesion_sizes) for c in summaries])),
            "diameter_median_mm": float(np.median(diameters)) if diameters else None,
            "diameter_min_mm": float(min(diameters)) if diameters else None,
            "diameter_max_mm": float(max(diameters)) if diameters else None,
        },
        "correlation": correlation,
        "histograms": {
            group: {
                name: {
                    "edges": h["edges"],
                    "all": h["all"],
                    "strata": {str(k): v for k, v in h["strata"].items()},
                }
                for name, h in per_sequence.items()
            }
            for group, per_sequence in histograms.items()
        },
        "embedding": None
        if embedded is None
        else {
            "method": embedded.method,
            "points": len(embedded.strata),
            "features": list(embedded.features),
        },
        "flagged": {s.case_id: s.flags for s in summaries if s.flags},
        "figures": files,
        "cases": [s.to_dict() for s in summaries],
    }
    write_atomically(out / "inspect.json", json.dumps(result, indent=1, allow_nan=False).encode())
    _write_csv(out / "cases.csv", summaries, sequences)
    write_page(out, result)
    return result


def _names(values: set[int], given: Mapping[int, str] | None) -> dict[int, str]:
    given = given or {}
    names = {0: given.get(0, "unlabelled")}
    names.update({v: given.get(v, f"label {v}") for v in sorted(values) if v != 0})
    return names


def _columns(block: np.ndarray, have: list[str], order: list[str]) -> np.ndarray:
    result = np.full((block.shape[0], len(order)), np.nan, dtype=np.float32)
    for n, name in enumerate(have):
        result[:, order.index(name)] = block[:, n]
    return result


def _pad(block: np.ndarray, width: int) -> np.ndarray:
    if block.shape[1] == width:
        return block
    extra = np.full((block.shape[0], width - block.shape[1]), np.nan, dtype=block.dtype)
    return np.concatenate([block, extra], axis=1)


def _relative(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()


def _write_csv(path: Path, summaries: list[CaseSummary], sequences: list[str]) -> None:
    labels = sorted({v for s in summaries for v in s.label_volumes})
    unit = volume_unit(summaries[0].dims) if summaries else "mL"
    header = ["case_id", "source", "shape", "spacing_mm", "orientation", "mask_voxels"]
    header += [f"label_{v}_{'mL' if unit == 'mL' else 'cm2'}" for v in labels]
    header += ["components"]
    header += [f"{name}_{key}" for name in sequences for key in ("p1", "p50", "p99")]
    header += ["flags"]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for s in summaries:
        row: list[Any] = [
            s.case_id,
            s.source or "",
            "x".join(map(str, s.shape)),
            "x".join(f"{v:g}" for v in s.spacing),
            s.orientation,
            s.mask_voxels,
        ]
        row += [round(s.label_volumes.get(v, 0.0), 4) for v in labels]
        row.append(len(s.lesion_sizes))
        for name in sequences:
            stats = s.intensity.get(name, {})
            row += [f"{stats[k]:.6g}" if k in stats else "" for k in ("p1", "p50", "p99")]
        row.append("; ".join(s.flags))
        writer.writerow(row)
    write_atomically(path, text.getvalue().encode("utf-8"))
