"""Voxel-grid geometry: the IJK-to-RAS matrix of an image plus its array shape.

Array shapes are numpy order ``(K, J, I)``; everything in millimetres per axis (spacing) is in
``(I, J, K)`` order. World coordinates are RAS (Slicer, NIfTI); files and SimpleITK use LPS, which
differs by ``diag(-1, -1, 1)``. 2D images are stored with ``K = 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import nibabel as nib
    import SimpleITK as sitk

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True, eq=False)
class Geometry:
    """Geometry of a 3D voxel grid (2D images: ``K = 1``).

    Attributes:
        ijk_to_ras: (4, 4) float64 matrix mapping voxel indices ``(i, j, k, 1)`` to RAS mm
            (Slicer's IJKToRAS, equal to the NIfTI affine). Stored as a read-only copy.
        shape: array shape ``(K, J, I)``.
    """

    ijk_to_ras: np.ndarray
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        matrix = np.array(self.ijk_to_ras, dtype=np.float64)
        if matrix.shape != (4, 4):
            raise ValueError(f"ijk_to_ras must be 4x4, got shape {matrix.shape}")
        if not np.all(np.isfinite(matrix)) or not np.allclose(matrix[3], [0, 0, 0, 1]):
            raise ValueError("ijk_to_ras must be a finite affine matrix with last row (0, 0, 0, 1)")
        if abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
            raise ValueError("ijk_to_ras is singular (zero spacing or degenerate directions)")
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"shape must be (K, J, I) with positive sizes, got {self.shape}")
        matrix.setflags(write=False)
        object.__setattr__(self, "ijk_to_ras", matrix)
        object.__setattr__(self, "shape", shape)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size (3,) in mm, (I, J, K) order."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def origin(self) -> np.ndarray:
        """RAS position (3,) of the centre of voxel (0, 0, 0)."""
        return self.ijk_to_ras[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """(3, 3) matrix whose columns are the RAS unit vectors of the I, J, K axes."""
        return self.ijk_to_ras[:3, :3] / self.spacing

    @property
    def ras_to_ijk(self) -> np.ndarray:
        """(4, 4) inverse of ``ijk_to_ras``."""
        return np.linalg.inv(self.ijk_to_ras)

    @classmethod
    def from_spacing_origin_direction(
        cls,
        spacing_ijk: Sequence[float],
        origin_ras: Sequence[float],
        direction: np.ndarray | Sequence[Sequence[float]],
        shape: Sequence[int],
    ) -> Geometry:
        """Build from spacing (I, J, K), RAS origin, RAS direction columns and shape (K, J, I)."""
        matrix = np.eye(4)
        matrix[:3, :3] = np.asarray(direction, dtype=np.float64) * np.asarray(spacing_ijk, float)
        matrix[:3, 3] = origin_ras
        return cls(matrix, tuple(shape))

    @classmethod
    def from_lps(
        cls,
        spacing_ijk: Sequence[float],
        origin_lps: Sequence[float],
        direction_lps: np.ndarray | Sequence[Sequence[float]],
        shape: Sequence[int],
    ) -> Geometry:
        """Build from LPS origin and LPS direction columns (ITK/DICOM convention)."""
        return cls.from_spacing_origin_direction(
            spacing_ijk,
            LPS_TO_RAS @ np.asarray(origin_lps, dtype=np.float64),
            LPS_TO_RAS @ np.asarray(direction_lps, dtype=np.float64),
            shape,
        )

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> Geometry:
        """Geometry of a 2D or 3D SimpleITK image (2D becomes K = 1 with 1 mm slice spacing)."""
        dim = image.GetDimension()
        if dim not in (2, 3):
            raise ValueError(f"only 2D and 3D images are supported, got {dim}D")
        spacing = np.ones(3)
        origin = np.zeros(3)
        direction = np.eye(3)
        size = [1, 1, 1]
        spacing[:dim] = image.GetSpacing()
        origin[:dim] = image.GetOrigin()
        direction[:dim, :dim] = np.reshape(image.GetDirection(), (dim, dim))
        size[:dim] = image.GetSize()
        return cls.from_lps(spacing, origin, direction, tuple(reversed(size)))

    def to_sitk_params(self) -> dict[str, tuple[float, ...]]:
        """3D SimpleITK geometry in LPS: keys ``spacing``, ``origin``, ``direction`` (row-major 9)
        and ``size`` (I, J, K), ready for ``SetSpacing``/``SetOrigin``/``SetDirection``."""
        return {
            "spacing": tuple(float(s) for s in self.spacing),
            "origin": tuple(float(v) for v in LPS_TO_RAS @ self.origin),
            "direction": tuple(float(v) for v in (LPS_TO_RAS @ self.direction).ravel()),
            "size": tuple(reversed(self.shape)),
        }

    @classmethod
    def from_nibabel(cls, image: nib.spatialimages.SpatialImage) -> Geometry:
        """Geometry of a nibabel image (affine is RAS; data shape (I, J[, K]) is reversed)."""
        spatial = tuple(int(n) for n in image.shape[:3])
        spatial = spatial + (1,) * (3 - len(spatial))
        return cls(np.asarray(image.affine, dtype=np.float64), tuple(reversed(spatial)))

    def is_close(self, other: Geometry, atol: float = 1e-4) -> bool:
        """True when shapes are equal and all matrix entries agree within ``atol`` (mm)."""
        return self.shape == other.shape and bool(
            np.allclose(self.ijk_to_ras, other.ijk_to_ras, rtol=0.0, atol=atol)
        )

    def __repr__(self) -> str:
        def fmt(values: Any) -> str:
            return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"

        return (
            f"Geometry(shape={self.shape}, spacing={fmt(self.spacing)}, "
            f"origin={fmt(self.origin)}, direction={np.round(self.direction, 4).tolist()})"
        )
