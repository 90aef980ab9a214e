"""Dataset readers and ``load_case`` on synthetic layouts, hand-built files (nibabel, SimpleITK,
pydicom, highdicom as independent writers/readers), malformed folders and the real data in
``../shared/data`` (skipped when absent)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image

from Testing.case_files import shared_path
from Testing.dicom_factory import rotationMatrix, writeDicomSeries
from Training.data import (
    BRATS_2015_LABEL_PATTERN,
    BRATS_2015_PATTERNS,
    BRATS_REGIONS,
    MERGE_LUNGS,
    DatasetError,
    decathlon_labels,
    labels_to_regions,
    load_case,
    read_brainmetshare,
    read_brats,
    read_decathlon,
    read_dicom,
    read_image_mask_pairs,
    read_ovarian,
    read_pairs,
    remap_labels,
)
from Training.synth import write_dataset
from unetseg.engine.geometry import Geometry

ROOT = Path(__file__).resolve().parents[2]
PGBM_INPUTS = {"t1c": ["*t1post*"], "t1": ["*t1pre*"], "flair": ["*flair*"], "t2": ["*t2*"]}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict[str, Path]:
    """One small dataset per layout (2 labelled + 1 unlabelled cases)."""
    base = tmp_path_factory.mktemp("synth")
    layouts = {
        "brainmetshare": ("brain-mri", 32),
        "msd": ("lung-ct", 32),
        "pairs": ("lung-cxr", 32),
        "ovarian": ("ovarian-ct", 32),
    }
    for layout, (task, size) in layouts.items():
        write_dataset(task, base / layout, 2, seed=3, size=size, layout=layout, unlabelled=1)
    return {layout: base / layout for layout in layouts}


def copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


# --- synthetic layouts -------------------------------------------------------------------------


def test_brainmetshare_flags_cases_without_segmentation(synthetic):
    records = read_brainmetshare(synthetic["brainmetshare"])
    assert [(r.split, r.has_label) for r in records] == [
        ("test", False),
        ("train", True),
        ("train", True),
    ]
    assert all(r.input_names == ("t1_pre", "t1_gd", "flair", "bravo") for r in records)
    images, label, _ = load_case(records[0])
    assert label is None and set(images) == {"t1_pre", "t1_gd", "flair", "bravo"}
    with pytest.raises(DatasetError, match=r"test/brain_0002/seg\.nii\.gz"):
        read_brainmetshare(synthetic["brainmetshare"], require_label=True)


def test_brainmetshare_missing_sequence_names_the_file(synthetic, tmp_path):
    root = copy(synthetic["brainmetshare"], tmp_path / "bms")
    (root / "train" / "brain_0001" / "flair.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"train/brain_0001/flair\.nii\.gz"):
        read_brainmetshare(root)


def test_wrong_layout_is_reported(synthetic):
    with pytest.raises(DatasetError, match=r"no flair file matching .*imagesTr"):
        read_brats(synthetic["msd"])
    with pytest.raises(DatasetError, match="no cases found"):
        read_brainmetshare(synthetic["msd"])
    with pytest.raises(DatasetError, match=r"dataset\.json not found"):
        read_decathlon(synthetic["ovarian"])


def test_decathlon_lung_labels_and_merge(synthetic):
    root = synthetic["msd"]
    assert decathlon_labels(root) == {0: "background", 1: "right lung", 2: "left lung"}
    records = read_decathlon(root, label_map=MERGE_LUNGS)
    assert [r.case_id for r in records] == ["lung_0000", "lung_0001"]
    assert all(r.input_names == ("ct",) and r.has_label for r in records)
    _, label, _ = load_case(records[0])
    assert set(np.unique(label)) == {0, 1}
    _, separate, _ = load_case(read_decathlon(root)[0])
    assert set(np.unique(separate)) == {0, 1, 2}
    assert np.array_equal(label, (separate > 0).astype(np.uint8))
    test = [r for r in read_decathlon(root, include_test=True) if not r.has_label]
    assert [r.case_id for r in test] == ["lung_0002"]


def test_ovarian_pairs_by_file_name(synthetic, tmp_path):
    records = read_ovarian(synthetic["ovarian"], require_label=False)
    assert [(r.case_id, r.has_label) for r in records] == [
        ("ovary_0000", True),
        ("ovary_0001", True),
        ("ovary_0002", False),
    ]
    images, label, _ = load_case(records[0])
    assert set(images) == {"ct"} and set(np.unique(label)) <= {0, 1, 2}
    with pytest.raises(DatasetError, match=r"CT/ovary_0002\.nii\.gz"):
        read_ovarian(synthetic["ovarian"])  # labels required by default
    with pytest.raises(DatasetError, match="Segmentation"):
        read_ovarian(tmp_path)


def test_cxr_pairs_skip_masks_and_binarise(synthetic):
    records = read_image_mask_pairs(synthetic["pairs"], require_label=False)
    assert [r.case_id for r in records] == ["cxr_0000", "cxr_0001", "cxr_0002"]
    images, label, geometry = load_case(records[0])
    mask = np.asarray(Image.open(synthetic["pairs"] / "cxr_0000-mask.png"))
    assert np.array_equal(label, (mask == 255).astype(np.uint8))
    assert images["image"].shape == label.shape and geometry.shape == (1, *label.shape)


# --- hand-built files ---------------------------------------------------------------------------


def write_msd_brats(root: Path, shape_ijk=(6, 5, 4)) -> np.ndarray:
    """An MSD Task01-style dataset with one 4-channel case; returns its (I, J, K, C) data."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    data = rng.normal(size=(*shape_ijk, 4)).astype(np.float32)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), root / "imagesTr" / "BRATS_001.nii.gz")
    label = rng.integers(0, 4, size=shape_ijk).astype(np.uint8)
    nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / "BRATS_001.nii.gz")
    meta = {
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing"},
        "training": [
            {"image": "./imagesTr/BRATS_001.nii.gz", "label": "./labelsTr/BRATS_001.nii.gz"}
        ],
        "test": [],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return data


def test_decathlon_4d_channels_split_by_modality(tmp_path):
    data = write_msd_brats(tmp_path)
    (record,) = read_decathlon(tmp_path)
    assert record.input_names == ("flair", "t1w", "t1gd", "t2w")
    assert dict(record.channels) == {"flair": 0, "t1w": 1, "t1gd": 2, "t2w": 3}
    images, label, geometry = load_case(record)
    for channel, name in enumerate(record.input_names):
        assert np.array_equal(images[name], data[..., channel].transpose(2, 1, 0))
    assert geometry.shape == (4, 5, 6) and label.shape == (4, 5, 6)


def test_decathlon_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset\.json not found"):
        read_decathlon(tmp_path)
    write_msd_brats(tmp_path / "a")
    (tmp_path / "a" / "labelsTr" / "BRATS_001.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"labelsTr/BRATS_001\.nii\.gz"):
        read_decathlon(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="cannot read"):
        read_decathlon(tmp_path / "b")


def test_nnunet_v2_channel_files(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    meta = {"channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0, "tumour": 1}}
    (tmp_path / "dataset.json").write_text(json.dumps({**meta, "file_ending": ".nii.gz"}))
    volumes = [np.full((3, 4, 5), c + 1.0, dtype=np.float32) for c in range(2)]
    for c, volume in enumerate(volumes):
        nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "imagesTr" / f"x_{c:04d}.nii.gz")
    nib.save(
        nib.Nifti1Image(np.zeros((3, 4, 5), np.uint8), np.eye(4)),
        tmp_path / "labelsTr" / "x.nii.gz",
    )
    (record,) = read_decathlon(tmp_path)
    assert record.input_names == ("ct", "pet")
    assert decathlon_labels(tmp_path) == {0: "background", 1: "tumour"}
    images, _, _ = load_case(record)
    assert images["pet"].shape == (5, 4, 3) and np.all(images["pet"] == 2.0)
    (tmp_path / "imagesTr" / "x_0001.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"x_0001\.nii\.gz"):
        read_decathlon(tmp_path)


def write_nrrd(path: Path, array: np.ndarray, direction: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.9, 2.5))
    image.SetOrigin((12.0, -30.0, 45.0))
    image.SetDirection(direction.ravel().tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return image


def test_generic_nrrd_pairs_keep_lps_geometry(tmp_path):
    rng = np.random.default_rng(1)
    direction = rotationMatrix((1.0, 2.0, 0.5), 25.0)
    volume = rng.normal(size=(7, 6, 5)).astype(np.float32)
    labels = rng.integers(0, 3, size=(7, 6, 5)).astype(np.uint8)
    image = write_nrrd(tmp_path / "images" / "p1_a.nrrd", volume, direction)
    write_nrrd(tmp_path / "labels" / "p1_a.nrrd", labels, direction)
    (record,) = read_pairs(
        tmp_path, "images/*.nrrd", "labels/{case}.nrrd", label_map={2: 1}, patient_regex=r"(p\d+)"
    )
    assert record.patient_id == "p1" and record.case_id == "p1_a"
    images, label, geometry = load_case(record)
    assert np.array_equal(images["image"], volume)
    assert np.array_equal(label, np.minimum(labels, 1))
    # World position of voxel (i, j, k) = (4, 2, 6): ITK's LPS point with x, y negated.
    lps = np.asarray(image.TransformIndexToPhysicalPoint((4, 2, 6)))
    ras = geometry.ijk_to_ras @ np.array([4.0, 2.0, 6.0, 1.0])
    assert np.allclose(ras[:3], lps * [-1, -1, 1], atol=1e-5)


def test_pairs_errors_name_the_path(tmp_path):
    affine = np.eye(4)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), affine), tmp_path / "images/a.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.uint8), affine), tmp_path / "labels/a.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), affine), tmp_path / "images/b.nii.gz")
    with pytest.raises(DatasetError, match=r"no label for image .*images/b\.nii\.gz"):
        read_pairs(tmp_path, "images/*.nii.gz", "labels/{case}.nii.gz")
    records = read_pairs(tmp_path, "images/*.nii.gz", "labels/{case}.nii.gz", require_label=False)
    assert [r.has_label for r in records] == [True, False]
    with pytest.raises(DatasetError, match=r"labels/a\.nii\.gz"):  # shape (3, 4, 4) vs (4, 4, 4)
        load_case(records[0])
    (tmp_path / "images" / "b.nii.gz").write_bytes(b"\x1f\x8bcorrupt")
    with pytest.raises(DatasetError, match=r"cannot read .*images/b\.nii\.gz"):
        load_case(records[1])
    with pytest.raises(DatasetError, match="no cases found"):
        read_pairs(tmp_path, "nothing/*.nii.gz", "labels/{case}.nii.gz")
    with pytest.raises(DatasetError, match="dataset folder not found"):
        read_pairs(tmp_path / "missing", "*.nii.gz", "{case}.nii.gz")


