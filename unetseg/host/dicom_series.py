"""DICOM series discovery and loading for the headless path.

Headers are read with pydicom, pixels with SimpleITK.

Slices are ordered along the slice normal (cross product of the ImageOrientationPatient row and
column directions): ``files[0]`` is slice k = 0 of the loaded (K, J, I) array.

Geometry is checked before a multi-slice series is loaded, because SimpleITK would load a bad
one with made-up or stretched geometry (only a warning on stderr): every slice must have
ImagePositionPatient and ImageOrientationPatient, one orientation and one PixelSpacing, distinct
positions stacked along the slice normal, and uniform slice spacing (gaps within 1 % or
0.01 mm of each other: a missing slice is refused, not stretched over). Such series get
``errors`` naming the problem and ``loadSeries`` refuses them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from unetseg.engine.geometry import Geometry

logger = logging.getLogger(__name__)

MEDIA_STORAGE_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"  # DICOMDIR
ORIENTATION_TOLERANCE = 1e-3  # direction cosines
POSITION_TOLERANCE_MM = 1e-3
SPACING_RELATIVE_TOLERANCE = 0.01
SPACING_ABSOLUTE_TOLERANCE_MM = 0.01


@dataclass(frozen=True)
class DicomSeries:
    """One series found on disk; ``files`` and ``sopInstanceUIDs`` are in slice order.

    ``warnings`` are worth showing the user; ``errors`` make ``loadSeries`` refuse the series.
    A series whose files have no SeriesInstanceUID gets an empty UID and is grouped by folder.
    """

    seriesInstanceUID: str
    studyInstanceUID: str
    patientID: str
    seriesDescription: str
    modality: str
    seriesNumber: int | None
    frameOfReferenceUID: str
    files: tuple[Path, ...]
    sopInstanceUIDs: tuple[str, ...]
    numberOfFrames: int
    isSeg: bool
    isMultiFrame: bool
    warnings: tuple[str, ...] = field(default=())
    errors: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        """Short human-readable name: number, description and modality."""
        number = "" if self.seriesNumber is None else f"{self.seriesNumber}: "
        return f"{number}{self.seriesDescription or '(no description)'} [{self.modality}]"


def _readHeader(path: Path) -> pydicom.Dataset | None:
    """Header of a DICOM Part 10 file, or None for non-DICOM files and DICOMDIR."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=False)
    except InvalidDicomError:
        return None
    except Exception as exc:  # truncated or malformed file with a DICM preamble
        logger.warning("Skipping unreadable DICOM file %s: %s", path, exc)
        return None
    sopClass = ds.file_meta.get("MediaStorageSOPClassUID", "") if ds.file_meta else ""
    if sopClass == MEDIA_STORAGE_DIRECTORY_SOP_CLASS or "DirectoryRecordSequence" in ds:
        return None
    if "SOPInstanceUID" not in ds and "SeriesInstanceUID" not in ds:
        # pydicom reads truncated files without error; an instance always has these elements.
        logger.warning("Skipping DICOM file without instance/series UID (truncated?): %s", path)
        return None
    return ds


def _floats(ds: pydicom.Dataset, keyword: str, count: int) -> np.ndarray | None:
    value = ds.get(keyword)
    if value is None or len(value) != count:
        return None
    try:
        return np.array([float(v) for v in value])
    except (TypeError, ValueError):
        return None


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _sortAndCheck(
    paths: list[Path], headers: list[pydicom.Dataset]
) -> tuple[list[int], list[str], list[str]]:
    """Slice order (indices into ``paths``), warnings and blocking errors for one series."""
    warnings: list[str] = []
    errors: list[str] = []
    instanceNumbers = [_int(ds.get("InstanceNumber")) for ds in headers]
    byInstance = sorted(
        range(len(paths)),
        key=lambda n: (instanceNumbers[n] is None, instanceNumbers[n] or 0, paths[n].name),
    )
    sizes = {(ds.get("Rows"), ds.get("Columns")) for ds in headers}
    noSize = [
        str(p)
        for p, ds in zip(paths, headers, strict=True)
        if None in (ds.get("Rows"), ds.get("Columns"))
    ]
    if noSize:
        errors.append(f"no Rows/Columns (truncated file or not an image): {', '.join(noSize[:3])}")
    elif len(sizes) > 1:
        errors.append(f"mixed image sizes (rows, columns): {sorted(sizes)}")
    if len(paths) == 1:
        return [0], warnings, errors

    orientations = [_floats(ds, "ImageOrientationPatient", 6) for ds in headers]
    positions = [_floats(ds, "ImagePositionPatient", 3) for ds in headers]
    unplaced = sum(o is None or p is None for o, p in zip(orientations, positions, strict=True))
    if unplaced:
        errors.append(
            f"ImagePositionPatient/ImageOrientationPatient missing or invalid on {unplaced} of "
            f"{len(paths)} slices: the slice positions are unknown (files kept in InstanceNumber "
            "order)"
        )
        return byInstance, warnings, errors
    if any(np.abs(o - orientations[0]).max() > ORIENTATION_TOLERANCE for o in orientations):
        errors.append("inconsistent ImageOrientationPatient between slices")
    spacings = [_floats(ds, "PixelSpacing", 2) for ds in headers]
    if any(s is None or np.abs(s - spacings[0]).max() > POSITION_TOLERANCE_MM for s in spacings):
        errors.append("missing or inconsistent PixelSpacing between slices")

    normal = np.cross(orientations[0][:3], orientations[0][3:])
    distances = np.array([float(normal @ p) for p in positions])
    rank = {n: r for r, n in enumerate(byInstance)}
    order = sorted(range(len(paths)), key=lambda n: (distances[n], rank[n]))
    gaps = np.diff(distances[order])
    duplicates = int(np.sum(gaps < POSITION_TOLERANCE_MM))
    if duplicates:
        errors.append(
            f"{duplicates + 1} files share slice positions (several echoes, phases or volumes "
            "in one series?)"
        )
        return order, warnings, errors
    tolerance = max(
        SPACING_RELATIVE_TOLERANCE * float(np.median(gaps)), SPACING_ABSOLUTE_TOLERANCE_MM
    )
    if gaps.max() - gaps.min() > tolerance:
        errors.append(
            f"non-uniform slice spacing ({gaps.min():.3g} to {gaps.max():.3g} mm): missing "
            "slices? (resample the series to a regular grid first)"
        )
    stack = positions[order[-1]] - positions[order[0]]
    if abs(float(normal @ stack)) < (1.0 - 1e-4) * float(np.linalg.norm(stack)):
        errors.append(
            "slices are not stacked along their normal (gantry tilt or shear; resample the "
            "series to a regular grid first)"
        )
    return order, warnings, errors


