"""Does an input look like what the model expects? (DICOM Modality, intensity range)

A model for CT (or an input normalised with a CT window) expects Hounsfield units: a CT image
holds air, so its minimum is near -1000 (-1024, or lower padding outside the field of view),
and the median of the voxels inside the body (above -500 HU: fat, soft tissue, bone) lies
between -200 and 200. An MR model expects non-negative arbitrary units (a z-scored image may
dip a little below zero, never to the air of a CT). X-ray models (CR, DX) accept any range.

The checks give warnings in words, or None; callers decide whether a warning stops a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: DICOM Modality values that are the same kind of image, by model modality.
COMPATIBLE_MODALITIES = {
    "CT": frozenset({"CT"}),
    "MR": frozenset({"MR"}),
    "CR": frozenset({"CR", "DX", "DR", "RG"}),
    "DX": frozenset({"CR", "DX", "DR", "RG"}),
}
HU_AIR_MAXIMUM = -900.0
HU_BODY_THRESHOLD = -500.0
HU_BODY_MEDIAN = (-200.0, 200.0)
MR_MINIMUM = -200.0
#: Voxels used for the median (an evenly spaced subsample of larger images).
MAX_SAMPLES = 1_000_000


def modality_warning(model_modality: str, input_modality: str) -> str | None:
    """A warning when the input's DICOM Modality (empty: unknown) is not the model's."""
    modality = input_modality.strip().upper()
    if not modality or modality in COMPATIBLE_MODALITIES.get(model_modality, {model_modality}):
        return None
    return f"its DICOM Modality is {modality}, the model is for {model_modality} images"


def expects_hounsfield_units(model_modality: str, normalization: Mapping[str, Any]) -> bool:
    """True for CT models and for inputs normalised with a CT window."""
    return model_modality == "CT" or normalization.get("method") == "ct_window"


def intensity_warning(
    model_modality: str, normalization: Mapping[str, Any], image: np.ndarray
) -> str | None:
    """A warning when ``image`` (any shape; NaN ignored) does not have the intensities the
    model expects (see the module doc); None when it does or when nothing is expected."""
    if image.size == 0:
        return None
    minimum = float(np.nanmin(image))
    if expects_hounsfield_units(model_modality, normalization):
        body = _sample(image)
        body = body[body > HU_BODY_THRESHOLD]
        median = float(np.nanmedian(body)) if body.size else float("nan")
        low, high = HU_BODY_MEDIAN
        if minimum <= HU_AIR_MAXIMUM and low <= median <= high:
            return None
        inside = "none above -500" if not body.size else f"{median:.0f}"
        return (
            f"its intensities do not look like CT Hounsfield units (minimum {minimum:.0f}, "
            f"median inside the body {inside}; a CT has a minimum near -1000 and a median "
            f"inside the body between {low:.0f} and {high:.0f})"
        )
    if model_modality == "MR" and minimum < MR_MINIMUM:
        return (
            f"its intensities go down to {minimum:.0f}, like CT Hounsfield units; the model "
            "expects MR images (non-negative intensities)"
        )
    return None


def _sample(image: np.ndarray) -> np.ndarray:
    """At most ``MAX_SAMPLES`` evenly spaced voxels of ``image``, flattened."""
    flat = image.reshape(-1)
    step = max(1, -(-flat.size // MAX_SAMPLES))
    return flat[::step]
