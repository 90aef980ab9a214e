"""Calibration of a model's probabilities: reliability diagrams and expected calibration error.

A model is calibrated when, of the voxels it gives probability ``p`` for a label, a fraction
``p`` carry that label. Probabilities are binned into ``N_BINS`` equal bins of [0, 1]; per bin
the mean predicted probability is compared with the observed frequency, and the expected
calibration error (ECE) is the voxel-weighted mean of their absolute difference:
``ECE = sum_b n_b / N * |observed_b - predicted_b|``.

Per label (one against the rest): softmax models give the probability of each label value ``c``
(channel ``c``) and the outcome ``reference == c``; sigmoid models give the probability of each
nested region (channel ``c - 1``) and the outcome ``reference >= c``. Softmax models also get
the top-label calibration: confidence = highest probability, outcome = the arg-max label is
right (the classic ECE of Guo et al. 2017).

The evaluation runner gets probabilities by a second pass of the engine's
``sliding_window_inference(output="probabilities")`` over the case prepared as the
``Segmenter`` prepares it, and scores them on the model grid (the reference resampled there,
nearest neighbour), over the voxels of the model's foreground mask (head/body; every pixel for
2D models) where the reference is known. The bins are accumulated over all those voxels of all
cases (sums and counts only, so memory does not grow with the data).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

N_BINS = 10


@dataclass
class Reliability:
    """Binned probabilities and outcomes of one label (or of the top label).

    Attributes:
        counts: voxels per bin.
        predicted: sum of the predicted probabilities per bin.
        observed: sum of the outcomes (1 = the label is there) per bin.
    """

    bins: int = N_BINS
    counts: np.ndarray = field(init=False)
    predicted: np.ndarray = field(init=False)
    observed: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.bins < 1:
            raise ValueError(f"bins must be >= 1, got {self.bins}")
        self.counts = np.zeros(self.bins, dtype=np.int64)
        self.predicted = np.zeros(self.bins, dtype=np.float64)
        self.observed = np.zeros(self.bins, dtype=np.float64)

    def add(self, probability: np.ndarray, outcome: np.ndarray) -> None:
        """Add voxels: ``probability`` in [0, 1] and ``outcome`` (bool or 0/1), same shape."""
        p = np.asarray(probability, dtype=np.float64).ravel()
        y = np.asarray(outcome).ravel()
        if p.shape != y.shape:
            raise ValueError(f"probability {p.shape} and outcome {y.shape} differ in size")
        if p.size and (not np.isfinite(p).all() or p.min() < 0.0 or p.max() > 1.0):
            raise ValueError("probabilities must be finite and in [0, 1]")
        index = np.minimum((p * self.bins).astype(np.int64), self.bins - 1)
        self.counts += np.bincount(index, minlength=self.bins)
        self.predicted += np.bincount(index, weights=p, minlength=self.bins)
        self.observed += np.bincount(index, weights=y.astype(np.float64), minlength=self.bins)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def ece(self) -> float | None:
        """Expected calibration error; None without voxels."""
        if self.total == 0:
            return None
        return float(np.abs(self.observed - self.predicted).sum() / self.total)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ECE, voxel count and per bin its range, count, mean predicted probability
        and observed frequency (None for empty bins)."""
        rows = []
        for b in range(self.bins):
            n = int(self.counts[b])
            rows.append(
                {
                    "low": b / self.bins,
                    "high": (b + 1) / self.bins,
                    "count": n,
                    "predicted": float(self.predicted[b] / n) if n else None,
                    "observed": float(self.observed[b] / n) if n else None,
                }
            )
        return {"ece": self.ece(), "voxels": self.total, "bins": rows}


def expected_calibration_error(
    probability: np.ndarray, outcome: np.ndarray, bins: int = N_BINS
) -> float | None:
    """ECE of ``probability`` against the binary ``outcome`` (see module docstring)."""
    curve = Reliability(bins)
    curve.add(probability, outcome)
    return curve.ece()