def _makeSeries(paths: list[Path], headers: list[pydicom.Dataset]) -> DicomSeries:
    first = headers[0]
    modality = str(first.get("Modality", "") or "")
    frames = [max(1, _int(ds.get("NumberOfFrames")) or 1) for ds in headers]
    isSeg = modality == "SEG"
    isMultiFrame = max(frames) > 1
    if isSeg or isMultiFrame:
        order, warnings, errors = list(range(len(paths))), [], []
        if isMultiFrame and not isSeg and len(paths) > 1:
            errors.append(f"{len(paths)} multi-frame files in one series")
    else:
        order, warnings, errors = _sortAndCheck(paths, headers)
    if not first.get("SeriesInstanceUID"):
        warnings.append("no SeriesInstanceUID: files grouped by folder")
    return DicomSeries(
        seriesInstanceUID=str(first.get("SeriesInstanceUID", "") or ""),
        studyInstanceUID=str(first.get("StudyInstanceUID", "") or ""),
        patientID=str(first.get("PatientID", "") or ""),
        seriesDescription=str(first.get("SeriesDescription", "") or ""),
        modality=modality,
        seriesNumber=_int(first.get("SeriesNumber")),
        frameOfReferenceUID=str(first.get("FrameOfReferenceUID", "") or ""),
        files=tuple(paths[n] for n in order),
        sopInstanceUIDs=tuple(str(headers[n].get("SOPInstanceUID", "") or "") for n in order),
        numberOfFrames=sum(frames),
        isSeg=isSeg,
        isMultiFrame=isMultiFrame,
        warnings=tuple(warnings),
        errors=tuple(errors),
    )


def discoverSeries(folder: str | Path) -> list[DicomSeries]:
    """All DICOM series under ``folder`` (recursive), grouped by SeriesInstanceUID.

    Only headers are read. Non-DICOM files and DICOMDIR are skipped quietly; malformed DICOM files
    are skipped with a logged warning. Series are sorted by patient, study, series number and
    description.
    """
    groups: dict[tuple[str, str], list[tuple[Path, pydicom.Dataset]]] = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            ds = _readHeader(path)
            if ds is None:
                continue
            uid = str(ds.get("SeriesInstanceUID", "") or "")
            key = (uid, "" if uid else root)
            groups.setdefault(key, []).append((path, ds))
    series = [_makeSeries([p for p, _ in g], [ds for _, ds in g]) for g in groups.values()]
    return sorted(
        series,
        key=lambda s: (
            s.patientID,
            s.studyInstanceUID,
            s.seriesNumber if s.seriesNumber is not None else -1,
            s.seriesDescription,
            s.seriesInstanceUID,
        ),
    )


def _readImage(files: tuple[Path, ...]) -> sitk.Image:
    """Read ``files`` in the given order; name the file at fault when one cannot be read."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    try:
        return reader.Execute()
    except RuntimeError as exc:
        for path in files:
            try:
                sitk.ReadImage(str(path))
            except RuntimeError as fileError:
                raise ValueError(f"cannot read DICOM file {path}: {fileError}") from exc
        raise ValueError(f"cannot read DICOM series ({len(files)} files): {exc}") from exc


def loadSeries(series: DicomSeries) -> tuple[np.ndarray, Geometry]:
    """Voxels (K, J, I) float32 in stored-value units after RescaleSlope/Intercept, and geometry.

    Raises ValueError for SEG objects, series with blocking ``errors`` (mixed sizes, duplicated
    positions), colour images, and files that cannot be read (the failing file is named).
    """
    if series.isSeg:
        raise ValueError(f"series {series.label} is a DICOM SEG: read it with readDicomSeg")
    if series.errors:
        raise ValueError(f"cannot load series {series.label}: {'; '.join(series.errors)}")
    image = _readImage(series.files)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"series {series.label} is not a greyscale image")
    array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    if array.shape[0] != series.numberOfFrames:
        raise ValueError(
            f"series {series.label}: read {array.shape[0]} slices, expected {series.numberOfFrames}"
        )
    return array, Geometry.from_sitk(image)
