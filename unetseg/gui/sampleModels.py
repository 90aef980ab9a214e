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
from unetseg.untrained import (
    BRAIN,
    altered_label,
    lung_labels,
    sct,
    untrained_manifest,
    untrained_package,
)

if TYPE_CHECKING:
    from unetseg.engine.package import ModelPackage

_LUNG_COLORS = ([128, 174, 128], [241, 214, 145])


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
        manifest = untrained_manifest(
            self.id,
            self.title,
            self.modality,
            self.inputs,
            self.labels,
            spatial_dims=self.spatialDims,
            spacing_mm=(2.0, 2.0, 2.0),
            patch_size=(16, 16, 16) if self.spatialDims == 3 else (32, 32, 1),
            filters=(4, 8),
            purpose="the module self-test",
            residual=False,
            overlap=0.25,
            lesion_analysis=self.lesionAnalysis,
        )
        return {**manifest, "weights": {"file": "weights.safetensors", "sha256": "0" * 64}}

    def write(self, folder: str | os.PathLike[str]) -> ModelPackage:
        """Save the package (seeded random weights) in ``folder`` and return it."""
        return untrained_package(folder, self.manifest())

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
        altered_label(1, "Metastasis", [230, 80, 60], ("14799000", "Neoplasm, Secondary"), BRAIN),
        altered_label(2, "Edema", [0, 151, 206], ("79654002", "Edema"), BRAIN),
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
    labels=tuple(lung_labels(*_LUNG_COLORS)),
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
    labels=tuple(lung_labels(*_LUNG_COLORS)),
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
        altered_label(
            1,
            "Primary tumour",
            [216, 101, 79],
            ("86049000", "Neoplasm, Primary"),
            sct("15497006", "Ovary"),
        ),
        altered_label(
            2, "Metastatic disease", [144, 238, 144], ("14799000", "Neoplasm, Secondary")
        ),
    ),
    lesionAnalysis=True,
    background=-100.0,
    foreground=45.0,
)
