"""DICOM SEG export and import: round trips checked with pydicom, and the real dcmqi SEG."""

from __future__ import annotations

from dataclasses import replace

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from Testing.case_files import METASTASIS_TERMINOLOGY, SHARED_DATA, needs_shared
from Testing.dicom_factory import rotationMatrix, writeDicomSeries
from unetseg.engine.geometry import Geometry
from unetseg.engine.manifest import LabelSpec, label_specs
from unetseg.host.dicom_seg import readDicomSeg, readDicomSegMasks, writeDicomSeg
from unetseg.host.dicom_series import discoverSeries, loadSeries
from unetseg.untrained import lung_ct_manifest

DCMQI = SHARED_DATA / "dicom_seg_dcmqi" / "segmentations"
PGBM = SHARED_DATA / "tcia_brain_tumor_progression" / "PGBM-001"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"

LABELS = [
    LabelSpec(1, "Metastasis", (230, 80, 60), METASTASIS_TERMINOLOGY),
    LabelSpec(
        2,
        "Edema",
        (40, 200, 90),
        {
            "category": {
                "scheme": "SCT",
                "value": "49755003",
                "meaning": "Morphologically Altered Structure",
            },
            "type": {"scheme": "SCT", "value": "79654002", "meaning": "Edema"},
        },
    ),
]


def _code(item) -> dict[str, str]:
    return {
        "scheme": item.CodingSchemeDesignator,
        "value": item.CodeValue,
        "meaning": item.CodeMeaning,
    }


@pytest.fixture
def oblique_series(tmp_path):
    """Shuffled oblique MR series (6, 10, 12) and its file paths in slice order."""
    volume = np.random.default_rng(0).integers(0, 500, (6, 10, 12)).astype(np.float32)
    paths = writeDicomSeries(
        tmp_path / "mr",
        volume,
        spacing=(0.8, 0.9, 2.5),
        origin=(-30.0, 12.0, 5.0),
        direction=rotationMatrix((1.0, -1.0, 2.0), 20.0),
        instanceNumbers=[6, 5, 4, 3, 2, 1],
    )
    (series,) = discoverSeries(tmp_path / "mr")
    return series, paths


def _labelMap() -> np.ndarray:
    labels = np.zeros((6, 10, 12), dtype=np.uint8)
    labels[1, 2:6, 3:8] = 1
    labels[2, 1:9, 2:10] = 2
    labels[2, 4:6, 5:7] = 1
    labels[4, 0:3, 9:12] = 2  # slices 0, 3 and 5 stay empty
    return labels


def test_seg_round_trip_checked_with_pydicom(tmp_path, oblique_series):
    series, paths = oblique_series
    labels = _labelMap()
    outputPath = writeDicomSeg(
        labels,
        LABELS,
        series,
        tmp_path / "seg.dcm",
        seriesDescription="BrainMet segmentation",
        algorithmName="BrainMetSeg",
        algorithmVersion="1.2.0",
    )

    seg = pydicom.dcmread(outputPath)
    assert seg.SOPClassUID == SEG_STORAGE and seg.Modality == "SEG"
    assert seg.SegmentationType == "BINARY"
    assert seg.SeriesDescription == "BrainMet segmentation"
    assert seg.StudyInstanceUID == series.studyInstanceUID
    assert seg.FrameOfReferenceUID == series.frameOfReferenceUID

    for item, spec in zip(seg.SegmentSequence, LABELS, strict=True):
        assert item.SegmentNumber == spec.value
        assert item.SegmentLabel == spec.name
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentAlgorithmName == "BrainMetSeg"
        algorithm = item.SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == "BrainMetSeg" and algorithm.AlgorithmVersion == "1.2.0"
        terminology = spec.terminology
        assert _code(item.SegmentedPropertyCategoryCodeSequence[0]) == terminology["category"]
        assert _code(item.SegmentedPropertyTypeCodeSequence[0]) == terminology["type"]
        if "anatomic_region" in terminology:
            assert _code(item.AnatomicRegionSequence[0]) == terminology["anatomic_region"]
        else:
            assert "AnatomicRegionSequence" not in item
        rgb = hd.color.CIELabColor.from_dicom_value(item.RecommendedDisplayCIELabValue).to_rgb()
        np.testing.assert_allclose(rgb, spec.color, atol=1)

    (referencedSeries,) = seg.ReferencedSeriesSequence
    assert referencedSeries.SeriesInstanceUID == series.seriesInstanceUID
    referenced = {
        item.ReferencedSOPInstanceUID for item in referencedSeries.ReferencedInstanceSequence
    }
    sourceUIDs = [pydicom.dcmread(p).SOPInstanceUID for p in paths]
    assert referenced == set(sourceUIDs)

    # Every stored frame: its source slice, position and pixels match the written label map.
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    stored = set()
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        segment = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = sourceUIDs.index(source)
        position = item.PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose(
            [float(v) for v in position],
            [float(v) for v in pydicom.dcmread(paths[k]).ImagePositionPatient],
            atol=1e-4,
        )
        np.testing.assert_array_equal(frame, labels[k] == segment)
        stored.add((k, segment))
    nonEmpty = {(k, v) for k in range(6) for v in (1, 2) if np.any(labels[k] == v)}
    assert stored == nonEmpty  # empty frames omitted, none lost

    readLabels, specs = readDicomSeg(outputPath, series)
    np.testing.assert_array_equal(readLabels, labels)
    assert specs == LABELS


