"""``python -m unetseg demo``: the whole headless pipeline on a generated chest CT.

No trained model is bundled yet, so the demo builds a model package around a *freshly
initialised* (untrained) network and says so: the segments it writes are meaningless, but every
stage is the real one (synthetic NIfTI file -> MRML volume node -> preprocessing -> sliding-window
inference -> segmentation node -> ``.seg.nrrd`` + JSON summary).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from unetseg.engine.package import ModelPackage, save_model_package

LUNG_TERMINOLOGY_CATEGORY = {
    "scheme": "SCT",
    "value": "123037004",
    "meaning": "Anatomical Structure",
}


def lung_ct_manifest(filters: tuple[int, ...] = (8, 16, 32, 64)) -> dict[str, Any]:
    """Manifest of a left/right lung CT model (network config for an untrained demo/test net)."""

    def lung(value: int, side: str, code: str, color: list[int]) -> dict[str, Any]:
        return {
            "value": value,
            "name": f"{side} lung",
            "color": color,
            "terminology": {
                "category": LUNG_TERMINOLOGY_CATEGORY,
                "type": {"scheme": "SCT", "value": "39607008", "meaning": "Lung"},
                "type_modifier": {"scheme": "SCT", "value": code, "meaning": side},
            },
        }

    return {
        "schema_version": 1,
        "id": "demo-lung-ct-untrained",
        "title": "Lung CT (UNTRAINED demo network)",
        "version": "0.0.1",
        "license": "Apache-2.0",
        "description": "Freshly initialised network for demonstrating the pipeline only.",
        "intended_use": "Pipeline demonstration and tests. Not a model: its output is meaningless.",
        "modality": "CT",
        "spatial_dims": 3,
        "inputs": [
            {
                "name": "ct",
                "title": "Chest CT",
                "required": True,
                "name_patterns": ["*ct*", "*chest*", "*lung*"],
                "series_description_patterns": ["*chest*", "*thorax*", "*lung*", "*ct*"],
                "normalization": {"method": "ct_window", "center": -600.0, "width": 1500.0},
            }
        ],
        "spacing_mm": [2.0, 2.0, 2.0],
        "patch_size": [64, 64, 64],
        "overlap": 0.5,
        "output": {"activation": "softmax"},
        "labels": [
            lung(1, "Right", "24028007", [200, 100, 80]),
            lung(2, "Left", "7771000", [80, 150, 220]),
        ],
        "network": {
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 3,
            "filters": list(filters),
            "norm": "instance",
            "dropout": 0.0,
            "residual": True,
            "squeeze_excitation": False,
            "deep_supervision": False,
            "upsample": "transpose",
            "kernel_size": 3,
        },
    }


def untrained_package(folder: Path, manifest: dict[str, Any], seed: int = 0) -> ModelPackage:
    """Save ``manifest`` with a freshly initialised network (demo and tests, never shipped)."""
    from unetseg.engine.network import UNet

    torch.manual_seed(seed)
    network = UNet(**manifest["network"])
    return save_model_package(folder, manifest, network, overwrite=True)


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


__all__ = ["lung_ct_manifest", "run_demo", "untrained_package"]