class Calibration:
    """Reliability bins of a model's labels accumulated case by case.

    Args:
        labels: (value, name) of the model's labels, in channel order.
        activation: ``"softmax"`` (channel c = label value c, 0 background) or ``"sigmoid"``
            (channel c - 1 = nested region of label value c).
        bins: number of equal probability bins.
    """

    def __init__(
        self, labels: Sequence[tuple[int, str]], activation: str, bins: int = N_BINS
    ) -> None:
        if activation not in ("softmax", "sigmoid"):
            raise ValueError(f"activation must be softmax or sigmoid, got {activation!r}")
        self.labels = [(int(v), str(n)) for v, n in labels]
        self.activation = activation
        self.bins = bins
        self.per_label = [Reliability(bins) for _ in self.labels]
        self.top_label = Reliability(bins) if activation == "softmax" else None
        self.cases = 0

    def add_case(
        self,
        probabilities: np.ndarray,
        reference: np.ndarray,
        mask: np.ndarray | None = None,
        known: np.ndarray | None = None,
    ) -> None:
        """Add one case.

        Args:
            probabilities: (C, *spatial) after the activation (softmax: C = labels + 1).
            reference: (*spatial) label map in the model's label values (sigmoid: the nested
                region index, region c = values >= c).
            mask: bool (*spatial): the voxels scored (default all).
            known: sigmoid partial labels, (labels, *spatial): 1 where the region is labelled.
        """
        probabilities = np.asarray(probabilities)
        reference = np.asarray(reference)
        spatial = reference.shape
        expected = len(self.labels) + (1 if self.activation == "softmax" else 0)
        if probabilities.shape != (expected, *spatial):
            raise ValueError(
                f"expected probabilities of shape {(expected, *spatial)}, got {probabilities.shape}"
            )
        inside = np.ones(spatial, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if inside.shape != spatial:
            raise ValueError(f"mask shape {inside.shape} differs from the reference's {spatial}")
        ref = reference[inside]
        if self.activation == "softmax":
            values = probabilities[:, inside]
            assert self.top_label is not None
            winner = values.argmax(axis=0)
            self.top_label.add(values.max(axis=0), winner == ref)
            for n, (value, _) in enumerate(self.labels):
                self.per_label[n].add(values[value], ref == value)
        else:
            for n, (value, _) in enumerate(self.labels):
                scored = inside if known is None else inside & (np.asarray(known[n]) > 0)
                self.per_label[n].add(probabilities[n][scored], reference[scored] >= value)
        self.cases += 1

    def result(self) -> dict[str, Any]:
        """JSON form (``metrics.json`` key ``calibration``)."""
        return {
            "activation": self.activation,
            "bins": self.bins,
            "cases": self.cases,
            "top_label": None if self.top_label is None else self.top_label.to_dict(),
            "labels": [
                {"value": value, "name": name, **curve.to_dict()}
                for (value, name), curve in zip(self.labels, self.per_label, strict=True)
            ],
        }


def plot_reliability(result: Mapping[str, Any], path: str | Path, title: str = "") -> Path | None:
    """Reliability diagram PNG of a ``Calibration.result()``: observed frequency against mean
    predicted probability per bin and label (diagonal = perfect calibration), and the voxels
    per bin below (log scale). Returns None (and logs why) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no calibration plot")
        return None
    from unetseg.atomic import atomic_path

    curves = [(f"{c['name']} (ECE {_fmt(c['ece'])})", c, "-") for c in result["labels"]]
    if result.get("top_label"):
        top = result["top_label"]
        curves.insert(0, (f"top label (ECE {_fmt(top['ece'])})", top, "--"))
    figure, (upper, lower) = plt.subplots(
        2, 1, figsize=(6.0, 6.4), height_ratios=(3, 1), sharex=True, layout="constrained"
    )
    upper.plot([0, 1], [0, 1], color="0.6", linewidth=1, label="perfect calibration")
    centres = (np.arange(result["bins"]) + 0.5) / result["bins"]
    for n, (name, curve, style) in enumerate(curves):
        colour = "black" if style == "--" else f"C{n}"
        rows = [row for row in curve["bins"] if row["count"]]
        upper.plot(
            [row["predicted"] for row in rows],
            [row["observed"] for row in rows],
            style,
            marker="o",
            markersize=4,
            color=colour,
            label=name,
        )
        counts = np.array([row["count"] for row in curve["bins"]], dtype=float)
        lower.step(centres, np.where(counts > 0, counts, np.nan), where="mid", color=colour)
    upper.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed frequency")
    upper.set_title(title or "Reliability diagram", fontsize=10)
    upper.legend(fontsize=8, loc="upper left")
    upper.grid(alpha=0.3)
    lower.set(xlabel="predicted probability", ylabel="voxels", yscale="log")
    lower.grid(alpha=0.3)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)
    return out


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


# ----------------------------------------------------------------------------- model side


def case_calibration(
    calibration: Calibration,
    segmenter: Any,
    arrays: Sequence[np.ndarray | None],
    geometry: Any,
    label: np.ndarray,
    source: Any,
    case_id: str,
) -> None:
    """Add one evaluated case to ``calibration``: the model's probabilities on its grid (the
    ``Segmenter``'s preparation, sliding window and settings) against the case's reference
    brought onto that grid (see module docstring).

    Args:
        segmenter: the ``unetseg.engine.predict.Segmenter`` that segmented the case.
        arrays: the model inputs given to ``segmenter.segment`` (None: absent optional input).
        geometry: the case grid (``Geometry``).
        label: the case's label map as loaded (before ``label_map`` / ``regions``).
        source: the case's ``SourceConfig``.
    """
    from Training.evaluation.datasets import reference_labels
    from Training.loop.cases import known_regions
    from unetseg.engine.preprocessing.pipeline import prepare_inputs
    from unetseg.engine.preprocessing.resampling import resample_to_geometry

    package = segmenter.package
    geometries = [None if a is None else geometry for a in arrays]
    case = prepare_inputs(arrays, geometries, package.preparation)
    values = segmenter.probabilities(case)
    spatial = values.shape[1:]
    on_grid = resample_to_geometry(
        np.asarray(label).reshape(geometry.shape), geometry, case.model_geometry, order=0
    )
    reference = reference_labels(on_grid, source, package, case_id).reshape(spatial)
    known = known_regions(on_grid, source)
    if known is not None:
        known = known.reshape(known.shape[0], *spatial)
    inside = None if case.foreground_mask is None else case.foreground_mask.reshape(spatial)
    calibration.add_case(values, reference, inside, known)
