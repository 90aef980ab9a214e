"""Overlay montages of a segmentation over its image, as PNG (Pillow only).

A 3D case becomes a strip of axial slices through the segmented extent plus one coronal and one
sagittal slice through the centre of the segmentation's largest piece, in radiological display
(patient right on the image left; anterior, or superior, at the top; sagittal facing left) with
square millimetres. A 2D image is shown as stored. Each label is filled half-transparent in its
colour and outlined; nested (sigmoid) regions show their outlines inside each other. A legend
strip names the labels.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from unetseg.atomic import write_atomically
from unetseg.engine.geometry import Geometry
from unetseg.engine.manifest import LabelSpec
from unetseg.engine.preprocessing.orientation import reorient_to_canonical

#: Side of one square panel in pixels (3D; a 2D image gets one panel of twice the size),
#: number of axial panels, legend strip height (title line + label line).
PANEL_PX = 256
AXIAL_PANELS = 6
LEGEND_PX = 36
FILL_ALPHA = 0.35
WINDOW_PERCENTILES = (1.0, 99.5)


def overlay_montage(
    image: np.ndarray,
    labels: np.ndarray,
    geometry: Geometry,
    label_specs: Sequence[LabelSpec],
    *,
    nested: bool = False,
    title: str = "",
) -> Image.Image:
    """RGB montage of ``labels`` over ``image``.

    Args:
        image: (K, J, I) intensities on ``geometry`` (2D: (J, I) or (1, J, I)).
        labels: label map on the same grid (values of ``label_specs``; 0 = background).
        geometry: the grid; its IJK-to-RAS matrix decides the display orientation.
        nested: sigmoid regions (label v covers values >= v), outlined separately.
        title: text of the legend strip's first part (e.g. case and model).
    """
    shape = geometry.shape
    image = np.asarray(image, dtype=np.float32).reshape(shape)
    labels = np.asarray(labels).reshape(shape)
    low, high = _window(image)
    panel_px = PANEL_PX
    if shape[0] == 1:
        spacing = geometry.spacing
        panels = [(image[0], labels[0], (float(spacing[1]), float(spacing[0])))]
        panel_px *= 2
    else:
        panels = _panels_3d(image, labels, geometry)
    tiles = [
        _render(view, region, pixel_mm, low, high, label_specs, nested, panel_px)
        for view, region, pixel_mm in panels
    ]
    canvas = Image.new("RGB", (panel_px * len(tiles), panel_px + LEGEND_PX), (0, 0, 0))
    for n, tile in enumerate(tiles):
        canvas.paste(tile, (n * panel_px, 0))
    _legend(ImageDraw.Draw(canvas), label_specs, title, panel_px)
    return canvas


def write_overlay_montage(path: str | Path, *args: object, **kwargs: object) -> Path:
    """``overlay_montage(*args, **kwargs)`` saved as PNG at ``path`` (folders created,
    written atomically)."""
    return write_atomically(path, overlay_montage_png(*args, **kwargs))


def overlay_montage_png(*args: object, **kwargs: object) -> bytes:
    """``overlay_montage(*args, **kwargs)`` as the bytes of a PNG file."""
    buffer = io.BytesIO()
    montage = overlay_montage(*args, **kwargs)  # type: ignore[arg-type]
    montage.save(buffer, format="PNG")
    return buffer.getvalue()


def _window(image: np.ndarray) -> tuple[float, float]:
    """Display window from the percentiles of a subsample of the non-minimum voxels."""
    flat = image.ravel()[:: max(1, image.size // 1_000_000)]
    inside = flat[flat > flat.min()]
    low, high = np.percentile(inside if inside.size else flat, WINDOW_PERCENTILES)
    return float(low), float(max(high, low + 1e-6))


def _panels_3d(
    image: np.ndarray, labels: np.ndarray, geometry: Geometry
) -> list[tuple[np.ndarray, np.ndarray, tuple[float, float]]]:
    """(slice, labels, (row mm, column mm)) per panel, in display orientation."""
    image, canonical, _ = reorient_to_canonical(image, geometry)
    labels, _, _ = reorient_to_canonical(labels, geometry)
    sx, sy, sz = (float(s) for s in canonical.spacing)  # canonical (I, J, K) = (R, A, S)
    k_count, j_count, i_count = labels.shape
    k_any = np.flatnonzero(labels.any(axis=(1, 2)))
    if k_any.size:
        first, last = k_any[0], k_any[-1]
        centre = _largest_component_centre(labels > 0)
    else:
        first, last = k_count // 4, max(k_count // 4, 3 * k_count // 4 - 1)
        centre = np.array(labels.shape) // 2
    axial = np.unique(np.linspace(first, last, AXIAL_PANELS + 2).round().astype(int)[1:-1])
    if axial.size == 0:
        axial = np.array([first])
    panels = []
    # Canonical I runs to the patient's right, J to anterior, K to superior: reversing I puts
    # the patient's right on the screen left; the sagittal slice faces left (anterior left).
    for k in axial:
        panels.append((image[k, ::-1, ::-1], labels[k, ::-1, ::-1], (sy, sx)))
    j, i = int(np.clip(centre[1], 0, j_count - 1)), int(np.clip(centre[2], 0, i_count - 1))
    panels.append((image[::-1, j, ::-1], labels[::-1, j, ::-1], (sz, sx)))  # coronal
    panels.append((image[::-1, ::-1, i], labels[::-1, ::-1, i], (sz, sy)))  # sagittal
    return panels


def _largest_component_centre(mask: np.ndarray) -> np.ndarray:
    """(K, J, I) voxel at the centre of mass of the largest connected component of ``mask``
    (the middle of two separate lesions may hold neither)."""
    components, _ = ndimage.label(mask)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return np.round(ndimage.center_of_mass(components == sizes.argmax())).astype(int)


def _render(
    view: np.ndarray,
    region: np.ndarray,
    pixel_mm: tuple[float, float],
    low: float,
    high: float,
    label_specs: Sequence[LabelSpec],
    nested: bool,
    panel_px: int,
) -> Image.Image:
    """One square panel: the slice fitted with its true aspect ratio, labels overlaid."""
    rows, cols = view.shape
    scale = panel_px / max(rows * pixel_mm[0], cols * pixel_mm[1])
    size = (max(1, round(cols * pixel_mm[1] * scale)), max(1, round(rows * pixel_mm[0] * scale)))
    grey = np.clip((view - low) / (high - low), 0.0, 1.0) * 255.0
    picture = Image.fromarray(grey.astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    pixels = np.asarray(picture.convert("RGB"), dtype=np.float32)
    resized = np.asarray(
        Image.fromarray(region.astype(np.uint8)).resize(size, Image.Resampling.NEAREST)
    )
    for spec in label_specs:
        colour = np.asarray(spec.color, dtype=np.float32)
        exact = resized == spec.value
        pixels[exact] = (1 - FILL_ALPHA) * pixels[exact] + FILL_ALPHA * colour
        mask = resized >= spec.value if nested else exact
        pixels[_outline(mask)] = colour
    tile = Image.new("RGB", (panel_px, panel_px), (0, 0, 0))
    tile.paste(
        Image.fromarray(pixels.astype(np.uint8)),
        ((panel_px - size[0]) // 2, (panel_px - size[1]) // 2),
    )
    return tile


def _outline(mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return mask
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _legend(
    draw: ImageDraw.ImageDraw, label_specs: Sequence[LabelSpec], title: str, top: int
) -> None:
    font = ImageFont.load_default()
    draw.text((4, top + 3), title, fill=(255, 255, 255), font=font)
    x = 4
    for spec in label_specs:
        draw.rectangle((x, top + 21, x + 10, top + 31), fill=tuple(spec.color))
        draw.text((x + 14, top + 20), spec.name, fill=(230, 230, 230), font=font)
        x += 14 + int(draw.textlength(spec.name, font=font)) + 14
