"""Training data of the bundled ``lung-ct`` model: real chest CT with classical lung labels plus
synthetic chest phantoms with exact labels, as a Medical Segmentation Decathlon folder.

``build_lung_ct_dataset`` writes ``<out>/imagesTr/<case>.nii.gz``, ``<out>/labelsTr/<case>.nii.gz``
(uint8: 1 patient's right lung, 2 patient's left lung), ``dataset.json`` (read by
``Training.data.read_decathlon``), ``build.json`` (sources, parameters, label volumes) and
``overlays/<case>.png`` (montages of the real cases' labels, to check them by eye).

- Real CTs (``chest<NNN>_*``): each is labelled with ``label_lungs`` and written as four views
  of the same patient: ``full``; ``tight`` (in-plane field of view cropped to the lungs plus
  ``TIGHT_MARGIN_MM``, as small-FOV reconstructions are); ``upper`` and ``lower`` (``tight``
  cut at the lungs' mid-height, like scans that catch only the apices or the bases). Group them
  with ``PATIENT_REGEX`` so that a patient's views stay in one split part.
- Phantoms (``phantom<NNN>``): ``lung_ct_case`` at real anatomical size, with a random
  acquisition grid (axis permutation, flips, obliquity) and random spacing; phantom ``n`` is
  drawn from ``numpy.random.default_rng([seed, n])``.
- Abdominal phantoms (``abdomen<NNN>``, ``abdomen_phantom``): the lung bases above an abdomen
  with bowel gas, so that gas below the diaphragm is learnt as background; drawn from
  ``numpy.random.default_rng([seed, n, 1])``.
- Outside air (``vary_outside_air``): the ``upper`` and ``lower`` real views and half of the
  phantoms have it raised to lung-like densities, the ``tight``, ``upper`` and ``lower`` views
  and half of the phantoms get blanket folds in it, so that the model learns that air outside
  the body is background whatever its HU and whatever thin structures cross it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from Training.data.volumes import read_image
from Training.pseudolabels.lung_ct import AIR_HU, LEFT_LUNG, RIGHT_LUNG, inside_air, label_lungs
from Training.pseudolabels.montage import lung_montage
from Training.synth.chest import lung_ct_case
from Training.synth.shapes import smooth_field
from Training.synth.space import PhantomSpace
from Training.synth.writers import save_nifti, write_decathlon_json
from unetseg.engine.geometry import Geometry
from unetseg.engine.preprocessing.orientation import reorient_to_canonical

PATIENT_REGEX = r"^(chest\d+|phantom\d+|abdomen\d+)"
LABELS = {RIGHT_LUNG: "right lung", LEFT_LUNG: "left lung"}
TIGHT_MARGIN_MM = 40.0
#: Phantom grids: in-plane and slice spacing ranges (mm) and field of view (mm, every axis:
#: the grid may be permuted); below 370 mm the anatomy is scaled down to fit (0.86-1).
PHANTOM_INPLANE_MM = (1.5, 3.0)
PHANTOM_SLICE_MM = (1.5, 5.0)
PHANTOM_FOV_MM = (320.0, 450.0)
#: Abdominal phantoms: canonical grid of this in-plane field of view, extent along S before
#: cropping and spacing ranges (mm); cropped from the bottom to this height above the lowest
#: lung voxel (mm); bowel gas pockets (count, semi-axis range, least distance to a lung and
#: least depth of their centres under the skin, in mm).
ABDOMEN_FOV_MM = (340.0, 420.0)
ABDOMEN_LENGTH_MM = 700.0
ABDOMEN_INPLANE_MM = (2.0, 3.0)
ABDOMEN_SLICE_MM = (2.5, 5.0)
ABDOMEN_ABOVE_BASES_MM = (30.0, 120.0)
GAS_POCKETS = (8, 20)
GAS_RADIUS_MM = (10.0, 40.0)
GAS_LUNG_GAP_MM = 15.0
GAS_DEPTH_MM = 25.0
#: Air outside the body is not always at -1000 HU (blankets, resampled or reconstructed beyond
#: the scan field): views marked "raised" and half of the phantoms get it at a level drawn from
#: this range (HU) plus noise of this standard deviation range.
OUTSIDE_AIR_HU = (-960.0, -820.0)
OUTSIDE_NOISE_HU = (10.0, 40.0)
RAISED_VIEWS = ("upper", "lower")
#: Blankets and clothing: thin folds (HU range) in the outside air within FOLD_REACH_MM of the
#: body, on the zero set of a smooth random field of about FOLD_WAVELENGTH_MM; views marked
#: here and half of the phantoms get them. Without them a model takes air between the body and
#: a blanket for lung (seen on TotalSegmentator's example CT).
FOLD_HU = (-600.0, -100.0)
FOLD_REACH_MM = 60.0
FOLD_WAVELENGTH_MM = 80.0
FOLDED_VIEWS = ("tight", "upper", "lower")


def build_lung_ct_dataset(
    out: str | Path,
    cts: Sequence[str | Path],
    phantoms: int,
    abdomens: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the dataset (see module docstring) and return the ``build.json`` content.

    Args:
        out: output folder (created; existing case files are overwritten).
        cts: real chest CTs in HU (any format ``read_image`` takes).
        phantoms: number of synthetic chest phantoms.
        abdomens: number of abdominal phantoms (``abdomen_phantom``).
        seed: phantom seed.

    Raises:
        ValueError: a CT in which no lung was found.
    """
    root = Path(out)
    summary: dict[str, Any] = {
        "seed": seed,
        "patient_regex": PATIENT_REGEX,
        "labels": {str(k): v for k, v in LABELS.items()},
        "cases": {},
    }
    for n, path in enumerate(cts):
        hu, geometry = read_image(Path(path))
        result = label_lungs(hu, geometry)
        if not result.label.any():
            raise ValueError(f"no lung found in {path}")
        rng = np.random.default_rng([seed, n, 2])
        for view, (box, view_geometry) in real_views(result.label, geometry).items():
            case_id = f"chest{n:03d}_{view}"
            image, label = hu[box], result.label[box]
            raised, folded = view in RAISED_VIEWS, view in FOLDED_VIEWS
            image = vary_outside_air(image, view_geometry, rng, raised, folded)
            _write_case(root, case_id, image, label, view_geometry)
            lung_montage(image, label, view_geometry, root / "overlays" / f"{case_id}.png")
            summary["cases"][case_id] = _case_info(
                label,
                view_geometry,
                raised,
                folded,
                source=str(path),
                labels="classical (label_lungs)",
            )
    for n in range(phantoms):
        rng = np.random.default_rng([seed, n])
        inplane, thickness = rng.uniform(*PHANTOM_INPLANE_MM), rng.uniform(*PHANTOM_SLICE_MM)
        fov = rng.uniform(*PHANTOM_FOV_MM)
        size = (*[int(np.ceil(fov / inplane))] * 2, int(np.ceil(fov / thickness)))
        case = lung_ct_case(rng, size, (inplane, inplane, thickness))
        raised, folded = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        image = vary_outside_air(case.images["ct"], case.geometry, rng, raised, folded)
        case_id = f"phantom{n:03d}"
        _write_case(root, case_id, image, case.label, case.geometry)
        summary["cases"][case_id] = _case_info(
            case.label,
            case.geometry,
            raised,
            folded,
            source="Training.synth.lung_ct_case",
            labels="exact",
        )
    for n in range(abdomens):
        rng = np.random.default_rng([seed, n, 1])
        image, label, geometry = abdomen_phantom(rng)
        raised, folded = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        image = vary_outside_air(image, geometry, rng, raised, folded)
        case_id = f"abdomen{n:03d}"
        _write_case(root, case_id, image, label, geometry)
        summary["cases"][case_id] = _case_info(
            label, geometry, raised, folded, source="abdomen_phantom", labels="exact"
        )
    write_decathlon_json(
        root,
        "LungCT-RightLeft",
        "Chest CT with the patient's right and left lung: real CT with classical labels "
        "(Training.pseudolabels) and synthetic phantoms with exact labels.",
        LABELS,
        list(summary["cases"]),
        reference="python -m Training build-lung-ct-data",
    )
    (root / "build.json").write_text(json.dumps(summary, indent=1))
    return summary


