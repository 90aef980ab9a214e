"""``python -m unetseg demo``: the whole headless pipeline on a generated chest CT.

No trained model is bundled yet, so the demo builds a model package around a *freshly
initialised* (untrained) network and says so: the segments it writes are meaningless, but every
stage is the real one (synthetic NIfTI file -> MRML volume node -> preprocessing -> sliding-window
inference -> segmentation node -> ``.seg.nrrd`` + JSON summary).

The manifest helpers (``lung_ct_manifest``, ``brain_mri_manifest``, ``lung_cxr_manifest``)
describe realistic inputs and labels around small networks for the demo and tests; packages
made from them with ``untrained_package`` (from ``unetseg.samples``) are never shipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unetseg.samples import (
    ANATOMICAL_STRUCTURE,
    BRAIN,
    LUNG,
    altered_label,
    lung_labels,
    untrained_manifest,
    untrained_package,
)

_PURPOSE = "demonstrating the pipeline"


def lung_ct_manifest(filters: Sequence[int] = (8, 16, 32, 64)) -> dict[str, Any]:
    """Manifest of a left/right lung CT model (3D, 2 mm, patch 64^3)."""
    ct = {
        "name": "ct",
        "title": "Chest CT",
        "required": True,
        "name_patterns": ["*ct*", "*chest*", "*lung*"],
        "series_description_patterns": ["*chest*", "*thorax*", "*lung*", "*ct*"],
        "normalization": {"method": "ct_window", "center": -600.0, "width": 1500.0},
    }
    return untrained_manifest(
        "demo-lung-ct-untrained",
        "Lung CT (UNTRAINED demo network)",
        "CT",
        [ct],
        lung_labels([200, 100, 80], [80, 150, 220]),
        spatial_dims=3,
        spacing_mm=(2.0, 2.0, 2.0),
        patch_size=(64, 64, 64),
        filters=filters,
        purpose=_PURPOSE,
    )


def brain_mri_manifest(
    filters: Sequence[int] = (8, 16, 32, 64), patch_size: Sequence[int] = (64, 64, 64)
) -> dict[str, Any]:
    """Manifest of a BraTS-style brain tumour model: 4 MRI sequences, 3 tumour sub-regions.

    Inputs in channel order: ``t1c`` (T1 post-contrast, required, the reference grid),
    ``flair`` (required), ``t1`` and ``t2`` (optional). Name patterns match BraTS file names
    (2021: ``_t1ce``, ``_flair``, ``_t1``, ``_t2``; 2023: ``-t1c``, ``-t2f``, ``-t1n``, ``-t2w``)
    and series descriptions such as TCIA Brain-Tumor-Progression's ``T1post``, ``FLAIR_reg``,
    ``T1pre_reg`` and ``T2_reg`` (its ``Mask_Tumor`` series matches none). Labels as BraTS
    2023: 1 non-enhancing core / necrosis, 2 oedema, 3 enhancing tumour; lesion table on.
    ``patch_size`` is (I, J, K).
    """

    def sequence(
        name: str, title: str, required: bool, names: list[str], series: list[str]
    ) -> dict[str, Any]:
        return {
            "name": name,
            "title": title,
            "required": required,
            "name_patterns": names,
            "series_description_patterns": series,
            "normalization": {"method": "zscore", "mask": "nonzero"},
        }

    return untrained_manifest(
        "demo-brain-mri-untrained",
        "Brain tumour MRI (UNTRAINED demo network)",
        "MR",
        [
            sequence(
                "t1c",
                "T1 post-contrast",
                True,
                ["*t1c*", "*t1ce*", "*t1gd*", "*t1*gd*", "*t1*post*", "*t1*contrast*"],
                ["*t1*post*", "*t1*gd*", "*t1*+c*", "*t1*contrast*", "*mprage*gd*"],
            ),
            sequence(
                "flair",
                "T2 FLAIR",
                True,
                ["*flair*", "*t2f*", "*t2*flair*"],
                ["*flair*"],
            ),
            sequence(
                "t1",
                "T1 native",
                False,
                ["*t1*", "*t1n*", "*t1*pre*", "*t1*native*"],
                ["*t1*pre*", "*t1*native*", "*t1*"],
            ),
            sequence("t2", "T2", False, ["*t2*", "*t2w*"], ["*t2*"]),
        ],
        [
            altered_label(
                1, "Non-enhancing tumor core", [250, 210, 60], ("6574001", "Necrosis"), BRAIN
            ),
            altered_label(2, "Edema", [90, 200, 110], ("79654002", "Edema"), BRAIN),
            altered_label(
                3, "Enhancing tumor", [230, 60, 50], ("86049000", "Neoplasm, Primary"), BRAIN
            ),
        ],
        spatial_dims=3,
        spacing_mm=(1.0, 1.0, 1.0),
        patch_size=patch_size,
        filters=filters,
        purpose=_PURPOSE,
        lesion_analysis=True,
    )


def lung_cxr_manifest(filters: Sequence[int] = (8, 16, 32, 64)) -> dict[str, Any]:
    """Manifest of a 2D chest X-ray lung model (1 mm pixels, patch 128x128, label "Lungs")."""
    cxr = {
        "name": "cxr",
        "title": "Chest X-ray",
        "required": True,
        "name_patterns": ["*cxr*", "*chest*", "*x*ray*", "*radiograph*"],
        "series_description_patterns": ["*chest*", "*thorax*", "*pa*", "*ap*"],
        "normalization": {"method": "percentile_minmax", "lower": 0.5, "upper": 99.5},
    }
    lungs = {
        "value": 1,
        "name": "Lungs",
        "color": [110, 170, 230],
        "terminology": {"category": ANATOMICAL_STRUCTURE, "type": LUNG},
    }
    return untrained_manifest(
        "demo-lung-cxr-untrained",
        "Lungs on chest X-ray (UNTRAINED demo network)",
        "DX",
        [cxr],
        [lungs],
        spatial_dims=2,
        spacing_mm=(1.0, 1.0, 1.0),
        patch_size=(128, 128, 1),
        filters=filters,
        purpose=_PURPOSE,
    )


def run_demo(out: Path, device: str = "auto") -> dict[str, Any]:
    """Generate a chest CT phantom, segment it headless, write results under ``out``."""
    from Training.synth import write_dataset
    from unetseg.host.batch import segmentFiles

    out = Path(out)
    print("UNetSeg demo: no trained model is bundled yet. This run uses a FRESHLY INITIALISED")
    print("(untrained) network: the segments are meaningless; every pipeline stage is real.")
    data = out / "data"
    case_id = write_dataset("lung-ct", data, cases=1, seed=7, size=112)[0]
    image = data / "imagesTr" / f"{case_id}.nii.gz"
    package = untrained_package(out / "model", lung_ct_manifest())
    report = segmentFiles(
        package,
        [image],
        out / f"{case_id}.seg.nrrd",
        summary=out / "summary.json",
        device=device,
    )
    truth = json.loads((data / "synth.json").read_text())["cases"][case_id]
    print(f"Input: synthetic chest CT {image} (shape KJI {truth['shape_kji']})")
    for segment in report["statistics"]["segments"]:
        print(f"  {segment['name']}: {segment['volume_ml']:.1f} mL (untrained network)")
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in report["timings_s"].items())
    print(f"Timings: {stages}")
    print(f"Wrote {report['outputs']['seg_nrrd']} and {out / 'summary.json'}")
    print("Open the .seg.nrrd in 3D Slicer together with the input image to inspect it.")
    return report


__all__ = [
    "brain_mri_manifest",
    "lung_ct_manifest",
    "lung_cxr_manifest",
    "run_demo",
    "untrained_package",
]
