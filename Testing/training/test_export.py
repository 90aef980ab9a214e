"""``python -m Training export``: a tiny run trained by the real loop, exported, validated by the
engine, segmented through the headless host path (``segmentFiles`` / ``unetseg segment``) and
compared with the trained network held in memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import slicerio
import torch
import yaml

from Testing.runners import TORCH_CPU
from Training.cli import main
from Training.config import config_from_dict
from Training.loop import Trainer, prepare_data
from unetseg.engine.package import load_model_package
from unetseg.host.batch import segmentFiles
from unetseg.host.scene_io import newScene

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Trainer]:
    """The smoke config shrunk to 2 steps on 3 synthetic CTs; the run folder and its trainer."""
    raw = yaml.safe_load((ROOT / "Training" / "configs" / "smoke.yaml").read_text())
    raw["data"]["synth"].update(cases=3, size=24)
    raw["model"].update(spacing_mm=[4.0, 4.0, 4.0], patch_size=[16, 16, 16])
    raw["training"].update(epochs=1, steps_per_epoch=2, workers=0)
    raw["training"]["validation"]["loss_patches"] = 1
    config = config_from_dict(raw)
    run_dir = tmp_path_factory.mktemp("runs") / "smoke"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(config.to_yaml())
    torch.set_num_threads(1)
    trainer = Trainer(config, run_dir, *prepare_data(config, run_dir))
    trainer.fit()
    return run_dir, trainer


@pytest.mark.slow
def test_export_matches_trained_network(trained, tmp_path):
    run_dir, trainer = trained
    out = tmp_path / "model"
    assert main(["export", "--run", str(run_dir), "--out", str(out), "--version", "1.2.3"]) == 0

    package = load_model_package(out)  # schema and semantic validation
    manifest = package.manifest
    config = trainer.config.model
    assert manifest["id"] == config["id"] and manifest["version"] == "1.2.3"
    assert manifest["labels"] == config["labels"] and manifest["inputs"] == config["inputs"]
    assert manifest["network"]["deep_supervision"] is False
    training = manifest["training"]
    history = json.loads((run_dir / "metrics.json").read_text())
    assert training["metrics"]["dice_mean"] == pytest.approx(history[-1]["val_dice"])
    assert training["steps"] == 2 and training["checkpoint"] == "best"
    assert training["cases"] == {"train": 2, "val": 1, "test": 0}
    assert "lung-ct" in training["datasets"][0] and len(training["config_sha256"]) == 64

    stored = safetensors.torch.load_file(out / "weights.safetensors")
    expected = {
        k: v for k, v in trainer.network.state_dict().items() if not k.startswith("deep_heads.")
    }
    assert stored.keys() == expected.keys()
    assert all(torch.equal(stored[k], expected[k]) for k in expected)
    x = torch.randn(1, 1, 16, 32, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(package.load_network()(x), trainer.network.eval()(x))


@pytest.mark.slow
def test_exported_package_segments_and_evaluates(trained, tmp_path, capsys):
    run_dir, _ = trained
    out = tmp_path / "model"
    assert main(["export", "--run", str(run_dir), "--out", str(out)]) == 0
    labels = load_model_package(out).manifest["labels"]
    image = run_dir / "data" / "imagesTr" / "lung_0000.nii.gz"

    assert load_model_package(out).manifest["inputs"][0]["name_patterns"]
    scene = newScene()
    # No overrides: the exported input's name patterns pick "lung_0000.nii.gz".
    segmentFiles(str(out), [image], tmp_path / "a.seg.nrrd", options=TORCH_CPU, scene=scene)
    (node,) = scene.GetNodesByClass("vtkMRMLSegmentationNode")
    segmentation = node.GetSegmentation()
    names = [
        segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())
    ]
    assert names == [label["name"] for label in labels]

    from unetseg.cli import main as unetseg_main

    written = tmp_path / "b.seg.nrrd"
    assert (
        unetseg_main(
            [
                "segment",
                "--model",
                str(out),
                "--input",
                str(image),
                "--output",
                str(written),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    segments = slicerio.read_segmentation(str(written), skip_voxels=True)["segments"]
    assert [(s["name"], s["labelValue"]) for s in segments] == [
        (label["name"], label["value"]) for label in labels
    ]

    # The run folder as evaluation data: its validation case.
    evaluation = tmp_path / "eval"
    argv = ["evaluate", "--model", str(out), "--data", str(run_dir), "--out", str(evaluation)]
    assert main([*argv, "--no-distances"]) == 0
    result = json.loads((evaluation / "metrics.json").read_text())
    split = json.loads((run_dir / "split.json").read_text())
    assert result["data"]["part"] == "val"
    assert [case["case_id"] for case in result["cases"]] == split["val"]

    # An existing different package is kept unless --overwrite; a missing checkpoint is named.
    assert main(["export", "--run", str(run_dir), "--out", str(out), "--version", "9.0.0"]) == 2
    assert "already holds a different model package" in capsys.readouterr().err
    assert load_model_package(out).version == trained[1].config.model["version"]
    assert (
        main(
            [
                "export",
                "--run",
                str(run_dir),
                "--out",
                str(out),
                "--version",
                "9.0.0",
                "--overwrite",
            ]
        )
        == 0
    )
    assert load_model_package(out).version == "9.0.0"
    assert main(["export", "--run", str(tmp_path), "--out", str(tmp_path / "none")]) == 2
    assert "best.safetensors not found" in capsys.readouterr().err


def test_export_refuses_a_non_run(tmp_path, capsys):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.safetensors").write_bytes(b"\x80\x04not a checkpoint")
    assert main(["export", "--run", str(tmp_path), "--out", str(tmp_path / "model")]) == 2
    assert "export: error" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()
