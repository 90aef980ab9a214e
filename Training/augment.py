"""Patch extraction with spatial augmentation, and intensity augmentation.

Arrays are channel-first in array order: a case image is ``(C, K, J, I)`` (2D: ``(C, J, I)``),
its label ``(K, J, I)``; ``d`` is the number of spatial axes (3 or 2) and every per-axis
vector here is in array order (K, J, I) / (J, I). Configs name axes x, y, z = I, J, K.

Spatial augmentation is one affine map from patch voxels to case voxels,
``p = centre + shift + M (o)`` with ``o = index - P // 2`` the offset from the patch centre voxel
and ``M = D^-1 R D Z^-1 F`` (rotation ``R`` in millimetres through the voxel size ``D``, zoom
``Z``, flips ``F``). The image is sampled with one ``grid_sample`` (bilinear) per patch and the
label with one ``grid_sample`` (nearest), both with the same grid, from a crop of the case that
just covers the transformed patch (so the corners hold real data, not padding). Maps that are
only flips and integer shifts are exact crops without interpolation. Outside the case the
image is 0 and the label is 0 (background).

All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as nnf

from Training.config import AugmentationConfig

_EPS = 1e-7


@dataclass(frozen=True)
class SpatialTransform:
    """Affine map of patch offsets to case voxel offsets (array order, voxels).

    Attributes:
        matrix: (d, d) ``M`` above.
        shift: (d,) translation added to the patch centre.
    """

    matrix: np.ndarray
    shift: np.ndarray

    @classmethod
    def identity(cls, dims: int) -> SpatialTransform:
        return cls(np.eye(dims), np.zeros(dims))

    @property
    def axis_aligned(self) -> bool:
        """True for flips and integer shifts only (the patch is an exact crop)."""
        signs = np.diag(self.matrix)
        return bool(
            np.allclose(self.matrix, np.diag(signs), atol=_EPS)
            and np.allclose(np.abs(signs), 1.0, atol=_EPS)
            and np.allclose(self.shift, np.round(self.shift), atol=_EPS)
        )


def axis_index(name: str, dims: int) -> int:
    """Array axis of a named axis: x -> last, y -> second last, z -> K (3D only)."""
    position = "xyz".index(name)
    if position >= dims:
        raise ValueError(f"axis {name!r} does not exist in {dims}D")
    return dims - 1 - position


def rotation_matrix(angles: Sequence[float]) -> np.ndarray:
    """Rotation (d, d) in array order: 2D one angle (radians) in the (J, I) plane; 3D angles
    about the K, J and I axes, composed in that order."""
    if len(angles) == 1:
        c, s = math.cos(angles[0]), math.sin(angles[0])
        return np.array([[c, -s], [s, c]])
    result = np.eye(3)
    for axis, angle in enumerate(angles):
        plane = [a for a in range(3) if a != axis]
        c, s = math.cos(angle), math.sin(angle)
        rotation = np.eye(3)
        rotation[np.ix_(plane, plane)] = [[c, -s], [s, c]]
        result = result @ rotation
    return result


def random_spatial_transform(
    rng: np.random.Generator,
    config: AugmentationConfig,
    patch: Sequence[int],
    spacing: Sequence[float],
) -> SpatialTransform:
    """Draw flips, rotation, zoom and shift for a patch of size ``patch`` (array order) on a
    grid of voxel size ``spacing`` (mm, array order)."""
    dims = len(patch)
    if not config.enabled:
        return SpatialTransform.identity(dims)
    voxel = np.diag(np.asarray(spacing, dtype=np.float64))
    matrix = np.eye(dims)
    if rng.random() < config.rotation.p and config.rotation.degrees > 0:
        limit = math.radians(config.rotation.degrees)
        angles = rng.uniform(-limit, limit, size=1 if dims == 2 else 3)
        matrix = np.linalg.inv(voxel) @ rotation_matrix(angles) @ voxel
    if rng.random() < config.scale.p:
        matrix = matrix / rng.uniform(*config.scale.range)
    signs = np.ones(dims)
    for name in config.flip.axes:
        if rng.random() < config.flip.p:
            signs[axis_index(name, dims)] = -1.0
    matrix = matrix @ np.diag(signs)
    shift = np.zeros(dims)
    if rng.random() < config.shift.p and config.shift.fraction > 0:
        shift = rng.uniform(-1.0, 1.0, size=dims) * config.shift.fraction * np.asarray(patch)
        if np.allclose(matrix, np.diag(signs)):
            shift = np.round(shift)  # keep a pure flip exact
    return SpatialTransform(matrix, shift)


def warp(
    volume: np.ndarray,
    centre: Sequence[int],
    patch: Sequence[int],
    transform: SpatialTransform,
    mode: str,
) -> torch.Tensor:
    """Sample a patch from a channel-first volume.

    Args:
        volume: ``(C, *S)`` array (numpy or memory-mapped), any real dtype.
        centre: case voxel (array order) under patch voxel ``P // 2`` before the shift.
        patch: patch size ``P`` (array order).
        transform: the spatial map (see module docstring).
        mode: ``"bilinear"`` (images) or ``"nearest"`` (labels).

    Returns:
        ``(C, *P)`` float32 tensor; voxels outside the case are 0.
    """
    patch = tuple(int(p) for p in patch)
    origin = np.asarray(centre, dtype=np.float64) + transform.shift
    offsets = [np.arange(p, dtype=np.float64) - p // 2 for p in patch]
    if transform.axis_aligned:
        signs = np.sign(np.diag(transform.matrix))
        start = [
            int(np.rint(o + min(s * off[0], s * off[-1])))
            for o, s, off in zip(origin, signs, offsets, strict=True)
        ]
        crop = _crop(volume, start, patch)
        flips = [1 + a for a, s in enumerate(signs) if s < 0]
        result = torch.from_numpy(crop.astype(np.float32, copy=False))
        return result.flip(flips) if flips else result
    grids = np.meshgrid(*offsets, indexing="ij")
    points = np.stack([g.ravel() for g in grids])  # (d, n)
    positions = origin[:, None] + transform.matrix @ points
    low = np.floor(positions.min(axis=1)).astype(int)
    size = np.ceil(positions.max(axis=1)).astype(int) - low + 1
    crop = torch.from_numpy(_crop(volume, low, size).astype(np.float32, copy=False))
    local = positions - low[:, None]
    # align_corners=False: voxel x of n sits at (2x + 1) / n - 1; grid's last axis is (x, y, z).
    normalised = (2.0 * local + 1.0) / size[:, None] - 1.0
    grid = torch.from_numpy(normalised[::-1].T.astype(np.float32).copy())
    grid = grid.reshape(1, *patch, len(patch))
    sampled = nnf.grid_sample(
        crop[None], grid, mode=mode, padding_mode="zeros", align_corners=False
    )
    return sampled[0]


def _crop(volume: np.ndarray, start: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """``volume[:, start : start + size]`` with zeros where the box leaves the volume."""
    size = [int(n) for n in size]
    boxes = [
        (int(lo), max(int(lo), 0), min(int(lo) + n, extent))
        for lo, n, extent in zip(start, size, volume.shape[1:], strict=True)
    ]
    if all(a == lo and b == lo + n for (lo, a, b), n in zip(boxes, size, strict=True)):
        # A copy: the volume may be a read-only memory map, the patch is changed in place.
        return np.array(volume[(slice(None), *(slice(a, b) for _, a, b in boxes))])
    out = np.zeros((volume.shape[0], *size), dtype=volume.dtype)
    if all(b > a for _, a, b in boxes):
        source = (slice(None), *(slice(a, b) for _, a, b in boxes))
        target = (slice(None), *(slice(a - lo, b - lo) for lo, a, b in boxes))
        out[target] = volume[source]
    return out


def augment_intensity(
    image: torch.Tensor,
    rng: np.random.Generator,
    config: AugmentationConfig,
    keep_one_of: Sequence[int] = (),
) -> torch.Tensor:
    """Thick-slice simulation, gamma, Gaussian noise, bias field and modality dropout on a
    ``(C, *P)`` float32 patch (changed in place and returned). Modality dropout never drops
    all the channels listed in ``keep_one_of``."""
    if not config.enabled:
        return image
    channels = image.shape[0]
    resolution = config.resolution
    if resolution.p > 0 and rng.random() < resolution.p:
        dims = image.ndim - 1
        together = not resolution.per_channel
        factor, axis = 1.0, 0
        for c in range(channels):
            if together and c > 0:
                _thick_slices(image[c], axis, factor)
            elif together or rng.random() < 0.5:
                axis = axis_index(str(rng.choice(resolution.axes)), dims)
                factor = float(rng.uniform(*resolution.range))
                _thick_slices(image[c], axis, factor)
    if rng.random() < config.gamma.p:
        for c in range(channels):
            _gamma(image[c], float(rng.uniform(*config.gamma.range)))
    if rng.random() < config.noise.p and config.noise.std > 0:
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        for c in range(channels):
            sigma = float(rng.uniform(0.0, config.noise.std)) * float(image[c].std())
            image[c] += sigma * torch.randn(image[c].shape, generator=generator)
    if rng.random() < config.bias_field.p and config.bias_field.strength > 0:
        field = _bias_field(rng, image.shape[1:], config.bias_field.strength)
        for c in range(channels):
            low = image[c].min()
            image[c] = (image[c] - low) * field + low
    if channels > 1 and rng.random() < config.modality_dropout.p:
        dropped = rng.choice(channels, size=int(rng.integers(1, channels)), replace=False)
        if keep_one_of and set(keep_one_of) <= set(dropped.tolist()):
            dropped = dropped[dropped != rng.choice(list(keep_one_of))]
        image[torch.from_numpy(np.sort(dropped))] = 0.0
    return image


def _thick_slices(channel: torch.Tensor, axis: int, factor: float) -> None:
    """Average ``channel`` (``(*P)``) down along ``axis`` by ``factor`` (area interpolation:
    thick slices) and back to its size (linear), in place."""
    size = list(channel.shape)
    coarse = size.copy()
    coarse[axis] = max(1, round(size[axis] / factor))
    if coarse[axis] == size[axis]:
        return
    mode = "trilinear" if channel.ndim == 3 else "bilinear"
    low = nnf.interpolate(channel[None, None], size=coarse, mode="area")
    channel.copy_(nnf.interpolate(low, size=size, mode=mode, align_corners=False)[0, 0])


def _gamma(channel: torch.Tensor, gamma: float) -> None:
    """``x -> x ** gamma`` on min-max rescaled values, keeping the mean and std (in place)."""
    low, high = channel.min(), channel.max()
    if float(high - low) < _EPS:
        return
    std, mean = torch.std_mean(channel, correction=0)
    scaled = ((channel - low) / (high - low)).pow_(gamma)
    new_std, new_mean = torch.std_mean(scaled, correction=0)
    channel.copy_((scaled - new_mean) / new_std.clamp_min(_EPS) * std + mean)


def _bias_field(rng: np.random.Generator, shape: Sequence[int], strength: float) -> torch.Tensor:
    """``exp`` of a random second-order polynomial over ``[-1, 1]`` coordinates, shape ``shape``."""
    coords = torch.meshgrid(*(torch.linspace(-1.0, 1.0, n) for n in shape), indexing="ij")
    terms = list(coords)
    terms += [a * b for i, a in enumerate(coords) for b in coords[i:]]
    weights = rng.uniform(-strength, strength, size=len(terms))
    log_field = sum(float(w) * t for w, t in zip(weights, terms, strict=True))
    return torch.exp(log_field)
