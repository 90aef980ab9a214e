"""DICOM Segmentation objects (BINARY) written and read with highdicom.

Label maps are (K, J, I) arrays on the grid of a source series in the slice order of
``DicomSeries.files``. Segments are described in the model-manifest label format:
``{"value", "name", "color": [r, g, b], "terminology": {"category", "type", "anatomic_region"}}``
with codes as ``{"scheme", "value", "meaning"}``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from unetseg.atomic import write_atomically
from unetseg.engine.manifest import DEFAULT_LABEL_COLOR, LabelSpec
from unetseg.host.dicom_series import DicomSeries

POSITION_TOLERANCE_MM = 0.01
#: Attributes of every source slice that a SEG needs to reference it.
REFERENCE_ATTRIBUTES = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
)
#: Type 2 patient/study attributes copied into a SEG: written empty (as the standard allows)
#: when the source files lack them (highdicom needs them present).
EMPTY_WHEN_ABSENT = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
)

# Used when a label has no terminology: SNOMED CT "Tissue" (Slicer's generic default).
TISSUE = {"scheme": "SCT", "value": "85756007", "meaning": "Tissue"}
#: Keywords of the modifier sequences nested in the property type and anatomic region items.
TYPE_MODIFIER = "SegmentedPropertyTypeModifierCodeSequence"
REGION_MODIFIER = "AnatomicRegionModifierSequence"


def _concept(code: Mapping[str, str]) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(
        value=str(code["value"]),
        scheme_designator=str(code["scheme"]),
        meaning=str(code["meaning"]),
    )


def _code(concept: Any) -> dict[str, str]:
    return {
        "scheme": str(concept.CodingSchemeDesignator),
        "value": str(concept.CodeValue),
        "meaning": str(concept.CodeMeaning),
    }


def _sourceDatasets(source: DicomSeries | Sequence[pydicom.Dataset]) -> list[pydicom.Dataset]:
    if not isinstance(source, DicomSeries):
        return list(source)
    if source.isSeg or source.isMultiFrame:
        raise ValueError(f"series {source.label}: SEG export needs a single-frame image series")
    if source.errors:
        raise ValueError(f"series {source.label}: {'; '.join(source.errors)}")
    datasets = [pydicom.dcmread(path, stop_before_pixels=True) for path in source.files]
    for ds in datasets:
        for keyword in EMPTY_WHEN_ABSENT:
            if keyword not in ds:
                setattr(ds, keyword, "")
    return datasets


def _segmentDescription(
    number: int, spec: LabelSpec, algorithm: hd.AlgorithmIdentificationSequence
) -> hd.seg.SegmentDescription:
    terminology = spec.terminology or {}
    region = terminology.get("anatomic_region")
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=spec.name[:64],
        segmented_property_category=_concept(terminology.get("category", TISSUE)),
        segmented_property_type=_concept(terminology.get("type", TISSUE)),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        anatomic_regions=[_concept(region)] if region else None,
        display_color=hd.color.CIELabColor.from_rgb(*spec.color),
    )
    # highdicom takes no modifiers: they nest in the item they modify (PS3.3 C.8.20.4), as
    # Slicer and dcmqi write them (e.g. "Lung" + "Right").
    modifiers = (
        ("type_modifier", "SegmentedPropertyTypeCodeSequence", TYPE_MODIFIER),
        ("anatomic_region_modifier", "AnatomicRegionSequence", REGION_MODIFIER),
    )
    for key, sequence, keyword in modifiers:
        if terminology.get(key) and sequence in description:
            setattr(getattr(description, sequence)[0], keyword, [_concept(terminology[key])])
    return description


def checkSegSource(sourceSeries: DicomSeries | Sequence[pydicom.Dataset]) -> None:
    """Raise ``ValueError`` naming the series when a DICOM SEG cannot reference it: not a
    single-frame image series, blocking series errors, or slices without the UIDs a reference
    needs (``REFERENCE_ATTRIBUTES``, often emptied by anonymisation). Cheap (headers only):
    run it before the segmentation is computed."""
    _checkReferenceAttributes(sourceSeries, _sourceDatasets(sourceSeries))


def _checkReferenceAttributes(
    sourceSeries: DicomSeries | Sequence[pydicom.Dataset], sources: Sequence[pydicom.Dataset]
) -> None:
    missing = sorted({key for ds in sources for key in REFERENCE_ATTRIBUTES if not ds.get(key)})
    if missing:
        label = sourceSeries.label if isinstance(sourceSeries, DicomSeries) else "source"
        raise ValueError(
            f"cannot write a DICOM SEG for series {label}: its files have no (or empty) "
            f"{', '.join(missing)} (anonymised?), so a SEG could not reference them"
        )


def writeDicomSeg(
    labels: np.ndarray,
    labelSpecs: Sequence[LabelSpec],
    sourceSeries: DicomSeries | Sequence[pydicom.Dataset],
    outputPath: str | Path,
    **options: Any,
) -> Path:
    """``dicomSegBytes(labels, labelSpecs, sourceSeries, **options)`` written atomically to
    ``outputPath`` (``unetseg.atomic``); returns ``outputPath``."""
    return write_atomically(outputPath, dicomSegBytes(labels, labelSpecs, sourceSeries, **options))


def dicomSegBytes(
    labels: np.ndarray,
    labelSpecs: Sequence[LabelSpec],
    sourceSeries: DicomSeries | Sequence[pydicom.Dataset],
    seriesDescription: str = "Segmentation",
    algorithmName: str = "UNetSeg",
    algorithmVersion: str = "1.0",
    seriesNumber: int = 1000,
) -> bytes:
    """``labels`` (K, J, I) uint8 as a BINARY DICOM SEG file referencing ``sourceSeries``.

    ``labels[k]`` must be the segmentation of source slice k (``sourceSeries.files[k]``, or the
    k-th dataset when datasets are passed). Each ``LabelSpec`` of ``labelSpecs`` (terminology
    defaults to SNOMED "Tissue") becomes one segment,
    numbered 1..N in increasing label value (label values 1, 2, ... keep their numbers); frames
    without any voxel of a segment are omitted. Returns the file's bytes (DICOM Part 10).

    Raises:
        ValueError: the series cannot be referenced (see ``checkSegSource``), or the labels do
            not fit it or the specs.
    """
    sources = _sourceDatasets(sourceSeries)
    _checkReferenceAttributes(sourceSeries, sources)
    labels = np.asarray(labels)
    expected = (len(sources), int(sources[0].Rows), int(sources[0].Columns))
    if labels.shape != expected:
        raise ValueError(f"labels shape {labels.shape} does not match the source grid {expected}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer label map, got {labels.dtype}")
    specs = sorted(labelSpecs, key=lambda spec: spec.value)
    values = [spec.value for spec in specs]
    if not values or len(set(values)) != len(values) or not 1 <= min(values) <= max(values) <= 255:
        raise ValueError(f"label values must be unique and in 1..255, got {values}")
    unknown = sorted(set(np.unique(labels).tolist()) - {0, *values})
    if unknown:
        raise ValueError(f"labels contain values without a label spec: {unknown}")
    lookup = np.zeros(max(values) + 1, dtype=np.uint8)
    lookup[values] = np.arange(1, len(values) + 1)
    segmentMap = lookup[labels]

    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithmName, family=codes.cid7162.ArtificialIntelligence, version=algorithmVersion
    )
    descriptions = [
        _segmentDescription(number, spec, algorithm) for number, spec in enumerate(specs, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=segmentMap,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=seriesNumber,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="UNetSeg",
        manufacturer_model_name=algorithmName[:64],
        software_versions=algorithmVersion,
        device_serial_number="0",
        series_description=seriesDescription[:64],
        content_label="SEGMENTATION",
        content_description=seriesDescription[:64],
        omit_empty_frames=True,
        # Real files sometimes carry an empty SpecificCharacterSet, which highdicom rejects.
        specific_character_set=sources[0].get("SpecificCharacterSet") or None,
    )
    buffer = io.BytesIO()
    seg.save_as(buffer)
    return buffer.getvalue()


def _labelSpec(description: hd.seg.SegmentDescription) -> LabelSpec:
    terminology = {
        "category": _code(description.SegmentedPropertyCategoryCodeSequence[0]),
        "type": _code(description.SegmentedPropertyTypeCodeSequence[0]),
    }
    propertyType = description.SegmentedPropertyTypeCodeSequence[0]
    if TYPE_MODIFIER in propertyType:
        terminology["type_modifier"] = _code(getattr(propertyType, TYPE_MODIFIER)[0])
    if "AnatomicRegionSequence" in description:
        region = description.AnatomicRegionSequence[0]
        terminology["anatomic_region"] = _code(region)
        if REGION_MODIFIER in region:
            terminology["anatomic_region_modifier"] = _code(getattr(region, REGION_MODIFIER)[0])
    color = DEFAULT_LABEL_COLOR
    if "RecommendedDisplayCIELabValue" in description:
        lab = hd.color.CIELabColor.from_dicom_value(description.RecommendedDisplayCIELabValue)
        r, g, b = (int(c) for c in lab.to_rgb(clip=True))
        color = (r, g, b)
    return LabelSpec(
        value=int(description.SegmentNumber),
        name=str(description.SegmentLabel),
        color=color,
        terminology=terminology,
    )


def _checkFramePositions(seg: hd.seg.Segmentation, referenceSeries: DicomSeries) -> None:
    """Raise when a SEG frame's position differs from that of the source slice it references."""
    positions = {}
    for path in referenceSeries.files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "ImagePositionPatient" in ds:
            positions[str(ds.SOPInstanceUID)] = np.array(ds.ImagePositionPatient, dtype=float)
    for index, frame in enumerate(seg.PerFrameFunctionalGroupsSequence, start=1):
        if "PlanePositionSequence" not in frame or "DerivationImageSequence" not in frame:
            continue
        position = np.array(frame.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        for derivation in frame.DerivationImageSequence:
            for source in derivation.SourceImageSequence:
                expected = positions.get(str(source.ReferencedSOPInstanceUID))
                if (
                    expected is not None
                    and np.abs(position - expected).max() > POSITION_TOLERANCE_MM
                ):
                    raise ValueError(
                        f"SEG frame {index} is at {position.tolist()} but its source slice "
                        f"{source.ReferencedSOPInstanceUID} is at {expected.tolist()}"
                    )


def readDicomSegMasks(
    path: str | Path, referenceSeries: DicomSeries
) -> tuple[np.ndarray, list[LabelSpec]]:
    """One binary mask per segment, (S, K, J, I) uint8, on the grid of ``referenceSeries``.

    The SEG must reference the series' SOP instances, and each frame must lie at the position of
    the slice it references (checked to 0.01 mm); slices it does not cover are empty.
    The ``LabelSpec``s carry the segment numbers as ``value``.
    """
    seg = hd.seg.segread(path)
    referenced = {uid for _, uid, _ in seg.get_source_image_uids()}
    if referenceSeries.seriesInstanceUID not in referenced:
        raise ValueError(
            f"{path} does not reference series {referenceSeries.seriesInstanceUID} "
            f"({referenceSeries.label})"
        )
    # Many writers (dcmqi among them) omit SpatialLocationsPreserved: check positions instead.
    _checkFramePositions(seg, referenceSeries)
    numbers = list(seg.segment_numbers)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(referenceSeries.sopInstanceUIDs),
        segment_numbers=numbers,
        ignore_spatial_locations=True,
        assert_missing_frames_are_empty=True,
        dtype=np.uint8,
    )
    specs = [_labelSpec(seg.get_segment_description(number)) for number in numbers]
    return np.moveaxis(pixels, -1, 0), specs


def readDicomSeg(
    path: str | Path, referenceSeries: DicomSeries
) -> tuple[np.ndarray, list[LabelSpec]]:
    """Label map (K, J, I) uint8 (value = segment number) on the grid of ``referenceSeries``.

    Where segments overlap, the higher segment number wins (use ``readDicomSegMasks`` to keep
    overlaps). Returns the label map and the segments' ``LabelSpec``s.
    """
    masks, specs = readDicomSegMasks(path, referenceSeries)
    labels = np.zeros(masks.shape[1:], dtype=np.uint8)
    for mask, spec in zip(masks, specs, strict=True):
        labels[mask > 0] = spec.value
    return labels, specs
