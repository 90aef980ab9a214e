"""Write synthetic datasets in the folder layouts that ``Training.data`` reads.

Layouts (``<root>`` is the output folder):

- brain-mri ``brainmetshare``: ``<root>/train/<case>/{t1_pre,t1_gd,flair,bravo,seg}.nii.gz``;
  unlabelled cases go to ``<root>/test/<case>/`` without ``seg``.
- brain-mri ``brats``: ``<root>/<case>/<case>_{flair,t1,t1c,t2,seg}.nii.gz``.
- lung-ct ``msd``: ``<root>/imagesTr/<case>.nii.gz``, ``<root>/labelsTr/<case>.nii.gz`` and a
  Medical Segmentation Decathlon ``dataset.json``; unlabelled cases go to ``imagesTs/``.
- lung-cxr ``pairs``: ``<root>/<case>.png`` (or ``.jpg``) and ``<root>/<case>-mask.png`` (0/255).
- ovarian-ct ``ovarian``: ``<root>/CT/<case>.nii.gz`` and ``<root>/Segmentation/<case>.nii.gz``.

Every dataset also gets ``<root>/synth.json``: task, seed, layout and, per case, what the
generator placed (objects with world centres, diameters, voxel counts). MR images are stored as
int16, CT as int16 with a random NIfTI intercept (0 or -1024), labels as uint8, all with the
case's (possibly oblique) affine.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from PIL import Image

from Training.synth.brain import brain_mri_case
from Training.synth.case import SynthCase
from Training.synth.chest import LUNG_LABELS, lung_ct_case, lung_cxr_case
from Training.synth.pelvis import ovarian_ct_case
from unetseg.atomic import atomic_path, write_atomically
from unetseg.engine.geometry import Geometry

# Task -> its layouts (the first is the default).
TASK_LAYOUTS: dict[str, tuple[str, ...]] = {
    "brain-mri": ("brainmetshare", "brats"),
    "lung-ct": ("msd",),
    "lung-cxr": ("pairs",),
    "ovarian-ct": ("ovarian",),
}
CASE_PREFIX = {"brain-mri": "brain", "lung-ct": "lung", "lung-cxr": "cxr", "ovarian-ct": "ovary"}
DEFAULT_SIZE = {"brain-mri": 96, "lung-ct": 96, "lung-cxr": 256, "ovarian-ct": 96}


def save_nifti(
    path: Path, array: np.ndarray, geometry: Geometry, dtype: type, intercept: float = 0.0
) -> None:
    """Save a (K, J, I) array as NIfTI with affine ``geometry.ijk_to_ras`` (qform and sform,
    scanner code); values are rounded to ``dtype`` after subtracting ``intercept``, which is
    stored as ``scl_inter`` so readers get the original values back."""
    stored = np.rint(np.transpose(array, (2, 1, 0)) - intercept)
    info = np.iinfo(dtype)
    image = nib.Nifti1Image(np.clip(stored, info.min, info.max).astype(dtype), geometry.ijk_to_ras)
    image.set_qform(geometry.ijk_to_ras, code=1)
    image.set_sform(geometry.ijk_to_ras, code=1)
    if intercept:
        image.header.set_slope_inter(1.0, intercept)
    with atomic_path(path) as temporary:
        nib.save(image, temporary)


@dataclass(frozen=True)
class _Slot:
    """Where one case goes: its random generator, the dataset folder, its id, the grid size
    (``size`` argument of the generators) and whether its label is written."""

    rng: np.random.Generator
    root: Path
    case_id: str
    size: Any
    labelled: bool


def _brain_writer(layout: str, et_label: int) -> Callable[..., SynthCase]:
    def write(slot: _Slot, **options: Any) -> SynthCase:
        case = brain_mri_case(slot.rng, slot.size, layout=layout, et_label=et_label, **options)
        case_id = slot.case_id
        if layout == "brainmetshare":
            folder = slot.root / ("train" if slot.labelled else "test") / case_id
            names = {name: folder / f"{name}.nii.gz" for name in case.images}
            label_path = folder / "seg.nii.gz"
        else:
            folder = slot.root / case_id
            names = {name: folder / f"{case_id}_{name}.nii.gz" for name in case.images}
            label_path = folder / f"{case_id}_seg.nii.gz"
        for name, path in names.items():
            save_nifti(path, case.images[name], case.geometry, np.int16)
        if slot.labelled:
            save_nifti(label_path, case.label, case.geometry, np.uint8)
        return case

    return write


def _ct_writer(
    generate: Callable[..., SynthCase], image_folder: str, label_folder: str, test_folder: str
) -> Callable[..., SynthCase]:
    def write(slot: _Slot, **options: Any) -> SynthCase:
        case = generate(slot.rng, slot.size, **options)
        intercept = float(slot.rng.choice([0.0, -1024.0]))
        folder = image_folder if slot.labelled else test_folder
        file_name = f"{slot.case_id}.nii.gz"
        save_nifti(
            slot.root / folder / file_name, case.images["ct"], case.geometry, np.int16, intercept
        )
        if slot.labelled:
            save_nifti(slot.root / label_folder / file_name, case.label, case.geometry, np.uint8)
        return case

    return write


def _cxr_writer(image_format: str) -> Callable[..., SynthCase]:
    def write(slot: _Slot, **options: Any) -> SynthCase:
        if options:
            raise ValueError(f"lung-cxr takes no options {sorted(options)}")
        case = lung_cxr_case(slot.rng, slot.size)
        slot.root.mkdir(parents=True, exist_ok=True)
        pixels = np.rint(case.images["image"]).astype(np.uint8)
        save_options = {"quality": 95} if image_format == "jpg" else {}
        with atomic_path(slot.root / f"{slot.case_id}.{image_format}") as temporary:
            Image.fromarray(pixels).save(temporary, **save_options)
        if slot.labelled:
            with atomic_path(slot.root / f"{slot.case_id}-mask.png") as temporary:
                Image.fromarray((case.label * 255).astype(np.uint8)).save(temporary)
        return case

    return write


def write_dataset(
    task: str,
    out: str | Path,
    cases: int,
    seed: int = 0,
    *,
    size: int | None = None,
    layout: str | None = None,
    unlabelled: int = 0,
    image_format: str = "png",
    et_label: int = 3,
    spacing: tuple[float, float, float] | None = None,
    canonical: bool = False,
) -> list[str]:
    """Generate ``cases`` labelled plus ``unlabelled`` cases of ``task`` under ``out``.

    Case ``n`` is drawn from ``numpy.random.default_rng([seed, n])``, so a case does not depend on
    how many others are written. ``spacing`` (I, J, K) mm and ``canonical`` fix the grid (3D
    tasks only). Returns the case ids in order (labelled first).
    """
    if task not in TASK_LAYOUTS:
        raise ValueError(f"task must be one of {sorted(TASK_LAYOUTS)}, got {task!r}")
    layout = layout or TASK_LAYOUTS[task][0]
    if layout not in TASK_LAYOUTS[task]:
        raise ValueError(f"layout for {task} must be one of {TASK_LAYOUTS[task]}, got {layout!r}")
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be png or jpg, got {image_format!r}")
    if cases < 0 or unlabelled < 0:
        raise ValueError("case counts must not be negative")
    root = Path(out)
    options: dict[str, Any] = {}
    if task != "lung-cxr":
        options = {"spacing": spacing, "canonical": canonical}
    elif spacing is not None or canonical:
        raise ValueError("spacing and canonical apply to 3D tasks only")
    writer = {
        "brain-mri": lambda: _brain_writer(layout, et_label),
        "lung-ct": lambda: _ct_writer(lung_ct_case, "imagesTr", "labelsTr", "imagesTs"),
        "lung-cxr": lambda: _cxr_writer(image_format),
        "ovarian-ct": lambda: _ct_writer(ovarian_ct_case, "CT", "Segmentation", "CT"),
    }[task]()

    summary: dict[str, Any] = {"task": task, "layout": layout, "seed": seed, "cases": {}}
    ids = []
    for n in range(cases + unlabelled):
        case_id = f"{CASE_PREFIX[task]}_{n:04d}"
        labelled = n < cases
        rng = np.random.default_rng([seed, n])
        slot = _Slot(rng, root, case_id, size or DEFAULT_SIZE[task], labelled)
        case = writer(slot, **options)
        summary["cases"][case_id] = {
            "labelled": labelled,
            "shape_kji": list(case.geometry.shape),
            "spacing_mm": [float(s) for s in case.geometry.spacing],
            "labels": {str(k): v for k, v in case.meta["labels"].items()},
            "scale": case.meta["scale"],
            "objects": [obj.to_dict() for obj in case.objects] if labelled else [],
        }
        ids.append(case_id)
    if task == "lung-ct":
        write_decathlon_json(
            root,
            "SyntheticLungCT",
            "Synthetic chest CT phantoms (UNetSeg Training.synth); labels are exact.",
            LUNG_LABELS,
            ids[:cases],
            ids[cases:],
            reference="generated",
            licence="CC0-1.0",
        )
    write_atomically(root / "synth.json", json.dumps(summary, indent=1).encode())
    return ids


def write_decathlon_json(
    root: Path,
    name: str,
    description: str,
    labels: Mapping[int, str],
    training: Sequence[str],
    test: Sequence[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    """Write (atomically) and return a Medical Segmentation Decathlon ``dataset.json`` for CT
    cases ``imagesTr/<case>.nii.gz`` + ``labelsTr/<case>.nii.gz`` (``training``) and
    ``imagesTs/<case>.nii.gz`` (``test``); ``labels`` maps values >= 1 to names; ``extra``
    fields (reference, licence, ...) are added as given."""
    content = {
        "name": name,
        "description": description,
        **extra,
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", **{str(k): v for k, v in labels.items()}},
        "numTraining": len(training),
        "numTest": len(test),
        "training": [
            {"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in training
        ],
        "test": [f"./imagesTs/{c}.nii.gz" for c in test],
    }
    write_atomically(root / "dataset.json", json.dumps(content, indent=1).encode())
    return content