def test_brats_folders_with_configurable_patterns(tmp_path):
    case = tmp_path / "c1"
    case.mkdir()
    for name in ("flair", "t1", "t1c", "t2", "seg"):
        values = np.full((3, 3, 3), 4 if name == "seg" else 1, np.uint8)
        nib.save(nib.Nifti1Image(values, np.eye(4)), case / f"c1_{name}.nii.gz")
    (record,) = read_brats(tmp_path)
    assert record.input_names == ("flair", "t1", "t1c", "t2") and record.has_label
    (case / "c1_t1c.nii.gz").rename(case / "c1_t1ce.nii.gz")
    with pytest.raises(DatasetError, match="no t1c file matching"):
        read_brats(tmp_path)
    (case / "c1_t2b_t1c.nii.gz").write_bytes(b"")
    (case / "c1_x_t1c.nii.gz").write_bytes(b"")
    with pytest.raises(DatasetError, match="matches several files"):
        read_brats(tmp_path)


def test_label_remap_and_nested_regions():
    label = np.array([[0, 1, 2], [3, 4, 2]], dtype=np.uint8)
    assert np.array_equal(remap_labels(label, {4: 3, 3: 0}), [[0, 1, 2], [0, 3, 2]])
    regions = labels_to_regions(label, BRATS_REGIONS)
    assert regions.shape == (3, 2, 3) and regions.dtype == np.uint8
    assert np.array_equal(regions[0], label > 0)  # whole tumour
    assert np.array_equal(regions[1], np.isin(label, (1, 3, 4)))  # tumour core
    assert np.array_equal(regions[2], label == 4)  # enhancing
    with pytest.raises(ValueError):
        remap_labels(label, {300: 1})


