"""The preprocessing pipeline: the one place where model-manifest conventions are applied.

``prepare_inputs`` turns the input images of one case into the model's input tensor and keeps
what is needed to map model outputs back onto the original grid of the reference input.

Steps (3D models):

1. validate: one array per manifest input, present required inputs, (K, J, I) shapes matching
   their geometries, finite, not all zero.
2. reorient the reference input (first present required input) to closest-canonical RAS
   (permutation and flips only).
3. resample it to the model's ``spacing_mm`` (I, J, K) with linear interpolation; the new grid
   keeps the outer corner of the first voxel (see ``resample_to_spacing``). This is the model grid.
   Before that, the memory the case needs on the model grid is estimated and checked against
   the memory available (``resources.check_case_memory``: a wrong ``spacing_mm`` is refused
   with a clear message, not a ``MemoryError``).
4. secondary inputs on the reference grid follow the same steps; inputs on another grid are
   resampled (linear, 0 outside their extent) directly onto the model grid, one interpolation;
   one that covers less than ``MIN_GRID_COVERAGE`` of the model grid is refused (another
   study or frame of reference, most likely).
5. normalise each input with its manifest ``normalization`` spec (default ``{"method": "none"}``);
   a missing optional input becomes a zero channel and is listed in ``missing_inputs``.
6. stack to ``image`` (C, K, J, I) float32 and compute ``foreground_mask``.

2D models (``spatial_dims == 2``) take (J, I) or (1, J, I) arrays; they are not reoriented
(projection images have no meaningful patient axes: pixel order is kept as stored), only
resampled in-plane to ``spacing_mm[:2]``, or to exactly ``image_size`` (I, J) pixels when the
manifest gives one (whatever the pixel spacing), and ``image`` is (C, J, I).

``spacing_mm`` may be absent or null to keep the reference's native spacing; a target within
0.01 % of the current spacing is treated as equal (no interpolation).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from unetseg.engine.geometry import Geometry
from unetseg.engine.preprocessing.cropping import body_mask
from unetseg.engine.preprocessing.normalization import check_finite, check_not_empty, normalize
from unetseg.engine.preprocessing.orientation import (
    OrientationUndo,
    canonical_layout,
    reorient_to_canonical,
)
from unetseg.engine.preprocessing.resampling import (
    resample_to_geometry,
    resample_to_spacing,
    resampled_shape,
)
from unetseg.engine.preprocessing.spec import PreparationSpec
from unetseg.engine.resources import check_case_memory

# Secondary inputs whose geometry matches the reference within this (mm) share its grid.
SAME_GRID_ATOL_MM = 1e-3
#: Least fraction of the model grid that an input on another grid must cover.
MIN_GRID_COVERAGE = 0.5
_SPACING_RTOL = 1e-4
#: Points per axis sampled to measure the coverage.
_COVERAGE_SAMPLES = 17


@dataclass
class PreparedCase:
    """Model input of one case and the mapping back to the reference input's grid.

    Attributes:
        image: (C, K, J, I) float32 (2D models: (C, J, I)), channels in manifest input order.
        foreground_mask: bool (K, J, I) on the model grid: union of the non-zero voxels of the
            inputs normalised with ``"mask": "nonzero"``, else ``body_mask`` of the reference
            input; ``None`` for 2D models.
        missing_inputs: names of optional inputs that were absent (their channel is zero).
        reference_geometry: original geometry of the reference input.
        reference_shape: shape of the reference array as given ((K, J, I), or (J, I) in 2D).
        model_geometry: geometry of the model grid (canonical orientation, model spacing).
        canonical_geometry: the reference grid after reorientation (before resampling).
        orientation_undo: maps canonical-layout arrays back to the reference layout.
        timings: seconds per step ("validate", "reorient", "resample", "resample_secondary",
            "normalize", "foreground_mask", "total").
    """

    image: np.ndarray
    foreground_mask: np.ndarray | None
    missing_inputs: list[str]
    reference_geometry: Geometry
    reference_shape: tuple[int, ...]
    model_geometry: Geometry
    canonical_geometry: Geometry
    orientation_undo: OrientationUndo
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def spatial_dims(self) -> int:
        return self.image.ndim - 1

    def restore_labels(self, labels: np.ndarray) -> np.ndarray:
        """Map a label map on the model grid ((K, J, I); 2D: (J, I)) onto the reference input's
        original grid and layout (nearest neighbour, dtype kept, edge values extended)."""
        return self._restore(labels, order=0, lead_dims=0)

    def restore_probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        """Map (C, K, J, I) (2D: (C, J, I)) probabilities or logits on the model grid onto the
        reference input's original grid and layout: (C, *reference_shape) float32, linear."""
        return self._restore(probabilities, order=1, lead_dims=1)

    def _restore(self, array: np.ndarray, order: int, lead_dims: int) -> np.ndarray:
        model_shape = self.model_geometry.shape
        expected = model_shape if self.spatial_dims == 3 else model_shape[1:]
        if array.ndim != lead_dims + len(expected) or tuple(array.shape[lead_dims:]) != expected:
            raise ValueError(
                f"expected {lead_dims} leading dims and spatial shape {expected}, got {array.shape}"
            )
        lead = array.shape[:lead_dims]
        volume = array.reshape(*lead, *model_shape)
        restored = resample_to_geometry(
            volume, self.model_geometry, self.canonical_geometry, order, padding="border"
        )
        restored = self.orientation_undo.apply(restored)
        return restored.reshape(*lead, *self.reference_shape)


