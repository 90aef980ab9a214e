"""Classical right and left lung labels on chest CT (pseudo-labels for the ``lung-ct`` model).

No learning: HU thresholds, connected components and morphology, with every size in millimetres
so that it works at any spacing. ``label_lungs`` runs these steps:

1. Reorient to the closest canonical layout (array axes (K, J, I) towards S, A, R; voxels are
   only permuted and flipped, see ``reorient_to_canonical``) and smooth lightly.
2. Air inside the body: HU < ``AIR_HU`` minus the air connected to the in-plane border of its
   axial slice (outside air, around the table). Slice by slice, so that an airway open to the
   outside in a mouth or nose slice stays inside in the slices below.
3. Lung candidates: 3D components of that air that are lung parenchyma rather than gas (fewer
   than ``MAX_GAS_FRACTION`` of their voxels below ``GAS_HU`` before smoothing; bowel and
   stomach gas are mostly below) and not tiny.
4. Airways: the trachea is found in the upper slices of the candidates (a compact medial 2D
   region with a gas core); the airway tree is grown from it with the highest threshold of
   ``AIRWAY_THRESHOLDS_HU`` that does not leak into the lungs (volume jump), widened by
   ``AIRWAY_WALL_MM`` for the partial-volume rim and removed.
5. Lungs: the two largest remaining components when they lie side by side; one component
   holding both lungs (touching at the anterior or posterior junction) is eroded until it falls
   apart into a right and a left part, which grow back geodesically inside it to split it.
6. Sides from the geometry: the lung whose centroid has the larger RAS x is the patient's
   right lung (RAS +x points to the patient's right), whatever the array layout.
7. Each lung is closed with a ``CLOSING_MM`` disk and its holes are filled, axial slice by
   slice, so that the vessels and bronchi inside it belong to it; the trachea and the main
   bronchi, outside the lungs, stay out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from unetseg.engine.geometry import Geometry
from unetseg.engine.preprocessing.orientation import reorient_to_canonical

RIGHT_LUNG, LEFT_LUNG = 1, 2
#: Lung and airway air is below, soft tissue above.
AIR_HU = -400.0
#: Pure gas (airway lumen, bowel gas); aerated lung parenchyma is above.
GAS_HU = -950.0
MAX_GAS_FRACTION = 0.35
SMOOTH_MM = 1.0
#: Smallest lung component kept, in mL, and relative to the largest candidate.
MIN_LUNG_ML = 5.0
MIN_LUNG_FRACTION = 0.02
#: Trachea: cross-section range (mm^2), largest distance from the lungs' left-right centre (mm),
#: upper fraction of the lungs' height searched.
TRACHEA_AREA_MM2 = (30.0, 900.0)
TRACHEA_OFFSET_MM = 30.0
TRACHEA_SEARCH_FRACTION = 0.4
#: Airway region-growing thresholds, tried in order; a step that more than doubles the volume
#: (once it holds ``AIRWAY_SETTLED_ML``) or exceeds ``MAX_AIRWAY_ML`` has leaked into a lung.
AIRWAY_THRESHOLDS_HU = tuple(float(t) for t in range(-990, -869, 10))
AIRWAY_SETTLED_ML = 2.0
MAX_AIRWAY_ML = 300.0
AIRWAY_WALL_MM = 2.0
#: Grid of the left-right split (mm) and the deepest erosion tried to separate the lungs (mm).
SPLIT_GRID_MM = 2.0
MAX_SPLIT_EROSION_MM = 30.0
CLOSING_MM = 5.0

FACES = ndimage.generate_binary_structure(3, 1)  # 6-connectivity
IN_PLANE = np.zeros((3, 3, 3), dtype=bool)  # 4-connectivity within an axial slice
IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class LungLabels:
    """Result of ``label_lungs``, on the input grid.

    Attributes:
        label: (K, J, I) uint8, 0 background, 1 patient's right lung, 2 patient's left lung.
        airway: (K, J, I) bool, the airway tree grown from the trachea (empty when no trachea
            was found, e.g. a scan below the carina); ``label`` holds its parts enclosed by a
            lung (bronchi inside the lungs) and none of the trachea and main bronchi.
        trachea_found: whether a trachea seed was found.
        split: whether one component held both lungs and was split at the junction.
        volumes_ml: label value -> volume in mL.
    """

    label: np.ndarray
    airway: np.ndarray
    trachea_found: bool
    split: bool
    volumes_ml: dict[int, float]


def label_lungs(hu: np.ndarray, geometry: Geometry) -> LungLabels:
    """Right and left lung labels of a CT volume (see the module docstring for the method).

    Args:
        hu: (K, J, I) CT in Hounsfield units, any orientation.
        geometry: the grid of ``hu`` (IJK-to-RAS matrix and shape).

    Returns:
        ``LungLabels`` on the input grid; ``label`` is empty when no lung was found.
    """
    if tuple(hu.shape) != geometry.shape:
        raise ValueError(f"hu shape {hu.shape} differs from the geometry's {geometry.shape}")
    canonical, canonical_geometry, undo = reorient_to_canonical(
        np.asarray(hu, dtype=np.float32), geometry
    )
    spacing = tuple(float(s) for s in canonical_geometry.spacing[::-1])  # (K, J, I) mm
    smooth = smooth_hu(canonical, spacing)
    candidates = lung_candidates(inside_air(smooth), canonical, spacing)
    seed = find_trachea(candidates, smooth, spacing)
    airway = np.zeros_like(candidates)
    if seed is not None:
        airway = grow_airway(smooth, candidates, seed, spacing)
    parts, split = separate_lungs(candidates & ~airway, spacing)
    label = np.zeros(canonical.shape, dtype=np.uint8)
    for value, part in zip(side_values(parts, canonical_geometry, candidates), parts, strict=True):
        label[part] = value
    label = fill_lungs(label, airway, spacing)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    volumes = {v: float(np.count_nonzero(label == v)) * voxel_ml for v in (RIGHT_LUNG, LEFT_LUNG)}
    return LungLabels(undo.apply(label), undo.apply(airway), seed is not None, split, volumes)


def smooth_hu(hu: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Gaussian smoothing of ``SMOOTH_MM`` (at least half a voxel) per axis; float32."""
    sigma = [max(SMOOTH_MM / s, 0.5) for s in spacing]
    return ndimage.gaussian_filter(hu, sigma, mode="nearest")


