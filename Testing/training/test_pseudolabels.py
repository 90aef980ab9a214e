"""Classical lung labels (``Training.pseudolabels``): Dice against the exact labels of chest
phantoms at real anatomical size, the patient's sides from the geometry (oblique, permuted and
LPS-stored grids), lungs touching at the junction, bowel gas, the two commands, and the real CTs
of ``../shared/data`` (skipped when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from Testing.case_files import dice, shared_path
from Training.cli import main
from Training.data import load_case, read_decathlon
from Training.data.volumes import read_image
from Training.pseudolabels import LEFT_LUNG, RIGHT_LUNG, label_lungs
from Training.pseudolabels.lung_ct import inside_air
from Training.pseudolabels.lung_ct_data import FOLD_HU, PATIENT_REGEX, vary_outside_air
from Training.reference.totalsegmentator_lungs import merge_lobes
from Training.synth import SynthCase, lung_ct_case
from Training.synth.chest import LUNGS
from Training.synth.writers import save_nifti
from unetseg.engine.geometry import Geometry

ROOT = Path(__file__).resolve().parents[2]
FIELD_MM = 400.0  # phantom field of view: the anatomy keeps its real size


def phantom(
    seed: int, spacing: tuple[float, float, float] = (3.5, 3.5, 4.0), canonical: bool = False
) -> SynthCase:
    """Chest phantom at real size; a random (permuted, flipped, oblique) grid by default."""
    size = tuple(int(np.ceil(FIELD_MM / s)) for s in spacing)
    return lung_ct_case(np.random.default_rng(seed), size, spacing, canonical=canonical)


def ras_points(geometry: Geometry) -> np.ndarray:
    """RAS position (3, K, J, I) of every voxel centre."""
    k, j, i = np.indices(geometry.shape, dtype=np.float64)
    linear, offset = geometry.ijk_to_ras[:3, :3], geometry.ijk_to_ras[:3, 3]
    return np.tensordot(linear, np.stack([i, j, k]), axes=1) + offset[:, None, None, None]


def centroid_x(mask: np.ndarray, geometry: Geometry) -> float:
    """RAS x (mm, + = patient's right) of the centroid of a (K, J, I) mask."""
    k, j, i = (float(np.mean(axis)) for axis in np.nonzero(mask))
    return float((geometry.ijk_to_ras @ np.array([i, j, k, 1.0]))[0])


def nominal(case: SynthCase) -> np.ndarray:
    """Phantom anatomy coordinates (3, K, J, I) in mm (real size: scale 1)."""
    assert case.meta["scale"] == 1.0
    centre = np.asarray(case.objects[0].center_ras) - np.asarray(LUNGS[RIGHT_LUNG][0])
    return ras_points(case.geometry) - centre[:, None, None, None]


@pytest.mark.parametrize(
    ("seed", "spacing"), [(0, (3.5, 3.5, 4.0)), (1, (2.5, 2.5, 5.0)), (2, (4.0, 4.0, 2.5))]
)
def test_phantom_lungs_match_the_exact_labels(seed, spacing):
    case = phantom(seed, spacing)
    result = label_lungs(case.images["ct"], case.geometry)
    assert result.trachea_found and not result.split
    for value in (RIGHT_LUNG, LEFT_LUNG):
        assert dice(result.label == value, case.label == value) > 0.97
    assert result.airway.any() and np.mean(result.label[result.airway] > 0) < 0.2
    voxel_ml = float(np.prod(case.geometry.spacing)) / 1000.0
    expected = {v: float(np.sum(case.label == v)) * voxel_ml for v in (RIGHT_LUNG, LEFT_LUNG)}
    assert result.volumes_ml == pytest.approx(expected, rel=0.05)


def test_sides_follow_the_geometry_not_the_array_layout():
    case = phantom(3, canonical=True)
    hu, geometry = case.images["ct"], case.geometry
    _, j, i = geometry.shape
    # The same voxels stored LPS-style: I towards the patient's left, J posterior.
    flip = np.array([[-1.0, 0, 0, i - 1], [0, -1.0, 0, j - 1], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    lps = Geometry(geometry.ijk_to_ras @ flip, geometry.shape)
    stored = label_lungs(np.ascontiguousarray(hu[:, ::-1, ::-1]), lps)
    original = label_lungs(hu, geometry)
    assert np.array_equal(stored.label[:, ::-1, ::-1], original.label)
    # RAS +x points to the patient's right: the right lung has the larger x in both layouts.
    assert centroid_x(stored.label == RIGHT_LUNG, lps) > centroid_x(stored.label == LEFT_LUNG, lps)
    for value in (RIGHT_LUNG, LEFT_LUNG):
        assert dice(stored.label[:, ::-1, ::-1] == value, case.label == value) > 0.97
    # An array flipped without changing the geometry is another patient: the sides swap.
    mirrored = label_lungs(np.ascontiguousarray(hu[:, :, ::-1]), geometry)
    assert dice(mirrored.label[:, :, ::-1] == RIGHT_LUNG, case.label == LEFT_LUNG) > 0.97


def test_lungs_touching_at_the_anterior_junction_are_split():
    case = phantom(4)
    u = nominal(case)
    # Aerated lung across the anterior mediastinum joins the two lungs over 90 x 30 x 40 mm.
    bridge = (np.abs(u[0]) < 45) & (u[1] > 45) & (u[1] < 75) & (u[2] > 20) & (u[2] < 60)
    hu = case.images["ct"].copy()
    hu[bridge] = -850.0
    result = label_lungs(hu, case.geometry)
    assert result.split
    for value in (RIGHT_LUNG, LEFT_LUNG):
        assert dice(result.label == value, case.label == value) > 0.97
    # The cut falls across the bridge: each half of it goes to the lung on its side.
    side = np.where(u[0] > 0, RIGHT_LUNG, LEFT_LUNG)
    assert np.mean(result.label[bridge] == side[bridge]) > 0.8


def test_bowel_gas_is_not_lung():
    case = phantom(5)
    u = nominal(case)
    # A 250 mL gas pocket under the diaphragm, larger than many lung-base sections.
    gas = ((u[0] / 60.0) ** 2 + (u[1] / 40.0) ** 2 + ((u[2] + 130.0) / 25.0) ** 2) <= 1.0
    hu = case.images["ct"].copy()
    rng = np.random.default_rng(0)
    hu[gas] = -1000.0 + rng.normal(0.0, 20.0, size=int(gas.sum()))
    result = label_lungs(hu, case.geometry)
    assert not (result.label[gas] > 0).any()
    for value in (RIGHT_LUNG, LEFT_LUNG):
        assert dice(result.label == value, case.label == value) > 0.97


def test_no_lungs_gives_an_empty_label():
    hu = np.full((20, 40, 40), 40.0, dtype=np.float32)  # soft tissue only
    result = label_lungs(hu, Geometry(np.diag([2.0, 2.0, 3.0, 1.0]), hu.shape))
    assert not result.label.any() and not result.trachea_found
    assert result.volumes_ml == {RIGHT_LUNG: 0.0, LEFT_LUNG: 0.0}
    with pytest.raises(ValueError, match="shape"):
        label_lungs(hu, Geometry(np.eye(4), (20, 40, 41)))


def test_pseudolabel_command_writes_label_and_overlay(tmp_path, capsys):
    case = phantom(6)
    ct = tmp_path / "chest.nii.gz"
    save_nifti(ct, case.images["ct"], case.geometry, np.int16, intercept=-1024.0)
    out, png = tmp_path / "lungs.nii.gz", tmp_path / "lungs.png"
    assert (
        main(["pseudolabel-lungs", "--ct", str(ct), "--out", str(out), "--overlay", str(png)]) == 0
    )
    assert "right lung" in capsys.readouterr().out
    written = nib.load(out)
    label = np.asarray(written.dataobj).transpose(2, 1, 0)
    assert np.allclose(written.affine, case.geometry.ijk_to_ras, atol=1e-4)
    assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1, 2}
    for value in (RIGHT_LUNG, LEFT_LUNG):
        assert dice(label == value, case.label == value) > 0.97
    with Image.open(png) as overlay:
        assert overlay.mode == "RGB" and overlay.width >= 3 * overlay.height // 2
    assert main(["pseudolabel-lungs", "--ct", str(tmp_path / "no.nii.gz"), "--out", str(out)]) == 2
    tissue = tmp_path / "tissue.nii.gz"
    save_nifti(tissue, np.full((8, 16, 16), 40.0), Geometry(np.eye(4), (8, 16, 16)), np.int16)
    assert main(["pseudolabel-lungs", "--ct", str(tissue), "--out", str(out)]) == 2
    assert "no lung found" in capsys.readouterr().err


def test_dataset_builder_writes_real_views_and_phantoms(tmp_path):
    case = phantom(7)
    ct = tmp_path / "chest.nii.gz"
    save_nifti(ct, case.images["ct"], case.geometry, np.int16)
    out = tmp_path / "data"
    argv = ["build-lung-ct-data", "--out", str(out), "--ct", str(ct), "--phantoms", "2"]
    assert main([*argv, "--abdomens", "1"]) == 0
    records = read_decathlon(out, patient_regex=PATIENT_REGEX)
    views = [f"chest000_{v}" for v in ("full", "tight", "upper", "lower")]
    phantoms = ["phantom000", "phantom001", "abdomen000"]
    assert sorted(r.case_id for r in records) == sorted([*views, *phantoms])
    assert {r.patient_id for r in records} == {"chest000", *phantoms}
    loaded = {r.case_id: load_case(r) for r in records}
    _, full_label, full_geometry = loaded["chest000_full"]
    assert full_geometry.is_close(case.geometry, atol=1e-4)
    assert np.array_equal(full_label, label_lungs(*read_image(ct)).label)
    lungs = int(np.count_nonzero(full_label))
    assert np.count_nonzero(loaded["chest000_tight"][1]) == lungs
    halves = [loaded[f"chest000_{v}"] for v in ("upper", "lower")]
    assert sum(int(np.count_nonzero(label)) for _, label, _ in halves) == lungs
    # The upper view holds the apices: its lungs lie above (RAS z) those of the lower view.
    z = [float(np.mean(ras_points(g)[2][label > 0])) for _, label, g in halves]
    assert z[0] > z[1] + 50.0
    for case_id in phantoms:
        images, label, _ = loaded[case_id]
        assert set(np.unique(label)) == {0, 1, 2} and images["ct"].min() < -900
    # The abdominal phantom (canonical grid): lung bases at the top, enclosed gas below them.
    images, label, geometry = loaded["abdomen000"]
    z = ras_points(geometry)[2]
    below = z < float(z[label > 0].min()) - 20.0
    gas_ml = np.count_nonzero(inside_air(images["ct"]) & below) * np.prod(geometry.spacing) / 1e3
    assert gas_ml > 10.0
    build = json.loads((out / "build.json").read_text())
    assert build["cases"]["chest000_full"]["labels"].startswith("classical")
    assert (out / "overlays" / "chest000_lower.png").is_file()


def test_outside_air_changes_only_the_air_around_the_body():
    case = phantom(8)
    hu = case.images["ct"]
    rng = np.random.default_rng(0)
    assert np.array_equal(vary_outside_air(hu, case.geometry, rng, False, False), hu)
    raised = vary_outside_air(hu, case.geometry, rng, True, False)
    changed = raised != hu
    assert not (changed & (case.label > 0)).any() and np.all(hu[changed] < -400)
    assert changed[0, 0, 0] and changed[-1, -1, -1]  # the corners are outside air
    assert -1000.0 < float(np.mean(raised[changed])) < -780.0
    folded = vary_outside_air(hu, case.geometry, rng, False, True)
    folds = folded != hu
    assert folds.any() and not (folds & (hu > -400)).any()
    assert FOLD_HU[0] - 100.0 < float(np.mean(folded[folds])) < FOLD_HU[1] + 100.0
    assert 0.001 < np.count_nonzero(folds) / np.count_nonzero(hu < -400) < 0.2
    # The labeller still finds the same lungs.
    for image in (raised, folded):
        result = label_lungs(image, case.geometry)
        for value in (RIGHT_LUNG, LEFT_LUNG):
            assert dice(result.label == value, case.label == value) > 0.97


# --- real data ----------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_ct_matches_totalsegmentator_lobes():
    """TotalSegmentator's model-made lobes of its example CT (lung bases, 3 mm), merged per
    side: right = upper + middle + lower right lobe (12, 13, 14), left = left lobes (10, 11)."""
    folder = shared_path("ct_totalsegmentator")
    hu, geometry = read_image(folder / "example_ct_sm.nii.gz")
    lobes, _ = read_image(folder / "example_seg.nii.gz")
    reference = merge_lobes(lobes)
    result = label_lungs(hu, geometry)
    assert not result.trachea_found  # an abdominal scan: the lungs' bases only
    for value in (RIGHT_LUNG, LEFT_LUNG):
        assert dice(result.label == value, reference == value) > 0.94


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_chest_ct_labels():
    path = shared_path("ct_chest_itkelastix", "chest_ct.nii.gz")
    hu, geometry = read_image(path)
    result = label_lungs(hu, geometry)
    assert result.trachea_found and not result.split
    for value in (RIGHT_LUNG, LEFT_LUNG):
        assert 1500.0 < result.volumes_ml[value] < 4500.0
    # Stored LPS (I towards the patient's left): the right lung is at the low I indices.
    assert (
        centroid_x(result.label == RIGHT_LUNG, geometry)
        > 0
        > centroid_x(result.label == LEFT_LUNG, geometry)
    )
    # The trachea is removed where it enters the chest (top slice, near the middle).
    top = result.airway[-1]
    assert top.any() and not (result.label[-1][top]).any()
    assert abs(float(np.mean(np.nonzero(top)[1])) - hu.shape[2] / 2) < 40
