"""DICOM datasets: index series from headers only, load a series or a DICOM SEG when needed.

Indexing reads each file's header (``stop_before_pixels``), groups files by SeriesInstanceUID and
series by patient and study (one case per study), orders slices by ImagePositionPatient along the
slice normal (cross product of the ImageOrientationPatient row and column directions), and picks
each input's series by SeriesDescription patterns. A case's label is a DICOM SEG (highdicom)
referencing one of its input series, or a label series on the same grid (SeriesDescription
matching ``label_patterns``, e.g. TCIA ``Mask_Tumor``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from Training.data.records import CaseRecord, DatasetError
from unetseg.engine.geometry import Geometry

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
DICOMDIR_SOP_CLASS_UID = "1.2.840.10008.1.3.10"
DEFAULT_LABEL_PATTERNS = ("*mask*", "*seg*", "*label*")
SPACING_TOLERANCE = 0.01  # relative variation of slice spacing accepted
HEADER_TAGS = [
    "PatientID",
    "StudyInstanceUID",
    "StudyDate",
    "SeriesInstanceUID",
    "SeriesDescription",
    "Modality",
    "SOPClassUID",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "ReferencedSeriesSequence",
]


@dataclass
class _Series:
    uid: str
    study_uid: str
    patient_id: str
    study_date: str
    description: str
    is_seg: bool
    referenced_series: str = ""
    slices: list[tuple[float, Path]] = field(default_factory=list)

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(path for _, path in sorted(self.slices, key=lambda item: item[0]))

    @property
    def folder(self) -> Path:
        return Path(os.path.commonpath([str(path.parent) for _, path in self.slices]))


def read_dicom(
    root: str | Path,
    inputs: Mapping[str, Sequence[str]],
    *,
    label_patterns: Sequence[str] = DEFAULT_LABEL_PATTERNS,
    require_label: bool = False,
    skip_incomplete: bool = False,
) -> list[CaseRecord]:
    """Index the DICOM files under ``root`` (recursively) as one case per study.

    Args:
        inputs: input name -> SeriesDescription glob patterns (case-insensitive), e.g.
            ``{"t1c": ["*t1*post*", "*t1*gd*"], "flair": ["*flair*"]}``; each must match exactly
            one series of a study.
        label_patterns: SeriesDescription patterns of label series (DICOM SEG objects are labels
            whatever their description).
        require_label: raise for a study without a label (default: index it with
            ``has_label == False``, inference only).
        skip_incomplete: leave out studies missing an input instead of raising.

    Returns:
        Records sorted by case id; ``patient_id`` is PatientID, ``case_id`` is PatientID
        (``PatientID_StudyDate[-n]`` when the patient has several studies); ``image_paths`` are
        series folders and ``series_files`` the slices in order.

    Raises:
        DatasetError: missing folder, unreadable header, no DICOM files, a series without
            position/orientation, an ambiguous or missing input or label series.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise DatasetError(f"DICOM folder not found: {folder}")
    series = _scan(folder)
    if not series:
        raise DatasetError(f"no DICOM files found under {folder}")
    studies: dict[tuple[str, str], list[_Series]] = {}
    for item in series.values():
        studies.setdefault((item.patient_id, item.study_uid), []).append(item)

    found: list[tuple[_Series, dict[str, Any]]] = []
    for (patient_id, study_uid), members in sorted(studies.items()):
        fields = _study_fields(members, inputs, label_patterns, require_label)
        if fields is None and not skip_incomplete:
            missing = [n for n in inputs if not _matching(members, inputs[n], label_patterns)]
            raise DatasetError(
                f"study {study_uid} of patient {patient_id} under {members[0].folder.parent} "
                f"has no series for input(s) {missing}"
            )
        if fields is not None:
            found.append((members[0], fields))
    if not found:
        raise DatasetError(f"no complete study under {folder}")
    ids = _case_ids([first for first, _ in found])
    records = [
        CaseRecord(case_id=case_id, patient_id=first.patient_id, **fields)
        for case_id, (first, fields) in zip(ids, found, strict=True)
    ]
    return sorted(records, key=lambda r: r.case_id)


