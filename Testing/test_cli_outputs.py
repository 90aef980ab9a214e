"""Output kinds of ``python -m unetseg segment`` (``.seg.nrrd``, NIfTI + sidecar, a folder of
masks) and ``--statistics``, read back with independent readers (slicerio, nibabel, SimpleITK)
and checked against numpy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from scipy import ndimage

from Testing.command_line import assert_one_line_error, run_cli, segment_args
from unetseg.cli import main
from unetseg.untrained import lung_cxr_manifest, untrained_package

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
MASK_FILES = {
    "Non-enhancing tumor core": "Non-enhancing_tumor_core.nii.gz",
    "Edema": "Edema.nii.gz",
    "Enhancing tumor": "Enhancing_tumor.nii.gz",
}


#: The shared ``brain_model`` fixture whose output on ``brats_files`` holds all four label values.
BRAIN_MODEL = {"seed": 1}


@pytest.fixture(scope="module")
def every_output(brain_model, brats_files, tmp_path_factory) -> Path:
    """One run writing every output kind and the statistics into a folder."""
    out = tmp_path_factory.mktemp("out")
    args = segment_args(brain_model.path, brats_files.values(), out / "case.seg.nrrd")
    args += [out / "case.nii.gz", f"{out / 'masks'}/", "--statistics", out / "stats.csv"]
    args += ["--summary", out / "summary.json", "--device", "cpu"]
    assert main([str(a) for a in args]) == 0
    return out


def seg_nrrd_labels(path: Path, labels) -> tuple[np.ndarray, np.ndarray]:
    """Label map (I, J, K) with the model's values, and IJK-to-RAS, read with slicerio."""
    seg = slicerio.read_segmentation(str(path))
    voxels = seg["voxels"]
    labelmap = np.zeros(voxels.shape[:3], np.uint8)
    by_name = {label.name: label.value for label in labels}
    for segment in seg["segments"]:
        layer = voxels if voxels.ndim == 3 else voxels[..., segment["layer"]]
        labelmap[layer == segment["labelValue"]] = by_name[segment["name"]]
    return labelmap, LPS_TO_RAS @ seg["ijkToLPS"]


