"""Manifest-declared clean-up: largest connected component per label, minimum size."""

from __future__ import annotations

import numpy as np
import pytest

from Testing.runners import TORCH_CPU
from unetseg.engine.geometry import Geometry
from unetseg.engine.manifest import manifest_problems
from unetseg.engine.postprocessing import Postprocessing, keep_largest_components
from unetseg.engine.predict import Segmenter
from unetseg.untrained import brain_mri_manifest, lung_ct_manifest, untrained_package


def _two_lungs_with_specks() -> np.ndarray:
    labels = np.zeros((10, 40, 40), np.uint8)
    labels[2:8, 5:30, 3:15] = 1  # right lung
    labels[2:8, 5:30, 25:37] = 2  # left lung
    labels[0, 35:37, 5:7] = 1  # speck of label 1 far away
    labels[9, 0:3, 30:33] = 2  # speck of label 2
    labels[9, 38:40, 0:2] = 3  # another label, not listed
    return labels


def test_only_the_largest_component_of_each_listed_label_is_kept() -> None:
    labels = _two_lungs_with_specks()
    expected = labels.copy()
    expected[0, 35:37, 5:7] = 0
    expected[9, 0:3, 30:33] = 0
    result = keep_largest_components(labels, 1.0, [1, 2])
    assert result is labels
    assert np.array_equal(result, expected)  # label 3 untouched


def test_a_label_smaller_than_the_minimum_is_removed() -> None:
    labels = _two_lungs_with_specks()
    lung_voxels = 6 * 25 * 12
    keep_largest_components(labels, 2.0, [1, 2], min_volume_mm3=2.0 * lung_voxels + 1)
    assert not np.isin(labels, (1, 2)).any() and (labels == 3).sum() == 4
    labels = _two_lungs_with_specks()
    keep_largest_components(labels, 2.0, [1, 2], min_volume_mm3=2.0 * lung_voxels)
    assert (labels == 1).sum() == lung_voxels == (labels == 2).sum()


def test_two_dimensional_models_measure_areas_from_the_in_plane_spacing() -> None:
    labels = np.zeros((1, 20, 20), np.uint8)
    labels[0, 2:12, 2:12] = 1  # 100 pixels of 0.5 x 0.5 mm = 25 mm²
    geometry = Geometry(np.diag([0.5, 0.5, 40.0, 1.0]), (1, 20, 20))
    rules = Postprocessing.from_manifest({"largest_component": [1], "min_volume_mm3": 25.0})
    assert (rules.apply(labels.copy(), geometry, 2) == 1).sum() == 100
    rules = Postprocessing(largest_component=(1,), min_volume_mm3=25.5)
    assert (rules.apply(labels.copy(), geometry, 2) == 0).all()  # the 40 mm "thickness" is ignored


def test_manifest_rules() -> None:
    manifest = {**lung_ct_manifest(), "weights": {"file": "w.safetensors", "sha256": "0" * 64}}
    manifest["postprocessing"] = {"largest_component": [1, 3]}
    assert any("3 is not a label value" in p for p in manifest_problems(manifest))
    manifest["postprocessing"] = {"largest_component": [1], "min_volume_mm3": -1}
    assert manifest_problems(manifest)
    manifest["postprocessing"] = {"largest_component": [1, 2], "min_volume_mm3": 100.0}
    assert manifest_problems(manifest) == []
    manifest["labels"][0]["region"] = "lungs"
    assert any("only sigmoid models" in p for p in manifest_problems(manifest))
    brain = {**brain_mri_manifest((4, 8, 16)), "weights": manifest["weights"]}
    brain["output"] = {"activation": "sigmoid", "threshold": 0.5}
    brain["network"]["out_channels"] = len(brain["labels"])
    brain["labels"][0]["region"] = "whole tumour"
    assert manifest_problems(brain) == []


@pytest.mark.parametrize("min_volume", [None, 1e12])
def test_the_segmenter_applies_the_manifest_postprocessing(tmp_path, min_volume) -> None:
    manifest = lung_ct_manifest((4, 8, 16))
    manifest["patch_size"] = [32, 32, 32]
    image = np.random.default_rng(0).normal(-500.0, 400.0, (32, 32, 32)).astype(np.float32)
    geometry = Geometry(np.diag([2.0, 2.0, 2.0, 1.0]), (32, 32, 32))
    plain = Segmenter(untrained_package(tmp_path / "plain", manifest), TORCH_CPU)
    raw = plain.segment([image], [geometry]).labels
    section: dict[str, object] = {"largest_component": [1, 2]}
    if min_volume is not None:
        section["min_volume_mm3"] = min_volume
    manifest["postprocessing"] = section
    cleaned = Segmenter(untrained_package(tmp_path / "clean", manifest), TORCH_CPU)
    labels = cleaned.segment([image], [geometry]).labels
    expected = keep_largest_components(raw.copy(), 8.0, [1, 2], min_volume or 0.0)
    assert np.array_equal(labels, expected)
    assert not np.array_equal(labels, raw)  # the untrained network leaves islands to remove


def test_inside_body_clears_labels_in_the_air_around_the_body(tmp_path) -> None:
    manifest = lung_ct_manifest((4, 8, 16))
    manifest["patch_size"] = [32, 32, 32]
    _, j, i = np.indices((32, 32, 32))
    body = (j - 15.5) ** 2 + (i - 15.5) ** 2 < 10.0**2  # a cylinder along K
    rng = np.random.default_rng(1)
    image = np.where(body, rng.normal(-200.0, 80.0, body.shape), -1000.0).astype(np.float32)
    geometry = Geometry(np.diag([2.0, 2.0, 2.0, 1.0]), (32, 32, 32))
    raw = Segmenter(untrained_package(tmp_path / "plain", manifest), TORCH_CPU)
    labels = raw.segment([image], [geometry]).labels
    assert labels[~body].any()  # the untrained network labels some outside air
    manifest["postprocessing"] = {"inside_body": True}
    inside = Segmenter(untrained_package(tmp_path / "inside", manifest), TORCH_CPU)
    cleaned = inside.segment([image], [geometry]).labels
    assert not cleaned[~body].any()
    assert np.all((cleaned == labels) | (cleaned == 0))  # only clears
    assert np.mean(cleaned[body] == labels[body]) > 0.98  # the body mask is the cylinder
