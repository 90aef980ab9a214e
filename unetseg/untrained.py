"""Untrained model packages for tests, benchmarks and the Slicer modules' self-tests.

Such a package holds a *freshly initialised* (seeded) network: its output is meaningless; it
exercises the pipeline only and is never shipped as a model. ``lung_ct_manifest``,
``brain_mri_manifest`` and ``lung_cxr_manifest`` describe realistic inputs and labels around
small networks. Plain Python (torch is
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


_PURPOSE = "exercising the pipeline"


def lung_ct_manifest(filters: Sequence[int] = (8, 16, 32, 64)) -> dict[str, Any]:
    """Manifest of a left/right lung CT model (3D, 2 mm, patch 64^3)."""
    ct = {
        "name": "ct",
        "title": "Chest CT",
        "required": True,
        "name_patterns": ["*ct*", "*chest*", "*lung*"],
        "series_description_patterns": ["*chest*", "*thorax*", "*lung*", "*ct*"],
        "normalization": {"method": "ct_window", "center": -600.0, "width": 1500.0},
    }
    return untrained_manifest(
        "demo-lung-ct-untrained",
        "Lung CT (UNTRAINED demo network)",
        "CT",
        [ct],
        lung_labels([200, 100, 80], [80, 150, 220]),
        spatial_dims=3,
        spacing_mm=(2.0, 2.0, 2.0),
        patch_size=(64, 64, 64),
        filters=filters,
        purpose=_PURPOSE,
    )


def brain_mri_manifest(
    filters: Sequence[int] = (8, 16, 32, 64), patch_size: Sequence[int] = (64, 64, 64)
) -> dict[str, Any]:
    """Manifest of a BraTS-style brain tumour model: 4 MRI sequences, 3 tumour sub-regions.

    Inputs in channel order: ``t1c`` (T1 post-contrast, required, the reference grid),
    ``flair`` (required), ``t1`` and ``t2`` (optional). Name patterns match BraTS file names
    (2021: ``_t1ce``, ``_flair``, ``_t1``, ``_t2``; 2023: ``-t1c``, ``-t2f``, ``-t1n``, ``-t2w``)
    and series descriptions such as TCIA Brain-Tumor-Progression's ``T1post``, ``FLAIR_reg``,
    ``T1pre_reg`` and ``T2_reg`` (its ``Mask_Tumor`` series matches none). Labels as BraTS
    2023: 1 non-enhancing core / necrosis, 2 oedema, 3 enhancing tumour; lesion table on.
    ``patch_size`` is (I, J, K).
    """

    def sequence(
        name: str, title: str, required: bool, names: list[str], series: list[str]
    ) -> dict[str, Any]:
        return {
            "name": name,
            "title": title,
            "required": required,
            "name_patterns": names,
            "series_description_patterns": series,
            "normalization": {"method": "zscore", "mask": "nonzero"},
        }

    return untrained_manifest(
        "demo-brain-mri-untrained",
        "Brain tumour MRI (UNTRAINED demo network)",
        "MR",
        [
            sequence(
                "t1c",
                "T1 post-contrast",
                True,
                ["*t1c*", "*t1ce*", "*t1gd*", "*t1*gd*", "*t1*post*", "*t1*contrast*"],
                ["*t1*post*", "*t1*gd*", "*t1*+c*", "*t1*contrast*", "*mprage*gd*"],
            ),
            sequence(
                "flair",
                "T2 FLAIR",
                True,
                ["*flair*", "*t2f*", "*t2*flair*"],
                ["*flair*"],
            ),
            sequence(
                "t1",
                "T1 native",
                False,
                ["*t1*", "*t1n*", "*t1*pre*", "*t1*native*"],
                ["*t1*pre*", "*t1*native*", "*t1*"],
            ),
            sequence("t2", "T2", False, ["*t2*", "*t2w*"], ["*t2*"]),
        ],
        [
            altered_label(
                1, "Non-enhancing tumor core", [250, 210, 60], ("6574001", "Necrosis"), BRAIN
            ),
            altered_label(2, "Edema", [90, 200, 110], ("79654002", "Edema"), BRAIN),
            altered_label(
                3, "Enhancing tumor", [230, 60, 50], ("86049000", "Neoplasm, Primary"), BRAIN
            ),
        ],
        spatial_dims=3,
        spacing_mm=(1.0, 1.0, 1.0),
        patch_size=patch_size,
        filters=filters,
        purpose=_PURPOSE,
        lesion_analysis=True,
    )


def lung_cxr_manifest(filters: Sequence[int] = (8, 16, 32, 64)) -> dict[str, Any]:
    """Manifest of a 2D chest X-ray lung model (1 mm pixels, patch 128x128, label "Lungs")."""
    cxr = {
        "name": "cxr",
        "title": "Chest X-ray",
        "required": True,
        "name_patterns": ["*cxr*", "*chest*", "*x*ray*", "*radiograph*"],
        "series_description_patterns": ["*chest*", "*thorax*", "*pa*", "*ap*"],
        "normalization": {"method": "percentile_minmax", "lower": 0.5, "upper": 99.5},
    }
    lungs = {
        "value": 1,
        "name": "Lungs",
        "color": [110, 170, 230],
        "terminology": {"category": ANATOMICAL_STRUCTURE, "type": LUNG},
    }
    return untrained_manifest(
        "demo-lung-cxr-untrained",
        "Lungs on chest X-ray (UNTRAINED demo network)",
        "DX",
        [cxr],
        [lungs],
        spatial_dims=2,
        spacing_mm=(1.0, 1.0, 1.0),
        patch_size=(128, 128, 1),
        filters=filters,
        purpose=_PURPOSE,
    )
