"""``evaluate --ablate-inputs``: Dice with every input and without optional inputs, checked
against segmenting the same cases by hand with those channels left out."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from Testing.runners import TORCH_CPU
from Training.cli import main
from Training.data import load_case
from Training.evaluation import model_inputs, reference_labels, resolve_data
from Training.evaluation.ablation import ablation_variants, input_ablation
from Training.synth import write_dataset
from unetseg.engine.metrics import binary_metrics
from unetseg.engine.predict import Segmenter
from unetseg.untrained import brain_mri_manifest, lung_ct_manifest, untrained_package

pytestmark = pytest.mark.usefixtures("one_thread")


def test_variants_leave_each_optional_input_out_then_all():
    assert ablation_variants(["t1c", "flair", "t1", "t2"], ["t1", "t2"]) == [
        ["t1"],
        ["t2"],
        ["t1", "t2"],
    ]
    assert ablation_variants(["t1c", "flair", "t2"], ["t2"]) == [["t2"]]
    assert ablation_variants(["ct"], []) == []


@pytest.fixture(scope="module")
def brats(tmp_path_factory):
    """Two synthetic BraTS cases with all four sequences, and a small brain model."""
    root = tmp_path_factory.mktemp("data") / "brats"
    write_dataset("brain-mri", root, 2, seed=4, size=32, layout="brats")
    manifest = copy.deepcopy(brain_mri_manifest(filters=(4, 8)))
    manifest["spacing_mm"], manifest["patch_size"] = [2.0] * 3, [16] * 3
    package = untrained_package(tmp_path_factory.mktemp("model") / "brain", manifest, seed=3)
    return root, package


def test_ablation_matches_segmenting_without_the_inputs(brats, tmp_path):
    root, package = brats
    data = resolve_data(root, package.inputs, work_dir=tmp_path)
    segmenter = Segmenter(package, TORCH_CPU)

    result = input_ablation(segmenter, data)

    assert result["cases"] == [record.case_id for record in data.records]
    assert list(result["without"]) == ["t1", "t2", "t1+t2"]
    # Recompute the first label's Dice without T1 and T2 by hand, case by case.
    first = package.labels[0]
    by_hand = []
    for record in data.records:
        images, label, geometry = load_case(record)
        source = data.data.source(record.source)
        arrays = model_inputs(images, record, source, package.inputs)
        kept = [
            a if spec.required else None for a, spec in zip(arrays, package.inputs, strict=True)
        ]
        labels = segmenter.segment(kept, [None if a is None else geometry for a in kept]).labels
        reference = reference_labels(label, source, package, record.case_id)
        by_hand.append(
            binary_metrics(
                labels.reshape(geometry.shape) == first.value,
                reference.reshape(geometry.shape) == first.value,
                geometry.spacing,
                False,
            )["dice"]
        )
    without = result["without"]["t1+t2"]
    assert without["dice"][first.region_name] == pytest.approx(np.mean(by_hand))
    change = without["change"][first.region_name]
    assert change == pytest.approx(
        without["dice"][first.region_name] - result["full"][first.region_name]
    )


def test_evaluate_command_reports_the_ablation(brats, tmp_path, capsys):
    root, package = brats
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(package.path), "--data", str(root), "--out", str(out)]
    assert main([*argv, "--no-distances", "--overlays", "0", "--ablate-inputs"]) == 0

    printed = capsys.readouterr().out
    assert "without t1+t2: Dice change" in printed
    result = json.loads((out / "metrics.json").read_text())
    assert set(result["input_ablation"]["without"]) == {"t1", "t2", "t1+t2"}
    assert "Missing inputs" in (out / "report.md").read_text()


def test_models_without_optional_inputs_have_no_ablation(tmp_path):
    root = tmp_path / "lung"
    write_dataset("lung-ct", root, 1, seed=1, size=32)
    manifest = lung_ct_manifest(filters=(4, 8))
    manifest["spacing_mm"], manifest["patch_size"] = [4.0] * 3, [16] * 3
    package = untrained_package(tmp_path / "model", manifest)
    data = resolve_data(root, package.inputs, work_dir=tmp_path)
    assert input_ablation(Segmenter(package, TORCH_CPU), data) is None