def abdomen_phantom(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """An abdominal CT that catches the lung bases: gas that is not lung.

    A chest phantom on a canonical grid long enough along S to hold ``ABDOMEN_LENGTH_MM`` of
    trunk, cropped to the abdomen below the lungs and the lung bases, with bowel gas: pockets
    (axis-aligned ellipsoids, half of them gas mixed with stool) centred at least
    ``GAS_DEPTH_MM`` under the skin, in the body and at least ``GAS_LUNG_GAP_MM`` from the
    lungs.

    Returns:
        HU (K, J, I) float32, label (K, J, I) uint8 (exact lungs), and the cropped grid.
    """
    inplane, thickness = rng.uniform(*ABDOMEN_INPLANE_MM), rng.uniform(*ABDOMEN_SLICE_MM)
    width = int(np.ceil(rng.uniform(*ABDOMEN_FOV_MM) / inplane))
    size = (width, width, int(np.ceil(ABDOMEN_LENGTH_MM / thickness)))
    case = lung_ct_case(rng, size, (inplane, inplane, thickness), canonical=True)
    lowest = int(np.flatnonzero(case.label.any(axis=(1, 2)))[0])
    top = lowest + int(rng.uniform(*ABDOMEN_ABOVE_BASES_MM) / thickness)
    box = (slice(0, top), slice(0, case.label.shape[1]), slice(0, case.label.shape[2]))
    hu, label = case.images["ct"][box].copy(), case.label[box]
    spacing = (thickness, inplane, inplane)  # (K, J, I)
    in_plane = (1e6, inplane, inplane)  # depth under the skin within the axial slice
    body = hu > -500.0
    allowed = body & (
        ndimage.distance_transform_edt(label == 0, sampling=spacing) > GAS_LUNG_GAP_MM
    )
    grid = np.indices(hu.shape, sparse=True)
    deep = ndimage.distance_transform_edt(body, sampling=in_plane) > GAS_DEPTH_MM
    places = np.flatnonzero(allowed & deep)
    for _ in range(int(rng.integers(GAS_POCKETS[0], GAS_POCKETS[1] + 1))):
        centre = np.unravel_index(int(rng.choice(places)), hu.shape)
        radii = rng.uniform(*GAS_RADIUS_MM, size=3)
        terms = zip(grid, centre, spacing, radii, strict=True)
        r2 = sum(((g - c) * s / r) ** 2 for g, c, s, r in terms)
        pocket = (r2 <= 1.0) & allowed
        values = -1000.0 + rng.normal(0.0, 20.0, size=int(pocket.sum()))
        if rng.random() < 0.5:  # stool: soft-tissue specks in the gas
            values[rng.random(values.size) < 0.4] = 20.0
        hu[pocket] = values
    return hu, label, _cropped(case.geometry, box)


def vary_outside_air(
    hu: np.ndarray, geometry: Geometry, rng: np.random.Generator, raised: bool, folded: bool
) -> np.ndarray:
    """Copy of ``hu`` (K, J, I) with its air outside the body (below ``AIR_HU``, connected to
    the in-plane border of its axial slice) changed.

    Args:
        raised: set that air to a level drawn from ``OUTSIDE_AIR_HU`` plus Gaussian noise with
            a standard deviation drawn from ``OUTSIDE_NOISE_HU``.
        folded: add blanket folds: where a smooth random field of about
            ``FOLD_WAVELENGTH_MM`` crosses zero within ``FOLD_REACH_MM`` of the body, a sheet
            about one voxel thick at a level drawn from ``FOLD_HU``.
    """
    result = np.array(hu, dtype=np.float32)
    if not (raised or folded):
        return result
    canonical, _, undo = reorient_to_canonical(result, geometry)
    outside = undo.apply((canonical < AIR_HU) & ~inside_air(canonical))
    if raised:
        level, noise = rng.uniform(*OUTSIDE_AIR_HU), rng.uniform(*OUTSIDE_NOISE_HU)
        result[outside] = level + rng.normal(0.0, noise, size=int(outside.sum()))
    if folded:
        spacing = geometry.spacing[::-1]  # (K, J, I)
        near = outside & (ndimage.distance_transform_edt(outside, sampling=spacing) < FOLD_REACH_MM)
        field = smooth_field(rng, PhantomSpace(geometry, 1.0, geometry.origin), FOLD_WAVELENGTH_MM)
        # |field| grows about 2 pi / wavelength per mm across its zero set.
        width = 0.5 * float(spacing.max()) * 2.0 * np.pi / FOLD_WAVELENGTH_MM
        folds = near & (np.abs(field) < width)
        result[folds] = rng.uniform(*FOLD_HU) + rng.normal(0.0, 20.0, size=int(folds.sum()))
    return result


def real_views(
    label: np.ndarray, geometry: Geometry
) -> dict[str, tuple[tuple[slice, slice, slice], Geometry]]:
    """Array boxes (K, J, I) and grids of the four views of a labelled real CT.

    The in-plane axes are taken as the two voxel axes closest to R and A (the slice axis is
    the one closest to S), so that ``tight`` crops in-plane and ``upper``/``lower`` cut along
    the body axis whatever the storage order.
    """
    direction = np.abs(geometry.direction)  # columns: I, J, K
    slice_axis = 2 - int(np.argmax(direction[2]))  # array axis (K=0, J=1, I=2) along S
    lungs = np.nonzero(label)
    spacing = geometry.spacing[::-1]  # (K, J, I)
    full = tuple(slice(0, n) for n in label.shape)
    tight = list(full)
    for axis in range(3):
        if axis != slice_axis:
            margin = int(np.ceil(TIGHT_MARGIN_MM / spacing[axis]))
            low, high = int(lungs[axis].min()) - margin, int(lungs[axis].max()) + margin + 1
            tight[axis] = slice(max(0, low), min(label.shape[axis], high))
    middle = (int(lungs[slice_axis].min()) + int(lungs[slice_axis].max()) + 1) // 2
    # Which half is superior depends on the sign of the slice axis along S.
    superior_last = geometry.direction[2, 2 - slice_axis] > 0
    halves = {"low": slice(0, middle), "high": slice(middle, label.shape[slice_axis])}
    upper = list(tight)
    lower = list(tight)
    upper[slice_axis] = halves["high" if superior_last else "low"]
    lower[slice_axis] = halves["low" if superior_last else "high"]
    views = {"full": full, "tight": tuple(tight), "upper": tuple(upper), "lower": tuple(lower)}
    return {name: (box, _cropped(geometry, box)) for name, box in views.items()}


def _cropped(geometry: Geometry, box: tuple[slice, ...]) -> Geometry:
    """Grid of ``box`` (K, J, I slices) of ``geometry``."""
    matrix = geometry.ijk_to_ras.copy()
    start = np.array([box[2].start, box[1].start, box[0].start, 1.0])
    matrix[:3, 3] = (geometry.ijk_to_ras @ start)[:3]
    return Geometry(matrix, tuple(s.stop - s.start for s in box))


def _write_case(
    root: Path, case_id: str, image: np.ndarray, label: np.ndarray, geometry: Geometry
) -> None:
    save_nifti(root / "imagesTr" / f"{case_id}.nii.gz", image, geometry, np.int16)
    save_nifti(root / "labelsTr" / f"{case_id}.nii.gz", label, geometry, np.uint8)


def _case_info(
    label: np.ndarray, geometry: Geometry, raised: bool, folded: bool, **facts: str
) -> dict[str, Any]:
    """``build.json`` entry of a case: ``facts``, grid, lung volumes, outside-air changes."""
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    return {
        **facts,
        "outside_air": {"raised": raised, "blanket_folds": folded},
        "shape_kji": list(geometry.shape),
        "spacing_mm": [round(float(s), 4) for s in geometry.spacing],
        "volumes_ml": {
            name: round(float(np.count_nonzero(label == value)) * voxel_ml, 1)
            for value, name in LABELS.items()
        },
    }