def _target_spacing(spec: PreparationSpec, grid: Geometry) -> list[float | None]:
    """Model spacing (I, J, K) for images on ``grid``, with None for axes kept as they are."""
    spatial_dims = spec.spatial_dims
    current = grid.spacing
    size = spec.image_size
    if spatial_dims == 2 and size is not None:
        counts = (grid.shape[2], grid.shape[1])  # (I, J)
        return [
            None if counts[a] == size[a] else float(current[a]) * counts[a] / int(size[a])
            for a in range(2)
        ] + [None]
    spacing = spec.spacing_mm
    if spacing is None:
        return [None, None, None]
    target: list[float | None] = [None, None, None]
    for axis in range(spatial_dims):
        if abs(spacing[axis] - current[axis]) > _SPACING_RTOL * spacing[axis]:
            target[axis] = spacing[axis]
    return target


def grid_coverage(source: Geometry, target: Geometry) -> float:
    """Fraction of the voxel centres of ``target`` that lie inside the extent of ``source``
    (estimated on a lattice of up to ``_COVERAGE_SAMPLES`` points per axis)."""
    axes = [np.linspace(0, n - 1, min(n, _COVERAGE_SAMPLES)) for n in target.shape[::-1]]
    i, j, k = np.meshgrid(*axes, indexing="ij")
    points = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    index = (source.ras_to_ijk @ target.ijk_to_ras @ points)[:3]
    sizes = np.array(source.shape[::-1], dtype=np.float64)[:, None]
    inside = np.all((index >= -0.5) & (index <= sizes - 0.5), axis=0)
    return float(inside.mean())


def _check_coverage(name: str, geometry: Geometry, model_geometry: Geometry) -> None:
    coverage = grid_coverage(geometry, model_geometry)
    if coverage < MIN_GRID_COVERAGE:
        raise ValueError(
            f"input {name!r} does not overlap the reference enough: it covers {coverage:.0%} "
            f"of its grid (at least {MIN_GRID_COVERAGE:.0%} needed); are both images from the "
            "same study and frame of reference?"
        )


def _validated_arrays(
    arrays: Sequence[np.ndarray | None],
    geometries: Sequence[Geometry | None],
    model: PreparationSpec,
) -> tuple[list[np.ndarray | None], list[Geometry | None], int, tuple[int, ...]]:
    """Check the inputs; return (K, J, I) arrays, geometries, reference index and the
    reference array's shape as given."""
    specs = model.inputs
    spatial_dims = model.spatial_dims
    if len(arrays) != len(specs) or len(geometries) != len(specs):
        raise ValueError(
            f"model expects {len(specs)} inputs ({model.input_names}), "
            f"got {len(arrays)} arrays and {len(geometries)} geometries"
        )
    volumes: list[np.ndarray | None] = []
    for spec, array in zip(specs, arrays, strict=True):
        name = spec.name
        if array is None:
            if spec.required:
                raise ValueError(f"required input {name!r} is missing")
            volumes.append(None)
            continue
        volume = np.asarray(array)
        if spatial_dims == 2 and volume.ndim == 2:
            volume = volume[None]
        if volume.ndim != 3:
            raise ValueError(f"input {name!r} must be a (K, J, I) array, got shape {volume.shape}")
        if spatial_dims == 2 and volume.shape[0] != 1:
            raise ValueError(f"2D model: input {name!r} must be one slice, got {volume.shape}")
        if spatial_dims == 3 and volume.shape[0] == 1:
            raise ValueError(f"3D model: input {name!r} is a single slice {volume.shape}")
        check_finite(volume, name)
        check_not_empty(volume, name)
        volumes.append(volume)

    present = [i for i, v in enumerate(volumes) if v is not None]
    if not present:
        raise ValueError("no input image given")
    required = [i for i in present if specs[i].required]
    reference = (required or present)[0]
    reference_volume = volumes[reference]
    assert reference_volume is not None
    # No geometry: the reference gets a 1 mm RAS identity grid, other inputs share its grid.
    reference_geometry = geometries[reference] or Geometry(np.eye(4), reference_volume.shape)
    resolved: list[Geometry | None] = []
    for index, (volume, geometry) in enumerate(zip(volumes, geometries, strict=True)):
        if volume is None:
            resolved.append(None)
            continue
        geometry = geometry or reference_geometry
        if geometry.shape != volume.shape:
            raise ValueError(
                f"input {specs[index].name!r}: array shape {volume.shape} differs from its "
                f"geometry shape {geometry.shape}"
            )
        resolved.append(geometry)
    given_shape = tuple(np.shape(arrays[reference]))
    return volumes, resolved, reference, given_shape


