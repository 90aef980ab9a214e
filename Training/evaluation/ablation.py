"""Missing-sequence ablation: how much a model's Dice drops when optional inputs are missing.

Only cases that have every input take part. Each is segmented with all its inputs and again
with each optional input left out, one at a time, then with all of them left out (the channels
of absent inputs are zero, as in a real run without them). The result, per variant, is the mean
Dice per region over those cases and its change from the full run; ``python -m Training
evaluate --ablate-inputs`` stores it in ``metrics.json`` (``input_ablation``), and a model's
manifest can carry it as ``missing_input_effects`` so that a run without these inputs can say
what that costs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from Training.data import load_case
from Training.evaluation.datasets import EvaluationData, model_inputs, reference_labels
from Training.loop.cases import known_regions
from Training.loop.scoring import labelled_metrics
from unetseg.engine.predict import Segmenter

logger = logging.getLogger(__name__)


def ablation_variants(input_names: Sequence[str], optional: Sequence[str]) -> list[list[str]]:
    """The sets of inputs left out: each optional input alone, then all of them together
    (once when there is a single optional input), in manifest order."""
    ordered = [name for name in input_names if name in optional]
    variants = [[name] for name in ordered]
    if len(ordered) > 1:
        variants.append(ordered)
    return variants


def input_ablation(segmenter: Segmenter, data: EvaluationData) -> dict[str, Any] | None:
    """Mean Dice per region with all inputs and with optional inputs left out.

    Returns:
        ``{"cases": [case ids], "full": {region: dice}, "without": {"t1+t2": {"dice":
        {region: dice}, "change": {region: dice - full}}, ...}}``, or None when the model has
        no optional input or no case has every input.
    """
    package = segmenter.package
    names = [spec.name for spec in package.inputs]
    optional = [spec.name for spec in package.inputs if not spec.required]
    variants = ablation_variants(names, optional)
    if not variants:
        return None
    regions = {str(label.value): label.region_name for label in package.labels}
    scores: dict[str, list[dict[str, float]]] = {"full": []}
    cases = []
    for record in data.records:
        images, label, geometry = load_case(record)
        source = data.data.source(record.source)
        arrays = model_inputs(images, record, source, package.inputs)
        if any(array is None for array in arrays):
            continue  # only complete cases show what leaving an input out costs
        cases.append(record.case_id)
        reference = reference_labels(label, source, package, record.case_id)
        reference = reference.reshape(geometry.shape)
        known = known_regions(label.reshape(geometry.shape), source)
        for key, left_out in [("full", []), *(("+".join(v), v) for v in variants)]:
            kept = [None if name in left_out else a for name, a in zip(names, arrays, strict=True)]
            result = segmenter.segment(kept, [None if a is None else geometry for a in kept])
            prediction = np.asarray(result.labels, np.uint8).reshape(geometry.shape)
            metrics = labelled_metrics(
                prediction, reference, [int(v) for v in regions], geometry.spacing,
                nested=package.activation == "sigmoid", distances=False, known=known,
                evaluated=source.evaluated_regions() if package.activation == "sigmoid" else None,
            )  # fmt: skip
            scores.setdefault(key, []).append(
                {regions[k]: v["dice"] for k, v in (metrics or {}).items() if k in regions}
            )
        logger.info("input ablation: %s done", record.case_id)
    if not cases:
        return None
    full = _mean(scores["full"])
    without = {}
    for key, runs in scores.items():
        if key == "full":
            continue
        dice = _mean(runs)
        change = {region: dice[region] - full[region] for region in dice if region in full}
        without[key] = {"dice": dice, "change": change}
    return {"cases": cases, "full": full, "without": without}


def _mean(runs: list[dict[str, float]]) -> dict[str, float]:
    """Mean per region over the runs that scored it."""
    regions = sorted({region for run in runs for region in run})
    return {
        region: float(np.mean([run[region] for run in runs if region in run])) for region in regions
    }
