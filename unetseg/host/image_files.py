"""Integrity checks of image files: inputs before Slicer's readers see them, outputs after
Slicer's writers made them.

Slicer's NIfTI reader reads a truncated file (``.nii`` or ``.nii.gz``) without an error, the
missing voxels being zeros, and turns NaN and infinite voxels into 0, so neither can be seen
after loading. NIfTI files are therefore read a second time here, with nibabel, from the fully
decompressed bytes (a gzip stream that ends early or fails its CRC is refused), and their stored
values are checked before any conversion. NRRD and MetaImage readers report truncation
themselves, and keep NaN values for the engine's finiteness check.

Slicer's NRRD writer (teem) reports success when the disk is full or a file size limit is hit,
leaving a truncated file: ``checkNrrdFile`` checks a written file's data against its header.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: Bytes per value of teem's NRRD type names.
NRRD_TYPE_BYTES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8"), 1),
    **dict.fromkeys(("uint8_t", "short", "short int", "signed short", "int16", "int16_t"), 2),
    **dict.fromkeys(("signed short int", "ushort", "unsigned short", "uint16", "uint16_t"), 2),
    **dict.fromkeys(("unsigned short int", "int", "signed int", "int32", "int32_t"), 4),
    **dict.fromkeys(("uint", "unsigned int", "uint32", "uint32_t", "float"), 4),
    **dict.fromkeys(("longlong", "long long", "long long int", "int64", "int64_t"), 8),
    **dict.fromkeys(("ulonglong", "unsigned long long", "uint64", "uint64_t", "double"), 8),
}
GZIP_MAGIC = b"\x1f\x8b"
# sizeof_hdr of NIfTI-1 and NIfTI-2 headers, in either byte order.
_NIFTI_CLASSES = {348: nib.Nifti1Image, 540: nib.Nifti2Image}


class DamagedImageError(OSError):
    """An image file is truncated, fails its checksum, or holds NaN/infinite values."""


def checkImageFile(path: str | Path) -> None:
    """Raise ``DamagedImageError`` (naming ``path``) for a damaged NIfTI file; other formats
    and files that are not NIfTI at all are left to the reader."""
    path = Path(path)
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        _checkNifti(path)


def _checkNifti(path: Path) -> None:
    data = path.read_bytes()
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as error:
            raise DamagedImageError(
                f"'{path}' is damaged or truncated (gzip: {error}); copy it again"
            ) from None
    imageClass = _niftiClass(data)
    if imageClass is None:
        return  # not NIfTI: the reader says what it is not
    try:
        image = imageClass.from_bytes(data)
        voxels = np.asarray(image.dataobj.get_unscaled())
    except (OSError, ValueError, EOFError) as error:
        message = " ".join(str(error).split())
        raise DamagedImageError(f"'{path}' is truncated or damaged ({message})") from None
    slope, intercept = image.header.get_slope_inter()
    if not all(v is None or np.isfinite(v) for v in (slope, intercept)):
        raise DamagedImageError(f"'{path}' has a non-finite scaling (scl_slope/scl_inter)")
    _checkFinite(path, voxels)


def _niftiClass(data: bytes) -> type | None:
    for order in ("little", "big"):
        imageClass = _NIFTI_CLASSES.get(int.from_bytes(data[:4], order))
        if imageClass is not None:
            return imageClass
    return None


def _checkFinite(path: Path, voxels: np.ndarray) -> None:
    """Raise when floating-point ``voxels`` (any shape) hold NaN or infinite values."""
    if voxels.dtype.kind not in "fc":
        return
    finite = np.isfinite(voxels)
    if finite.all():
        return
    nans = int(np.isnan(voxels).sum())
    infinite = int(finite.size - finite.sum()) - nans
    raise DamagedImageError(
        f"'{path}' holds {nans} NaN and {infinite} infinite voxel values out of {voxels.size}; "
        "fix or mask them before segmenting"
    )


def checkNrrdFile(path: str | Path) -> None:
    """Raise ``DamagedImageError`` when the attached data of NRRD file ``path`` is shorter or
    longer than its header says (or its gzip stream is cut); data in other encodings or in
    detached files is not checked."""
    path = Path(path)
    data = path.read_bytes()
    end = data.find(b"\n\n")
    if not data.startswith(b"NRRD") or end < 0:
        raise DamagedImageError(f"'{path}' is not a complete NRRD file (header cut)")
    fields = {}
    for line in data[:end].decode("latin-1").splitlines()[1:]:
        key, separator, value = line.partition(": ")
        if separator and not line.startswith("#"):
            fields[key.strip().lower()] = value.strip()
    valueBytes = NRRD_TYPE_BYTES.get(fields.get("type", ""))
    encoding = fields.get("encoding", "")
    if valueBytes is None or "data file" in fields or encoding not in ("raw", "gzip", "gz"):
        return
    payload = data[end + 2 :]
    if encoding != "raw":
        try:
            payload = gzip.decompress(payload)
        except (EOFError, OSError, zlib.error) as error:
            raise DamagedImageError(f"'{path}' is truncated (gzip: {error})") from None
    expected = valueBytes * int(np.prod([int(n) for n in fields.get("sizes", "0").split()]))
    if len(payload) != expected:
        raise DamagedImageError(
            f"'{path}' holds {len(payload)} bytes of data, its header describes {expected}"
        )
