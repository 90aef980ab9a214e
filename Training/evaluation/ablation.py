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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from Training.data import load_case
from Training.evaluation.datasets import EvaluationData, model_inputs, reference_labels
from Training.loop.cases import known_regions
from Training.loop.scoring import labelled_metrics
from unetseg.engine.geometry import Geometry
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


class InputAblation:
    """The ablation accumulated case by case (the evaluation runner feeds it the cases it has
    already loaded, segmented with every input and scored)."""

    def __init__(self, segmenter: Segmenter) -> None:
        package = segmenter.package
        self.segmenter = segmenter
        self.nested = package.activation == "sigmoid"
        self.names = [spec.name for spec in package.inputs]
        optional = [spec.name for spec in package.inputs if not spec.required]
        self.variants = ablation_variants(self.names, optional)
        self.regions = {str(label.value): label.region_name for label in package.labels}
        self.scores: dict[str, list[dict[str, float]]] = {"full": []}
        self.cases: list[str] = []

    def add_case(
        self,
        case_id: str,
        arrays: Sequence[np.ndarray | None],
        geometry: Geometry,
        reference: np.ndarray,
        known: np.ndarray | None,
        evaluated: Sequence[bool] | None,
        full: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        """Segment a case again without each variant's inputs; a case lacking an input, or a
        model without optional inputs, adds nothing.

        Args:
            arrays: the model inputs (``model_inputs``) of the case.
            reference, known, evaluated: what ``labelled_metrics`` scores it with, ``(K, J, I)``.
            full: its metrics with every input (``labelled_metrics`` form) when it was segmented
                and scored already; None: segment it with every input here.
        """
        if not self.variants or any(array is None for array in arrays):
            return  # only complete cases show what leaving an input out costs
        self.cases.append(case_id)
        runs = [("+".join(left_out), left_out) for left_out in self.variants]
        if full is None:
            runs.insert(0, ("full", []))
        else:
            self.scores["full"].append(self._dice(full))
        for key, left_out in runs:
            kept = [
                None if name in left_out else a for name, a in zip(self.names, arrays, strict=True)
            ]
            result = self.segmenter.segment(kept, [None if a is None else geometry for a in kept])
            prediction = np.asarray(result.labels, np.uint8).reshape(geometry.shape)
            metrics = labelled_metrics(
                prediction, reference, [int(v) for v in self.regions], geometry.spacing,
                nested=self.nested, distances=False, known=known, evaluated=evaluated,
            )  # fmt: skip
            self.scores.setdefault(key, []).append(self._dice(metrics))
        logger.info("input ablation: %s done", case_id)

    def result(self) -> dict[str, Any] | None:
        """``{"cases": [case ids], "full": {region: dice}, "without": {"t1+t2": {"dice":
        {region: dice}, "change": {region: dice - full}}, ...}}``, or None when the model has
        no optional input or no case had every input."""
        if not self.cases:
            return None
        full = _mean(self.scores["full"])
        without = {}
        for key, runs in self.scores.items():
            if key == "full":
                continue
            dice = _mean(runs)
            change = {region: dice[region] - full[region] for region in dice if region in full}
            without[key] = {"dice": dice, "change": change}
        return {"cases": self.cases, "full": full, "without": without}

    def _dice(self, metrics: Mapping[str, Mapping[str, float]] | None) -> dict[str, float]:
        return {self.regions[k]: v["dice"] for k, v in (metrics or {}).items() if k in self.regions}


def input_ablation(segmenter: Segmenter, data: EvaluationData) -> dict[str, Any] | None:
    """Mean Dice per region with all inputs and with optional inputs left out, over the cases
    of ``data`` (each loaded and segmented here; ``evaluate`` feeds ``InputAblation`` the cases
    it segments instead).

    Returns:
        ``InputAblation.result()``.
    """
    ablation = InputAblation(segmenter)
    if not ablation.variants:
        return None
    package = segmenter.package
    for record in data.records:
        images, label, geometry = load_case(record)
        source = data.data.source(record.source)
        arrays = model_inputs(images, record, source, package.inputs)
        if any(array is None for array in arrays):
            continue
        reference = reference_labels(label, source, package, record.case_id)
        reference = reference.reshape(geometry.shape)
        known = known_regions(label.reshape(geometry.shape), source)
        evaluated = source.evaluated_regions() if ablation.nested else None
        ablation.add_case(record.case_id, arrays, geometry, reference, known, evaluated)
    return ablation.result()


def _mean(runs: list[dict[str, float]]) -> dict[str, float]:
    """Mean per region over the runs that scored it."""
    regions = sorted({region for run in runs for region in run})
    return {
        region: float(np.mean([run[region] for run in runs if region in run])) for region in regions
    }