def _case_ids(studies: Sequence[_Series]) -> list[str]:
    """PatientID, or PatientID_StudyDate (then -2, -3, ...) for patients with several studies."""
    per_patient: dict[str, int] = {}
    for study in studies:
        per_patient[study.patient_id] = per_patient.get(study.patient_id, 0) + 1
    ids: list[str] = []
    for study in studies:
        case_id = study.patient_id
        if per_patient[study.patient_id] > 1:
            case_id = f"{study.patient_id}_{study.study_date or 'study'}"
        candidate, n = case_id, 1
        while candidate in ids:
            n += 1
            candidate = f"{case_id}-{n}"
        ids.append(candidate)
    return ids


def _scan(root: Path) -> dict[str, _Series]:
    series: dict[str, _Series] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
        except InvalidDicomError:
            continue  # not a DICOM Part 10 file (notes, licences, ...)
        except Exception as error:
            raise DatasetError(f"cannot read DICOM header of {path}: {error}") from error
        if "SeriesInstanceUID" not in header or header.get("SOPClassUID") == DICOMDIR_SOP_CLASS_UID:
            continue
        uid = str(header.SeriesInstanceUID)
        is_seg = header.get("SOPClassUID") == SEG_SOP_CLASS_UID or header.get("Modality") == "SEG"
        item = series.get(uid)
        if item is None:
            referenced = ""
            if is_seg and header.get("ReferencedSeriesSequence"):
                referenced = str(header.ReferencedSeriesSequence[0].SeriesInstanceUID)
            item = series[uid] = _Series(
                uid=uid,
                study_uid=str(header.get("StudyInstanceUID", "")),
                patient_id=str(header.get("PatientID", "")) or "unknown",
                study_date=str(header.get("StudyDate", "")),
                description=str(header.get("SeriesDescription", "")),
                is_seg=is_seg,
                referenced_series=referenced,
            )
        item.slices.append((0.0 if is_seg else _slice_position(header, path), path))
    return series


