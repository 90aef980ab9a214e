"""Read one image or label file into a numpy array (K, J, I) and its ``Geometry``.

NIfTI goes through nibabel (data (I, J, K) transposed to (K, J, I); the affine is RAS), NRRD /
MetaImage through SimpleITK (LPS converted to RAS), PNG / JPEG / BMP / TIFF through Pillow as 2D
arrays (J, I) with the geometry ITK and Slicer give a 2D file: LPS identity, 1 mm pixels, K = 1.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from PIL import Image

from Training.data.records import DatasetError
from unetseg.engine.geometry import Geometry

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
IMAGE_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# 2D files: LPS identity direction, as ITK (and so Slicer) places them.
FLAT_IJK_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def file_format(path: Path) -> str:
    """``"nifti"``, ``"itk"`` or ``"2d"`` from the file name; DatasetError otherwise."""
    name = path.name.lower()
    for fmt, suffixes in (
        ("nifti", NIFTI_SUFFIXES),
        ("itk", ITK_SUFFIXES),
        ("2d", IMAGE_2D_SUFFIXES),
    ):
        if name.endswith(suffixes):
            return fmt
    raise DatasetError(f"unsupported file type: {path}")


def strip_suffix(name: str) -> str:
    """File name without a known image suffix (``a.nii.gz`` -> ``a``, ``1.jpg`` -> ``1``)."""
    lower = name.lower()
    for suffix in sorted(NIFTI_SUFFIXES + ITK_SUFFIXES + IMAGE_2D_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_image(path: Path) -> tuple[np.ndarray, Geometry]:
    """Pixel data and geometry of an image file.

    Returns:
        float32 array (K, J, I), (C, K, J, I) for a multi-channel 3D file (NIfTI 4th dimension,
        vector NRRD), or (J, I) for a 2D file (colour converted to grey), and its ``Geometry``
        (2D: shape (1, J, I)).

    Raises:
        DatasetError: missing, unsupported or unreadable file (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"file not found: {path}")
    fmt = file_format(path)
    try:
        if fmt == "nifti":
            return _read_nifti(path)
        if fmt == "itk":
            return _read_itk(path)
        return _read_2d(path)
    except DatasetError:
        raise
    except Exception as error:  # any reader failure becomes a DatasetError naming the file
        raise DatasetError(f"cannot read {path}: {error}") from error


def _read_nifti(path: Path) -> tuple[np.ndarray, Geometry]:
    image = nib.load(path)
    data = np.asarray(image.get_fdata(dtype=np.float32))
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim == 5 and data.shape[3] == 1:  # (I, J, K, 1, C): NIfTI vector intent
        data = data[:, :, :, 0]
    if data.ndim not in (3, 4):
        raise DatasetError(f"expected a 3D or 4D NIfTI, got shape {data.shape}: {path}")
    axes = (2, 1, 0) if data.ndim == 3 else (3, 2, 1, 0)
    return np.ascontiguousarray(data.transpose(axes)), Geometry.from_nibabel(image)


def _read_itk(path: Path) -> tuple[np.ndarray, Geometry]:
    image = sitk.ReadImage(str(path))
    data = sitk.GetArrayFromImage(image).astype(np.float32)
    dim = image.GetDimension()
    if dim not in (2, 3):
        raise DatasetError(f"expected a 2D or 3D image, got {dim}D: {path}")
    if image.GetNumberOfComponentsPerPixel() > 1:
        if dim == 2:
            raise DatasetError(f"multi-component 2D images are not supported: {path}")
        data = np.moveaxis(data, -1, 0)
    return np.ascontiguousarray(data), Geometry.from_sitk(image)


def _read_2d(path: Path) -> tuple[np.ndarray, Geometry]:
    with Image.open(path) as image:
        if image.mode not in ("L", "I", "I;16", "F"):
            image = image.convert("L")
        data = np.asarray(image, dtype=np.float32)
    return data, Geometry(FLAT_IJK_TO_RAS, (1, *data.shape))


def to_label(values: np.ndarray, path: Path) -> np.ndarray:
    """Integer label map (uint8) from label pixel data.

    2D masks stored as 0/255 (maximum 255) become 0/1 by thresholding at 128, which also absorbs
    JPEG artefacts; other values must be integers in 0-255.
    """
    if values.ndim == 2 and values.max(initial=0) == 255:
        return (values >= 128).astype(np.uint8)
    rounded = np.rint(values)
    if rounded.size and (np.abs(values - rounded).max() > 1e-3 or rounded.min() < 0):
        raise DatasetError(f"label values must be non-negative integers: {path}")
    if rounded.max(initial=0) > 255:
        raise DatasetError(f"label values above 255 are not supported: {path}")
    return rounded.astype(np.uint8)