def test_nifti_and_masks_match_the_seg_nrrd_of_the_same_run(brain_model, brats_files, every_output):
    expected, seg_affine = seg_nrrd_labels(every_output / "case.seg.nrrd", brain_model.labels)
    assert set(np.unique(expected)) == {0, 1, 2, 3}  # a test that can tell labels apart
    reference = nib.load(brats_files["t1c"])
    np.testing.assert_allclose(seg_affine, reference.affine, atol=1e-6)

    labelmap = nib.load(every_output / "case.nii.gz")
    assert labelmap.get_data_dtype() == np.uint8
    assert labelmap.shape == reference.shape
    np.testing.assert_allclose(labelmap.affine, reference.affine, atol=1e-6)
    assert labelmap.header["sform_code"] == 1 and labelmap.header["qform_code"] == 1
    np.testing.assert_array_equal(np.asarray(labelmap.dataobj), expected)

    image, original = (
        sitk.ReadImage(str(p)) for p in (every_output / "case.nii.gz", brats_files["t1c"])
    )
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), expected.transpose(2, 1, 0))
    np.testing.assert_allclose(image.GetOrigin(), original.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(image.GetSpacing(), original.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), original.GetDirection(), atol=1e-6)

    sidecar = json.loads((every_output / "case.json").read_text())
    assert sidecar["file"] == "case.nii.gz" and sidecar["model"]["id"] == brain_model.id
    assert [(e["value"], e["name"], tuple(e["color"])) for e in sidecar["labels"]] == [
        (label.value, label.name, label.color) for label in brain_model.labels
    ]
    assert [e["terminology"] for e in sidecar["labels"]] == [
        label.terminology for label in brain_model.labels
    ]

    masks = every_output / "masks"
    assert sorted(p.name for p in masks.iterdir()) == sorted(MASK_FILES.values())
    for label in brain_model.labels:
        mask = nib.load(masks / MASK_FILES[label.name])
        np.testing.assert_allclose(mask.affine, reference.affine, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(mask.dataobj), expected == label.value)
        itk_mask = sitk.GetArrayFromImage(sitk.ReadImage(str(masks / MASK_FILES[label.name])))
        np.testing.assert_array_equal(itk_mask, (expected == label.value).transpose(2, 1, 0))

    summary = json.loads((every_output / "summary.json").read_text())
    assert summary["outputs"]["nifti"] == str(every_output / "case.nii.gz")
    assert summary["outputs"]["nifti_sidecar"] == str(every_output / "case.json")
    assert summary["outputs"]["segment_folder"] == str(masks)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_statistics_csv_matches_numpy(brain_model, brats_files, every_output):
    labels = np.asarray(nib.load(every_output / "case.nii.gz").dataobj)
    voxel_ml = 2.0 * 2.0 * 3.0 / 1000.0
    rows = read_csv(every_output / "stats.csv")
    assert [(int(r["value"]), r["name"]) for r in rows] == [
        (label.value, label.name) for label in brain_model.labels
    ]
    for row in rows:
        mask = labels == int(row["value"])
        assert int(row["voxel_count"]) == mask.sum() > 0
        assert float(row["volume_ml"]) == pytest.approx(mask.sum() * voxel_ml, abs=1e-4)
        for name, path in brats_files.items():
            values = np.asarray(nib.load(path).dataobj)[mask].astype(np.float64)
            for statistic in ("mean", "std", "median", "min", "max"):
                expected = getattr(np, statistic)(values)
                written = float(row[f"{name}_{statistic}"])
                assert written == pytest.approx(expected, abs=1e-4), statistic

    lesions = read_csv(every_output / "stats_lesions.csv")
    components, count = ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))
    sizes = sorted(np.bincount(components.ravel())[1:], reverse=True)
    assert [int(r["voxel_count"]) for r in lesions] == sizes and len(lesions) == count
    assert [int(r["id"]) for r in lesions] == list(range(1, count + 1))
    largest = components == 1 + int(np.argmax(np.bincount(components.ravel())[1:]))
    centroid = np.append(np.argwhere(largest).mean(axis=0), 1.0)  # (i, j, k, 1)
    ras = nib.load(brats_files["t1c"]).affine @ centroid
    assert [float(lesions[0][f"centroid_ras_{a}"]) for a in "ras"] == pytest.approx(ras[:3])
    assert lesions[0]["labels"] == ";".join(str(v) for v in np.unique(labels[largest]) if v != 0)


def test_existing_mask_is_refused_before_any_work(brain_model, brats_files, tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "Edema.nii.gz").write_bytes(b"old")
    output = tmp_path / "case.seg.nrrd"

    code, _, err = run_cli(
        capsys, *segment_args(brain_model.path, brats_files.values(), output), masks
    )

    assert_one_line_error(code, err, "mask of 'Edema'", "already exists", "--overwrite")
    assert sorted(p.name for p in masks.iterdir()) == ["Edema.nii.gz"]
    assert (masks / "Edema.nii.gz").read_bytes() == b"old"
    assert not output.exists()


@pytest.mark.parametrize(
    ("outputs", "phrases"),
    [
        (["{input}"], ("is the input",)),
        (["{tmp}/a.nii.gz", "{tmp}/b.nii"], ("two outputs of one kind",)),
        (["{tmp}/case.nii.gz", "--summary", "{tmp}/case.json"], ("NIfTI sidecar",)),
        (["{tmp}/case.txt"], ("must end with .seg.nrrd, .nii.gz or .nii",)),
    ],
)
def test_bad_outputs_are_refused_before_loading(
    outputs, phrases, brain_model, brats_files, tmp_path, capsys
):
    args = [a.format(input=brats_files["t1c"], tmp=tmp_path) for a in outputs]

    code, _, err = run_cli(
        capsys, *segment_args(brain_model.path, brats_files.values(), args[0]), *args[1:]
    )

    assert_one_line_error(code, err, *phrases)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_output_kind_is_checked_before_the_model_is_looked_up(brats_files, tmp_path, capsys):
    output = tmp_path / "case.txt"

    code, _, err = run_cli(capsys, *segment_args("no-such-model", brats_files.values(), output))

    assert_one_line_error(code, err, "--output must end with", "case.txt")


