"""Numbers of a dataset inspection: per case (geometry, label volumes, lesion sizes, intensities
and the correlation between sequences inside the mask) and over the dataset (histograms,
mean correlation, label-volume summary, outliers).

Units: volumes in mL (3D) or areas in cm² (2D cases), lesion sizes in mm³ (mm²) with their
equivalent diameter in mm (``unetseg.engine.lesions``: connected components of all non-zero
labels). Spacing and shape are (I, J, K) = (x, y, z); orientation is the axis code of the
(I, J, K) axes (``LPS``: I towards the patient's left, ...).

Outliers (``flag_outliers``), with at least ``MIN_CASES_FOR_OUTLIERS`` cases: a spacing or
shape that differs from the dataset median by more than ``RELATIVE_TOLERANCE`` on an axis and is
also a robust outlier (more than ``ROBUST_Z`` scaled median absolute deviations from it, on the
log scale; any difference counts when all other cases agree); an orientation that is not the
majority's; per sequence, an intensity range (p1-p99 inside the mask) more than
``RANGE_FACTOR`` times, or less than its inverse, the median case's, or a median intensity off
the cases' median by more than half the median range, each also a robust outlier; and a case
without any labelled voxel.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from nibabel.orientations import aff2axcodes

from unetseg.engine.geometry import Geometry
from unetseg.engine.lesions import label_lesions

MIN_CASES_FOR_OUTLIERS = 3
RELATIVE_TOLERANCE = 0.25
ROBUST_Z = 3.5
RANGE_FACTOR = 2.0
PERCENTILES = (1.0, 50.0, 99.0)
#: Most mask voxels per sequence used for a case's intensity percentiles and correlations
#: (a regular subsample of the mask beyond that).
EXACT_VOXELS = 1_000_000
HISTOGRAM_BINS = 64
HISTOGRAM_RANGE = (0.5, 99.5)  # percentiles of the pooled sample; voxels beyond go in end bins


@dataclass
class CaseSummary:
    """What the inspection keeps of one case (its arrays are dropped after it)."""

    case_id: str
    source: str | None
    dims: int
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    orientation: str
    mask_mode: str
    mask_voxels: int
    sequences: tuple[str, ...]
    intensity: dict[str, dict[str, float]]
    correlation: list[list[float | None]]
    label_voxels: dict[int, int]
    label_volumes: dict[int, float]
    lesion_sizes: list[float]
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "source": self.source,
            "dims": self.dims,
            "shape": list(self.shape),
            "spacing": [round(s, 4) for s in self.spacing],
            "orientation": self.orientation,
            "mask": self.mask_mode,
            "mask_voxels": self.mask_voxels,
            "sequences": list(self.sequences),
            "intensity": self.intensity,
            "correlation": self.correlation,
            "label_voxels": {str(k): v for k, v in self.label_voxels.items()},
            "label_volumes": {str(k): round(v, 4) for k, v in self.label_volumes.items()},
            "lesions": len(self.lesion_sizes),
            "lesion_sizes": [round(s, 3) for s in self.lesion_sizes],
            "flags": self.flags,
        }


def volume_unit(dims: int) -> str:
    """``mL`` for 3D cases, ``cm²`` for 2D ones."""
    return "mL" if dims == 3 else "cm²"


def case_dims(geometry: Geometry) -> int:
    """2 for a single-slice (X-ray) case, else 3."""
    return 2 if geometry.shape[0] == 1 else 3


def summarise_case(
    case_id: str,
    source: str | None,
    images: Mapping[str, np.ndarray],
    label: np.ndarray | None,
    geometry: Geometry,
    mask: np.ndarray,
    mask_mode: str,
) -> CaseSummary:
    """The numbers of one case; ``images`` and ``label`` are on ``geometry``'s grid and ``mask``
    (their shape) is where intensities are taken."""
    dims = case_dims(geometry)
    spacing = tuple(float(s) for s in geometry.spacing)
    shape_ijk = tuple(int(s) for s in reversed(geometry.shape))
    if dims == 2:
        spacing, shape_ijk = spacing[:2], shape_ijk[:2]
    voxel_mm = float(np.prod(spacing))
    names = tuple(images)
    inside = mask.ravel()
    mask_voxels = int(np.count_nonzero(inside))
    step = max(1, mask_voxels // EXACT_VOXELS)
    columns = [image.ravel()[inside][::step].astype(np.float64) for image in images.values()]
    intensity = {name: _intensity(values) for name, values in zip(names, columns, strict=True)}
    correlation = correlation_matrix(np.stack(columns, axis=1)) if columns else []
    del columns
    label_voxels: dict[int, int] = {}
    sizes: list[float] = []
    if label is not None:
        counts = np.bincount(label.ravel())
        label_voxels = {int(v): int(counts[v]) for v in np.flatnonzero(counts) if v != 0}
        lesion_input = label.reshape(geometry.shape)
        if dims == 2:
            lesion_input = lesion_input[0]
        _, voxel_counts = label_lesions(lesion_input, spacing)
        sizes = [float(n) * voxel_mm for n in voxel_counts[1:]]
    per_unit = 1000.0 if dims == 3 else 100.0  # mm³ per mL, mm² per cm²
    return CaseSummary(
        case_id=case_id,
        source=source,
        dims=dims,
        shape=shape_ijk,
        spacing=spacing,
        orientation="".join(aff2axcodes(geometry.ijk_to_ras))[:dims],
        mask_mode=mask_mode,
        mask_voxels=mask_voxels,
        sequences=names,
        intensity=intensity,
        correlation=correlation,
        label_voxels=label_voxels,
        label_volumes={v: n * voxel_mm / per_unit for v, n in label_voxels.items()},
        lesion_sizes=sizes,
    )


def _intensity(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    p1, p50, p99 = np.percentile(values, PERCENTILES)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "p1": float(p1),
        "p50": float(p50),
        "p99": float(p99),
    }


def correlation_matrix(values: np.ndarray) -> list[list[float | None]]:
    """Pearson correlation between the columns of ``values`` (n, S); None where a column is
    constant."""
    columns = values.shape[1]
    result: list[list[float | None]] = [[None] * columns for _ in range(columns)]
    centred = values - values.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    for a in range(columns):
        for b in range(columns):
            if norms[a] > 0 and norms[b] > 0:
                r = float((centred[:, a] @ centred[:, b]) / (norms[a] * norms[b]))
                result[a][b] = max(-1.0, min(1.0, r))
    return result


def mean_correlation(
    cases: Sequence[CaseSummary], names: Sequence[str]
) -> list[list[float | None]]:
    """Per pair of sequences, the mean over the cases having both of their correlation."""
    size = len(names)
    sums = np.zeros((size, size))
    counts = np.zeros((size, size))
    for case in cases:
        position = [names.index(n) for n in case.sequences]
        for a, row in enumerate(case.correlation):
            for b, value in enumerate(row):
                if value is not None:
                    sums[position[a], position[b]] += value
                    counts[position[a], position[b]] += 1
    return [
        [float(sums[a, b] / counts[a, b]) if counts[a, b] else None for b in range(size)]
        for a in range(size)
    ]


def weighted_histograms(
    values: np.ndarray,
    strata: np.ndarray,
    weights: np.ndarray,
    bins: int = HISTOGRAM_BINS,
) -> dict[str, Any]:
    """Histogram of one sequence's sampled voxels (estimated mask-voxel counts): edges over the
    ``HISTOGRAM_RANGE`` percentiles of the sample (voxels outside go in the end bins), counts of
    the whole mask (``all``) and per stratum (label value; 0 = unlabelled mask voxels)."""
    finite = np.isfinite(values)
    values, strata, weights = values[finite], strata[finite], weights[finite]
    if values.size == 0:
        return {"edges": [], "all": [], "strata": {}}
    low, high = np.percentile(values, HISTOGRAM_RANGE)
    if not high > low:
        low, high = float(values.min()) - 0.5, float(values.max()) + 0.5
    edges = np.linspace(low, high, bins + 1)
    clipped = np.clip(values, edges[0], edges[-1])
    overall = np.histogram(clipped, edges, weights=weights)[0]
    per_stratum = {
        int(v): np.histogram(clipped[strata == v], edges, weights=weights[strata == v])[0].tolist()
        for v in np.unique(strata)
    }
    return {"edges": edges.tolist(), "all": overall.tolist(), "strata": per_stratum}


def label_summary(cases: Sequence[CaseSummary]) -> dict[int, dict[str, Any]]:
    """Per label value: cases holding it and statistics of its volume over those cases."""
    values = sorted({v for case in cases for v in case.label_volumes})
    result: dict[int, dict[str, Any]] = {}
    for value in values:
        volumes = np.array([c.label_volumes[value] for c in cases if value in c.label_volumes])
        result[value] = {
            "cases": int(volumes.size),
            "mean": float(volumes.mean()),
            "median": float(np.median(volumes)),
            "min": float(volumes.min()),
            "max": float(volumes.max()),
        }
    return result


def equivalent_diameter_mm(size: float, dims: int) -> float:
    """Diameter of the sphere (3D, mm³) or disc (2D, mm²) of that size."""
    if dims == 3:
        return float(np.cbrt(6.0 * size / math.pi))
    return float(np.sqrt(4.0 * size / math.pi))


# ----------------------------------------------------------------------------- outliers


def flag_outliers(cases: Sequence[CaseSummary]) -> None:
    """Set ``flags`` of every case (see module docstring)."""
    for case in cases:
        case.flags = []
        if not case.label_voxels:
            case.flags.append("no labelled voxel")
    if len(cases) < MIN_CASES_FOR_OUTLIERS:
        return
    axes = "xyz"
    for dims in (2, 3):
        group = [case for case in cases if case.dims == dims]
        if len(group) < MIN_CASES_FOR_OUTLIERS:
            continue
        for attribute, what, unit in (("spacing", "spacing", " mm"), ("shape", "size", "")):
            table = np.array([getattr(case, attribute) for case in group], dtype=float)
            for axis in range(dims):
                median = float(np.median(table[:, axis]))
                for case, outlier in zip(group, _outliers(table[:, axis]), strict=True):
                    if outlier:
                        value = getattr(case, attribute)[axis]
                        case.flags.append(
                            f"{what} {axes[axis]} {value:g}{unit} (median {median:g}{unit})"
                        )
        majority, count = Counter(case.orientation for case in group).most_common(1)[0]
        if count * 2 > len(group):
            for case in group:
                if case.orientation != majority:
                    case.flags.append(f"orientation {case.orientation} (most cases {majority})")
    names = list(dict.fromkeys(name for case in cases for name in case.sequences))
    for name in names:
        group = [case for case in cases if case.intensity.get(name)]
        if len(group) < MIN_CASES_FOR_OUTLIERS:
            continue
        ranges = np.array([c.intensity[name]["p99"] - c.intensity[name]["p1"] for c in group])
        medians = np.array([c.intensity[name]["p50"] for c in group])
        typical_range = float(np.median(ranges))
        if typical_range <= 0:
            continue
        shifts = (medians - np.median(medians)) / typical_range
        wide = _outliers(np.maximum(ranges, 1e-12), math.log(RANGE_FACTOR))
        moved = (np.abs(shifts) > 0.5) & (_robust_z(shifts) > ROBUST_Z)
        for case, ratio, shift, is_wide, is_moved in zip(
            group, ranges / typical_range, shifts, wide, moved, strict=True
        ):
            if is_wide:
                case.flags.append(f"{name} intensity range {ratio:.2g}x the median case's")
            elif is_moved:
                case.flags.append(
                    f"{name} median intensity {shift:+.2g} x the median range off the others'"
                )


def _robust_z(values: np.ndarray) -> np.ndarray:
    """Distance from the median in scaled median absolute deviations (inf where every other
    value agrees and this one differs)."""
    centre = np.median(values)
    spread = 1.4826 * np.median(np.abs(values - centre))
    distance = np.abs(values - centre)
    if spread == 0:
        return np.where(distance > 0, np.inf, 0.0)
    return distance / spread


def _outliers(values: np.ndarray, tolerance: float = math.log1p(RELATIVE_TOLERANCE)) -> np.ndarray:
    """Which positive values are outliers: on the log scale, farther than ``tolerance`` from
    the median and robust z-score above ``ROBUST_Z``."""
    logs = np.log(np.maximum(values, 1e-9))
    far = np.abs(logs - np.median(logs)) > tolerance
    return far & (_robust_z(logs) > ROBUST_Z)
