"""Pieces of the untrained sample manifests (CLI demo, tests, Slicer module self-tests).

A sample package holds a *freshly initialised* (seeded) network: its output is meaningless, the
samples exercise the pipeline only and are never shipped as models. Plain Python (torch is
imported only when a package is written), so ``unetseg.gui.sampleModels`` loads in a fresh Slicer.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unetseg.engine.package import ModelPackage


def sct(value: str, meaning: str) -> dict[str, str]:
    """A SNOMED CT code of a terminology entry."""
    return {"scheme": "SCT", "value": value, "meaning": meaning}


ANATOMICAL_STRUCTURE = sct("123037004", "Anatomical Structure")
ALTERED_STRUCTURE = sct("49755003", "Morphologically Altered Structure")
BRAIN = sct("12738006", "Brain")
LUNG = sct("39607008", "Lung")


def lung_labels(right_color: Sequence[int], left_color: Sequence[int]) -> list[dict[str, Any]]:
    """Labels 1 "Right lung" and 2 "Left lung" (coded with laterality); colours are RGB 0-255."""
    return [
        {
            "value": value,
            "name": f"{side} lung",
            "color": list(color),
            "terminology": {
                "category": ANATOMICAL_STRUCTURE,
                "type": LUNG,
                "type_modifier": sct(code, side),
            },
        }
        for value, side, code, color in (
            (1, "Right", "24028007", right_color),
            (2, "Left", "7771000", left_color),
        )
    ]


def altered_label(
    value: int,
    name: str,
    color: Sequence[int],
    type_code: tuple[str, str],
    region: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Label of a morphologically altered structure (tumour, oedema) of SNOMED type
    ``type_code`` = (value, meaning), in anatomic ``region`` when given; RGB 0-255 ``color``."""
    terminology = {"category": ALTERED_STRUCTURE, "type": sct(*type_code)}
    if region is not None:
        terminology["anatomic_region"] = dict(region)
    return {"value": value, "name": name, "color": list(color), "terminology": terminology}


def untrained_manifest(
    model_id: str,
    title: str,
    modality: str,
    inputs: Sequence[Mapping[str, Any]],
    labels: Sequence[Mapping[str, Any]],
    *,
    spatial_dims: int,
    spacing_mm: Sequence[float],
    patch_size: Sequence[int],
    filters: Sequence[int],
    purpose: str,
    residual: bool = True,
    overlap: float = 0.5,
    lesion_analysis: bool = False,
) -> dict[str, Any]:
    """Manifest of an untrained softmax U-Net (background channel + one per label).

    ``inputs`` are in channel order; ``spacing_mm`` and ``patch_size`` are (I, J, K), with
    ``patch_size`` K = 1 for a 2D model. ``purpose`` completes the description ("... network
    for ``purpose`` (untrained)."). Entries are copied. No ``weights`` entry: saving the
    package fills it in.
    """
    return {
        "schema_version": 1,
        "id": model_id,
        "title": title,
        "version": "0.0.1",
        "license": "Apache-2.0",
        "description": f"Freshly initialised network for {purpose} (untrained).",
        "intended_use": "Software testing only: untrained, its output is meaningless.",
        "modality": modality,
        "spatial_dims": spatial_dims,
        "inputs": copy.deepcopy(list(inputs)),
        "spacing_mm": [float(s) for s in spacing_mm],
        "patch_size": [int(p) for p in patch_size],
        "overlap": overlap,
        "output": {"activation": "softmax"},
        "labels": copy.deepcopy(list(labels)),
        "lesion_analysis": lesion_analysis,
        "network": {
            "spatial_dims": spatial_dims,
            "in_channels": len(inputs),
            "out_channels": len(labels) + 1,
            "filters": [int(f) for f in filters],
            "norm": "instance",
            "dropout": 0.0,
            "residual": residual,
            "squeeze_excitation": False,
            "deep_supervision": False,
            "upsample": "transpose",
            "kernel_size": 3,
        },
    }


def untrained_package(
    folder: str | os.PathLike[str], manifest: Mapping[str, Any], seed: int = 0
) -> ModelPackage:
    """Save ``manifest`` with a network initialised from ``seed`` (the global torch random
    state is left as it was) in ``folder``, replacing what is there, and return the package."""
    import torch

    from unetseg.engine.network import UNet
    from unetseg.engine.package import save_model_package

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = UNet(**manifest["network"])
    return save_model_package(folder, manifest, network, overwrite=True)
