"""The ``brain-tumor-mri`` recipe: its config, the PGBM mask labels of its data assembly, and its
inputs matched to the file names and DICOM series descriptions of the shared real data."""

import os
from pathlib import Path

import numpy as np
import pytest

from Testing.case_files import SHARED_DATA
from Training.assembly.brain_tumor_mri import FAR, FAR_MM, HOLE, MASK, pgbm_label
from Training.config import load_config
from Training.data import reference_labels
from Training.loop.cases import known_regions
from unetseg.engine.matching import Candidate, match_inputs

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_config(ROOT / "Training" / "configs" / "brain_tumor_mri.yaml")


def test_pgbm_mask_becomes_mask_holes_and_far_voxels():
    mask = np.zeros((3, 40, 60), dtype=np.uint8)
    mask[1, 10:20, 10:20] = 1
    mask[1, 14:16, 14:16] = 0  # a hole enclosed in-plane
    mask[1, 10:20, 17] = 0  # a cut open to the outside: not a hole
    label = pgbm_label(mask, spacing=(2.0, 2.0, 5.0))
    assert label[1, 15, 15] == HOLE and label[1, 12, 12] == MASK
    assert label[1, 15, 17] == 0  # the open cut
    edge = 19  # last mask column; columns are 2 mm apart
    assert label[1, 15, edge + int(FAR_MM / 2)] == 0  # exactly FAR_MM away
    assert label[1, 15, edge + int(FAR_MM / 2) + 1] == FAR
    assert np.count_nonzero(label == MASK) == np.count_nonzero(mask)


def test_pgbm_labels_supervise_the_core_and_what_it_implies():
    source = CONFIG.data.source("pgbm")
    label = np.array([[[0, MASK, HOLE, FAR]]], dtype=np.uint8)
    nested = reference_labels(label, source, CONFIG, "pgbm")
    known = known_regions(label, source)
    # Known [WT, TC, ET] per value: 0 WT unknown; MASK ET unknown; HOLE TC and ET unknown;
    # FAR all known (and 0).
    assert nested[0, 0].tolist() == [0, 2, 1, 0]
    assert known[:, 0, 0].T.tolist() == [[0, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]]
    assert CONFIG.data.source("brats2015").evaluated_regions() == (True, True, True)
    assert source.evaluated_regions() == (False, True, False)


def test_the_model_fits_the_inference_budget_design():
    model = CONFIG.model
    assert model["id"] == "brain-tumor-mri" and model["version"] == "1.0.0"
    assert [(i["name"], i["required"]) for i in model["inputs"]] == [
        ("t1c", True),
        ("flair", True),
        ("t1", False),
        ("t2", False),
    ]
    # A 240 x 240 x 155 mm BraTS head fits one window on the 2 mm grid.
    window_mm = np.multiply(model["patch_size"], model["spacing_mm"])
    assert np.all(window_mm >= (240, 240, 155))
    assert CONFIG.training.cpu_threads == 1 and CONFIG.training.workers == 1


def _cases():
    """(description, candidates) of every labelled-data case folder and DICOM study."""
    cases = []
    folders = [
        *sorted((SHARED_DATA / "brats2015").glob("*/")),
        *sorted((SHARED_DATA / "brats_tcga_fusion").glob("*/")),
        SHARED_DATA / "brats_met_unlabeled",
        *sorted((SHARED_DATA / "tcia_brain_tumor_progression_more").glob("*/*(NIfTI)")),
    ]
    skip = ("OTMultiClass", "brainmask", "MaskTumor")
    for folder in folders:
        names = [n for n in os.listdir(folder) if n.endswith(".nii.gz") and not n.startswith(skip)]
        cases.append(
            (folder.name, [Candidate(name=n.split(".")[0], file_name=n, item=n) for n in names])
        )
    series = ["T1post", "T1pre_reg", "FLAIR_reg", "T2_reg", "Mask_Tumor"]
    cases.append(("DICOM", [Candidate(name=s, series_description=s, item=s) for s in series]))
    return cases


def test_inputs_match_the_shared_data_names_and_series_descriptions():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not available")
    for where, candidates in _cases():
        assigned = match_inputs(candidates, CONFIG.inputs).assigned
        found = {name: item.split(".")[0].lower() for name, item in assigned.items()}
        assert set(found) >= {"t1c", "flair"}, where
        assert "t1c" in found["t1c"] or "post" in found["t1c"], (where, found)
        assert "fla" in found["flair"], (where, found)
        if len(candidates) >= 4:
            assert set(found) == {"t1c", "flair", "t1", "t2"}, where
            assert "t2" in found["t2"] and "t1" in found["t1"] and "t1c" not in found["t1"]
        assert "Mask_Tumor" not in assigned.values()
