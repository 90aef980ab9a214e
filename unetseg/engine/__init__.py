"""The UNetSeg engine: numpy/torch only (no Slicer, no Qt).

Public API, importable from here (loaded on first use, so ``import unetseg.engine`` stays cheap
and torch-free until a torch-backed name is touched):

- network: ``UNet``, ``count_parameters``, ``flops_per_voxel``, ``describe``
- metrics: ``compute_metrics``, ``binary_metrics``; lesions: ``lesion_table``,
  ``lesion_detection``, ``aggregate_lesion_detection``
- geometry and preprocessing: ``Geometry``, ``prepare_inputs``, ``PreparationSpec``,
  ``PreparedCase``, ``reorient_to_canonical``, ``resample_to_spacing``,
  ``resample_to_geometry``, ``normalize``, ``crop_to_foreground``, ``body_mask``
- inference: ``sliding_window_inference``, ``WindowSpec``, ``CancelToken``, ``InferenceCancelled``,
  ``select_device``, ``SegmentOptions``, ``Segmenter``, ``CaseSegmentation``,
  ``SegmentationError``
- model packages: ``ModelPackage``, ``ModelPackageError``, ``load_model_package``,
  ``save_model_package``, ``list_models``, ``resolve_model``, ``validate_manifest``
- input matching: ``match_inputs``, ``Candidate``, ``MatchResult``, ``MissingInputError``

The losses, used by training, are in ``unetseg.engine.losses``.

Axis order: arrays are (..., K, J, I); millimetre tuples are (I, J, K). See docs/CONVENTIONS.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "unetseg.engine.network": (
        "UNet",
        "count_parameters",
        "describe",
        "flops_per_voxel",
    ),
    "unetseg.engine.metrics": ("binary_metrics", "compute_metrics"),
    "unetseg.engine.lesions": ("aggregate_lesion_detection", "lesion_detection", "lesion_table"),
    "unetseg.engine.geometry": ("Geometry",),
    "unetseg.engine.preprocessing": (
        "PreparationSpec",
        "PreparedCase",
        "body_mask",
        "crop_to_foreground",
        "normalize",
        "prepare_inputs",
        "reorient_to_canonical",
        "resample_to_geometry",
        "resample_to_spacing",
    ),
    "unetseg.engine.inference": ("CancelToken", "InferenceCancelled", "sliding_window_inference"),
    "unetseg.engine.inference.window_spec": ("WindowSpec",),
    "unetseg.engine.device": ("select_device",),
    "unetseg.engine.options": ("SegmentOptions",),
    "unetseg.engine.predict": ("CaseSegmentation", "SegmentationError", "Segmenter"),
    "unetseg.engine.manifest": ("ModelPackageError", "validate_manifest"),
    "unetseg.engine.package": ("ModelPackage", "load_model_package", "save_model_package"),
    "unetseg.engine.registry": ("list_models", "resolve_model"),
    "unetseg.engine.matching": ("Candidate", "MatchResult", "MissingInputError", "match_inputs"),
}
_OWNER = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_OWNER)


def __getattr__(name: str) -> Any:
    module = _OWNER.get(name)
    if module is None:
        raise AttributeError(f"module 'unetseg.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
