"""Two-dimensional map of sampled voxels: do the labels separate by intensity, and do the cases
(or data sources) overlap?

Features per voxel: the intensity of every sequence the cases share and the mean intensity of
the box around the voxel (``sampling.LOCAL_BOX_*``), each standardised over the chosen points.
At most ``points`` voxels are taken from the pooled per-case samples, shared evenly between the
labels (``sampling.share``) with a seeded generator. The map is a t-SNE (scikit-learn, the
``train`` extra) or, without scikit-learn, the first two principal components.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from Training.inspect.sampling import share

logger = logging.getLogger(__name__)

DEFAULT_POINTS = 2000


@dataclass(frozen=True)
class Embedding:
    """Coordinates (n, 2) of the chosen voxels, their label value and case number."""

    coordinates: np.ndarray
    strata: np.ndarray
    cases: np.ndarray
    method: str
    features: tuple[str, ...]


def choose_points(strata: np.ndarray, points: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``points`` rows, shared evenly between the label values."""
    values = np.unique(strata)
    groups = [np.flatnonzero(strata == v) for v in values]
    takes = share([g.size for g in groups], points)
    chosen = [rng.choice(g, size=t, replace=False) for g, t in zip(groups, takes, strict=True) if t]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def embed(
    features: np.ndarray,
    strata: np.ndarray,
    cases: np.ndarray,
    feature_names: tuple[str, ...],
    *,
    points: int = DEFAULT_POINTS,
    seed: int = 0,
) -> Embedding | None:
    """Map the rows of ``features`` (n, F) to 2D (see module docstring); None when fewer than
    10 rows remain."""
    rng = np.random.default_rng([int(seed), 1 << 20])
    chosen = choose_points(strata, points, rng)
    data = features[chosen].astype(np.float64)
    keep = np.isfinite(data).all(axis=1)
    chosen, data = chosen[keep], data[keep]
    if chosen.size < 10:
        return None
    scale = data.std(axis=0)
    data = (data - data.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        logger.warning("scikit-learn is not installed: principal components instead of t-SNE")
        coordinates, method = _pca(data), "PCA (scikit-learn not installed)"
    else:
        from threadpoolctl import threadpool_limits

        perplexity = float(min(30.0, (chosen.size - 1) / 3.0))
        tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=int(seed))
        with threadpool_limits(limits=_threads()):
            coordinates = tsne.fit_transform(data)
        method = f"t-SNE (perplexity {perplexity:g})"
    return Embedding(
        coordinates=np.asarray(coordinates, dtype=np.float32),
        strata=strata[chosen],
        cases=cases[chosen],
        method=method,
        features=feature_names,
    )


def _threads() -> int:
    """Threads for t-SNE: half the usable cores, 1 to 4 (more threads than free cores make
    its Barnes-Hut loop several times slower)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, (cores or 1) // 2))


def _pca(data: np.ndarray) -> np.ndarray:
    if data.shape[1] == 1:
        return np.column_stack([data[:, 0], np.zeros(len(data))])
    _, _, components = np.linalg.svd(data, full_matrices=False)
    return data @ components[:2].T
