"""A run without optional inputs reports the effect the model's evaluation measured for exactly
those inputs (manifest ``missing_input_effects``), and the manifest refuses effects of required
inputs."""

from __future__ import annotations

import json

from Testing.command_line import run_cli, segment_args
from unetseg.engine.manifest import manifest_problems
from unetseg.untrained import brain_mri_manifest, untrained_package

EFFECT = {
    "missing": ["t1", "t2"],
    "dice_change": {"whole tumour": -0.031, "tumour core": -0.12},
    "cases": 2,
    "data": "test split",
}


def _manifest(effects):
    manifest = brain_mri_manifest((4, 8, 16), patch_size=(32, 32, 32))
    manifest["spacing_mm"] = [2.0, 2.0, 2.0]
    manifest["missing_input_effects"] = effects
    return manifest


def test_the_measured_effect_of_the_missing_inputs_is_reported(brats_files, tmp_path, capsys):
    model = untrained_package(tmp_path / "model", _manifest([EFFECT]))
    assert model.missing_input_effect(["t2", "t1"]) == EFFECT
    assert model.missing_input_effect(["t2"]) is None and model.missing_input_effect([]) is None
    given = [brats_files["t1c"], brats_files["flair"]]
    summary = tmp_path / "s.json"
    args = segment_args(model.path, given, tmp_path / "o.seg.nrrd", "--summary", summary)

    code, out, err = run_cli(capsys, *args, "--backend", "torch")

    assert code == 0, err
    report = json.loads(summary.read_text())
    assert report["missing_inputs"] == ["t1", "t2"]
    assert report["missing_input_effect"] == EFFECT
    assert "without t1+t2 this model's Dice changed by whole tumour -0.031" in out

    all_four = segment_args(model.path, brats_files.values(), tmp_path / "all.seg.nrrd")
    code, out, err = run_cli(capsys, *all_four, "--summary", tmp_path / "all.json")
    assert code == 0, err
    assert json.loads((tmp_path / "all.json").read_text())["missing_input_effect"] is None
    assert "changed by" not in out


def test_effects_must_name_optional_inputs():
    weights = {"file": "weights.safetensors", "sha256": "0" * 64}
    good, bad = _manifest([EFFECT]), _manifest([dict(EFFECT, missing=["t1c"])])
    good["weights"] = bad["weights"] = weights
    problems = manifest_problems(bad)
    assert any("missing_input_effects[0].missing" in p and "optional" in p for p in problems)
    assert manifest_problems(good) == []
