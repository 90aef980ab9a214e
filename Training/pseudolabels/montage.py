"""Overlay montage of a lung label map on its CT, to check pseudo-labels by eye.

One row of axial slices (evenly spaced between the lung apex and base, superior first) and one
row of coronal slices (posterior to anterior through the lungs), cropped to the labels plus
``MARGIN_MM`` (the whole volume when the label map is empty), in radiological display: the
patient's right on the image left, anterior (axial) or superior (coronal) at the top, square
millimetres. Lung window (-600 / 1500 HU); each label is a translucent fill with an opaque
outline in its colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from unetseg.engine.geometry import Geometry
from unetseg.engine.preprocessing.orientation import reorient_to_canonical

#: Label value -> RGB; right lung green, left lung orange (distinct on a grey CT).
COLORS: dict[int, tuple[int, int, int]] = {1: (60, 200, 60), 2: (250, 150, 30)}
WINDOW_HU = (-1350.0, 150.0)
TILE_PX = 320
MARGIN_MM = 25.0
ALPHA = 0.35


def lung_montage(
    hu: np.ndarray,
    label: np.ndarray,
    geometry: Geometry,
    path: str | Path,
    *,
    axial: int = 6,
    coronal: int = 3,
    title: str = "",
    colors: Mapping[int, tuple[int, int, int]] = COLORS,
) -> Path:
    """Write the montage PNG (see module docstring) and return its path.

    Args:
        hu: (K, J, I) CT in HU; label: (K, J, I) label map, both on ``geometry``'s grid.
        axial, coronal: number of slices per row.
        title: caption above the tiles (the colour legend is added to it).
    """
    image, canonical_geometry, _ = reorient_to_canonical(np.asarray(hu, np.float32), geometry)
    labels, _, _ = reorient_to_canonical(np.asarray(label, np.uint8), geometry)
    sx, sy, sz = (float(s) for s in canonical_geometry.spacing)
    rows_k = _positions(labels.any(axis=(1, 2)), axial)[::-1]  # superior first
    rows_j = _positions(labels.any(axis=(0, 2)), coronal)
    box = tuple(
        _extent(labels.any(axis=axes), MARGIN_MM / s)
        for axes, s in zip(((1, 2), (0, 2), (0, 1)), (sz, sy, sx), strict=True)
    )
    image, labels = image[box], labels[box]
    k0, j0 = box[0].start, box[1].start
    # Canonical I points to the patient's right, J anterior, K superior: flip for display.
    tiles = [
        [
            _tile(image[k - k0, ::-1, ::-1], labels[k - k0, ::-1, ::-1], (sy, sx), colors)
            for k in rows_k
        ],
        [
            _tile(image[::-1, j - j0, ::-1], labels[::-1, j - j0, ::-1], (sz, sx), colors)
            for j in rows_j
        ],
    ]
    legend = "  ".join(f"{value}: {_NAMES.get(value, value)}" for value in sorted(colors))
    caption = f"{title}  [{legend}; patient's right on image left]".strip()
    width = TILE_PX * max(len(row) for row in tiles)
    canvas = Image.new("RGB", (width, 20 + TILE_PX * len(tiles)), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), caption, fill=(255, 255, 255))
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            canvas.paste(tile, (c * TILE_PX, 20 + r * TILE_PX))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


_NAMES = {1: "right lung (green)", 2: "left lung (orange)"}


def _positions(occupied: np.ndarray, count: int) -> list[int]:
    """``count`` indices evenly spaced over the occupied range (the whole axis if empty),
    from 5 % inside each end."""
    where = np.flatnonzero(occupied)
    low, high = (where[0], where[-1]) if where.size else (0, occupied.size - 1)
    margin = 0.05 * (high - low)
    return [round(float(v)) for v in np.linspace(low + margin, high - margin, count)]


def _extent(occupied: np.ndarray, margin: float) -> slice:
    """Occupied index range grown by ``margin`` voxels (the whole axis if nothing is)."""
    where = np.flatnonzero(occupied)
    if where.size == 0:
        return slice(0, occupied.size)
    return slice(max(0, int(where[0] - margin)), min(occupied.size, int(where[-1] + margin) + 1))


def _tile(
    image: np.ndarray,
    label: np.ndarray,
    pixel_mm: Sequence[float],
    colors: Mapping[int, tuple[int, int, int]],
) -> Image.Image:
    """One (H, W) slice as an RGB tile of ``TILE_PX`` squared, square mm, aspect kept."""
    grey = np.clip((image - WINDOW_HU[0]) / (WINDOW_HU[1] - WINDOW_HU[0]), 0.0, 1.0)
    rgb = np.repeat((255.0 * grey)[..., None], 3, axis=2)
    for value, color in colors.items():
        mask = label == value
        edge = mask & ~ndimage.binary_erosion(mask)
        rgb[mask] = (1.0 - ALPHA) * rgb[mask] + ALPHA * np.asarray(color, np.float64)
        rgb[edge] = color
    height_mm, width_mm = image.shape[0] * pixel_mm[0], image.shape[1] * pixel_mm[1]
    scale = TILE_PX / max(height_mm, width_mm)
    size = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))
    picture = Image.fromarray(rgb.astype(np.uint8)).resize(size, Image.Resampling.NEAREST)
    tile = Image.new("RGB", (TILE_PX, TILE_PX), (0, 0, 0))
    tile.paste(picture, ((TILE_PX - size[0]) // 2, (TILE_PX - size[1]) // 2))
    return tile
