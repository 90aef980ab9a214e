"""The plain-Python parts of the Slicer panel, and the modules' self-test run on slicer-core.

``modelCatalog``, ``seriesMatching``, ``sampleModels`` and ``dependencies`` import no Qt;
``selfTest.runSampleCase`` needs only MRML, so the exact code path of the modules' Slicer
self-tests (background job, segments, statistics, re-run) runs here on a real scene.
"""

from __future__ import annotations

import copy
import json
import time
import unittest
from pathlib import Path

import numpy as np
import pytest

from unetseg.engine.manifest import InputSpec, manifest_problems
from unetseg.engine.package import ModelPackage, load_model_package
from unetseg.engine.registry import list_models
from unetseg.gui.dependencies import missingPackages
from unetseg.gui.modelCatalog import (
    BRAIN_MRI_MODELS,
    LUNG_MODELS,
    OVARIAN_CT_MODELS,
    latestVersions,
    modelSummaryHtml,
)
from unetseg.gui.sampleModels import (
    BRAIN_METASTASES_SAMPLE,
    CHEST_XRAY_SAMPLE,
    LUNG_CT_SAMPLE,
    OVARIAN_CT_SAMPLE,
)
from unetseg.gui.selfTest import runSampleCase
from unetseg.gui.seriesMatching import SeriesInfo, matchStudySeries
from unetseg.host.logic import SegmentationLogic
from unetseg.host.scene_io import newScene

FILTERS = {"brain": BRAIN_MRI_MODELS, "lung": LUNG_MODELS, "ovarian": OVARIAN_CT_MODELS}
SAMPLES = {
    "brain": [BRAIN_METASTASES_SAMPLE],
    "lung": [LUNG_CT_SAMPLE, CHEST_XRAY_SAMPLE],
    "ovarian": [OVARIAN_CT_SAMPLE],
}
ALL_SAMPLES = [sample for samples in SAMPLES.values() for sample in samples]


def described(manifest):
    """The package ``manifest`` describes, not written (nothing here reads its folder)."""
    return ModelPackage(path=Path(manifest["id"]), manifest=manifest)


@pytest.mark.parametrize("sample", ALL_SAMPLES, ids=lambda s: s.id)
def test_each_sample_is_listed_by_its_module_only(sample):
    module = next(name for name, samples in SAMPLES.items() if sample in samples)
    manifest = sample.manifest()
    assert manifest_problems(manifest) == []
    listed = {name for name, rule in FILTERS.items() if rule.accepts(described(manifest))}
    assert listed == {module}


def test_filter_needs_both_modality_and_anatomy():
    brainOnCt = copy.deepcopy(BRAIN_METASTASES_SAMPLE.manifest())
    brainOnCt["modality"] = "CT"
    assert not BRAIN_MRI_MODELS.accepts(described(brainOnCt))
    uncoded = copy.deepcopy(OVARIAN_CT_SAMPLE.manifest())
    for label in uncoded["labels"]:
        label.pop("terminology")
    assert not any(rule.accepts(described(uncoded)) for rule in FILTERS.values())
    # The anatomy may be the segmented structure itself (type) or where a finding lies.
    lungAsRegion = copy.deepcopy(LUNG_CT_SAMPLE.manifest())
    for label in lungAsRegion["labels"]:
        terminology = label["terminology"]
        terminology["anatomic_region"] = terminology.pop("type")
        terminology["type"] = {"scheme": "SCT", "value": "27925004", "meaning": "Nodule"}
    assert LUNG_MODELS.accepts(described(lungAsRegion))
    assert "MR" in BRAIN_MRI_MODELS.describe() and "12738006" in BRAIN_MRI_MODELS.describe()


def test_highest_version_of_each_listed_model_is_offered(tmp_path):
    """Through the real registry: two versions of one id in two folders, plus another model."""
    old = OVARIAN_CT_SAMPLE.write(tmp_path / "a" / "ovarian")
    LUNG_CT_SAMPLE.write(tmp_path / "a" / "lung")
    newer = copy.deepcopy(old.manifest)
    newer["version"] = "0.10.0"
    newFolder = tmp_path / "b" / "ovarian"
    newFolder.mkdir(parents=True)
    (newFolder / "model.json").write_text(json.dumps(newer))
    (newFolder / "weights.safetensors").write_bytes(old.weights_path.read_bytes())
    packages = list_models([tmp_path / "a", tmp_path / "b"])
    assert len(packages) == 3
    offered = latestVersions(OVARIAN_CT_MODELS.select(packages))
    assert [(p.id, p.version) for p in offered] == [(OVARIAN_CT_SAMPLE.id, "0.10.0")]
    assert [p.id for p in latestVersions(LUNG_MODELS.select(packages))] == [LUNG_CT_SAMPLE.id]


