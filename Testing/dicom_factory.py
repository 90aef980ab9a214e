"""Synthetic single-frame CT/MR DICOM series for tests (pydicom).

Geometry is given as SimpleITK and DICOM store it, in LPS: ``origin`` is the centre of voxel
(0, 0, 0), ``direction`` is a (3, 3) matrix whose columns are the unit vectors of the I, J and K
axes, ``spacing`` is (I, J, K) in mm. The array is (K, J, I): slice k is ``array[k]``, row j,
column i.
"""

# Keyword arguments are camelCase like the DICOM attributes they set.

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from Training.synth.space import rotation_matrix

SOP_CLASS_UIDS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
}


def rotationMatrix(axis: Sequence[float], degrees: float) -> np.ndarray:
    """(3, 3) rotation about ``axis`` by ``degrees`` (Rodrigues); use it as an oblique direction."""
    return rotation_matrix(axis, degrees)


def _decimalString(values: Sequence[float]) -> list[str]:
    # DS values are at most 16 characters.
    return [f"{float(v):.10g}" for v in values]


def _storedPixels(values: np.ndarray, slope: float, intercept: float) -> tuple[np.ndarray, int]:
    """Stored integers for ``values`` and the PixelRepresentation (0 unsigned, 1 signed)."""
    stored = np.rint((values.astype(np.float64) - intercept) / slope)
    if stored.min() >= 0 and stored.max() <= np.iinfo(np.uint16).max:
        return stored.astype(np.uint16), 0
    if stored.min() >= np.iinfo(np.int16).min and stored.max() <= np.iinfo(np.int16).max:
        return stored.astype(np.int16), 1
    raise ValueError("values do not fit 16-bit stored pixels with this slope/intercept")


def writeDicomSeries(
    folder: str | Path,
    array: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    direction: np.ndarray | Sequence[float] | None = None,
    modality: str = "MR",
    seriesDescription: str = "Synthetic series",
    studyUID: str | None = None,
    seriesUID: str | None = None,
    frameOfReferenceUID: str | None = None,
    patientID: str = "UNETSEG-TEST",
    seriesNumber: int = 1,
    rescaleSlope: float = 1.0,
    rescaleIntercept: float | None = None,
    instanceNumbers: Sequence[int] | None = None,
    shuffle: bool = True,
    seed: int = 0,
    attributes: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``array`` (K, J, I) as one single-frame DICOM file per slice under ``folder``.

    CT series get RescaleSlope/Intercept (intercept -1024 by default) so that stored values are
    ``(array - intercept) / slope``; MR series only get them when ``rescaleIntercept`` is given
    or the slope is not 1. File names start with a hash of the SeriesInstanceUID, so several
    series can share ``folder``; ``shuffle`` numbers them so that their lexical order is not the
    slice order and readers must sort by position. ``attributes`` sets extra keywords on every file
    (value None deletes the attribute, e.g. ``{"ImagePositionPatient": None}``).

    Returns the written paths in slice order: ``paths[k]`` holds ``array[k]``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"array must be (K, J, I), got shape {array.shape}")
    if modality not in SOP_CLASS_UIDS:
        raise ValueError(f"modality must be one of {sorted(SOP_CLASS_UIDS)}")
    numSlices, rows, columns = array.shape
    matrix = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
    matrix = matrix.reshape(3, 3)
    origin = np.asarray(origin, dtype=np.float64)
    if rescaleIntercept is None and modality == "CT":
        rescaleIntercept = -1024.0
    writeRescale = rescaleIntercept is not None or rescaleSlope != 1.0
    intercept = 0.0 if rescaleIntercept is None else float(rescaleIntercept)
    stored, pixelRepresentation = _storedPixels(array, rescaleSlope, intercept)

    studyUID = studyUID or generate_uid()
    seriesUID = seriesUID or generate_uid()
    frameOfReferenceUID = frameOfReferenceUID or generate_uid()
    numbers = list(instanceNumbers) if instanceNumbers is not None else range(1, numSlices + 1)
    prefix = hashlib.sha1(seriesUID.encode()).hexdigest()[:8] + "_"
    names = np.arange(numSlices)
    if shuffle and numSlices > 1:
        names = np.random.default_rng(seed).permutation(numSlices)
        if np.array_equal(names, np.sort(names)):
            names = names[::-1]

    paths = []
    for k in range(numSlices):
        sopInstanceUID = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SOP_CLASS_UIDS[modality]
        meta.MediaStorageSOPInstanceUID = sopInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = SOP_CLASS_UIDS[modality]
        ds.SOPInstanceUID = sopInstanceUID
        ds.Modality = modality
        ds.PatientName = "Synthetic^Patient"
        ds.PatientID = patientID
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyInstanceUID = studyUID
        ds.StudyID = "1"
        ds.StudyDate = "20240101"
        ds.StudyTime = "120000"
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.SeriesInstanceUID = seriesUID
        ds.SeriesNumber = seriesNumber
        ds.SeriesDescription = seriesDescription
        ds.Manufacturer = "UNetSeg test factory"
        ds.InstanceNumber = int(numbers[k])
        ds.FrameOfReferenceUID = frameOfReferenceUID
        ds.PositionReferenceIndicator = ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = _decimalString(origin + k * spacing[2] * matrix[:, 2])
        ds.ImageOrientationPatient = _decimalString([*matrix[:, 0], *matrix[:, 1]])
        ds.PixelSpacing = _decimalString([spacing[1], spacing[0]])  # row spacing (J), column (I)
        ds.SliceThickness = _decimalString([spacing[2]])[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = pixelRepresentation
        if writeRescale:
            ds.RescaleSlope = _decimalString([rescaleSlope])[0]
            ds.RescaleIntercept = _decimalString([intercept])[0]
            ds.RescaleType = "HU" if modality == "CT" else "US"
        for keyword, value in (attributes or {}).items():
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        path = folder / f"{prefix}{names[k]:05d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
