"""``python -m Training evaluate``: metrics recomputed independently from the written files
(SimpleITK reads the saved predictions and the original labels), label remapping, sigmoid
regions with lesion detection, the report files, dataset layout detection and case selection.

Models are small untrained packages (their predictions are arbitrary but deterministic, which is
all that checking the bookkeeping needs)."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from PIL import Image

from Testing.case_files import SHARED_DATA
from Training.cli import main
from Training.data import DatasetError, load_case
from Training.evaluation import detect_layout, model_inputs, reference_labels, resolve_data
from Training.evaluation.overlay import OVERLAY_SIZE
from Training.synth import write_dataset
from unetseg.engine.lesions import aggregate_lesion_detection, lesion_detection
from unetseg.engine.manifest import input_specs
from unetseg.engine.metrics import binary_metrics, compute_metrics
from unetseg.untrained import (
    brain_mri_manifest,
    lung_ct_manifest,
    lung_cxr_manifest,
    untrained_package,
)

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")


def small(manifest: dict, spacing: float, patch: int = 16) -> dict:
    manifest = copy.deepcopy(manifest)
    manifest["spacing_mm"] = [spacing] * 3
    manifest["patch_size"] = [patch] * 3
    return manifest


@pytest.fixture(scope="module")
def lung(tmp_path_factory) -> Path:
    """Three synthetic chest CTs (Decathlon layout, labels 1 right and 2 left lung)."""
    root = tmp_path_factory.mktemp("lung") / "lung"
    write_dataset("lung-ct", root, 3, seed=5, size=32)
    return root


@pytest.fixture(scope="module")
def lung_model(tmp_path_factory):
    manifest = small(lung_ct_manifest(filters=(4, 8)), spacing=4.0)
    return untrained_package(tmp_path_factory.mktemp("pkg") / "lung", manifest, seed=3)


def read(path: Path) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_metrics_match_saved_predictions_and_report(lung, lung_model, tmp_path):
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(lung_model.path), "--data", str(lung), "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0

    per_case = rows(out / "metrics_per_case.csv")
    assert [row["case_id"] for row in per_case] == ["lung_0000", "lung_0001", "lung_0002"]
    for row in per_case:
        prediction, predicted = read(out / "predictions" / f"{row['case_id']}.nii.gz")
        reference, labelled = read(lung / "labelsTr" / f"{row['case_id']}.nii.gz")
        assert prediction.shape == reference.shape  # on the case's own grid
        assert np.allclose(predicted.GetOrigin(), labelled.GetOrigin(), atol=1e-4)
        assert np.allclose(predicted.GetDirection(), labelled.GetDirection(), atol=1e-6)
        expected = compute_metrics(prediction, reference, [1, 2], labelled.GetSpacing())
        for key, name in (("1", "right_lung"), ("2", "left_lung"), ("mean", "mean")):
            for metric in ("dice", "iou", "sensitivity", "precision", "hd95_mm", "assd_mm"):
                assert float(row[f"{metric}_{name}"]) == pytest.approx(expected[key][metric])

    dice = np.array([float(row["dice_mean"]) for row in per_case])
    means = {(r["label"], r["metric"]): r for r in rows(out / "metrics_mean.csv")}
    assert float(means["mean", "dice"]["mean"]) == pytest.approx(dice.mean())
    assert float(means["mean", "dice"]["min"]) == pytest.approx(dice.min())
    result = json.loads((out / "metrics.json").read_text())
    assert result["mean"]["1"]["dice"] == pytest.approx(
        np.mean([float(row["dice_right_lung"]) for row in per_case])
    )

    # Report: 3 cases -> 2 worst and 1 best overlay, valid PNGs of the documented size.
    worst, best = result["overlays"]["worst"], result["overlays"]["best"]
    order = [per_case[i]["case_id"] for i in np.argsort(dice, kind="stable")]
    assert [item["case_id"] for item in worst] == order[:2]
    assert [item["case_id"] for item in best] == order[-1:]
    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for item in worst + best:
        path = out / item["file"]
        assert path.read_bytes().startswith(PNG_SIGNATURE)
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == OVERLAY_SIZE
            assert len(np.unique(np.asarray(image.convert("L")))) > 10  # not blank
        assert f"]({item['file']})" in markdown
    # the overlays of the worst and best cases and the calibration (reliability) diagram
    assert page.count('src="data:image/png;base64,') == len(worst + best) + 1
    assert lung_model.title in markdown and "Mean metrics" in page


def test_label_map_from_data_config(lung, tmp_path, capsys):
    manifest = small(lung_ct_manifest(filters=(4, 8)), spacing=4.0)
    manifest["labels"] = manifest["labels"][:1]
    manifest["labels"][0]["name"] = "lungs"
    manifest["network"]["out_channels"] = 2
    package = untrained_package(tmp_path / "pkg", manifest)
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({"reader": "decathlon", "root": "lung_link"}))
    (tmp_path / "lung_link").symlink_to(lung)  # relative roots resolve against the YAML

    args = ["evaluate", "--model", str(package.path), "--data", str(config), "--no-distances"]
    assert main([*args, "--out", str(tmp_path / "bad")]) == 2  # label 2 > the model's 1 label
    assert "label_map" in capsys.readouterr().err

    config.write_text(
        yaml.safe_dump({"data": {"reader": "decathlon", "root": str(lung), "label_map": {2: 1}}})
    )
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    per_case = rows(tmp_path / "out" / "metrics_per_case.csv")
    assert "hd95_mm_lungs" not in per_case[0]
    for row in per_case:
        prediction, _ = read(tmp_path / "out" / "predictions" / f"{row['case_id']}.nii.gz")
        reference, image = read(lung / "labelsTr" / f"{row['case_id']}.nii.gz")
        expected = binary_metrics(prediction == 1, reference > 0, image.GetSpacing(), False)
        assert float(row["dice_lungs"]) == pytest.approx(expected["dice"])


def test_sigmoid_regions_and_lesion_detection(tmp_path):
    root = tmp_path / "brats"
    write_dataset("brain-mri", root, 2, seed=2, size=32, layout="brats")
    manifest = small(brain_mri_manifest(filters=(4, 8)), spacing=2.0)
    manifest["output"] = {"activation": "sigmoid", "threshold": 0.5}
    # Segments are the zones between the nested regions; evaluation reports the regions.
    zones = ("oedema", "non-enhancing core", "enhancing")
    for label, name, region in zip(manifest["labels"], zones, ("WT", "TC", "ET"), strict=True):
        label["name"], label["region"] = name, region
    manifest["network"]["out_channels"] = 3
    package = untrained_package(tmp_path / "pkg", manifest)
    regions = [[1, 2, 3], [1, 3], [3]]
    config = tmp_path / "data.yaml"
    config.write_text(
        yaml.safe_dump({"data": {"reader": "brats", "root": str(root), "regions": regions}})
    )
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(package.path), "--data", str(config), "--out", str(out)]
    assert main([*argv, "--no-distances", "--overlays", "1"]) == 0

    result = json.loads((out / "metrics.json").read_text())
    detections = []
    for case, row in zip(result["cases"], rows(out / "metrics_per_case.csv"), strict=True):
        case_id = case["case_id"]
        prediction, _ = read(out / "predictions" / f"{case_id}.nii.gz")
        raw, image = read(root / case_id / f"{case_id}_seg.nii.gz")
        spacing = image.GetSpacing()
        for value, (name, values) in enumerate(zip(("wt", "tc", "et"), regions, strict=True), 1):
            expected = binary_metrics(prediction >= value, np.isin(raw, values), spacing, False)
            assert float(row[f"dice_{name}"]) == pytest.approx(expected["dice"])
        detections.append(lesion_detection(prediction, raw, spacing))
        assert case["lesion_detection"]["detected"] == detections[-1]["detected"]
        assert int(row["false_positive_lesions"]) == detections[-1]["false_positives"]
    pooled = aggregate_lesion_detection(detections)
    assert result["lesion_detection"]["lesion_dice"] == pytest.approx(pooled["lesion_dice"])
    assert result["lesion_detection"]["sensitivity"] == pytest.approx(pooled["sensitivity"])
    assert "Lesion detection" in (out / "report.md").read_text()
    assert len(list((out / "overlays").glob("*.png"))) == 2


def test_layout_detection(tmp_path):
    layouts = {
        "brainmetshare": ("brain-mri", "brainmetshare", 24),
        "brats": ("brain-mri", "brats", 24),
        "decathlon": ("lung-ct", "msd", 24),
        "image_mask_pairs": ("lung-cxr", "pairs", 32),
        "ovarian": ("ovarian-ct", "ovarian", 24),
    }
    inputs = input_specs(brain_mri_manifest())
    for reader, (task, layout, size) in layouts.items():
        write_dataset(task, tmp_path / reader, 2, seed=1, size=size, layout=layout)
        assert detect_layout(tmp_path / reader, inputs).reader == reader
    (tmp_path / "empty" / "case").mkdir(parents=True)
    (tmp_path / "empty" / "case" / "notes.txt").write_text("no images")
    with pytest.raises(DatasetError, match="cannot tell the layout"):
        detect_layout(tmp_path / "empty", inputs)

    # BrainMetShare sequence names reach the brain model's inputs through its name patterns.
    data = resolve_data(tmp_path / "brainmetshare", inputs, work_dir=tmp_path)
    record = data.records[0]
    images = {name: np.full((2, 2, 2), i, np.float32) for i, name in enumerate(record.image_paths)}
    arrays = model_inputs(images, record, data.data, inputs)  # t1c, flair, t1, t2
    assert [None if a is None else int(a.flat[0]) for a in arrays] == [1, 2, 0, None]
    del images["t1_gd"]
    with pytest.raises(DatasetError, match="t1c"):
        model_inputs(images, record, data.data, inputs)


def test_parts_follow_the_training_split(lung, tmp_path):
    raw = yaml.safe_load((ROOT / "Training" / "configs" / "smoke.yaml").read_text())
    raw["data"] = {
        "reader": "decathlon",
        "root": str(lung),
        "split": {"validation": 0.34, "test": 0.33, "seed": 0},
    }
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(raw))
    inputs = input_specs(lung_ct_manifest())
    parts = {
        part: [
            r.case_id for r in resolve_data(config, inputs, part=part, work_dir=tmp_path).records
        ]
        for part in ("train", "val", "test", "all")
    }
    assert resolve_data(config, inputs, work_dir=tmp_path).part == "test"
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == sorted(parts["all"])
    assert len(parts["all"]) == 3 and all(len(parts[p]) == 1 for p in ("train", "val", "test"))
    raw["data"]["split"] = {"validation": 0.34}
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(DatasetError, match="test"):
        resolve_data(config, inputs, part="test", work_dir=tmp_path)


@pytest.mark.shared_data
def test_real_layouts_and_brats_label_map(tmp_path):
    brats, cxr = SHARED_DATA / "brats2015", SHARED_DATA / "chest_xray"
    if not brats.is_dir() or not cxr.is_dir():
        pytest.skip(f"{SHARED_DATA} with brats2015 and chest_xray not available")
    brain = untrained_package(tmp_path / "brain", brain_mri_manifest(filters=(4, 8)))
    assert detect_layout(cxr, brain.inputs).reader == "image_mask_pairs"
    data = resolve_data(brats, brain.inputs, work_dir=Path("unused"))
    assert data.data.reader == "brats" and len(data.records) == 4
    images, label, _ = load_case(data.records[0])
    arrays = model_inputs(images, data.records[0], data.data, brain.inputs)
    assert [a is not None for a in arrays] == [True, True, False, False]  # t1c, flair only
    with pytest.raises(DatasetError, match="label_map"):
        reference_labels(label, data.data, brain, "brats")  # BraTS 2015 label 4
    mapped = type(data.data)(reader="brats", root=str(brats), label_map={3: 1, 4: 3})
    reference = reference_labels(label, mapped, brain, "brats")
    assert np.array_equal(reference == 3, label == 4)
    assert np.array_equal(reference == 1, np.isin(label, [1, 3]))


def test_two_dimensional_cases(tmp_path):
    write_dataset("lung-cxr", tmp_path / "cxr", 2, seed=4, size=64)
    manifest = lung_cxr_manifest(filters=(4, 8))
    manifest["patch_size"] = [32, 32, 1]
    package = untrained_package(tmp_path / "pkg", manifest)
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(package.path), "--data", str(tmp_path / "cxr")]
    assert main([*argv, "--out", str(out), "--overlays", "1"]) == 0
    for row in rows(out / "metrics_per_case.csv"):
        prediction, _ = read(out / "predictions" / f"{row['case_id']}.nii.gz")
        mask = np.asarray(Image.open(tmp_path / "cxr" / f"{row['case_id']}-mask.png"))
        expected = compute_metrics(prediction[0], (mask >= 128).astype(np.uint8), [1], (1, 1))
        assert float(row["dice_lungs"]) == pytest.approx(expected["1"]["dice"])
        assert float(row["hd95_mm_lungs"]) == pytest.approx(expected["1"]["hd95_mm"])
    with Image.open(next((out / "overlays").glob("worst_*.png"))) as image:
        assert image.size == OVERLAY_SIZE