# --- DICOM -------------------------------------------------------------------------------------


def write_study(
    root: Path, patient: str, seed: int, with_mask: bool = True, date: str = "20240101"
) -> dict:
    """Two co-registered oblique MR series (+ a mask series) of one study in one folder."""
    rng = np.random.default_rng(seed)
    geometry = {
        "spacing": (0.7, 0.8, 3.0),
        "origin": (-40.0, 25.0, 10.0),
        "direction": rotationMatrix((0.3, 1.0, 0.2), 15.0),
    }
    study = pydicom.uid.generate_uid()
    arrays = {
        "T1 POST GD": rng.integers(0, 900, (5, 8, 6)).astype(np.float32),
        "FLAIR ax": rng.integers(0, 900, (5, 8, 6)).astype(np.float32),
    }
    if with_mask:
        arrays["Mask_Tumor"] = (rng.uniform(size=(5, 8, 6)) > 0.7).astype(np.float32)
    for number, (description, array) in enumerate(arrays.items(), start=1):
        writeDicomSeries(
            root / patient,
            array,
            **geometry,
            seriesDescription=description,
            studyUID=study,
            patientID=patient,
            seriesNumber=number,
            seed=seed + number,
            attributes={"StudyDate": date},
        )
    return {"arrays": arrays, **geometry}


