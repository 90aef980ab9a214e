"""Training data of the bundled ``brain-tumor-mri`` model, assembled from the shared data.

    python -m Training.assembly.brain_tumor_mri --shared ../shared/data \\
        --out runs/brain-tumor-mri-data --overlays

writes three sources in the BraTS layout (one folder per case holding ``<case>_<sequence>.nii.gz``
and ``<case>_seg.nii.gz``), read by ``Training/configs/brain_tumor_mri.yaml``:

- ``brats2015/``: BraTS 2015 (4 cases, FLAIR + T1c, manual labels 0 background, 1 necrosis,
  2 oedema, 3 non-enhancing, 4 enhancing). The images are z-scored inside the brain with a
  constant negative value outside it; that value is set to 0 here (``brainmask``), as in any
  skull-stripped image, so that the engine's z-score over non-zero voxels sees the brain only.
  The label is linked.
- ``tcga_fusion/``: the 2 TCGA cases, 4 sequences linked; the label is ``fusion/mav.nii.gz``
  (MODEL-MADE fusion, 0, 1 necrosis / non-enhancing, 2 oedema, 4 enhancing).
  ``OtherEXampleFromTCIA`` is named after its patient, TCGA-FG-6692.
- ``pgbm/``: the 4 TCIA Brain-Tumor-Progression studies, case ``<patient>_<YYYYMMDD>``
  (PGBM-001 and the first PGBM-003 study converted from DICOM, the others linked).
  ``MaskTumor`` outlines the contrast-enhancing lesion with the necrosis or cavity it encloses
  (tumour core); the FLAIR oedema around it is outside the mask (see the overlays). Its label
  here: ``MASK`` (1) the mask, ``HOLE`` (2) voxels the mask encloses in-plane but leaves out
  (necrosis: tumour core unknown there), ``FAR`` (3) voxels farther than ``FAR_MM`` from the
  mask (no tumour of any kind), 0 elsewhere (no core; oedema possible). The config turns these
  values into partial labels per region.

``--overlays`` also writes ``overlays/<case>.png`` per PGBM study: its three slices with the
largest mask, T1 post-contrast and FLAIR, with the mask (red), the holes (yellow) and the
``FAR`` boundary (cyan).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage

from Training.data import load_case, read_dicom
from Training.data.volumes import read_image
from Training.synth.writers import save_nifti
from unetseg.atomic import atomic_path
from unetseg.engine.geometry import Geometry

logger = logging.getLogger(__name__)

MASK, HOLE, FAR = 1, 2, 3
#: Distance (mm) from the tumour-core mask beyond which no oedema is expected: the BraTS 2015 and
#: TCGA cases here reach at most 42 mm from their core (99th percentile <= 35 mm).
FAR_MM = 50.0
#: DICOM SeriesDescription patterns of the PGBM studies per model input.
PGBM_SERIES = {
    "t1c": ["*t1*post*"],
    "t1": ["*t1*pre*"],
    "t2": ["*t2*"],
    "flair": ["*flair*"],
}
#: PGBM NIfTI file name per model input.
PGBM_FILES = {"t1c": "T1post", "t1": "T1prereg", "t2": "T2reg", "flair": "FLAIRreg"}
TCGA_NAMES = {"OtherEXampleFromTCIA": "TCGA-FG-6692"}
TCGA_FILES = {"t1": "t1_bet", "t1c": "t1c_bet", "t2": "t2_bet", "flair": "fla_bet"}
_STUDY_DATE = re.compile(r"^(\d\d)-(\d\d)-(\d{4})")


def assemble(shared: Path, out: Path, overlays: bool = False) -> dict[str, list[str]]:
    """Write the three sources under ``out``; returns the case ids per source."""
    cases = {
        "brats2015": _brats2015(shared / "brats2015", out / "brats2015"),
        "tcga_fusion": _tcga_fusion(shared / "brats_tcga_fusion", out / "tcga_fusion"),
        "pgbm": _pgbm(shared, out / "pgbm"),
    }
    if overlays:
        for case_id in cases["pgbm"]:
            write_overlay(out / "pgbm" / case_id, out / "overlays" / f"{case_id}.png")
    return cases


def pgbm_label(mask: np.ndarray, spacing: Sequence[float], far_mm: float = FAR_MM) -> np.ndarray:
    """Label values ``MASK``, ``HOLE``, ``FAR`` (module docstring) of a binary tumour mask.

    Args:
        mask: (K, J, I) array, non-zero = tumour core.
        spacing: voxel size (I, J, K) in mm.

    Returns:
        (K, J, I) uint8.
    """
    inside = np.asarray(mask) > 0
    filled = np.stack([ndimage.binary_fill_holes(plane) for plane in inside])
    distance = ndimage.distance_transform_edt(~inside, sampling=tuple(reversed(spacing)))
    label = np.zeros(inside.shape, dtype=np.uint8)
    label[distance > far_mm] = FAR
    label[filled & ~inside] = HOLE
    label[inside] = MASK
    return label


def _brats2015(source: Path, dest: Path) -> list[str]:
    names = {"flair": "Flair_subtrMeanDivStd", "t1c": "T1c_subtrMeanDivStd"}
    ids = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        case = dest / folder.name
        case.mkdir(parents=True, exist_ok=True)
        brain = nib.load(folder / "brainmask.nii.gz").get_fdata() > 0
        for name, stem in names.items():
            image = nib.load(folder / f"{stem}.nii.gz")
            data = np.where(brain, image.get_fdata(dtype=np.float32), 0).astype(np.float32)
            with atomic_path(case / f"{folder.name}_{name}.nii.gz") as temporary:
                nib.save(nib.Nifti1Image(data, image.affine), temporary)
        _link(folder / "OTMultiClass.nii.gz", case / f"{folder.name}_seg.nii.gz")
        ids.append(folder.name)
    return ids


def _tcga_fusion(source: Path, dest: Path) -> list[str]:
    ids = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        case_id = TCGA_NAMES.get(folder.name, folder.name)
        case = dest / case_id
        for name, suffix in TCGA_FILES.items():
            _link(folder / f"{folder.name}_{suffix}.nii.gz", case / f"{case_id}_{name}.nii.gz")
        _link(folder / "fusion" / "mav.nii.gz", case / f"{case_id}_seg.nii.gz")
        ids.append(case_id)
    return ids


def _pgbm(shared: Path, dest: Path) -> list[str]:
    ids = []
    for root in ("tcia_brain_tumor_progression", "tcia_brain_tumor_progression_more"):
        for record in read_dicom(shared / root, PGBM_SERIES, label_patterns=["*mask*"]):
            study = Path(next(iter(record.image_paths.values()))).parent
            case_id = f"{record.patient_id}_{_study_date(study.name)}"
            images, mask, geometry = load_case(record)
            assert mask is not None  # every study has its MaskTumor series
            for name, array in images.items():
                save_nifti(dest / case_id / f"{case_id}_{name}.nii.gz", array, geometry, np.int16)
            _write_label(dest / case_id, case_id, mask, geometry)
            ids.append(case_id)
    for study in sorted((shared / "tcia_brain_tumor_progression_more").glob("*/*(NIfTI)")):
        case_id = f"{study.parent.name}_{_study_date(study.name)}"
        for name, stem in PGBM_FILES.items():
            _link(study / f"{stem}.nii.gz", dest / case_id / f"{case_id}_{name}.nii.gz")
        mask, geometry = read_image(study / "MaskTumor.nii.gz")
        _write_label(dest / case_id, case_id, mask, geometry)
        ids.append(case_id)
    return ids


def _write_label(case: Path, case_id: str, mask: np.ndarray, geometry: Geometry) -> None:
    label = pgbm_label(mask, geometry.spacing)
    save_nifti(case / f"{case_id}_seg.nii.gz", label, geometry, np.uint8)
    counts = np.bincount(label.ravel(), minlength=4)
    logger.info("%s: mask %d, holes %d, far %d voxels", case_id, *counts[1:4])


def _study_date(name: str) -> str:
    """``YYYYMMDD`` from a TCIA study folder name ``MM-DD-YYYY-...``."""
    match = _STUDY_DATE.match(name)
    if match is None:
        raise ValueError(f"no study date at the start of {name!r}")
    month, day, year = match.groups()
    return f"{year}{month}{day}"


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target.resolve(), link)


def write_overlay(case: Path, path: Path) -> None:
    """PNG of a PGBM case (module docstring): rows = the 3 slices with the largest mask,
    columns = T1 post-contrast and FLAIR, each plain and with the label contours."""
    case_id = case.name
    label = read_image(case / f"{case_id}_seg.nii.gz")[0].astype(np.uint8)
    images = [read_image(case / f"{case_id}_{name}.nii.gz")[0] for name in ("t1c", "flair")]
    area = (label == MASK).reshape(len(label), -1).sum(axis=1)
    rows = []
    for k in sorted(np.argsort(area)[::-1][:3]):
        panels = []
        for image in images:
            grey = _window(image[k], image)
            panels += [grey, _contours(grey, label[k])]
        rows.append(np.concatenate(panels, axis=1))
    with atomic_path(path) as temporary:
        Image.fromarray(np.concatenate(rows, axis=0)).save(temporary)


def _window(plane: np.ndarray, volume: np.ndarray) -> np.ndarray:
    low, high = np.percentile(volume, (0.5, 99.5))
    grey = np.clip((plane - low) / max(high - low, 1e-6), 0, 1) * 255
    return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)


def _contours(grey: np.ndarray, label: np.ndarray) -> np.ndarray:
    rgb = grey.copy()
    colours = {MASK: (255, 40, 40), HOLE: (255, 230, 0), FAR: (0, 220, 255)}
    for value, colour in colours.items():
        region = label == value
        rgb[region & ~ndimage.binary_erosion(region)] = colour
    return rgb


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m Training.assembly.brain_tumor_mri",
        description="assemble the brain-tumor-mri training sources from the shared data",
    )
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/brain-tumor-mri-data"))
    parser.add_argument("--overlays", action="store_true", help="write the PGBM mask overlays")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for source, ids in assemble(args.shared, args.out, args.overlays).items():
        print(f"{source}: {len(ids)} cases ({', '.join(ids)}) in {args.out / source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
