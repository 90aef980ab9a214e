"""Result types of the phantom generators."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unetseg.engine.geometry import Geometry


@dataclass(frozen=True)
class SynthObject:
    """One labelled object (lesion, deposit, organ) as the generator placed it.

    Attributes:
        label: its value in the label map.
        kind: what it is, e.g. ``"metastasis"``, ``"peritoneal_deposit"``, ``"right_lung"``.
        center_ras: world RAS position (mm) of its centre (a voxel centre for lesions).
        diameter_mm: diameter of the sphere of equal analytic volume (0 for organs).
        volume_mm3: analytic volume of the shape (0 for organs).
        voxels: number of voxels it has in the label map.
    """

    label: int
    kind: str
    center_ras: tuple[float, float, float]
    diameter_mm: float
    volume_mm3: float
    voxels: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": self.kind,
            "center_ras": list(self.center_ras),
            "diameter_mm": self.diameter_mm,
            "volume_mm3": self.volume_mm3,
            "voxels": self.voxels,
        }


@dataclass(frozen=True)
class SynthCase:
    """A generated case; unpacks as ``images, label, geometry = case``.

    Attributes:
        images: input name -> float32 array (K, J, I) (2D tasks: (J, I)).
        label: uint8 label map, same shape as the images.
        geometry: grid of the arrays (2D: shape (1, J, I)).
        objects: labelled objects as placed by the generator.
        meta: small JSON-serialisable facts (task, layout, scale, label names, ...).
    """

    images: dict[str, np.ndarray]
    label: np.ndarray
    geometry: Geometry
    objects: list[SynthObject] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.images, self.label, self.geometry))