def test_seg_from_datasets_and_non_contiguous_values(tmp_path, oblique_series):
    series, paths = oblique_series
    datasets = [pydicom.dcmread(p) for p in paths]  # slice order
    labels = np.zeros((6, 10, 12), dtype=np.uint8)
    labels[0, :2, :2] = 3
    labels[5, 5:, 5:] = 7
    specs = [LabelSpec(7, "Seven"), LabelSpec(3, "Three")]
    outputPath = writeDicomSeg(labels, specs, datasets, tmp_path / "seg.dcm")

    readLabels, readSpecs = readDicomSeg(outputPath, series)
    assert [(s.value, s.name) for s in readSpecs] == [(1, "Three"), (2, "Seven")]
    expected = np.zeros_like(labels)
    expected[labels == 3] = 1
    expected[labels == 7] = 2
    np.testing.assert_array_equal(readLabels, expected)
    tissue = {"scheme": "SCT", "value": "85756007", "meaning": "Tissue"}
    assert readSpecs[0].terminology == {"category": tissue, "type": tissue}


def test_seg_round_trips_a_model_packages_labels(tmp_path, oblique_series):
    series, _ = oblique_series
    labels = _labelMap()
    specs = label_specs(lung_ct_manifest())  # right and left lung, coded and coloured
    outputPath = writeDicomSeg(labels, specs, series, tmp_path / "seg.dcm")
    readLabels, readSpecs = readDicomSeg(outputPath, series)
    np.testing.assert_array_equal(readLabels, labels)
    assert readSpecs == [replace(spec, region=None) for spec in specs]
    # The laterality nests in the property type item, where Slicer and dcmqi read it.
    sides = [
        item.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0]
        for item in pydicom.dcmread(outputPath).SegmentSequence
    ]
    assert [side.CodeMeaning for side in sides] == ["Right", "Left"]


def test_write_rejects_mismatched_input(tmp_path, oblique_series):
    series, _ = oblique_series
    with pytest.raises(ValueError, match="source grid"):
        writeDicomSeg(np.zeros((5, 10, 12), np.uint8), LABELS, series, tmp_path / "a.dcm")
    labels = np.zeros((6, 10, 12), np.uint8)
    labels[0, 0, 0] = 9
    with pytest.raises(ValueError, match=r"\[9\]"):
        writeDicomSeg(labels, LABELS, series, tmp_path / "b.dcm")


def test_read_rejects_seg_of_another_series(tmp_path, oblique_series):
    series, _ = oblique_series
    writeDicomSeries(tmp_path / "other", np.zeros((6, 10, 12)))
    (other,) = discoverSeries(tmp_path / "other")
    outputPath = writeDicomSeg(_labelMap(), LABELS, series, tmp_path / "seg.dcm")
    with pytest.raises(ValueError, match="does not reference"):
        readDicomSeg(outputPath, other)


