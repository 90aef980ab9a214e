"""Reorientation to the closest canonical (RAS+) voxel layout by axis permutation and flips.

No interpolation: the voxel values are only reordered. The axis choice follows nibabel's
``io_orientation`` / ``as_closest_canonical``: the direction matrix is replaced by its closest
orthogonal matrix and each voxel axis (I, then J, then K) takes the world axis it is most aligned
with among those not yet taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unetseg.engine.geometry import Geometry


@dataclass(frozen=True)
class OrientationUndo:
    """Maps arrays from the canonical layout back to the original one.

    Attributes:
        source_axes: for each canonical axis (I, J, K order) the original axis it came from.
        flips: for each canonical axis (I, J, K order) whether it was reversed.
        canonical_shape: spatial shape (K, J, I) of the canonical array.
    """

    source_axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    canonical_shape: tuple[int, int, int]

    @property
    def is_identity(self) -> bool:
        return self.source_axes == (0, 1, 2) and not any(self.flips)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Return ``array`` (..., K, J, I) in canonical layout as a contiguous array in the
        original layout (..., K0, J0, I0)."""
        if tuple(array.shape[-3:]) != self.canonical_shape:
            raise ValueError(
                f"expected spatial shape {self.canonical_shape}, got {tuple(array.shape[-3:])}"
            )
        lead = array.ndim - 3
        flip_axes = [lead + 2 - a for a in range(3) if self.flips[a]]
        unflipped = np.flip(array, axis=flip_axes) if flip_axes else array
        inverse = [0, 0, 0]
        for canonical_axis, source_axis in enumerate(self.source_axes):
            inverse[source_axis] = canonical_axis
        order = list(range(lead)) + [lead + 2 - inverse[2 - p] for p in range(3)]
        return np.ascontiguousarray(unflipped.transpose(order))


def _closest_canonical_axes(direction: np.ndarray) -> tuple[tuple[int, int, int], np.ndarray]:
    """World axis (0=R, 1=A, 2=S) and sign (+1/-1) closest to each voxel axis I, J, K.

    Args:
        direction: (3, 3) matrix with the RAS direction of the I, J, K axes as columns.
    """
    u, _, vt = np.linalg.svd(direction)
    rotation = u @ vt
    world_axes = [0, 0, 0]
    signs = np.ones(3)
    for voxel_axis in range(3):
        column = rotation[:, voxel_axis]
        world_axis = int(np.argmax(np.abs(column)))
        world_axes[voxel_axis] = world_axis
        signs[voxel_axis] = -1.0 if column[world_axis] < 0 else 1.0
        rotation[world_axis, :] = 0.0
    return (world_axes[0], world_axes[1], world_axes[2]), signs


def canonical_layout(geometry: Geometry) -> tuple[Geometry, OrientationUndo]:
    """Geometry of the closest-canonical layout of ``geometry``'s grid (same physical voxels,
    I, J, K pointing approximately to R, A, S) and the ``OrientationUndo`` back to it."""
    world_axes, signs = _closest_canonical_axes(geometry.direction)
    sizes_ijk = tuple(reversed(geometry.shape))
    source_axes = [0, 0, 0]
    for voxel_axis, world_axis in enumerate(world_axes):
        source_axes[world_axis] = voxel_axis
    flips = tuple(bool(signs[source_axes[a]] < 0) for a in range(3))

    # canonical index -> original index: orig[src] = c or n_src - 1 - c.
    to_original = np.zeros((4, 4))
    to_original[3, 3] = 1.0
    for canonical_axis, source_axis in enumerate(source_axes):
        if flips[canonical_axis]:
            to_original[source_axis, canonical_axis] = -1.0
            to_original[source_axis, 3] = sizes_ijk[source_axis] - 1
        else:
            to_original[source_axis, canonical_axis] = 1.0
    canonical_sizes = [sizes_ijk[source_axes[a]] for a in range(3)]
    canonical_shape = (canonical_sizes[2], canonical_sizes[1], canonical_sizes[0])
    undo = OrientationUndo(
        (source_axes[0], source_axes[1], source_axes[2]),
        (flips[0], flips[1], flips[2]),
        canonical_shape,
    )
    return Geometry(geometry.ijk_to_ras @ to_original, canonical_shape), undo


def reorient_to_canonical(
    array: np.ndarray, geometry: Geometry
) -> tuple[np.ndarray, Geometry, OrientationUndo]:
    """Permute and flip the voxel axes so that I, J, K point approximately to R, A, S.

    Args:
        array: (..., K, J, I) image or label map on ``geometry`` (leading dims, e.g. channels,
            are kept).
        geometry: grid of the last three axes.

    Returns:
        The contiguous canonical array (..., K', J', I'), its geometry (same physical voxels) and
        the ``OrientationUndo`` restoring the original layout.
    """
    if tuple(array.shape[-3:]) != geometry.shape:
        raise ValueError(f"array shape {array.shape} does not end with {geometry.shape}")
    canonical_geometry, undo = canonical_layout(geometry)
    lead = array.ndim - 3
    order = list(range(lead)) + [lead + 2 - undo.source_axes[2 - p] for p in range(3)]
    result = array.transpose(order)
    flip_axes = [lead + 2 - a for a in range(3) if undo.flips[a]]
    if flip_axes:
        result = np.flip(result, axis=flip_axes)
    return np.ascontiguousarray(result), canonical_geometry, undo