def inside_air(hu: np.ndarray) -> np.ndarray:
    """Voxels below ``AIR_HU`` not connected, within their axial slice, to the slice border.

    Args:
        hu: (K, J, I) canonical volume (K axial slices).

    Returns:
        (K, J, I) bool: lungs, airways, bowel gas and any other enclosed air.
    """
    air = hu < AIR_HU
    regions, _ = ndimage.label(air, IN_PLANE)
    border = np.concatenate(
        [
            regions[:, 0].ravel(),
            regions[:, -1].ravel(),
            regions[:, :, 0].ravel(),
            regions[:, :, -1].ravel(),
        ]
    )
    outside = np.zeros(int(regions.max()) + 1, dtype=bool)
    outside[border] = True
    outside[0] = True
    return ~outside[regions]


def lung_candidates(air: np.ndarray, hu: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """3D components of ``air`` (6-connected) that look like aerated lung: fewer than
    ``MAX_GAS_FRACTION`` of their voxels below ``GAS_HU`` in ``hu`` (unsmoothed), at least
    ``MIN_LUNG_ML`` and ``MIN_LUNG_FRACTION`` of the largest such component.

    Returns:
        (K, J, I) bool mask of the kept components.
    """
    regions, count = ndimage.label(air, FACES)
    if count == 0:
        return air
    sizes = np.bincount(regions.ravel())
    gas = np.bincount(regions.ravel(), weights=(hu < GAS_HU).ravel())
    sizes[0], gas[0] = 0, 0.0
    lung_like = gas < MAX_GAS_FRACTION * np.maximum(sizes, 1)
    volumes = sizes * float(np.prod(spacing)) / 1000.0
    largest = float(volumes[lung_like].max()) if lung_like[1:].any() else 0.0
    keep = lung_like & (volumes >= max(MIN_LUNG_ML, MIN_LUNG_FRACTION * largest))
    keep[0] = False
    return keep[regions]


def find_trachea(
    candidates: np.ndarray, hu: np.ndarray, spacing: tuple[float, ...]
) -> tuple[int, int, int] | None:
    """Seed voxel (k, j, i) in the trachea, or None.

    Searches the upper ``TRACHEA_SEARCH_FRACTION`` of the candidates' height from the top for
    the first axial slice holding a compact 2D region of ``TRACHEA_AREA_MM2`` with a gas core
    (a voxel below ``GAS_HU``) within ``TRACHEA_OFFSET_MM`` of the candidates' left-right centre;
    the seed is the lowest-HU voxel of the region nearest that centre.
    """
    occupied = np.flatnonzero(candidates.any(axis=(1, 2)))
    if occupied.size == 0:
        return None
    columns = np.flatnonzero(candidates.any(axis=(0, 1)))
    centre_i = 0.5 * (columns[0] + columns[-1])
    top, bottom = int(occupied[-1]), int(occupied[0])
    last = top - int(TRACHEA_SEARCH_FRACTION * (top - bottom + 1))
    pixel_mm2 = spacing[1] * spacing[2]
    for k in range(top, last - 1, -1):
        regions, _ = ndimage.label(candidates[k])
        best: tuple[float, int] | None = None
        for n, box in enumerate(ndimage.find_objects(regions), start=1):
            region = regions[box] == n
            area = float(region.sum()) * pixel_mm2
            if not TRACHEA_AREA_MM2[0] <= area <= TRACHEA_AREA_MM2[1]:
                continue
            height, width = region.shape
            if region.sum() < 0.4 * height * width or max(height, width) > 3 * min(height, width):
                continue
            offset = abs(box[1].start + np.mean(np.nonzero(region)[1]) - centre_i) * spacing[2]
            if offset > TRACHEA_OFFSET_MM or hu[k][box][region].min() >= GAS_HU:
                continue
            if best is None or offset < best[0]:
                best = (offset, n)
        if best is not None:
            values = np.where(regions == best[1], hu[k], np.inf)
            j, i = np.unravel_index(int(np.argmin(values)), values.shape)
            return k, int(j), int(i)
    return None


def grow_airway(
    hu: np.ndarray,
    candidates: np.ndarray,
    seed: tuple[int, int, int],
    spacing: tuple[float, ...],
) -> np.ndarray:
    """Trachea and bronchi grown from ``seed`` inside ``candidates`` (see module docstring),
    widened by ``AIRWAY_WALL_MM`` within the candidates. Returns a (K, J, I) bool mask (empty
    when even the lowest threshold leaks)."""
    box = ndimage.find_objects(candidates.astype(np.uint8))[0]
    local_seed = tuple(s - b.start for s, b in zip(seed, box, strict=True))
    inside, values = candidates[box], hu[box]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    accepted = np.zeros_like(inside)
    previous_ml = 0.0
    for threshold in AIRWAY_THRESHOLDS_HU:
        regions, _ = ndimage.label(inside & (values < threshold), FACES)
        if regions[local_seed] == 0:
            continue
        grown = regions == regions[local_seed]
        volume_ml = float(grown.sum()) * voxel_ml
        if volume_ml > MAX_AIRWAY_ML or (
            previous_ml >= AIRWAY_SETTLED_ML and volume_ml > 2.0 * previous_ml
        ):
            break
        accepted, previous_ml = grown, volume_ml
    steps = max(1, round(AIRWAY_WALL_MM / min(spacing)))
    if accepted.any():
        accepted = ndimage.binary_dilation(accepted, FACES, iterations=steps, mask=inside)
    airway = np.zeros_like(candidates)
    airway[box] = accepted
    return airway


def separate_lungs(mask: np.ndarray, spacing: tuple[float, ...]) -> tuple[list[np.ndarray], bool]:
    """The lung components of ``mask`` (K, J, I): the two largest when they lie side by side
    (the second's centroid outside the first's left-right extent), else the largest split in
    two at the junction (``split_at_junction``), else the largest alone. Returns the masks
    (0 to 2) and whether a split was made."""
    regions, count = ndimage.label(mask, FACES)
    if count == 0:
        return [], False
    sizes = np.bincount(regions.ravel())
    sizes[0] = 0
    order = np.argsort(sizes)[::-1]
    minimum = max(MIN_LUNG_ML * 1000.0 / float(np.prod(spacing)), MIN_LUNG_FRACTION * sizes.max())
    first = regions == order[0]
    if count > 1 and sizes[order[1]] >= minimum:
        second = regions == order[1]
        if _side_by_side(first, second):
            return [first, second], False
    halves = split_at_junction(first, spacing)
    if halves is not None:
        return list(halves), True
    return [first], False


def split_at_junction(
    mask: np.ndarray, spacing: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Split one component holding both lungs.

    On a grid of about ``SPLIT_GRID_MM``, the component is eroded until its two largest parts
    lie side by side (at most ``MAX_SPLIT_EROSION_MM``); these, with the smaller parts on their
    side (``_side_markers``), grow back geodesically (``grow_sides``), so that the cut falls
    midway across the junction. Returns the two halves at full resolution, or None when
    erosion never separates two side-by-side parts (one lung).
    """
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    step = tuple(max(1, round(SPLIT_GRID_MM / s)) for s in spacing)
    coarse = mask[box][tuple(slice(None, None, n) for n in step)]
    coarse_mm = tuple(s * n for s, n in zip(spacing, step, strict=True))
    eroded = coarse
    markers = None
    for _ in range(max(1, round(MAX_SPLIT_EROSION_MM / min(coarse_mm)))):
        eroded = ndimage.binary_erosion(eroded, FACES)
        regions, count = ndimage.label(eroded, FACES)
        if count == 0:
            return None
        markers = _side_markers(regions, count)
        if markers is not None:
            break
    if markers is None:
        return None
    sides = grow_sides(markers, coarse)
    # Coarse voxels outside the coarse mask (thin parts missed by the subsampling) take the
    # side of the nearest assigned voxel.
    nearest = ndimage.distance_transform_edt(
        sides == 0, return_distances=False, return_indices=True
    )
    sides = sides[tuple(nearest)]
    # Every full-resolution voxel takes the side of the coarse voxel it falls in.
    index = np.ix_(*(np.arange(b.stop - b.start) // n for b, n in zip(box, step, strict=True)))
    full = np.zeros(mask.shape, dtype=np.int16)
    full[box] = sides[index]
    full[~mask] = 0
    return full == 1, full == 2


def grow_sides(markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Geodesic split of ``mask`` between two marker sets.

    Markers 1 and 2 grow together inside ``mask``, one voxel layer (6-connectivity) per step,
    so every voxel goes to the side it is geodesically nearer to; a voxel reached by both in
    the same step goes to side 1. Returns int16 sides (0 outside ``mask`` and where no marker
    reaches).
    """
    sides = markers.astype(np.int16)
    while True:
        free = mask & (sides == 0)
        one = ndimage.binary_dilation(sides == 1, FACES) & free
        two = ndimage.binary_dilation(sides == 2, FACES) & free & ~one
        if not (one.any() or two.any()):
            return sides
        sides[one], sides[two] = 1, 2


def _side_markers(regions: np.ndarray, count: int) -> np.ndarray | None:
    """Watershed markers (int16: 1 and 2, 0 elsewhere) from the ``count`` labelled parts of an
    eroded component, or None unless its two largest parts lie side by side. Every part of at
    least ``MIN_LUNG_FRACTION`` of the largest one's size marks the side of the largest part
    whose centroid is nearer along I (erosion may cut a lung into several parts)."""
    if count < 2:
        return None
    sizes = np.bincount(regions.ravel())
    sizes[0] = 0
    a, b = np.argsort(sizes)[::-1][:2]
    if sizes[b] < MIN_LUNG_FRACTION * sizes[a] or not _side_by_side(regions == a, regions == b):
        return None
    centres = [np.nan] + [
        c[2] for c in ndimage.center_of_mass(regions > 0, regions, range(1, count + 1))
    ]
    centres = np.asarray(centres)
    side = np.where(np.abs(centres - centres[a]) <= np.abs(centres - centres[b]), 1, 2)
    side[(sizes < MIN_LUNG_FRACTION * sizes[a])] = 0
    return side.astype(np.int16)[regions]


def side_values(parts: list[np.ndarray], geometry: Geometry, candidates: np.ndarray) -> list[int]:
    """Label value (``RIGHT_LUNG`` or ``LEFT_LUNG``) of each lung mask on ``geometry``'s grid.

    Two lungs: the one whose centroid has the larger RAS x is the right lung. One lung: its side
    is that of its centroid relative to the centre of ``candidates``' left-right extent
    (the midline when both lungs were present before the airways were removed).
    """
    if not parts:
        return []
    x = [_centroid_ras(part, geometry)[0] for part in parts]
    if len(parts) == 2:
        return [RIGHT_LUNG, LEFT_LUNG] if x[0] > x[1] else [LEFT_LUNG, RIGHT_LUNG]
    ijk_box = [np.flatnonzero(candidates.any(axis=axes)) for axes in ((0, 1), (0, 2), (1, 2))]
    centre = np.array([0.5 * (b[0] + b[-1]) for b in ijk_box] + [1.0])
    midline_x = float((geometry.ijk_to_ras @ centre)[0])
    return [RIGHT_LUNG if x[0] > midline_x else LEFT_LUNG]


def fill_lungs(label: np.ndarray, airway: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Close each lung with a ``CLOSING_MM`` disk and fill its holes, per axial slice.

    The closing adds no ``airway`` voxel (the main bronchi at the hilum stay out), while holes
    enclosed by the lung are filled whatever they hold (vessels, and bronchi inside the lung),
    except holes holding voxels of the other lung. A voxel claimed by both lungs joins neither.
    ``label`` is (K, J, I) canonical (0, ``RIGHT_LUNG``, ``LEFT_LUNG``); returns the filled copy.
    """
    in_plane = (1e6, spacing[1], spacing[2])  # distances never cross slices
    claims = np.zeros(label.shape, dtype=np.uint8)  # bit v-1: claimed by lung v
    for value in (RIGHT_LUNG, LEFT_LUNG):
        lung = label == value
        if not lung.any():
            continue
        box = _grown_box(lung, [0, *(int(np.ceil(CLOSING_MM / s)) + 1 for s in spacing[1:])])
        part, other = lung[box], (label[box] > 0) & ~lung[box]
        dilated = ndimage.distance_transform_edt(~part, sampling=in_plane) <= CLOSING_MM
        eroded = ndimage.distance_transform_edt(dilated, sampling=in_plane) > CLOSING_MM
        closed = part | (eroded & ~airway[box])
        holes, _ = ndimage.label(ndimage.binary_fill_holes(closed, IN_PLANE) & ~closed, IN_PLANE)
        open_holes = np.unique(holes[other])
        filled = closed | ((holes > 0) & ~np.isin(holes, open_holes[open_holes > 0]))
        claims[box] |= (filled & ~other).astype(np.uint8) << (value - 1)
    result = label.copy()
    for value in (RIGHT_LUNG, LEFT_LUNG):
        result[(claims == 1 << (value - 1)) & (label == 0)] = value
    return result


def _side_by_side(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether ``second``'s centroid lies outside ``first``'s extent along I (left-right)."""
    columns = np.flatnonzero(first.any(axis=(0, 1)))
    centre = float(np.average(np.arange(second.shape[2]), weights=second.sum(axis=(0, 1))))
    return not columns[0] <= centre <= columns[-1]


def _centroid_ras(mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """RAS position (3,) of the centroid of a (K, J, I) mask on ``geometry``'s grid."""
    k, j, i = (float(np.mean(axis)) for axis in np.nonzero(mask))
    return (geometry.ijk_to_ras @ np.array([i, j, k, 1.0]))[:3]


def _grown_box(mask: np.ndarray, margins: list[int]) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by ``margins`` voxels per axis, clipped to the array."""
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    return tuple(
        slice(max(0, b.start - m), min(n, b.stop + m))
        for b, m, n in zip(box, margins, mask.shape, strict=True)
    )
