"""Label-map clean-up declared by a model package (``model.json`` ``postprocessing``).

``inside_body``: labels outside the body mask (``unetseg.engine.preprocessing.body_mask`` of
the reference input, the mask that also decides which windows to skip) become background, so
that air between the skin, blankets and the table is never lung.

``largest_component``: organs that are one piece (a lung, a liver) are cleaned as nnU-Net's
"remove all but the largest component" and lungmask do it: for each listed label only its
largest connected component is kept, every other component of that label becomes background.
``min_volume_mm3`` then drops a listed label altogether when even its largest component is
smaller (a scan that holds no lung gets no lung segment, rather than the largest speck of noise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from unetseg.engine.geometry import Geometry


def keep_largest_components(
    labels: np.ndarray,
    voxel_size: float,
    values: Sequence[int],
    min_volume_mm3: float = 0.0,
) -> np.ndarray:
    """Keep only the largest connected component of each label in ``values``, in place.

    Args:
        labels: integer label map `(K, J, I)` (2D: `(1, J, I)` or `(J, I)`); changed in place.
        voxel_size: voxel volume in mm³ (2D: pixel area in mm²).
        values: label values to clean; other labels are left as they are.
        min_volume_mm3: a label whose largest component is smaller than this is removed
            (mm² in 2D).

    Returns:
        ``labels``. Components are face-connected (6-connectivity in 3D, 4 in 2D).
    """
    for value in values:
        mask = labels == value
        if not mask.any():
            continue
        components, count = ndimage.label(mask)
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        sizes[0] = 0
        largest = int(sizes.argmax())
        keep = largest if sizes[largest] * voxel_size >= min_volume_mm3 else -1
        labels[mask & (components != keep)] = 0
    return labels


@dataclass(frozen=True)
class Postprocessing:
    """A manifest's ``postprocessing`` section (see module docstring); the defaults do nothing.

    Attributes:
        inside_body: labels outside the body mask become background.
        largest_component: label values cleaned to their largest connected component.
        min_volume_mm3: those labels are dropped when even that component is smaller (mm² for
            2D models).
    """

    inside_body: bool = False
    largest_component: tuple[int, ...] = ()
    min_volume_mm3: float = 0.0

    @classmethod
    def from_manifest(cls, section: Mapping[str, Any] | None) -> Postprocessing:
        section = section or {}
        return cls(
            inside_body=bool(section.get("inside_body", False)),
            largest_component=tuple(int(v) for v in section.get("largest_component", ())),
            min_volume_mm3=float(section.get("min_volume_mm3", 0.0)),
        )

    def apply(
        self,
        labels: np.ndarray,
        geometry: Geometry,
        spatial_dims: int,
        body: np.ndarray | None = None,
    ) -> np.ndarray:
        """Clean ``labels`` on ``geometry``'s grid in place and return them. ``body``: the body
        mask on the same grid (None where there is none, e.g. 2D models). 2D models
        (``spatial_dims`` 2) measure areas (I and J spacing)."""
        if self.inside_body and body is not None:
            labels[~body.astype(bool)] = 0
        if self.largest_component:
            voxel_size = float(np.prod(geometry.spacing[:spatial_dims]))
            keep_largest_components(labels, voxel_size, self.largest_component, self.min_volume_mm3)
        return labels