def test_dicom_series_index_sort_and_load(tmp_path):
    expected = write_study(tmp_path, "PAT-A", seed=1)
    write_study(tmp_path, "PAT-B", seed=2, with_mask=False)
    (tmp_path / "PAT-A" / "README.txt").write_text("not DICOM")
    inputs = {"t1c": ["*t1*post*"], "flair": ["*flair*"]}
    records = read_dicom(tmp_path, inputs)
    assert [(r.case_id, r.has_label) for r in records] == [("PAT-A", True), ("PAT-B", False)]
    images, label, geometry = load_case(records[0])
    arrays = expected["arrays"]
    assert np.array_equal(images["t1c"], arrays["T1 POST GD"])
    assert np.array_equal(images["flair"], arrays["FLAIR ax"])
    assert np.array_equal(label, arrays["Mask_Tumor"].astype(np.uint8))
    reference = Geometry.from_lps(
        expected["spacing"], expected["origin"], expected["direction"], (5, 8, 6)
    )
    assert geometry.is_close(reference, atol=1e-4)
    # Independent reader: SimpleITK on the same slices in our order.
    itk = sitk.ReadImage([str(p) for p in records[0].series_files["t1c"]])
    assert np.array_equal(sitk.GetArrayFromImage(itk), arrays["T1 POST GD"])
    assert Geometry.from_sitk(itk).is_close(geometry, atol=1e-4)
    with pytest.raises(DatasetError, match="no label series"):
        read_dicom(tmp_path, inputs, require_label=True)
    # A follow-up study of the same patient: its own case, same patient id.
    write_study(tmp_path / "later", "PAT-A", seed=3, date="20240601")
    records = read_dicom(tmp_path, inputs)
    assert [(r.case_id, r.patient_id) for r in records] == [
        ("PAT-A_20240101", "PAT-A"),
        ("PAT-A_20240601", "PAT-A"),
        ("PAT-B", "PAT-B"),
    ]


