"""Overlay images for the evaluation report: one slice of a case with the reference contours
(solid) and the predicted contours (dashed) of every label, drawn with Pillow.

3D cases are shown on the axial slice (closest-canonical orientation) where the largest
reference structure (connected component of the non-zero reference labels) has its largest
cross-section, in radiological display (patient right on the image left, anterior at the top),
with square millimetres. 2D cases are shown as stored (row 0 at the top).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from unetseg.engine.geometry import Geometry
from unetseg.engine.lesions import label_lesions
from unetseg.engine.preprocessing.orientation import reorient_to_canonical

#: Square image area and caption strip below it, in pixels; ``OVERLAY_SIZE`` is (width, height).
PANEL_PX = 384
CAPTION_PX = 36
OVERLAY_SIZE = (PANEL_PX, PANEL_PX + CAPTION_PX)
#: Length of the dashes of predicted contours, and contour thickness, in pixels.
DASH_PX = 4
LINE_PX = 2
WINDOW_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class OverlayView:
    """One slice in display orientation (row 0 at the top).

    Attributes:
        image: (H, W) float32 intensities of the reference input.
        reference, prediction: (H, W) uint8 label maps (model label values).
        pixel_mm: (row height, column width) in mm.
        where: the slice, in words (e.g. ``axial slice 41 of 96``).
    """

    image: np.ndarray
    reference: np.ndarray
    prediction: np.ndarray
    pixel_mm: tuple[float, float]
    where: str


def overlay_view(
    image: np.ndarray, reference: np.ndarray, prediction: np.ndarray, geometry: Geometry
) -> OverlayView:
    """The slice to show for a case (see module docstring).

    Args:
        image, reference, prediction: arrays on ``geometry``'s grid, (K, J, I) or, for 2D
            cases, (J, I) / (1, J, I).
        geometry: the case grid.
    """
    shape = geometry.shape
    arrays = [np.asarray(a).reshape(shape) for a in (image, reference, prediction)]
    spacing = geometry.spacing
    if shape[0] == 1:
        image2d, ref2d, pred2d = (a[0] for a in arrays)
        return OverlayView(
            image2d.astype(np.float32), ref2d, pred2d, (spacing[1], spacing[0]), "image"
        )
    reoriented = [reorient_to_canonical(a, geometry) for a in arrays]
    canonical = [array for array, _, _ in reoriented]
    spacing = reoriented[0][1].spacing
    k = _largest_structure_slice(canonical[1], canonical[2], spacing)
    # Canonical I points to the patient's right and J to anterior: flip both for display.
    image2d, ref2d, pred2d = (a[k, ::-1, ::-1] for a in canonical)
    where = f"axial slice {k + 1} of {canonical[0].shape[0]}"
    return OverlayView(
        np.ascontiguousarray(image2d, dtype=np.float32),
        np.ascontiguousarray(ref2d),
        np.ascontiguousarray(pred2d),
        (float(spacing[1]), float(spacing[0])),
        where,
    )


def _largest_structure_slice(
    reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]
) -> int:
    """K index with the largest cross-section of the largest reference component (of the
    prediction when the reference is empty; the middle slice when both are)."""
    for labels in (reference, prediction):
        components, counts = label_lesions(labels, spacing)
        if counts.size > 1:
            areas = np.count_nonzero(components == 1, axis=(1, 2))
            return int(np.argmax(areas))
    return reference.shape[0] // 2


def render_overlay(
    view: OverlayView,
    labels: Sequence[tuple[int, Sequence[int]]],
    *,
    nested: bool,
    caption: str,
) -> Image.Image:
    """RGB image of ``OVERLAY_SIZE``: the slice scaled to fit ``PANEL_PX`` (true aspect ratio),
    reference contours solid and predicted contours dashed in each label's colour, and a
    caption strip.

    Args:
        labels: (value, RGB colour 0-255) per model label.
        nested: sigmoid regions (label c covers the values >= c) instead of single values.
        caption: first caption line (e.g. case id and Dice).
    """
    rows, cols = view.image.shape
    height_mm, width_mm = rows * view.pixel_mm[0], cols * view.pixel_mm[1]
    scale = PANEL_PX / max(height_mm, width_mm)
    size = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))

    low, high = np.percentile(view.image, WINDOW_PERCENTILES)
    grey = np.clip((view.image - low) / max(float(high - low), 1e-6), 0.0, 1.0) * 255.0
    picture = Image.fromarray(grey.astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    pixels = np.array(picture.convert("RGB"))
    reference = _resized(view.reference, size)
    prediction = _resized(view.prediction, size)
    y, x = np.indices(reference.shape)
    dashes = ((y // DASH_PX) + (x // DASH_PX)) % 2 == 0
    for value, colour in labels:
        for labelmap, pattern in ((reference, None), (prediction, dashes)):
            region = labelmap >= value if nested else labelmap == value
            line = _contour(region)
            if pattern is not None:
                line &= pattern
            pixels[line] = colour

    canvas = Image.new("RGB", OVERLAY_SIZE, (0, 0, 0))
    canvas.paste(Image.fromarray(pixels), ((PANEL_PX - size[0]) // 2, (PANEL_PX - size[1]) // 2))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((4, PANEL_PX + 3), caption, fill=(255, 255, 255), font=font)
    legend = f"solid: reference, dashed: prediction; {view.where}"
    draw.text((4, PANEL_PX + 19), legend, fill=(190, 190, 190), font=font)
    return canvas


def _resized(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(
        Image.fromarray(labels.astype(np.uint8)).resize(size, Image.Resampling.NEAREST)
    )


def _contour(mask: np.ndarray) -> np.ndarray:
    """Border pixels of ``mask`` thickened to about ``LINE_PX`` pixels."""
    if not mask.any():
        return mask
    border = mask & ~ndimage.binary_erosion(mask, border_value=0)
    return ndimage.binary_dilation(border, iterations=LINE_PX - 1) if LINE_PX > 1 else border
