"""Tiny untrained model packages and phantom images for the modules' self-tests.

The networks are freshly initialised (seeded), so their output says nothing about accuracy: the
self-tests check the plumbing only (inputs -> engine -> segmentation node, statistics, missing
optional inputs). Each sample has the modality and label codes of its module's real models, so
it is also listed by that module's ``ModelFilter``. Plain Python; torch is imported only when a
package is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from unetseg.engine.geometry import Geometry

if TYPE_CHECKING:
    from unetseg.engine.package import ModelPackage


def _code(value: str, meaning: str) -> dict[str, str]:
    return {"scheme": "SCT", "value": value, "meaning": meaning}


_ALTERED = _code("49755003", "Morphologically Altered Structure")
_ANATOMICAL = _code("123037004", "Anatomical Structure")
_BRAIN = _code("12738006", "Brain")
_LUNG = _code("39607008", "Lung")


def _lungLabels() -> list[dict[str, Any]]:
    return [
        {
            "value": value,
            "name": f"{side} lung",
            "color": color,
            "terminology": {
                "category": _ANATOMICAL,
                "type": _LUNG,
                "type_modifier": _code(code, side),
            },
        }
        for value, side, code, color in (
            (1, "Right", "24028007", [128, 174, 128]),
            (2, "Left", "7771000", [241, 214, 145]),
        )
    ]


def _input(name: str, title: str, required: bool, normalization: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "required": required,
        "name_patterns": [f"*{name}*"],
        "normalization": normalization,
    }


@dataclass(frozen=True)
class SampleModel:
    """Manifest fields that differ between the samples; ``manifest()`` completes them.

    Attributes:
        id, title, modality, spatialDims: manifest fields.
        inputs, labels: manifest ``inputs`` and ``labels`` entries.
        lesionAnalysis: manifest ``lesion_analysis``.
        background, foreground: phantom intensities outside / inside the object.
    """

    id: str
    title: str
    modality: str
    spatialDims: int
    inputs: tuple[dict[str, Any], ...]
    labels: tuple[dict[str, Any], ...]
    lesionAnalysis: bool
    background: float
    foreground: float

    def manifest(self) -> dict[str, Any]:
        """A valid manifest with a tiny 2-level network (weights entry filled in on saving)."""
        patch = [16, 16, 16] if self.spatialDims == 3 else [32, 32, 1]
        return {
            "schema_version": 1,
            "id": self.id,
            "title": self.title,
            "version": "0.0.1",
            "license": "Apache-2.0",
            "description": "Freshly initialised network for the module self-test (untrained).",
            "intended_use": "Software testing only: untrained, its output is meaningless.",
            "modality": self.modality,
            "spatial_dims": self.spatialDims,
            "inputs": [dict(entry) for entry in self.inputs],
            "spacing_mm": [2.0, 2.0, 2.0],
            "patch_size": patch,
            "overlap": 0.25,
            "output": {"activation": "softmax"},
            "labels": [dict(entry) for entry in self.labels],
            "lesion_analysis": self.lesionAnalysis,
            "network": {
                "spatial_dims": self.spatialDims,
                "in_channels": len(self.inputs),
                "out_channels": len(self.labels) + 1,
                "filters": [4, 8],
                "norm": "instance",
                "dropout": 0.0,
                "residual": False,
                "squeeze_excitation": False,
                "deep_supervision": False,
                "upsample": "transpose",
            },
            "weights": {"file": "weights.safetensors", "sha256": "0" * 64},
        }

    def write(self, folder: str | os.PathLike[str]) -> ModelPackage:
        """Save the package (seeded random weights) in ``folder`` and return it."""
        import torch

        from unetseg.engine.network import UNet
        from unetseg.engine.package import save_model_package

        manifest = self.manifest()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            network = UNet(**manifest["network"])
        return save_model_package(folder, manifest, network, overwrite=True)

    def phantom(self, seed: int = 0) -> tuple[np.ndarray, Geometry]:
        """A noisy ellipsoid (an ellipse for 2D models) as float32 ``(K, J, I)`` plus its
        geometry (1.5 mm voxels, K = 1 for 2D)."""
        shape = (20, 28, 32) if self.spatialDims == 3 else (1, 64, 56)
        k, j, i = np.meshgrid(*(np.linspace(-1.0, 1.0, n) for n in shape), indexing="ij")
        inside = (i / 0.6) ** 2 + (j / 0.5) ** 2 + (k / 0.7) ** 2 * (self.spatialDims == 3) < 1.0
        rng = np.random.default_rng(seed)
        noise = rng.normal(0.0, 0.05 * abs(self.foreground - self.background), shape)
        array = np.where(inside, self.foreground, self.background) + noise
        return array.astype(np.float32), Geometry(np.diag([1.5, 1.5, 1.5, 1.0]), shape)


BRAIN_METASTASES_SAMPLE = SampleModel(
    id="selftest-brainmet",
    title="Self-test brain metastases (untrained)",
    modality="MR",
    spatialDims=3,
    inputs=tuple(
        _input(name, title, required, {"method": "zscore", "mask": "nonzero"})
        for name, title, required in (
            ("t1c", "T1 post-contrast", True),
            ("t1", "T1", False),
            ("t2", "T2", False),
            ("flair", "FLAIR", True),
        )
    ),
    labels=(
        {
            "value": 1,
            "name": "Metastasis",
            "color": [230, 80, 60],
            "terminology": {
                "category": _ALTERED,
                "type": _code("14799000", "Neoplasm, Secondary"),
                "anatomic_region": _BRAIN,
            },
        },
        {
            "value": 2,
            "name": "Edema",
            "color": [0, 151, 206],
            "terminology": {
                "category": _ALTERED,
                "type": _code("79654002", "Edema"),
                "anatomic_region": _BRAIN,
            },
        },
    ),
    lesionAnalysis=True,
    background=0.0,
    foreground=800.0,
)

LUNG_CT_SAMPLE = SampleModel(
    id="selftest-lung-ct",
    title="Self-test lungs on CT (untrained)",
    modality="CT",
    spatialDims=3,
    inputs=(_input("ct", "CT", True, {"method": "ct_window", "center": -600, "width": 1500}),),
    labels=tuple(_lungLabels()),
    lesionAnalysis=False,
    background=40.0,
    foreground=-850.0,
)

CHEST_XRAY_SAMPLE = SampleModel(
    id="selftest-lung-cxr",
    title="Self-test lungs on chest X-ray (untrained)",
    modality="DX",
    spatialDims=2,
    inputs=(
        _input(
            "cxr", "Chest X-ray", True, {"method": "percentile_minmax", "lower": 0.5, "upper": 99.5}
        ),
    ),
    labels=tuple(_lungLabels()),
    lesionAnalysis=False,
    background=3000.0,
    foreground=800.0,
)

OVARIAN_CT_SAMPLE = SampleModel(
    id="selftest-ovarian-ct",
    title="Self-test ovarian cancer on CT (untrained)",
    modality="CT",
    spatialDims=3,
    inputs=(_input("ct", "CT", True, {"method": "ct_window", "center": 40, "width": 400}),),
    labels=(
        {
            "value": 1,
            "name": "Primary tumour",
            "color": [216, 101, 79],
            "terminology": {
                "category": _ALTERED,
                "type": _code("86049000", "Neoplasm, Primary"),
                "anatomic_region": _code("15497006", "Ovary"),
            },
        },
        {
            "value": 2,
            "name": "Metastatic disease",
            "color": [144, 238, 144],
            "terminology": {"category": _ALTERED, "type": _code("14799000", "Neoplasm, Secondary")},
        },
    ),
    lesionAnalysis=True,
    background=-100.0,
    foreground=45.0,
)
