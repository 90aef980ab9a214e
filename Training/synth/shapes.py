"""Analytic shapes and textures evaluated at the voxel centres of a ``PhantomSpace``.

Every function takes an optional ``block`` (array slices from ``PhantomSpace.box``) and then
returns values for that sub-block only; points and sizes are in nominal mm.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from Training.synth.space import PhantomSpace

Block = tuple[slice, slice, slice] | None


def ellipsoid_r2(
    space: PhantomSpace,
    center: Sequence[float],
    radii: Sequence[float],
    rotation: np.ndarray | None = None,
    block: Block = None,
) -> np.ndarray:
    """Squared normalised radius (K, J, I) float32 in an ellipsoid (<= 1 inside).

    ``rotation`` (3, 3) has the ellipsoid's axes as columns (nominal frame); default: R, A, S.
    """
    axes = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    matrix = axes.T / np.asarray(radii, dtype=np.float64)[:, None]
    local = space.affine(matrix, -matrix @ np.asarray(center, dtype=np.float64), block)
    return np.einsum("n...,n...->...", local, local)


def point_r2(
    point: Sequence[float],
    center: Sequence[float],
    radii: Sequence[float],
    rotation: np.ndarray | None = None,
) -> float:
    """``ellipsoid_r2`` of a single nominal point."""
    d = np.asarray(point, dtype=np.float64) - np.asarray(center, dtype=np.float64)
    if rotation is not None:
        d = np.asarray(rotation).T @ d
    return float(np.sum((d / np.asarray(radii, dtype=np.float64)) ** 2))


def segment_distance(
    space: PhantomSpace, start: Sequence[float], end: Sequence[float], block: Block = None
) -> np.ndarray:
    """Distance (K, J, I) float32 in nominal mm to the line segment ``start``-``end``."""
    a = np.asarray(start, dtype=np.float64)
    axis = np.asarray(end, dtype=np.float64) - a
    length2 = max(float(axis @ axis), 1e-12)
    d = space.affine(np.eye(3), -a, block)
    t = np.clip(space.affine(axis / length2, [-(a @ axis) / length2], block)[0], 0.0, 1.0)
    d -= t[None] * axis.astype(np.float32).reshape(3, 1, 1, 1)
    return np.sqrt(np.einsum("n...,n...->...", d, d))


def polyline_distance(space: PhantomSpace, points: np.ndarray, block: Block = None) -> np.ndarray:
    """Distance (K, J, I) in nominal mm to a polyline through ``points`` (n, 3)."""
    segments = itertools.pairwise(points)
    distance = segment_distance(space, *next(segments), block)
    for start, end in segments:
        np.minimum(distance, segment_distance(space, start, end, block), out=distance)
    return distance


def smooth_field(
    rng: np.random.Generator,
    space: PhantomSpace,
    wavelength: float,
    terms: int = 4,
    block: Block = None,
) -> np.ndarray:
    """Smooth random texture (K, J, I) in about [-1, 1]: ``terms`` plane waves of about
    ``wavelength`` nominal mm with random directions and phases."""
    directions = rng.normal(size=(terms, 3))
    lengths = wavelength * rng.uniform(0.7, 1.3, size=terms)
    k = 2.0 * np.pi * directions / (np.linalg.norm(directions, axis=1) * lengths)[:, None]
    phases = rng.uniform(0.0, 2.0 * np.pi, size=terms)
    return space.plane_waves(k, phases, block) * np.float32(np.sqrt(2.0 / terms))


def linear_bias(rng: np.random.Generator, space: PhantomSpace, strength: float) -> np.ndarray:
    """Smooth multiplicative field (K, J, I): ``exp`` of a random gradient that changes the
    signal by about ``strength`` (fraction) across 200 nominal mm."""
    gradient = rng.normal(size=3)
    gradient *= strength / (200.0 * np.linalg.norm(gradient))
    return np.exp(space.affine(gradient, [0.0])[0])


def blur(image: np.ndarray, spacing_kji: Sequence[float], sigma_mm: float) -> np.ndarray:
    """Gaussian blur of ``sigma_mm`` (at least 0.5 voxel along each axis): partial volume."""
    sigma = [max(0.5, sigma_mm / s) for s in spacing_kji]
    return ndimage.gaussian_filter(image, sigma, mode="nearest", truncate=3.0)


def random_axes(rng: np.random.Generator, radius: float, spread: float) -> np.ndarray:
    """Three semi-axes (3,) around ``radius``, each varying by a factor in 1 ± ``spread``."""
    return radius * rng.uniform(1.0 - spread, 1.0 + spread, size=3)


def is_apart(
    center: np.ndarray, radius: float, others: Sequence[tuple[np.ndarray, float]], gap: float
) -> bool:
    """True when the ball (``center``, ``radius``) is at least ``gap`` away from each ball in
    ``others``, given as (center, radius) pairs."""
    return all(np.linalg.norm(center - c) >= radius + r + gap for c, r in others)
