"""Evaluation of model packages on labelled data (``python -m Training evaluate``): case
selection (``datasets``), the streamed per-case runner (``runner``), overlay images
(``overlay``) and the Markdown / HTML report (``report``)."""

from Training.evaluation.datasets import (
    EvaluationData,
    detect_layout,
    model_inputs,
    reference_labels,
    resolve_data,
)
from Training.evaluation.runner import case_metrics, evaluate

__all__ = [
    "EvaluationData",
    "case_metrics",
    "detect_layout",
    "evaluate",
    "model_inputs",
    "reference_labels",
    "resolve_data",
]
