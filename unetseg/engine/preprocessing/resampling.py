"""Resampling of images and label maps between voxel grids, in millimetres (torch, float32).

Conventions (the same as ITK/SimpleITK ``Resample``):

- A target voxel takes the value at the physical position of its centre. Direction cosines of
  both grids are honoured.
- A position is inside the source when its nearest source voxel index exists, i.e. the
  continuous source index lies in ``[-0.5, n - 0.5)`` on every axis (the voxel boxes, not only
  the voxel centres). Linear interpolation replicates edge voxels within that half-voxel rim.
  Outside positions get ``fill`` (``padding="constant"``) or the nearest edge value
  (``padding="border"``).
- Nearest neighbour (``order=0``) rounds half-way cases up (in source index) and keeps the input
  dtype, so label values are never blended. Linear (``order=1``) returns float32.

Arrays are ``(..., K, J, I)``; leading dims (channels) are resampled independently.
Grids whose voxel axes are parallel (the usual case: change of spacing, crop, flip) are resampled
separably, one axis at a time; other grids go through ``torch.nn.functional.grid_sample`` in
slabs so that no full-volume float64 or coordinate-grid temporaries are created.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch.nn.functional import grid_sample

from unetseg.engine.geometry import Geometry

Order = Literal[0, 1]
Padding = Literal["constant", "border"]

# Tolerance (in voxels) below which a coordinate is treated as exact (identity axes, rounding).
_INDEX_EPS = 1e-6
# Target voxels processed per slab in the general (oblique) path.
_SLAB_VOXELS = 1 << 21


def resample_to_spacing(
    array: np.ndarray,
    geometry: Geometry,
    spacing_ijk: Sequence[float | None],
    order: Order,
) -> tuple[np.ndarray, Geometry]:
    """Resample to a new voxel size, keeping the directions and the outer corner of the grid.

    Grid placement: the new grid starts at the same outer voxel corner as the old one (the corner
    of voxel 0 facing away from the volume): new voxel ``t`` has its centre at old continuous
    index ``(t + 0.5) * new / old - 0.5``, the mapping of ``F.interpolate(align_corners=False,
    scale_factor=old / new, recompute_scale_factor=False)``. The new origin is therefore
    ``origin + direction @ ((new - old) / 2)``. New size per axis is
    ``round_half_up(n * old / new)`` (at least 1), so the far edge moves by less than half a new
    voxel; positions beyond the old edge take the edge value (border padding).

    Args:
        array: (..., K, J, I) image or label map on ``geometry``.
        geometry: its grid.
        spacing_ijk: new voxel size in mm, (I, J, K) order; ``None`` keeps an axis unchanged.
        order: 1 linear (float32 result), 0 nearest (dtype kept; use for labels).

    Returns:
        The resampled array (..., K', J', I') and its geometry.
    """
    _check_order(order)
    _check_shape(array, geometry)
    if len(spacing_ijk) != 3:
        raise ValueError(f"spacing_ijk needs 3 values (I, J, K), got {spacing_ijk}")
    old = geometry.spacing
    new = np.array([o if s is None else float(s) for o, s in zip(old, spacing_ijk, strict=True)])
    if np.any(new <= 0) or not np.all(np.isfinite(new)):
        raise ValueError(f"target spacing must be positive, got {spacing_ijk}")
    new_sizes = np.array(resampled_shape(geometry, spacing_ijk)[::-1])
    scale = new / old
    origin = geometry.origin + geometry.direction @ ((new - old) / 2.0)
    new_geometry = Geometry.from_spacing_origin_direction(
        new, origin, geometry.direction, tuple(int(n) for n in new_sizes[::-1])
    )
    result = _resample_axis_aligned(
        array, scale, 0.5 * scale - 0.5, new_sizes.astype(int), order, "border", 0.0
    )
    return result, new_geometry


def resampled_shape(geometry: Geometry, spacing_ijk: Sequence[float | None]) -> tuple[int, ...]:
    """Shape (K, J, I) that ``resample_to_spacing(..., geometry, spacing_ijk)`` gives, computed
    without resampling (to check memory first); ``spacing_ijk`` is (I, J, K) mm, None = kept."""
    old = geometry.spacing
    new = np.array([o if s is None else float(s) for o, s in zip(old, spacing_ijk, strict=True)])
    sizes = np.array(geometry.shape[::-1], dtype=np.float64)
    new_sizes = np.where(new == old, sizes, np.maximum(1, np.floor(sizes * old / new + 0.5)))
    return tuple(int(n) for n in new_sizes[::-1])


def resample_to_geometry(
    array: np.ndarray,
    source_geometry: Geometry,
    target_geometry: Geometry,
    order: Order,
    fill: float = 0.0,
    padding: Padding = "constant",
) -> np.ndarray:
    """Resample ``array`` from ``source_geometry`` onto ``target_geometry`` (any directions).

    Args:
        array: (..., K, J, I) on ``source_geometry``.
        source_geometry: grid of ``array``.
        target_geometry: output grid.
        order: 1 linear (float32 result), 0 nearest (dtype kept; use for labels).
        fill: value outside the source when ``padding="constant"``.
        padding: ``"constant"`` (``fill``) or ``"border"`` (nearest edge value).

    Returns:
        (..., K', J', I') array with ``target_geometry.shape`` as spatial shape.
    """
    _check_order(order)
    _check_shape(array, source_geometry)
    if padding not in ("constant", "border"):
        raise ValueError(f"padding must be 'constant' or 'border', got {padding!r}")
    mapping = source_geometry.ras_to_ijk @ target_geometry.ijk_to_ras
    target_sizes = np.array(target_geometry.shape[::-1])
    linear = mapping[:3, :3]
    off_diagonal = linear - np.diag(np.diag(linear))
    if np.max(np.abs(off_diagonal) * target_sizes[None, :]) < 1e-4:
        return _resample_axis_aligned(
            array, np.diag(linear), mapping[:3, 3], target_sizes, order, padding, fill
        )
    return _resample_general(array, mapping, target_geometry.shape, order, padding, fill)


def _check_order(order: int) -> None:
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (linear), got {order}")


def _check_shape(array: np.ndarray, geometry: Geometry) -> None:
    if array.ndim < 3 or tuple(array.shape[-3:]) != geometry.shape:
        raise ValueError(f"array shape {array.shape} does not end with {geometry.shape}")


def _nearest_index(coords: np.ndarray) -> np.ndarray:
    return np.floor(coords + (0.5 + _INDEX_EPS)).astype(np.int64)


def _as_float32_tensor(array: np.ndarray) -> torch.Tensor:
    data = np.asarray(array, dtype=np.float32)
    if not (data.flags.c_contiguous and data.flags.writeable):
        data = np.array(data, dtype=np.float32, order="C")
    return torch.from_numpy(data)


def _resample_axis_aligned(
    array: np.ndarray,
    scale_ijk: np.ndarray,
    offset_ijk: np.ndarray,
    target_sizes_ijk: np.ndarray,
    order: Order,
    padding: Padding,
    fill: float,
) -> np.ndarray:
    """Separable resampling: target index t on axis a maps to ``scale[a] * t + offset[a]``."""
    lead = array.ndim - 3
    source_sizes = array.shape[::-1][:3]
    steps = []
    for axis in range(3):
        n_source, n_target = source_sizes[axis], int(target_sizes_ijk[axis])
        coords = scale_ijk[axis] * np.arange(n_target) + offset_ijk[axis]
        if n_target == n_source and np.allclose(coords, np.arange(n_source), rtol=0, atol=1e-6):
            continue
        steps.append((n_target / n_source, lead + 2 - axis, n_source, coords))
    if not steps:
        return np.array(array, dtype=np.float32 if order == 1 else array.dtype)
    steps.sort(key=lambda step: step[0])  # shrink first: less work on later axes

    if order == 0:
        result = array
        for _, dim, n_source, coords in steps:
            index = _nearest_index(coords)
            result = np.take(result, np.clip(index, 0, n_source - 1), axis=dim)
            if padding == "constant":
                _fill_outside(result, dim, (index < 0) | (index >= n_source), fill)
        return result

    # torch.index_select gathers on all threads (np.take along the last axis is single-threaded
    # and the slowest step of restoring full-resolution logits).
    result = _as_float32_tensor(array)
    for _, dim, n_source, coords in steps:
        low = np.floor(coords)
        weight_shape = [1] * result.ndim
        weight_shape[dim] = coords.size
        weight = torch.from_numpy((coords - low).astype(np.float32).reshape(weight_shape))
        below_index = torch.from_numpy(np.clip(low, 0, n_source - 1).astype(np.int64))
        above_index = torch.from_numpy(np.clip(low + 1, 0, n_source - 1).astype(np.int64))
        below = torch.index_select(result, dim, below_index)
        above = torch.index_select(result, dim, above_index)
        result = above.sub_(below).mul_(weight).add_(below)
        del below
        if padding == "constant":
            index = _nearest_index(coords)
            _fill_outside(result.numpy(), dim, (index < 0) | (index >= n_source), fill)
    return result.numpy()


def _fill_outside(array: np.ndarray, dim: int, outside: np.ndarray, fill: float) -> None:
    """Set the positions ``outside`` (bool, along ``dim``) of ``array`` to ``fill`` in place."""
    if outside.any():
        selector: list[slice | np.ndarray] = [slice(None)] * array.ndim
        selector[dim] = outside
        array[tuple(selector)] = fill


def _resample_general(
    array: np.ndarray,
    mapping: np.ndarray,
    target_shape: tuple[int, ...],
    order: Order,
    padding: Padding,
    fill: float,
) -> np.ndarray:
    """Resampling for any affine ``mapping`` (target (i, j, k, 1) -> source continuous index).

    Works in slabs of target K slices: source coordinates of one target plane are computed once
    (float64), each slab adds its K step. Nearest neighbour gathers with exact float64 indices;
    linear uses ``grid_sample`` on float32 normalised coordinates.
    """
    lead_shape = array.shape[:-3]
    source_shape = array.shape[-3:]
    sizes = np.array(source_shape[::-1])  # (I, J, K)
    channels = int(np.prod(lead_shape, dtype=np.int64))
    n_k, n_j, n_i = target_shape
    slab = max(1, _SLAB_VOXELS // (n_j * n_i))
    i_index = np.arange(n_i, dtype=np.float64)[None, :]
    j_index = np.arange(n_j, dtype=np.float64)[:, None]
    # (J, I, 3): source coordinates (I, J, K order) of the target plane k = 0.
    plane = np.stack(
        [mapping[a, 0] * i_index + mapping[a, 1] * j_index + mapping[a, 3] for a in range(3)],
        axis=-1,
    )
    k_step = mapping[:3, 2]
    if order == 0:
        result = np.empty((channels, *target_shape), dtype=array.dtype)
        flat = np.reshape(array, (channels, -1))
        for k_start in range(0, n_k, slab):
            k_index = np.arange(k_start, min(n_k, k_start + slab), dtype=np.float64)
            nearest = _nearest_index(plane + k_index[:, None, None, None] * k_step)
            inside = np.all((nearest >= 0) & (nearest < sizes), axis=-1)
            np.clip(nearest, 0, sizes - 1, out=nearest)
            linear_index = (nearest[..., 2] * sizes[1] + nearest[..., 1]) * sizes[0]
            linear_index += nearest[..., 0]
            out = result[:, k_start : k_start + k_index.size]
            out[...] = np.take(flat, linear_index, axis=1)
            if padding == "constant":
                out[:, ~inside] = fill
        return result.reshape(*lead_shape, *target_shape)

    # grid_sample wants (x, y, z) = (I, J, K) normalised with align_corners=False; a position is
    # inside when its normalised coordinate is in [-1, 1) (continuous index in [-0.5, n - 0.5)).
    scale = 2.0 / sizes
    plane_normalised = torch.from_numpy((plane * scale + (scale / 2.0 - 1.0)).astype(np.float32))
    step_normalised = torch.from_numpy((k_step * scale).astype(np.float32))
    lower = torch.from_numpy((-1.0 - scale * _INDEX_EPS).astype(np.float32))
    upper = torch.from_numpy((1.0 - scale * _INDEX_EPS).astype(np.float32))
    source = _as_float32_tensor(array).reshape(1, channels, *source_shape)
    result = torch.empty((channels, *target_shape), dtype=torch.float32)
    for k_start in range(0, n_k, slab):
        k_index = torch.arange(k_start, min(n_k, k_start + slab), dtype=torch.float32)
        grid = plane_normalised + k_index.reshape(-1, 1, 1, 1) * step_normalised
        out = result[:, k_start : k_start + k_index.numel()]
        out.copy_(
            grid_sample(
                source, grid[None], mode="bilinear", padding_mode="border", align_corners=False
            )[0]
        )
        if padding == "constant":
            inside = ((grid >= lower) & (grid < upper)).all(dim=-1)
            out.masked_fill_(~inside, fill)
    return result.numpy().reshape(*lead_shape, *target_shape)
