"""Synthetic volumes for the inference benchmark (array order (C, K, J, I), float32).

They reproduce what matters for sliding-window timing and memory: the image size and the
share of background (air) that foreground skipping can leave out. They are not anatomy.
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


def ct_phantom(shape: tuple[int, int, int] = (300, 512, 512), seed: int = 0) -> np.ndarray:
    """Chest/abdomen CT stand-in `(1, K, J, I)` in Hounsfield units.

    Body: an elliptic cylinder along K, 70% of the field of view wide (I) and 50% deep (J),
    so ~73% of each slice is air (-1000 HU). Soft tissue 40 HU with smooth texture, a fat
    rim, a vertebral column (bone), and two lungs (-850 HU) in the upper 35-85% of slices.
    """
    rng = np.random.default_rng(seed)
    plane = shape[1:]
    grid = _grid(plane)
    body = _ellipse(grid, (0.0, 0.0), (0.5, 0.7))
    inner = _ellipse(grid, (0.0, 0.0), (0.45, 0.65))
    spine = _ellipse(grid, (0.32, 0.0), (0.07, 0.06))
    lungs = _ellipse(grid, (-0.05, -0.32), (0.3, 0.2)) | _ellipse(grid, (-0.05, 0.32), (0.3, 0.2))
    texture = _smooth_noise((max(2, -(-shape[0] // 4)), *plane), rng, coarse=16)
    texture = np.repeat(texture, 4, axis=0)[: shape[0]]
    volume = np.full(shape, -1000.0, np.float32)
    lung_slices = slice(int(0.35 * shape[0]), int(0.85 * shape[0]))
    for k in range(shape[0]):
        section = np.where(inner, 40 + 30 * texture[k], -100.0)
        section[spine] = 400
        if lung_slices.start <= k < lung_slices.stop:
            section[lungs] = -850
        volume[k][body] = section[body]
    volume += rng.normal(0, 10, shape).astype(np.float32)
    return volume[None]
