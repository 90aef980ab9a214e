"""Preprocessing: orientation, resampling, normalisation, cropping and the model-input pipeline.

Arrays are (..., K, J, I); spacings are (I, J, K) mm; geometry is ``unetseg.engine.geometry``.
"""

from unetseg.engine.preprocessing.cropping import (
    CropBox,
    body_mask,
    crop_to_foreground,
    foreground_bbox,
)
from unetseg.engine.preprocessing.normalization import (
    ct_window,
    normalize,
    per_slice_standardize,
    percentile_minmax,
    zscore,
)
from unetseg.engine.preprocessing.orientation import (
    OrientationUndo,
    canonical_layout,
    reorient_to_canonical,
)
from unetseg.engine.preprocessing.pipeline import PreparedCase, prepare_inputs
from unetseg.engine.preprocessing.resampling import resample_to_geometry, resample_to_spacing
from unetseg.engine.preprocessing.spec import PreparationSpec

__all__ = [
    "CropBox",
    "OrientationUndo",
    "PreparationSpec",
    "PreparedCase",
    "body_mask",
    "canonical_layout",
    "crop_to_foreground",
    "ct_window",
    "foreground_bbox",
    "normalize",
    "per_slice_standardize",
    "percentile_minmax",
    "prepare_inputs",
    "reorient_to_canonical",
    "resample_to_geometry",
    "resample_to_spacing",
    "zscore",
]