def test_model_summary_is_escaped_and_complete():
    manifest = BRAIN_METASTASES_SAMPLE.manifest()
    manifest["title"] = "Mets <b>v2</b>"
    manifest["requirements"] = {"cpu_seconds_estimate": 90, "ram_gb": 4}
    manifest["citation"] = "Doe & Roe 2025"
    text = modelSummaryHtml(described(manifest))
    assert "Mets &lt;b&gt;v2&lt;/b&gt;" in text and "<b>v2</b>" not in text
    assert "Doe &amp; Roe 2025" in text
    for expected in ("0.0.1", "Apache-2.0", "Software testing only", "T1 (optional)", "4 GB RAM"):
        assert expected in text
    cxr = described(CHEST_XRAY_SAMPLE.manifest())
    assert "3D" in text and "2D (one slice)" in modelSummaryHtml(cxr)


def inputSpec(name, title, required, namePatterns=(), seriesPatterns=()):
    return InputSpec(
        name, title, required, tuple(namePatterns), tuple(seriesPatterns), {"method": "none"}
    )


BRAIN_INPUTS = (
    inputSpec("t1", "T1", False, seriesPatterns=["*t1*"]),
    inputSpec("t1c", "T1 post-contrast", True, seriesPatterns=["*t1*post*", "*t1*gd*"]),
    inputSpec("flair", "FLAIR", True, seriesPatterns=["*flair*"]),
)


def test_study_series_feed_the_inputs_by_description():
    series = [
        SeriesInfo("1.1", "Localizer", "MR", "1"),
        SeriesInfo("1.2", "AX T1", "MR", "2"),
        SeriesInfo("1.3", "AX FLAIR", "MR", "3"),
        SeriesInfo("1.4", "AX T1 POST GD", "MR", "4"),
        SeriesInfo("1.5", "AX T1 POST GD", "SEG", "100"),
        SeriesInfo("1.6", "T1 post (RT plan CT)", "CT", "5"),
    ]
    match = matchStudySeries(series, BRAIN_INPUTS, "MR")
    assert {name: info.uid for name, info in match.assigned.items()} == {
        "t1": "1.2",
        "t1c": "1.4",
        "flair": "1.3",
    }
    assert match.missing_required == [] and match.ambiguous == {}
    assert series[3].label() == "4: AX T1 POST GD"


def test_study_without_a_required_series_reports_it():
    match = matchStudySeries([SeriesInfo("2.1", "AX T1 POST", "MR")], BRAIN_INPUTS, "MR")
    assert match.missing_required == ["flair"]
    assert match.assigned["t1c"].uid == "2.1"


def test_radiograph_models_read_cr_and_dx_series():
    inputs = [inputSpec("cxr", "Chest X-ray", True, namePatterns=["*"])]
    for modality in ("CR", "DX"):
        series = [SeriesInfo("3.1", "PA chest", modality), SeriesInfo("3.2", "PA chest", "PR")]
        match = matchStudySeries(series, inputs, "DX")
        assert match.assigned["cxr"].uid == "3.1"


def test_missing_packages_are_found_without_importing():
    assert missingPackages(("numpy", "unetseg_no_such_package")) == ["unetseg_no_such_package"]


@pytest.mark.parametrize("sample", ALL_SAMPLES, ids=lambda s: s.id)
def test_sample_package_and_phantom(sample, tmp_path):
    package = sample.write(tmp_path / sample.id)
    assert isinstance(package, ModelPackage)
    assert load_model_package(package.path).manifest == package.manifest
    array, geometry = sample.phantom(seed=3)
    assert array.dtype == np.float32 and array.shape == geometry.shape
    assert (geometry.shape[0] == 1) == (sample.spatialDims == 2)
    tolerance = 0.25 * abs(sample.foreground - sample.background)  # 5 noise sigmas
    centre = tuple(n // 2 for n in array.shape)
    assert abs(array[centre] - sample.foreground) < tolerance
    assert abs(array[0, 0, 0] - sample.background) < tolerance


@pytest.mark.parametrize(
    ("sample", "omit"),
    [
        (BRAIN_METASTASES_SAMPLE, ("t2",)),
        (LUNG_CT_SAMPLE, ()),
        (CHEST_XRAY_SAMPLE, ()),
        (OVARIAN_CT_SAMPLE, ()),
    ],
    ids=lambda v: v.id if hasattr(v, "id") else ("without-" + "-".join(v) if v else "all-inputs"),
)
def test_module_self_test_runs_on_slicer_core(sample, omit, tmp_path):
    """The modules' Slicer self-test, on slicer-core with the real host logic."""
    scene = newScene()
    logic = SegmentationLogic(scene)
    module = next(name for name, samples in SAMPLES.items() if sample in samples)
    result = runSampleCase(
        unittest.TestCase(),
        scene,
        logic,
        sample,
        str(tmp_path),
        lambda: time.sleep(0.01),
        omit,
        modelFilter=FILTERS[module],
    )
    assert result.segmentationNode.GetScene() is scene
    assert result.missingInputs == list(omit)