def _slice_position(header: pydicom.Dataset, path: Path) -> float:
    """Position (mm) of a slice along its normal."""
    if "ImagePositionPatient" not in header or "ImageOrientationPatient" not in header:
        raise DatasetError(f"DICOM slice without ImagePositionPatient/Orientation: {path}")
    orientation = np.asarray(header.ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    return float(normal @ np.asarray(header.ImagePositionPatient, dtype=np.float64))


def _is_label(item: _Series, label_patterns: Sequence[str]) -> bool:
    description = item.description.lower()
    return item.is_seg or any(fnmatch(description, p.lower()) for p in label_patterns)


def _matching(
    members: Sequence[_Series], patterns: Sequence[str], label_patterns: Sequence[str]
) -> list[_Series]:
    return [
        item
        for item in members
        if not _is_label(item, label_patterns)
        and any(fnmatch(item.description.lower(), p.lower()) for p in patterns)
    ]


def _study_fields(
    members: list[_Series],
    inputs: Mapping[str, Sequence[str]],
    label_patterns: Sequence[str],
    require_label: bool,
) -> dict[str, Any] | None:
    """``CaseRecord`` fields (paths) of one study, or None when an input has no series."""
    chosen: dict[str, _Series] = {}
    for name, patterns in inputs.items():
        candidates = _matching(members, patterns, label_patterns)
        if not candidates:
            return None
        if len(candidates) > 1:
            found = ", ".join(repr(c.description) for c in candidates)
            raise DatasetError(
                f"input {name!r} matches several series ({found}) under "
                f"{candidates[0].folder.parent}: make its patterns more specific"
            )
        chosen[name] = candidates[0]
    labels = [item for item in members if _is_label(item, label_patterns)]
    where = members[0].folder.parent
    if len(labels) > 1:
        found = ", ".join(f"{c.description!r} ({c.folder})" for c in labels)
        raise DatasetError(f"several label series in one study under {where}: {found}")
    if not labels and require_label:
        raise DatasetError(f"no label series in the study under {where}")

    series_files = {name: item.files for name, item in chosen.items()}
    label_path = None
    if labels:
        label = labels[0]
        if label.is_seg:
            if label.referenced_series not in {item.uid for item in chosen.values()}:
                raise DatasetError(
                    f"DICOM SEG {label.files[0]} does not reference any input series of its study"
                )
            label_path = label.files[0]
        else:
            series_files["label"] = label.files
            label_path = label.folder
    return {
        "image_paths": {name: item.folder for name, item in chosen.items()},
        "label_path": label_path,
        "series_files": series_files,
    }


def load_dicom_series(files: Sequence[Path]) -> tuple[np.ndarray, Geometry, tuple[str, ...]]:
    """Pixel data of single-frame slices given in slice order.

    Returns:
        float32 array (K, J, I) after the modality LUT (rescale slope/intercept: HU for CT),
        its ``Geometry`` and the SOPInstanceUIDs in slice order.

    Raises:
        DatasetError: unreadable file, multi-frame file, or slices whose size, orientation or
            spacing disagree (the message names the file or series folder).
    """
    slices, uids, positions = [], [], []
    first: pydicom.Dataset | None = None
    for path in files:
        try:
            ds = pydicom.dcmread(path)
            pixels = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        except Exception as error:
            raise DatasetError(f"cannot read DICOM pixel data of {path}: {error}") from error
        if pixels.ndim != 2:
            raise DatasetError(f"multi-frame or colour DICOM images are not supported: {path}")
        if first is None:
            first = ds
        elif pixels.shape != slices[0].shape or not np.allclose(
            np.asarray(ds.ImageOrientationPatient, float),
            np.asarray(first.ImageOrientationPatient, float),
            atol=1e-4,
        ):
            raise DatasetError(f"slice size or orientation differs from the series': {path}")
        slices.append(pixels)
        uids.append(str(ds.SOPInstanceUID))
        positions.append(np.asarray(ds.ImagePositionPatient, dtype=np.float64))
    if first is None:
        raise DatasetError("empty DICOM series")
    return np.stack(slices), _series_geometry(first, positions, files), tuple(uids)


def _series_geometry(
    first: pydicom.Dataset, positions: Sequence[np.ndarray], files: Sequence[Path]
) -> Geometry:
    orientation = np.asarray(first.ImageOrientationPatient, dtype=np.float64)
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    if len(positions) > 1:
        steps = np.diff([normal @ p for p in positions])
        slice_spacing = float(np.mean(steps))
        if (
            slice_spacing <= 0
            or np.abs(steps - slice_spacing).max() > SPACING_TOLERANCE * slice_spacing
        ):
            raise DatasetError(
                f"non-uniform or duplicate slice positions in series {Path(files[0]).parent}"
            )
    else:
        slice_spacing = float(
            first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0
        )
    direction = np.column_stack([row, column, normal])
    shape = (len(positions), int(first.Rows), int(first.Columns))
    return Geometry.from_lps(
        (column_spacing, row_spacing, slice_spacing), positions[0], direction, shape
    )


def load_dicom_seg(path: Path, references: Mapping[str, Sequence[str]]) -> tuple[np.ndarray, str]:
    """Label map of a DICOM SEG on the grid of the series it was derived from.

    Args:
        references: candidate input name -> SOPInstanceUIDs of its series in slice order.

    Returns:
        (K, J, I) uint8 label map (value = segment number) and the input name whose grid it is on.

    Raises:
        DatasetError: unreadable SEG, no candidate series referenced, overlapping segments, or
            more than 255 segments.
    """
    import highdicom as hd

    try:
        seg = hd.seg.segread(path)
        sources = {str(sop) for _, _, sop in seg.get_source_image_uids()}
        name = next((n for n, uids in references.items() if sources & set(uids)), None)
        if name is None:
            raise DatasetError(f"DICOM SEG {path} references none of the case's input series")
        if seg.segment_numbers and max(seg.segment_numbers) > 255:
            raise DatasetError(f"more than 255 segments in {path}")
        # Many SEG writers (dcmqi, ...) omit SpatialLocationsPreserved; the frames are matched
        # to source slices by their references.
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=list(references[name]),
            combine_segments=True,
            ignore_spatial_locations=True,
        )
    except DatasetError:
        raise
    except Exception as error:
        raise DatasetError(f"cannot read DICOM SEG {path}: {error}") from error
    return pixels.astype(np.uint8), name
