"""Synthetic phantoms: exact labels, patient-side lung labels, randomised geometry, and datasets
written by ``python -m Training synth`` that the matching readers load back unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from Training.cli import main
from Training.data import (
    BRATS_REGIONS,
    load_case,
    read_brainmetshare,
    read_brats,
    read_decathlon,
    read_image_mask_pairs,
    read_ovarian,
)
from Training.data.labels import labels_to_regions
from Training.synth import (
    brain_mri_case,
    lung_ct_case,
    lung_cxr_case,
    ovarian_ct_case,
    random_geometry,
)
from Training.synth.writers import save_nifti

ROOT = Path(__file__).resolve().parents[2]
FULL = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity


def world_points(geometry, mask: np.ndarray) -> np.ndarray:
    """RAS positions (n, 3) of the voxels of a (K, J, I) mask."""
    k, j, i = np.nonzero(mask)
    ijk1 = np.stack([i, j, k, np.ones_like(i)]).astype(np.float64)
    return (geometry.ijk_to_ras @ ijk1)[:3].T


def world_to_index(geometry, point) -> tuple[int, int, int]:
    ijk = np.linalg.solve(geometry.ijk_to_ras, np.append(point, 1.0))[:3]
    i, j, k = np.rint(ijk).astype(int)
    return int(k), int(j), int(i)


@pytest.mark.parametrize("seed", [3, 11, 17])
def test_brain_lesions_match_what_the_generator_reports(seed):
    case = brain_mri_case(np.random.default_rng(seed), size=64, lesions=4)
    components, count = ndimage.label(case.label, FULL)
    assert count == len(case.objects) >= 1
    voxel_volume = float(np.prod(case.geometry.spacing))
    diagonal = float(np.linalg.norm(case.geometry.spacing))
    for lesion in case.objects:
        # The lesion centre is a voxel centre inside its own component of the reported size.
        index = world_to_index(case.geometry, lesion.center_ras)
        component = components == components[index]
        assert components[index] > 0
        assert component.sum() == lesion.voxels
        scale = case.meta["scale"]
        assert 2.0 * 0.85 * scale <= lesion.diameter_mm <= 40.0 * 1.15 * scale
        if lesion.diameter_mm >= 3.0 * case.geometry.spacing.max():
            # Analytic volume and centre against the voxelised lesion.
            assert lesion.voxels * voxel_volume == pytest.approx(lesion.volume_mm3, rel=0.15)
            centroid = world_points(case.geometry, component).mean(axis=0)
            assert np.linalg.norm(centroid - lesion.center_ras) < diagonal
    assert set(case.images) == {"t1_pre", "t1_gd", "flair", "bravo"}
    lesion_mask = case.label == 1
    # Enhancing lesions are brighter than the brain on T1-Gd but not on pre-contrast T1.
    brain = (case.images["t1_pre"] > 0.3 * case.images["t1_pre"].max()) & ~lesion_mask
    for image in case.images.values():
        assert image.shape == case.label.shape and image.dtype == np.float32
    rim = ndimage.binary_erosion(lesion_mask) ^ lesion_mask
    if rim.sum() > 20:
        gd, pre = case.images["t1_gd"], case.images["t1_pre"]
        assert gd[rim].mean() / gd[brain].mean() > pre[rim].mean() / pre[brain].mean()


@pytest.mark.parametrize("et_label", [3, 4])
def test_brats_layout_labels_nest_and_images_are_skull_stripped(et_label):
    case = brain_mri_case(
        np.random.default_rng(5), size=64, layout="brats", et_label=et_label, lesions=3
    )
    assert set(np.unique(case.label)) <= {0, 1, 2, et_label}
    assert (case.label == et_label).any()
    regions = {"WT": (1, 2, et_label), "TC": (1, et_label), "ET": (et_label,)}
    if et_label == 4:
        assert regions["ET"] == BRATS_REGIONS["ET"]
    wt, tc, et = labels_to_regions(case.label, regions).astype(bool)
    assert np.all(wt >= tc) and np.all(tc >= et) and et.any()
    assert set(case.images) == {"flair", "t1", "t1c", "t2"}
    # Skull-stripped: the same (brain) support in every sequence, zero at the grid corners.
    support = case.images["t1"] > 0
    for image in case.images.values():
        assert image[0, 0, 0] == 0 and image[-1, -1, -1] == 0
        assert np.array_equal(image > 0, support)
    # FLAIR: oedema brighter than normal brain.
    flair = case.images["flair"]
    edema = case.label == 2
    normal = support & (case.label == 0)
    assert flair[edema].mean() > flair[normal].mean()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_right_lung_is_on_the_patients_right(tmp_path, seed):
    case = lung_ct_case(np.random.default_rng(seed), size=48)
    # Independent check through nibabel: reorient the written label to RAS+ and compare sides.
    path = tmp_path / "label.nii.gz"
    save_nifti(path, case.label, case.geometry, np.uint8)
    canonical = nib.as_closest_canonical(nib.load(path))
    assert nib.aff2axcodes(canonical.affine) == ("R", "A", "S")
    data = np.asarray(canonical.dataobj)  # (I, J, K) with I increasing towards patient right
    right_i = np.nonzero(data == 1)[0].mean()
    left_i = np.nonzero(data == 2)[0].mean()
    assert right_i > left_i
    right = world_points(case.geometry, case.label == 1).mean(axis=0)
    left = world_points(case.geometry, case.label == 2).mean(axis=0)
    assert right[0] > left[0]  # RAS: +x is the patient's right
    assert {o.kind: o.label for o in case.objects} == {"right_lung": 1, "left_lung": 2}
    ct = case.images["ct"]
    assert np.median(ct[case.label > 0]) < -700  # aerated lung
    assert ct.min() >= -1024


def test_geometry_is_random_per_case_and_reproducible():
    axcodes, spacings, oblique = set(), set(), 0
    for seed in range(8):
        geometry = random_geometry(np.random.default_rng(seed), 32)
        axcodes.add(nib.aff2axcodes(geometry.ijk_to_ras))
        spacings.add(tuple(np.round(geometry.spacing, 3)))
        direction = geometry.direction
        oblique += bool(np.abs(direction).max(axis=0).min() < 0.9999)
        assert 0.7 <= geometry.spacing[0] <= 1.5 and 1.0 <= geometry.spacing[2] <= 5.0
    assert len(axcodes) >= 3 and len(spacings) == 8 and oblique >= 6

    first = ovarian_ct_case(np.random.default_rng(11), size=40)
    again = ovarian_ct_case(np.random.default_rng(11), size=40)
    assert np.array_equal(first.label, again.label)
    assert np.array_equal(first.images["ct"], again.images["ct"])
    assert np.array_equal(first.geometry.ijk_to_ras, again.geometry.ijk_to_ras)
    canonical = lung_ct_case(np.random.default_rng(3), size=32, canonical=True)
    assert np.allclose(canonical.geometry.direction, np.eye(3))


def test_ovarian_mass_and_deposits_are_separate_exact_objects():
    case = ovarian_ct_case(np.random.default_rng(9), size=80, spacing=(3, 3, 3), deposits=6)
    mass = [o for o in case.objects if o.label == 1]
    deposits = [o for o in case.objects if o.label == 2]
    assert len(mass) == 1 and mass[0].kind == "ovarian_mass"
    assert 1 <= len(deposits) <= 6
    _, mass_parts = ndimage.label(case.label == 1, FULL)
    deposit_components, deposit_parts = ndimage.label(case.label == 2, FULL)
    assert mass_parts == 1 and deposit_parts == len(deposits)
    assert (case.label == 1).sum() == mass[0].voxels
    assert sorted(np.bincount(deposit_components.ravel())[1:]) == sorted(d.voxels for d in deposits)
    # No deposit touches the mass.
    grown = ndimage.binary_dilation(case.label == 1, FULL)
    assert not (grown & (case.label == 2)).any()
    ct = case.images["ct"]
    assert -30 < np.median(ct[case.label == 1]) < 80  # cystic-solid
    large = [d for d in deposits if d.diameter_mm > 3.0 * case.geometry.spacing.max()]
    centres = [ct[world_to_index(case.geometry, d.center_ras)] for d in large]
    assert large and 20 < np.median(centres) < 90  # soft-tissue nodules
    assert ct.max() > 400  # bone is present


def test_chest_xray_projection_and_lung_fields():
    case = lung_cxr_case(np.random.default_rng(2), size=128)
    image, mask = case.images["image"], case.label
    assert image.shape == mask.shape == (128, 128)
    assert case.geometry.shape == (1, 128, 128)
    assert image.min() >= 0 and image.max() <= 255
    assert set(np.unique(mask)) == {0, 1}
    components, count = ndimage.label(mask)
    assert count == 2
    sizes = np.bincount(components.ravel())[1:]
    columns = [np.nonzero(components == n + 1)[1].mean() for n in range(count)]
    # Radiograph display: the patient's right lung (larger, the heart is on the left) is on
    # the left of the image.
    assert columns[int(np.argmax(sizes))] < columns[int(np.argmin(sizes))]
    body = image > 0.2 * image.max()
    assert image[mask == 1].mean() < image[body & (mask == 0)].mean()  # lungs look dark


GENERATED = [
    ("brain-mri", "brainmetshare", lambda root: read_brainmetshare(root)),
    ("brain-mri", "brats", lambda root: read_brats(root)),
    ("lung-ct", "msd", lambda root: read_decathlon(root, include_test=True)),
    ("lung-cxr", "pairs", lambda root: read_image_mask_pairs(root, require_label=False)),
    ("ovarian-ct", "ovarian", lambda root: read_ovarian(root, require_label=False)),
]
GENERATORS = {
    "brain-mri": brain_mri_case,
    "lung-ct": lung_ct_case,
    "lung-cxr": lung_cxr_case,
    "ovarian-ct": ovarian_ct_case,
}


@pytest.mark.parametrize(("task", "layout", "reader"), GENERATED, ids=[g[1] for g in GENERATED])
def test_written_dataset_reads_back_exactly(tmp_path, task, layout, reader):
    size = 48 if task == "lung-cxr" else 32
    args = ["synth", "--task", task, "--out", str(tmp_path), "--cases", "2", "--seed", "7"]
    assert main([*args, "--size", str(size), "--layout", layout, "--unlabelled", "1"]) == 0
    summary = json.loads((tmp_path / "synth.json").read_text())
    records = {r.case_id: r for r in reader(tmp_path)}
    assert sorted(records) == sorted(summary["cases"])
    for n, (case_id, info) in enumerate(summary["cases"].items()):
        record = records[case_id]
        assert record.has_label == info["labelled"] == (n < 2)
        images, label, geometry = load_case(record)
        options = {"layout": layout} if task == "brain-mri" else {}
        expected = GENERATORS[task](np.random.default_rng([7, n]), size, **options)
        assert set(images) == set(expected.images)
        for name, image in images.items():  # stored as integers
            assert np.abs(image - expected.images[name]).max() <= 0.5 + 1e-3
        if task != "lung-cxr":
            assert np.allclose(geometry.ijk_to_ras, expected.geometry.ijk_to_ras, atol=1e-4)
        if not record.has_label:
            assert label is None
            continue
        assert np.array_equal(label, expected.label)
        for value in {o["label"] for o in info["objects"]}:
            reported = sum(o["voxels"] for o in info["objects"] if o["label"] == value)
            counted = int(np.count_nonzero(label == value))
            if task == "brain-mri" and layout == "brats":
                counted = int(np.count_nonzero(np.isin(label, (1, 3))))  # rim + core
            assert counted == reported


def test_module_entry_point_writes_a_dataset(tmp_path):
    command = [sys.executable, "-m", "Training", "synth", "--task", "lung-cxr"]
    command += ["--out", str(tmp_path), "--cases", "1", "--size", "32", "--image-format", "jpg"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cxr_0000.jpg").is_file() and (tmp_path / "cxr_0000-mask.png").is_file()


def test_synth_rejects_a_layout_of_another_task(tmp_path, capsys):
    assert main(["synth", "--task", "lung-ct", "--out", str(tmp_path), "--layout", "brats"]) == 2
    assert "layout for lung-ct must be one of" in capsys.readouterr().err