def prepare_inputs(
    arrays: Sequence[np.ndarray | None],
    geometries: Sequence[Geometry | None],
    model: PreparationSpec,
) -> PreparedCase:
    """Prepare the inputs of one case for a model (see module docstring for the steps).

    Args:
        arrays: one array per model input, in the model's order: (K, J, I) (2D models: (J, I)
            or (1, J, I)), any real dtype; ``None`` for an absent optional input.
        geometries: the matching geometries; ``None`` means "the reference input's grid" (for
            the reference itself: a 1 mm identity grid).
        model: what the model expects (``ModelPackage.preparation``).

    Raises:
        ValueError: missing required input, wrong shapes, NaN/inf, all-zero input, or a
            secondary input that does not overlap the reference.
    """
    timings: dict[str, float] = {}
    start = clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] = timings.get(step, 0.0) + now - clock
        clock = now

    specs = model.inputs
    spatial_dims = model.spatial_dims
    volumes, resolved, reference, reference_shape = _validated_arrays(arrays, geometries, model)
    reference_geometry = resolved[reference]
    assert reference_geometry is not None
    lap("validate")

    if spatial_dims == 3:
        canonical_geometry, undo = canonical_layout(reference_geometry)
    else:
        canonical_geometry = reference_geometry
        undo = OrientationUndo((0, 1, 2), (False, False, False), reference_geometry.shape)
    target = _target_spacing(model, canonical_geometry)
    check_case_memory(
        resampled_shape(canonical_geometry, target), model, canonical_geometry.spacing
    )

    model_geometry = canonical_geometry
    for index in [reference] + [i for i in range(len(specs)) if i != reference]:
        volume, geometry = volumes[index], resolved[index]
        if volume is None or geometry is None:
            continue
        if geometry.is_close(reference_geometry, SAME_GRID_ATOL_MM):
            if spatial_dims == 3:
                volume, _, _ = reorient_to_canonical(volume, reference_geometry)
                lap("reorient")
            volume, model_geometry = resample_to_spacing(volume, canonical_geometry, target, 1)
            lap("resample")
        else:
            _check_coverage(specs[index].name, geometry, model_geometry)
            volume = resample_to_geometry(volume, geometry, model_geometry, 1)
            lap("resample_secondary")
        volumes[index] = volume

    image = np.zeros((len(specs), *model_geometry.shape), dtype=np.float32)
    missing = []
    for index, spec in enumerate(specs):
        volume = volumes[index]
        if volume is None:
            missing.append(spec.name)
            continue
        image[index] = normalize(volume, spec.normalization, spec.name)
    lap("normalize")

    foreground = None
    if spatial_dims == 3:
        nonzero = [
            volumes[i]
            for i, spec in enumerate(specs)
            if volumes[i] is not None and spec.normalization.get("mask") == "nonzero"
        ]
        if nonzero:
            foreground = np.logical_or.reduce([v != 0 for v in nonzero])
        else:
            reference_volume = volumes[reference]
            assert reference_volume is not None
            foreground = body_mask(reference_volume, modality=model.modality)
        lap("foreground_mask")
    else:
        image = image[:, 0]
    timings["total"] = time.perf_counter() - start

    return PreparedCase(
        image=image,
        foreground_mask=foreground,
        missing_inputs=missing,
        reference_geometry=reference_geometry,
        reference_shape=reference_shape,
        model_geometry=model_geometry,
        canonical_geometry=canonical_geometry,
        orientation_undo=undo,
        timings=timings,
    )
