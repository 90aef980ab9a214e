"""Overlay montages: orientation on the screen, colours where the labels are, sizes."""

from __future__ import annotations

import numpy as np
from PIL import Image

from unetseg.engine.geometry import Geometry
from unetseg.engine.manifest import LabelSpec
from unetseg.preview import LEGEND_PX, PANEL_PX, overlay_montage, write_overlay_montage

RED = LabelSpec(1, "right lung", (255, 0, 0), None)
BLUE = LabelSpec(2, "left lung", (0, 0, 255), None)


def _volume(ijk_to_ras: np.ndarray, shape=(20, 30, 40), axis: int = 0):
    """A body with label 1 in the patient's right half (``axis`` 0; 1: anterior half) and 2 in
    the other half, on any grid."""
    geometry = Geometry(ijk_to_ras, shape)
    k, j, i = np.indices(shape)
    ras = np.einsum("ab,b...->a...", ijk_to_ras[:3, :3], np.stack([i, j, k])) + ijk_to_ras[
        :3, 3
    ].reshape(3, 1, 1, 1)
    centre = ras.reshape(3, -1).mean(axis=1)
    labels = np.where(ras[axis] > centre[axis], 1, 2).astype(np.uint8)  # R, A are +x, +y in RAS
    image = np.full(shape, 100.0, dtype=np.float32)
    return image, labels, geometry


def _colour_side(montage: Image.Image, panel: int) -> tuple[float, float]:
    """Red share of the left and right half of one panel's coloured pixels."""
    pixels = np.asarray(montage, dtype=float)[:PANEL_PX, panel * PANEL_PX : (panel + 1) * PANEL_PX]
    red, blue = pixels[..., 0] - pixels[..., 2], pixels[..., 2] - pixels[..., 0]
    half = PANEL_PX // 2
    left = (red[:, :half] > 30).sum() / max(
        1, (blue[:, :half] > 30).sum() + (red[:, :half] > 30).sum()
    )
    right = (red[:, half:] > 30).sum() / max(
        1, (blue[:, half:] > 30).sum() + (red[:, half:] > 30).sum()
    )
    return left, right


def test_patient_right_is_on_the_screen_left_for_ras_and_lps_storage() -> None:
    for ijk_to_ras in (np.diag([1.0, 1.0, 2.0, 1.0]), np.diag([-1.0, -1.0, 2.0, 1.0])):
        image, labels, geometry = _volume(ijk_to_ras)
        montage = overlay_montage(image, labels, geometry, [RED, BLUE], title="case")
        assert montage.size == (PANEL_PX * 8, PANEL_PX + LEGEND_PX)  # 6 axial + coronal + sagittal
        for panel in (0, 6):  # an axial and the coronal panel
            left, right = _colour_side(montage, panel)
            assert left > 0.95 and right < 0.05  # radiological display


def test_the_sagittal_panel_faces_left() -> None:
    for ijk_to_ras in (np.diag([1.0, 1.0, 2.0, 1.0]), np.diag([-1.0, -1.0, 2.0, 1.0])):
        image, labels, geometry = _volume(ijk_to_ras, axis=1)
        montage = overlay_montage(image, labels, geometry, [RED, BLUE])
        left, right = _colour_side(montage, 7)
        assert left > 0.95 and right < 0.05  # anterior on the screen left


def test_a_2d_image_is_shown_as_stored_in_one_large_panel(tmp_path) -> None:
    geometry = Geometry(np.diag([-1.0, -1.0, 1.0, 1.0]), (1, 40, 60))
    image = np.zeros((40, 60), np.float32)
    labels = np.zeros((40, 60), np.uint8)
    labels[:, :30] = 1  # stored left half
    path = write_overlay_montage(tmp_path / "x" / "p.png", image, labels, geometry, [RED, BLUE])
    montage = Image.open(path)
    assert montage.size == (2 * PANEL_PX, 2 * PANEL_PX + LEGEND_PX)
    pixels = np.asarray(montage.convert("RGB"), dtype=float)
    rows = slice(2 * PANEL_PX // 2 - 20, 2 * PANEL_PX // 2 + 20)
    assert pixels[rows, 40:200, 0].mean() > 40 > pixels[rows, 320:480, 0].mean()


def test_an_empty_segmentation_still_gives_a_montage() -> None:
    image, labels, geometry = _volume(np.eye(4))
    montage = overlay_montage(image, np.zeros_like(labels), geometry, [RED, BLUE])
    assert montage.size[1] == PANEL_PX + LEGEND_PX