def test_statistics_of_an_input_on_another_grid(brain_model, brats_files, tmp_path, capsys):
    """T2 cropped by whole voxels: resampled onto the reference grid its voxels are the same
    values, and reference voxels outside the crop are left out of its statistics."""
    t1c = nib.load(brats_files["t1c"])
    crop = (2, 1, 1)
    t2 = tmp_path / "BraTS-MET-00007-000-t2w.nii.gz"
    affine = t1c.affine.copy()
    affine[:3, 3] = (t1c.affine @ np.array([*crop, 1.0]))[:3]
    cropped = np.asarray(t1c.dataobj)[crop[0] :, crop[1] :, crop[2] :]
    nib.save(nib.Nifti1Image(cropped, affine), t2)
    inputs = [brats_files["t1c"], brats_files["flair"], t2]
    stats = tmp_path / "stats.csv"

    code, _, err = run_cli(
        capsys,
        *segment_args(brain_model.path, inputs, tmp_path / "case.nii.gz"),
        "--statistics",
        stats,
        "--device",
        "cpu",
    )

    assert code == 0, err
    labels = np.asarray(nib.load(tmp_path / "case.nii.gz").dataobj)
    image = np.asarray(t1c.dataobj).astype(np.float64)
    inside = np.zeros(labels.shape, bool)
    inside[crop[0] :, crop[1] :, crop[2] :] = True
    for row in read_csv(stats):
        mask = labels == int(row["value"])
        assert row["t1_mean"] == "" and row["t1_max"] == ""  # optional input not given
        assert float(row["t1c_mean"]) == pytest.approx(image[mask].mean())
        assert float(row["t2_mean"]) == pytest.approx(image[mask & inside].mean())
        assert float(row["t2_median"]) == pytest.approx(np.median(image[mask & inside]))
        assert float(row["t2_min"]) == pytest.approx(image[mask & inside].min())
    assert (labels[~inside] > 0).any()  # the crop changed what t2 sees


def test_2d_model_gives_areas_and_a_one_slice_nifti(tmp_path, capsys):
    from PIL import Image

    model = untrained_package(tmp_path / "cxr", lung_cxr_manifest((4, 8)))
    pixels = np.random.default_rng(2).integers(0, 255, (48, 64), dtype=np.uint8)
    image = tmp_path / "chest.png"
    Image.fromarray(pixels).save(image)
    output, stats = tmp_path / "out" / "cxr.nii", tmp_path / "out" / "stats.csv"

    code, _, err = run_cli(
        capsys, *segment_args(model.path, [image], output), "--statistics", stats, "--device", "cpu"
    )

    assert code == 0, err
    labelmap = nib.load(output)
    assert labelmap.shape == (64, 48, 1)
    np.testing.assert_allclose(labelmap.affine, np.diag([-1.0, -1.0, 1.0, 1.0]))
    lungs = np.asarray(labelmap.dataobj)[:, :, 0].T == 1  # (J, I) as the image rows
    [row] = read_csv(stats)
    assert "volume_ml" not in row and not (tmp_path / "out" / "stats_lesions.csv").exists()
    assert float(row["area_cm2"]) == pytest.approx(lungs.sum() / 100.0)
    assert 0 < lungs.sum() < lungs.size
    assert float(row["cxr_mean"]) == pytest.approx(pixels[lungs].mean())


def test_a_failed_run_writes_none_of_the_outputs(brain_model, brats_files, tmp_path, capsys):
    """The damaged input is found after the outputs were reserved (their folders exist)."""
    broken = tmp_path / "broken-t1c.nii.gz"
    broken.write_bytes(b"this is not a NIfTI file" * 20)
    out = tmp_path / "out"
    args = segment_args(brain_model.path, [broken, brats_files["flair"]], out / "case.nii.gz")

    code, _, err = run_cli(capsys, *args, f"{out / 'masks'}/", "--statistics", out / "stats.csv")

    assert_one_line_error(code, err, "Cannot read", "broken-t1c.nii.gz")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["masks"]
