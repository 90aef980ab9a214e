"""Voxel grids for phantoms: random acquisition geometry and the anatomy frame.

A phantom's anatomy is defined analytically in a *nominal* frame ``u`` (mm, RAS axes, anatomy
centred at 0). It is placed in the world (RAS) at ``x = scale * u + center``; the voxel grid is an
arbitrary, possibly oblique, ``Geometry``. Every structure is evaluated at voxel centres, so labels
are exact for the grid whatever its orientation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unetseg.engine.geometry import Geometry

_CORNERS = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T
# Slice-normal world axis (0 R, 1 A, 2 S) and its probability: mostly axial acquisitions.
SLICE_AXIS_PROBABILITIES = (0.2, 0.2, 0.6)


def rotation_matrix(axis: Sequence[float], degrees: float) -> np.ndarray:
    """(3, 3) rotation about ``axis`` (any length) by ``degrees`` (Rodrigues' formula)."""
    u = np.asarray(axis, dtype=np.float64)
    u = u / np.linalg.norm(u)
    t = np.deg2rad(degrees)
    cross = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
    return np.cos(t) * np.eye(3) + np.sin(t) * cross + (1.0 - np.cos(t)) * np.outer(u, u)


def random_rotation(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    """(3, 3) rotation about a random axis by an angle uniform in [-max_degrees, max_degrees]."""
    return rotation_matrix(rng.normal(size=3), rng.uniform(-max_degrees, max_degrees))


def random_geometry(
    rng: np.random.Generator,
    size: int | Sequence[int] = 96,
    spacing: Sequence[float] | None = None,
    *,
    inplane_mm: tuple[float, float] = (0.7, 1.5),
    slice_mm: tuple[float, float] = (1.0, 5.0),
    oblique_degrees: float = 10.0,
    canonical: bool = False,
    center_ras: Sequence[float] = (0.0, 0.0, 0.0),
) -> Geometry:
    """A random acquisition grid centred (voxel-grid centre) at ``center_ras``.

    Args:
        size: ``I = J = size`` voxels in-plane with ``K`` chosen so that the field of view is
            about cubic (between 8 and ``size`` slices), or an explicit ``(I, J, K)`` shape.
        spacing: voxel size ``(I, J, K)`` in mm; default: square in-plane pixels uniform in
            ``inplane_mm`` and slice spacing uniform in ``slice_mm``.
        oblique_degrees: largest rotation of the grid away from the permuted/flipped RAS axes.
        canonical: IJK axes exactly along R, A, S (no permutation, flip or rotation).

    Returns:
        ``Geometry`` with shape ``(K, J, I)``. Non-canonical grids take the slice normal (K) along
        S, A or R (60/20/20 %), the in-plane axes in random order, random axis flips and a small
        oblique rotation.
    """
    if spacing is None:
        pixel = rng.uniform(*inplane_mm)
        spacing_ijk = np.array([pixel, pixel, rng.uniform(*slice_mm)])
    else:
        spacing_ijk = np.asarray(spacing, dtype=np.float64)
    if isinstance(size, int | np.integer):
        slices = round(size * spacing_ijk[0] / spacing_ijk[2])
        shape_ijk = np.array([size, size, min(int(size), max(8, slices))])
    else:
        shape_ijk = np.asarray(size, dtype=int)
    if shape_ijk.shape != (3,) or spacing_ijk.shape != (3,) or min(shape_ijk) < 1:
        raise ValueError(
            f"size must be an int or (I, J, K), spacing (I, J, K); got {size}, {spacing}"
        )

    if canonical:
        direction = np.eye(3)
    else:
        slice_axis = int(rng.choice(3, p=SLICE_AXIS_PROBABILITIES))
        inplane = [a for a in range(3) if a != slice_axis]
        rng.shuffle(inplane)
        permutation = np.zeros((3, 3))
        for column, world_axis in enumerate([*inplane, slice_axis]):
            permutation[world_axis, column] = rng.choice([-1.0, 1.0])
        direction = random_rotation(rng, oblique_degrees) @ permutation
    linear = direction * spacing_ijk
    origin = np.asarray(center_ras, dtype=np.float64) - linear @ ((shape_ijk - 1) / 2.0)
    matrix = np.eye(4)
    matrix[:3, :3] = linear
    matrix[:3, 3] = origin
    return Geometry(matrix, tuple(int(n) for n in shape_ijk[::-1]))


def field_of_view(geometry: Geometry) -> np.ndarray:
    """Extent (3,) in mm of the grid's bounding box along the world R, A, S axes."""
    linear = geometry.ijk_to_ras[:3, :3]
    return np.abs(linear) @ np.asarray(geometry.shape[::-1], dtype=np.float64)


class PhantomSpace:
    """Nominal anatomy coordinates of the voxel centres of a grid.

    Nominal coordinates are affine in the voxel indices, so any affine function of them is
    evaluated by broadcasting three 1D arrays (``affine``) instead of storing (3, K, J, I) points.

    Attributes:
        geometry: the voxel grid.
        scale: world mm per nominal mm.
        center: world RAS (3,) position of the nominal origin.
    """

    def __init__(self, geometry: Geometry, scale: float, center: Sequence[float]) -> None:
        self.geometry = geometry
        self.scale = float(scale)
        self.center = np.asarray(center, dtype=np.float64)
        # u = (A @ ijk + t - center) / scale.
        self._ijk_to_u = geometry.ijk_to_ras.copy()
        self._ijk_to_u[:3, 3] -= self.center
        self._ijk_to_u[:3] /= self.scale
        self._u_to_ijk = np.linalg.inv(self._ijk_to_u)
        self._index = [np.arange(n, dtype=np.float32) for n in geometry.shape]  # k, j, i

    @classmethod
    def fit(
        cls, geometry: Geometry, nominal_extent: Sequence[float], center: Sequence[float]
    ) -> PhantomSpace:
        """Space whose scale makes a nominal box of ``nominal_extent`` (R, A, S mm) fit the field
        of view (scale at most 1: anatomy keeps its real size when the grid is large enough)."""
        ratio = field_of_view(geometry) / np.asarray(nominal_extent, dtype=np.float64)
        return cls(geometry, min(1.0, float(ratio.min())), center)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.geometry.shape

    @property
    def voxel_diagonal(self) -> float:
        """Length of a voxel's diagonal in nominal mm (two voxels closer than this may touch)."""
        return float(np.linalg.norm(self.geometry.spacing)) / self.scale

    def affine(
        self,
        matrix: np.ndarray,
        offset: Sequence[float],
        block: tuple[slice, slice, slice] | None = None,
    ) -> np.ndarray:
        """``matrix @ u + offset`` at every voxel centre: (n, K, J, I) float32 for an (n, 3)
        ``matrix``, over the whole grid or a ``box`` block."""
        matrix = np.atleast_2d(np.asarray(matrix, dtype=np.float64))
        linear = matrix @ self._ijk_to_u[:3, :3]  # per voxel-index axis (i, j, k)
        constant = matrix @ self._ijk_to_u[:3, 3] + np.asarray(offset, dtype=np.float64)
        k, j, i = (
            index if sl is None else index[sl]
            for index, sl in zip(self._index, block or (None, None, None), strict=True)
        )
        out = np.empty((len(matrix), len(k), len(j), len(i)), dtype=np.float32)
        for n in range(len(matrix)):
            out[n] = (
                (np.float32(linear[n, 2]) * k + np.float32(constant[n]))[:, None, None]
                + (np.float32(linear[n, 1]) * j)[None, :, None]
                + (np.float32(linear[n, 0]) * i)[None, None, :]
            )
        return out

    def plane_waves(
        self,
        wave_vectors: np.ndarray,
        phases: Sequence[float],
        block: tuple[slice, slice, slice] | None = None,
    ) -> np.ndarray:
        """``sum_t cos(wave_vectors[t] @ u + phases[t])`` (K, J, I) float32 for (T, 3) wave
        vectors (rad per nominal mm): each wave is separable in k, j, i, so the sum is one
        complex matrix product."""
        linear = np.asarray(wave_vectors, dtype=np.float64) @ self._ijk_to_u[:3, :3]
        constant = np.asarray(wave_vectors) @ self._ijk_to_u[:3, 3] + np.asarray(phases)
        k, j, i = (
            index if sl is None else index[sl]
            for index, sl in zip(self._index, block or (None, None, None), strict=True)
        )
        wave_k = np.exp(1j * (linear[:, 2:3] * k + constant[:, None])).astype(np.complex64)
        wave_j = np.exp(1j * linear[:, 1:2] * j).astype(np.complex64)
        wave_i = np.exp(1j * linear[:, 0:1] * i).astype(np.complex64)
        kj = (wave_k[:, :, None] * wave_j[:, None, :]).reshape(len(linear), -1)
        return (kj.T @ wave_i).real.reshape(len(k), len(j), len(i))

    def coords(self, block: tuple[slice, slice, slice] | None = None) -> np.ndarray:
        """Nominal coordinates (3, K, J, I) of the voxel centres of the grid or a block."""
        return self.affine(np.eye(3), np.zeros(3), block)

    def to_world(self, u: Sequence[float]) -> np.ndarray:
        """World RAS position (3,) of nominal point ``u``."""
        return self.scale * np.asarray(u, dtype=np.float64) + self.center

    def snap(self, u: Sequence[float]) -> tuple[np.ndarray, tuple[int, int, int]]:
        """The voxel centre nearest to nominal point ``u`` (clamped to the grid): its nominal
        coordinates (3,) and its array index (k, j, i)."""
        ijk = self._u_to_ijk @ np.append(np.asarray(u, dtype=np.float64), 1.0)
        upper = np.asarray(self.geometry.shape[::-1]) - 1
        ijk[:3] = np.clip(np.rint(ijk[:3]), 0, upper)
        index = (int(ijk[2]), int(ijk[1]), int(ijk[0]))
        return (self._ijk_to_u @ ijk)[:3], index

    def box(
        self, center: Sequence[float], half_extent: float | Sequence[float]
    ) -> tuple[slice, slice, slice] | None:
        """Array slices (K, J, I) of the voxels inside the nominal box ``center ± half_extent``
        (a number or (R, A, S) half sizes), or None when the box misses the grid."""
        points = np.asarray(center, dtype=np.float64) + np.asarray(half_extent) * _CORNERS
        ijk = points @ self._u_to_ijk[:3, :3].T + self._u_to_ijk[:3, 3]
        low = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
        high = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, self.geometry.shape[::-1])
        if np.any(high <= low):
            return None
        return tuple(slice(int(lo), int(hi)) for lo, hi in zip(low[::-1], high[::-1], strict=True))