def test_dicom_index_reads_headers_only_and_errors_name_files(tmp_path):
    write_study(tmp_path, "PAT-A", seed=3)
    inputs = {"t1c": ["*t1*post*"], "flair": ["*flair*"]}
    (record,) = read_dicom(tmp_path, inputs)
    broken = record.series_files["flair"][2]
    broken.write_bytes(broken.read_bytes()[:-40])  # truncated pixel data (96 bytes)
    (record,) = read_dicom(tmp_path, inputs)  # indexing never touches pixel data
    with pytest.raises(DatasetError, match=broken.name):
        load_case(record)
    with pytest.raises(DatasetError, match="matches several series"):
        read_dicom(tmp_path, {"any": ["*"]})
    with pytest.raises(DatasetError, match=r"no series for input\(s\) \['t2'\]"):
        read_dicom(tmp_path, {**inputs, "t2": ["*t2*"]})
    with pytest.raises(DatasetError, match="no complete study"):
        read_dicom(tmp_path, {**inputs, "t2": ["*t2*"]}, skip_incomplete=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here")
    with pytest.raises(DatasetError, match="no DICOM files"):
        read_dicom(empty, inputs)


def test_dicom_seg_label(tmp_path):
    hd = pytest.importorskip("highdicom")
    volume = np.random.default_rng(4).integers(-200, 200, (4, 10, 9)).astype(np.float32)
    paths = writeDicomSeries(
        tmp_path / "ct",
        volume,
        spacing=(0.8, 0.8, 2.0),
        direction=rotationMatrix((1.0, 0.0, 0.0), 10.0),
        modality="CT",
        seriesDescription="CT chest",
    )
    mask = np.zeros(volume.shape, np.uint8)
    mask[1:3, 2:6, 3:7] = 1
    mask[3, 7:9, 1:3] = 2
    concept = hd.sr.CodedConcept
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=f"segment {n}",
            segmented_property_category=concept("91723000", "SCT", "Anatomical Structure"),
            segmented_property_type=concept("39607008", "SCT", "Lung"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for n in (1, 2)
    ]
    seg = hd.seg.Segmentation(
        source_images=[pydicom.dcmread(p) for p in paths],
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=pydicom.uid.generate_uid(),
        series_number=9,
        sop_instance_uid=pydicom.uid.generate_uid(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
    )
    seg.save_as(tmp_path / "seg.dcm")
    (record,) = read_dicom(tmp_path, {"ct": ["ct*"]})
    assert record.label_path == tmp_path / "seg.dcm"
    images, label, _ = load_case(record)
    assert np.array_equal(images["ct"], volume)
    assert np.array_equal(label, mask)


# --- real data ----------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_chest_xray_pairs():
    root = shared_path("chest_xray")
    records = read_image_mask_pairs(root)
    assert [r.case_id for r in records] == ["1", "2"]
    images, label, geometry = load_case(records[0])
    mask = np.asarray(Image.open(root / "1-mask.png"))
    assert images["image"].shape == label.shape == (512, 512) == mask.shape
    assert np.array_equal(label, (mask > 127).astype(np.uint8))
    assert 0.15 < label.mean() < 0.5 and geometry.shape == (1, 512, 512)


@pytest.mark.shared_data
def test_real_brats2015_folders_and_regions():
    root = shared_path("brats2015")
    records = read_brats(
        root,
        patterns=BRATS_2015_PATTERNS,
        label_pattern=BRATS_2015_LABEL_PATTERN,
        patient_regex=r"(pat\d+)",
    )
    assert [r.patient_id for r in records] == ["pat0003", "pat0004", "pat0005", "pat0006"]
    images, label, geometry = load_case(records[0])
    reference = nib.load(records[0].label_path)
    assert label.shape == (155, 240, 240) and set(images) == {"flair", "t1c"}
    assert np.array_equal(label, np.asarray(reference.dataobj).transpose(2, 1, 0))
    assert np.allclose(geometry.ijk_to_ras, reference.affine)
    wt, tc, et = labels_to_regions(label, BRATS_REGIONS).astype(bool)
    assert et.any() and np.all(wt >= tc) and np.all(tc >= et)


@pytest.mark.shared_data
def test_real_tcia_dicom_study():
    root = shared_path("tcia_brain_tumor_progression")
    (record,) = read_dicom(root, PGBM_INPUTS)
    assert record.patient_id == "PGBM-001" and record.has_label
    images, label, geometry = load_case(record)
    assert set(images) == set(PGBM_INPUTS) and label.shape == (24, 320, 260)
    assert set(np.unique(label)) == {0, 1}
    itk = sitk.ReadImage([str(p) for p in record.series_files["t1c"]])
    assert np.array_equal(sitk.GetArrayFromImage(itk).astype(np.float32), images["t1c"])
    assert Geometry.from_sitk(itk).is_close(geometry, atol=1e-3)


@pytest.mark.shared_data
def test_real_dicom_seg_matches_nrrd_label(tmp_path):
    root = shared_path("dicom_seg_dcmqi") / "segmentations"
    shutil.copytree(root / "ct-3slice", tmp_path / "ct-3slice")
    shutil.copy(root / "liver.dcm", tmp_path / "liver.dcm")
    (record,) = read_dicom(tmp_path, {"ct": ["*"]})
    _, label, geometry = load_case(record)
    reference = sitk.ReadImage(str(root / "liver_seg.nrrd"))
    assert np.array_equal(label, sitk.GetArrayFromImage(reference).astype(np.uint8))
    assert Geometry.from_sitk(reference).is_close(geometry, atol=1e-3)
