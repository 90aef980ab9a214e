"""What preparing a case needs to know about a model, typed (``PreparationSpec``).

``prepare_inputs`` and the memory checks read this instead of the raw ``model.json``:
``ModelPackage.preparation`` builds it for a package, ``PreparationSpec.from_manifest`` for a
training config's model section (a manifest before its weights exist). Sizes are in
(x, y, z) = (I, J, K) order, as in the manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from unetseg.engine.manifest import InputSpec, input_specs


@dataclass(frozen=True)
class PreparationSpec:
    """The manifest fields that shape a model's input.

    Attributes:
        inputs: the model's inputs in network channel order.
        spatial_dims: 3, or 2 for models of one slice (projection images).
        modality: manifest modality ("CT", "MR", "CR", "DX"): selects the body-mask threshold.
        spacing_mm: target spacing (I, J, K) mm, or (I, J) for some 2D models; None keeps the
            reference input's spacing.
        image_size: 2D models: exact (I, J) pixel size, whatever the spacing; else None.
        patch_size: sliding-window patch (I, J, K); None where unknown (memory bound only).
        first_filters: feature maps of the network's first level; 0 where unknown.
    """

    inputs: tuple[InputSpec, ...]
    spatial_dims: int = 3
    modality: str = "CT"
    spacing_mm: tuple[float, ...] | None = None
    image_size: tuple[int, int] | None = None
    patch_size: tuple[int, ...] | None = None
    first_filters: int = 0

    def __post_init__(self) -> None:
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        spacing = self.spacing_mm
        if (
            spacing is not None
            and len(spacing) != 3
            and (self.spatial_dims == 3 or len(spacing) != 2)
        ):
            raise ValueError(
                f"spacing_mm {list(spacing)} does not fit spatial_dims={self.spatial_dims}"
            )

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> PreparationSpec:
        """The spec of a validated manifest (or a training config's model section)."""
        spacing = manifest.get("spacing_mm")
        size = manifest.get("image_size")
        patch = manifest.get("patch_size")
        filters = manifest.get("network", {}).get("filters") or (0,)
        return cls(
            inputs=input_specs(manifest),
            spatial_dims=int(manifest.get("spatial_dims", 3)),
            modality=manifest.get("modality", "CT"),
            spacing_mm=None if spacing is None else tuple(float(s) for s in spacing),
            image_size=None if size is None else (int(size[0]), int(size[1])),
            patch_size=None if patch is None else tuple(int(p) for p in patch),
            first_filters=int(filters[0]),
        )
