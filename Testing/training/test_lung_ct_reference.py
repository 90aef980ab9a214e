"""The lung-ct reference set built from TotalSegmentator's example CTs (model-made lobes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from Testing.case_files import SHARED_DATA
from Training.cli import main
from Training.reference.totalsegmentator_lungs import merge_lobes


def test_lobes_merge_per_side_and_everything_else_is_background() -> None:
    total = np.arange(20, dtype=np.uint8).reshape(4, 5)
    merged = merge_lobes(total)
    assert merged.dtype == np.uint8
    assert np.flatnonzero(merged == 1).tolist() == [12, 13, 14]
    assert np.flatnonzero(merged == 2).tolist() == [10, 11]
    assert np.count_nonzero(merged) == 5


@pytest.mark.shared_data
def test_reference_cases_match_the_source_files(tmp_path, capsys) -> None:
    source = SHARED_DATA / "ct_totalsegmentator"
    if not source.exists():
        pytest.skip(f"real data not found: {source}")
    out = tmp_path / "ref"
    assert main(["build-lung-ct-reference", "--shared", str(SHARED_DATA), "--out", str(out)]) == 0
    assert "wrote 2 cases" in capsys.readouterr().out
    dataset = json.loads((out / "dataset.json").read_text())
    assert [Path(c["label"]).name for c in dataset["training"]] == [
        "ts_basal_slab.nii.gz",
        "ts_abdomen_dicom.nii.gz",
    ]
    # Basal slab: same grid and voxels as TotalSegmentator's files, lobes merged per side.
    image = sitk.ReadImage(str(out / "imagesTr" / "ts_basal_slab.nii.gz"))
    original = sitk.ReadImage(str(source / "example_ct_sm.nii.gz"))
    assert image.GetSize() == original.GetSize()
    assert np.allclose(image.GetOrigin(), original.GetOrigin())
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(original))
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "ts_basal_slab.nii.gz")))
    lobes = sitk.GetArrayFromImage(sitk.ReadImage(str(source / "example_seg.nii.gz")))
    assert np.array_equal(label == 1, np.isin(lobes, (12, 13, 14)))
    assert np.array_equal(label == 2, np.isin(lobes, (10, 11)))
    # TotalSegmentator's left lobes lie at the patient's left: -x in RAS, +x in SimpleITK's LPS.
    left_i = np.argwhere(label == 2)[:, 2].mean()
    right_i = np.argwhere(label == 1)[:, 2].mean()
    assert np.sign(left_i - right_i) == np.sign(image.GetDirection()[0])
    # DICOM slab: the series' grid in HU, and no lung in it.
    dicom = sitk.ReadImage(str(out / "imagesTr" / "ts_abdomen_dicom.nii.gz"))
    assert dicom.GetSize() == (512, 512, 20)
    assert -1100 < sitk.GetArrayFromImage(dicom).min() < -900
    dicom_label = sitk.ReadImage(str(out / "labelsTr" / "ts_abdomen_dicom.nii.gz"))
    assert not sitk.GetArrayFromImage(dicom_label).any()
    assert dataset["volumes_ml"]["ts_basal_slab"]["right lung"] > 50.0