@needs_shared(DCMQI)
def test_real_dcmqi_seg_matches_its_nrrd_label_maps():
    found = discoverSeries(DCMQI)
    (ct,) = [s for s in found if s.modality == "CT"]
    segs = {s.files[0].name: s for s in found if s.isSeg}
    assert sorted(segs) == ["liver.dcm", "partial_overlaps.dcm"]
    assert segs["liver.dcm"].isMultiFrame and segs["liver.dcm"].numberOfFrames == 3

    _, geometry = loadSeries(ct)
    liverNrrd = sitk.ReadImage(DCMQI / "liver_seg.nrrd")
    assert geometry.is_close(Geometry.from_sitk(liverNrrd), atol=1e-3)

    labels, specs = readDicomSeg(DCMQI / "liver.dcm", ct)
    np.testing.assert_array_equal(labels, sitk.GetArrayFromImage(liverNrrd))
    assert [s.name for s in specs] == ["Liver"]
    assert specs[0].terminology["type"]["meaning"] == "Liver"

    # Five overlapping segments; the NRRDs hold them on three layers, label value = segment.
    masks, specs = readDicomSegMasks(DCMQI / "partial_overlaps.dcm", ct)
    assert masks.shape == (5, 3, 512, 512)
    assert [s.name for s in specs] == ["GREEN", "ORANGE", "PURPLE", "LIGHT_BLUE", "DARK_BLUE"]
    for layer in (1, 2, 3):
        nrrd = sitk.GetArrayFromImage(sitk.ReadImage(DCMQI / f"partial_overlaps-{layer}.nrrd"))
        for value in np.unique(nrrd)[1:]:
            np.testing.assert_array_equal(masks[value - 1], nrrd == value)
    labels, _ = readDicomSeg(DCMQI / "partial_overlaps.dcm", ct)
    for number in range(1, 6):
        higher = masks[number:].any(axis=0)
        np.testing.assert_array_equal(labels[(masks[number - 1] > 0) & ~higher], number)


@needs_shared(DCMQI)
def test_seg_written_on_real_ct_matches_dcmqi(tmp_path):
    (ct,) = [s for s in discoverSeries(DCMQI / "ct-3slice")]
    liverSpine = sitk.GetArrayFromImage(sitk.ReadImage(DCMQI / "liver_spine_seg.nrrd"))
    specs = [LabelSpec(1, "Liver"), LabelSpec(2, "Spine")]
    outputPath = writeDicomSeg(liverSpine.astype(np.uint8), specs, ct, tmp_path / "seg.dcm")
    labels, _ = readDicomSeg(outputPath, ct)
    np.testing.assert_array_equal(labels, liverSpine)
    # Frame positions agree with those dcmqi wrote for the same source slices.
    ours, theirs = (pydicom.dcmread(p) for p in (outputPath, DCMQI / "liver.dcm"))

    def positions(seg):
        return {
            f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID: np.array(
                f.PlanePositionSequence[0].ImagePositionPatient, float
            )
            for f in seg.PerFrameFunctionalGroupsSequence
        }

    ourPositions, theirPositions = positions(ours), positions(theirs)
    assert set(ourPositions) == set(theirPositions)
    for uid, position in theirPositions.items():
        np.testing.assert_allclose(ourPositions[uid], position, atol=1e-3)


@needs_shared(PGBM)
def test_seg_of_real_oblique_mask_series(tmp_path):
    found = {s.seriesDescription: s for s in discoverSeries(PGBM)}
    mask, _ = loadSeries(found["Mask_Tumor"])
    t1post = found["T1post"]
    outputPath = writeDicomSeg(mask.astype(np.uint8), LABELS[:1], t1post, tmp_path / "tumor.dcm")
    labels, specs = readDicomSeg(outputPath, t1post)
    np.testing.assert_array_equal(labels, mask)
    assert specs == LABELS[:1]


def test_empty_segmentation_round_trips(tmp_path, oblique_series):
    series, _ = oblique_series
    empty = np.zeros((6, 10, 12), np.uint8)
    outputPath = writeDicomSeg(empty, LABELS, series, tmp_path / "seg.dcm")
    labels, specs = readDicomSeg(outputPath, series)
    np.testing.assert_array_equal(labels, empty)
    assert [s.name for s in specs] == ["Metastasis", "Edema"]
