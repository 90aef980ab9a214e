"""Stand-in for the real brain case of the inference benchmark when ../shared/data is absent
(array order (C, K, J, I), float32).

It reproduces what matters for sliding-window timing and memory: the image size and the share
of background that foreground skipping can leave out. It is not anatomy.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Background share of the BraTS-METS case in ../shared/data (zero voxels, 0.82-0.83).
BRAIN_BACKGROUND_SHARE = 0.83


def _grid(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Open grids of normalised coordinates in [-1, 1] per axis (float32)."""
    return list(np.ogrid[tuple(slice(-1.0, 1.0, complex(0, n)) for n in shape)])


def _ellipse(grid: list[np.ndarray], centre: tuple[float, ...], radii: tuple[float, ...]):
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1.0


def _smooth_noise(shape: tuple[int, ...], rng: np.random.Generator, coarse: int = 8):
    """Low-frequency noise in [-1, 1]: random coarse grid upsampled linearly."""
    small = rng.uniform(-1, 1, [max(2, n // coarse) for n in shape]).astype(np.float32)
    zoom = [n / s for n, s in zip(shape, small.shape, strict=True)]
    return ndimage.zoom(small, zoom, order=1)[tuple(slice(0, n) for n in shape)]


def brain_phantom(
    shape: tuple[int, int, int] = (155, 240, 240), channels: int = 4, seed: int = 0
) -> np.ndarray:
    """Skull-stripped multi-sequence brain MRI stand-in `(channels, K, J, I)`.

    An ellipsoidal brain of ~17% of the volume (background share as BraTS), 0 outside;
    inside, smooth tissue contrast, ventricles and a few bright round lesions that differ
    per channel (sequence). Intensities are positive, MR-like (hundreds).
    """
    rng = np.random.default_rng(seed)
    grid = _grid(shape)
    brain = _ellipse(grid, (0.0, 0.0, 0.0), (0.85, 0.70, 0.55))
    ventricles = _ellipse(grid, (0.1, -0.05, 0.0), (0.25, 0.2, 0.12))
    lesions = np.zeros(shape, bool)
    for _ in range(5):
        centre = tuple(rng.uniform(-0.4, 0.4, 3))
        lesions |= _ellipse(grid, centre, tuple(rng.uniform(0.03, 0.08, 3)))
    tissue = _smooth_noise(shape, rng)
    volume = np.zeros((channels, *shape), np.float32)
    for c in range(channels):
        contrast = rng.uniform(0.6, 1.4, 3)
        channel = 400 + 120 * contrast[0] * tissue
        channel[ventricles] = 150 * contrast[1]
        channel[lesions] = 900 * contrast[2]
        channel += rng.normal(0, 15, shape).astype(np.float32)
        volume[c] = np.where(brain, np.maximum(channel, 1.0), 0.0)
    return volume
