"""Output files of ``python -m unetseg segment`` besides the ``.seg.nrrd`` (numpy only).

- ``--output`` kinds (``outputKind``): ``.seg.nrrd``; ``.nii.gz`` / ``.nii``: a uint8 (uint16
  for values above 255) label map on the reference input's grid and affine, plus a JSON
  sidecar ``<name>.json`` with each label's value, name, colour and terminology codes; a
  folder (a path ending with ``/`` or an existing folder): one binary mask
  ``<segment name>.nii.gz`` per segment, spaces replaced by ``_`` (as TotalSegmentator does).
- ``--statistics out.csv``: one row per segment with its size and the intensity statistics of
  every input inside it; lesion models add ``<stem>_lesions.csv``.

Everything is rendered to bytes here; the caller reserves and writes the files
(``unetseg.outputs``, ``unetseg.atomic``). Nothing here loads Slicer, so the command line can
check its arguments before loading anything.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unetseg.engine.geometry import Geometry
from unetseg.engine.manifest import LabelSpec

SEG_NRRD = "seg_nrrd"
NIFTI = "nifti"
FOLDER = "segment_folder"
NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Intensity statistics per input, in CSV column order.
INTENSITY_STATISTICS = ("mean", "std", "median", "min", "max")
#: Lesion table columns (``lesion_table`` keys of 3D label maps; the host passes 2D images as
#: one-slice volumes), coordinates split into one column per axis.
_LESION_COLUMNS = {
    "id": (),
    "labels": (),
    "voxel_count": (),
    "volume_mm3": (),
    "volume_ml": (),
    "equivalent_diameter_mm": (),
    "centroid_index": ("k", "j", "i"),
    "centroid_mm": ("x", "y", "z"),
    "centroid_ras": ("r", "a", "s"),
    "bbox_start": ("k", "j", "i"),
    "bbox_stop": ("k", "j", "i"),
}
#: Columns of the uncertainty scores (``segmentStatistics(uncertainty=...)``), when present.
_UNCERTAINTY_COLUMNS = ("uncertainty_mean", "low_confidence")


def outputKind(path: str | os.PathLike[str]) -> str:
    """``SEG_NRRD``, ``NIFTI`` or ``FOLDER`` for an ``--output`` value.

    A string ending with a path separator is a folder; otherwise the suffix decides, and a
    path without a known suffix is a folder if one exists there (an existing folder named
    ``x.seg.nrrd`` stays a file output, refused by ``reserve_outputs``).

    Raises:
        ValueError: any other path.
    """
    text = os.fspath(path)
    name = Path(text).name.lower()
    if text.endswith(("/", os.sep)):
        return FOLDER
    if name.endswith(".seg.nrrd"):
        return SEG_NRRD
    if name.endswith(NIFTI_SUFFIXES):
        return NIFTI
    if Path(text).is_dir():
        return FOLDER
    raise ValueError(
        f"--output must end with .seg.nrrd, .nii.gz or .nii, or be a folder (ending with /), "
        f"got {text}"
    )


def outputKinds(paths: Sequence[str | os.PathLike[str]]) -> dict[str, Path]:
    """Kind -> path for the ``--output`` values, at most one of each kind.

    Raises:
        ValueError: a bad suffix, no output, or two outputs of one kind.
    """
    if not paths:
        raise ValueError("--output needs at least one path")
    kinds: dict[str, Path] = {}
    for path in paths:
        kind = outputKind(path)
        if kind in kinds:
            raise ValueError(f"--output gives two outputs of one kind: {kinds[kind]} and {path}")
        kinds[kind] = Path(path)
    return kinds


def checkSuffix(option: str, path: str | os.PathLike[str] | None, suffix: str) -> None:
    """Raise ``ValueError`` unless ``path`` is None or ends with ``suffix``."""
    if path is not None and not Path(path).name.lower().endswith(suffix):
        raise ValueError(f"{option} must end with {suffix}, got {path}")


def sidecarPath(nifti: Path) -> Path:
    """``case.json`` for ``case.nii.gz`` or ``case.nii``."""
    stem = next(nifti.name[: -len(s)] for s in NIFTI_SUFFIXES if nifti.name.lower().endswith(s))
    return nifti.with_name(f"{stem}.json")


def uncertaintyPath(outputs: Mapping[str, Path]) -> Path:
    """``<name>.uncertainty.nrrd`` beside the first of the ``.seg.nrrd``, NIfTI or folder
    outputs (``<folder>/uncertainty.nrrd`` for a folder)."""
    for kind, suffixes in ((SEG_NRRD, (".seg.nrrd",)), (NIFTI, NIFTI_SUFFIXES)):
        if kind in outputs:
            path = outputs[kind]
            stem = next(path.name[: -len(s)] for s in suffixes if path.name.lower().endswith(s))
            return path.with_name(f"{stem}.uncertainty.nrrd")
    return outputs[FOLDER] / "uncertainty.nrrd"


def volumeNrrdBytes(array: np.ndarray, geometry: Geometry) -> bytes:
    """``array`` (K, J, I) on ``geometry`` as a compressed NRRD file (SimpleITK, LPS)."""
    import tempfile

    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array.reshape(geometry.shape)))
    params = geometry.to_sitk_params()
    image.SetSpacing(params["spacing"])
    image.SetOrigin(params["origin"])
    image.SetDirection(params["direction"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "volume.nrrd"
        sitk.WriteImage(image, str(path), useCompression=True)
        return path.read_bytes()


def lesionTablePath(statistics: Path) -> Path:
    """``out_lesions.csv`` for ``out.csv``."""
    return statistics.with_name(f"{statistics.stem}_lesions.csv")


def segmentFileName(spec: LabelSpec) -> str:
    """``<name>.nii.gz`` with whitespace and path separators replaced by ``_``."""
    name = "_".join(spec.name.split())
    for separator in {"/", "\\", os.sep}:
        name = name.replace(separator, "_")
    return f"{name}.nii.gz"


def plannedFiles(
    outputs: Mapping[str, Path],
    labelSpecs: Sequence[LabelSpec],
    statistics: Path | None,
    lesions: bool,
    uncertainty: bool = False,
) -> dict[str, Path]:
    """Every file the outputs mean, as option description -> path (for ``reserve_outputs``);
    with ``uncertainty``, the uncertainty volume (``uncertaintyPath``) too.

    Raises:
        ValueError: two segments would get the same mask file name.
    """
    files: dict[str, Path] = {}
    if SEG_NRRD in outputs:
        files["--output"] = outputs[SEG_NRRD]
    if NIFTI in outputs:
        files["--output (NIfTI)"] = outputs[NIFTI]
        files["--output (NIfTI sidecar)"] = sidecarPath(outputs[NIFTI])
    if FOLDER in outputs:
        names: dict[str, str] = {}
        for spec in _segmentSpecs(labelSpecs):
            fileName = segmentFileName(spec)
            if fileName.lower() in names:
                raise ValueError(
                    f"segments {names[fileName.lower()]!r} and {spec.name!r} would both be "
                    f"written to {fileName}; use a .seg.nrrd or NIfTI output"
                )
            names[fileName.lower()] = spec.name
            files[f"--output (mask of {spec.name!r})"] = outputs[FOLDER] / fileName
    if uncertainty:
        files["--uncertainty"] = uncertaintyPath(outputs)
    if statistics is not None:
        files["--statistics"] = statistics
        if lesions:
            files["--statistics (lesion table)"] = lesionTablePath(statistics)
    return files


def _segmentSpecs(labelSpecs: Sequence[LabelSpec]) -> list[LabelSpec]:
    return [spec for spec in labelSpecs if spec.value != 0]


def niftiBytes(array: np.ndarray, geometry: Geometry, compressed: bool = True) -> bytes:
    """``array`` (K, J, I) on ``geometry`` as a NIfTI-1 file (gzip-compressed by default).

    The affine is ``geometry.ijk_to_ras`` as both sform and qform (code 1, scanner), units mm.
    """
    import nibabel as nib

    if tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"array shape {array.shape} differs from the geometry {geometry.shape}")
    image = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), geometry.ijk_to_ras)
    image.header.set_data_dtype(array.dtype)
    image.header.set_xyzt_units("mm")
    image.set_sform(geometry.ijk_to_ras, code=1)
    image.set_qform(geometry.ijk_to_ras, code=1)
    data = image.to_bytes()
    return gzip.compress(data, compresslevel=6, mtime=0) if compressed else data


def labelmapBytes(labels: np.ndarray, geometry: Geometry, path: Path) -> bytes:
    """The label map as NIfTI (uint8, or uint16 for values above 255), compressed for .gz."""
    labels = np.asarray(labels)
    dtype = np.uint8 if labels.size == 0 or labels.max() < 256 else np.uint16
    return niftiBytes(labels.astype(dtype, copy=False), geometry, path.name.lower().endswith(".gz"))


def sidecarBytes(model: Mapping[str, str], labelSpecs: Sequence[LabelSpec], nifti: Path) -> bytes:
    """JSON sidecar of a NIfTI label map: model, file name and one entry per label."""
    labels = [
        {
            "value": spec.value,
            "name": spec.name,
            "color": list(spec.color),
            "terminology": None if spec.terminology is None else dict(spec.terminology),
        }
        for spec in _segmentSpecs(labelSpecs)
    ]
    sidecar = {"model": dict(model), "file": nifti.name, "background": 0, "labels": labels}
    return json.dumps(sidecar, indent=2).encode()


def segmentMasks(
    labels: np.ndarray, geometry: Geometry, labelSpecs: Sequence[LabelSpec], folder: Path
) -> list[tuple[Path, bytes]]:
    """One compressed uint8 0/1 NIfTI mask per segment (``labels == value``) in ``folder``."""
    return [
        (
            folder / segmentFileName(spec),
            niftiBytes((labels == spec.value).astype(np.uint8), geometry),
        )
        for spec in _segmentSpecs(labelSpecs)
    ]


def intensityStatistics(
    labels: np.ndarray, labelSpecs: Sequence[LabelSpec], images: Mapping[str, np.ndarray | None]
) -> list[dict[str, float | None]]:
    """Per segment, ``{"<input>_<stat>": value}`` for every input and ``INTENSITY_STATISTICS``.

    Args:
        labels: label map (K, J, I).
        labelSpecs: the model's labels (value 0 ignored), in row order.
        images: input name -> intensities on the label map's grid (NaN: outside the input),
            None for a missing optional input.

    Returns:
        One dict per segment; a value is None when the segment holds no voxel of the input.
        ``std`` is the population standard deviation (ddof 0). Values are rounded to 4
        decimals.
    """
    rows = []
    for spec in _segmentSpecs(labelSpecs):
        mask = labels == spec.value
        row: dict[str, float | None] = {}
        for name, image in images.items():
            values = np.empty(0) if image is None else image[mask].astype(np.float64)
            values = values[np.isfinite(values)]
            for statistic in INTENSITY_STATISTICS:
                value = getattr(np, statistic)(values) if values.size else None
                row[f"{name}_{statistic}"] = None if value is None else round(float(value), 4)
        rows.append(row)
    return rows


def statisticsCsvBytes(
    segments: Sequence[Mapping[str, Any]], intensities: Sequence[Mapping[str, float | None]]
) -> bytes:
    """CSV of the segments (``segmentStatistics`` rows) with their intensity statistics:
    ``value, name, voxel_count``, then ``volume_ml`` (``area_cm2`` for single-slice images,
    both to 4 decimals), ``uncertainty_mean`` when scored, and the ``<input>_<stat>``
    columns; empty cells for missing values."""
    rows = []
    for segment, intensity in zip(segments, intensities, strict=True):
        row: dict[str, Any] = {k: segment[k] for k in ("value", "name", "voxel_count")}
        if "area_mm2" in segment:
            row["area_cm2"] = round(segment["area_mm2"] / 100.0, 4)
        else:
            row["volume_ml"] = round(segment["volume_ml"], 4)
        if "uncertainty_mean" in segment:
            score = segment["uncertainty_mean"]
            row["uncertainty_mean"] = None if score is None else round(score, 4)
        rows.append(row | dict(intensity))
    return _csvBytes(rows)


def lesionCsvBytes(lesions: Sequence[Mapping[str, Any]]) -> bytes:
    """CSV of a ``lesion_table`` (header only when there is no lesion): ``labels`` joined by
    ``;``, coordinates one column per axis (``centroid_ras_r``, ``bbox_start_k``, ...), and
    the uncertainty scores when the lesions have them."""
    columns = [
        f"{key}_{axis}" if axis else key
        for key, axes in _LESION_COLUMNS.items()
        for axis in axes or ("",)
    ]
    columns += [key for key in _UNCERTAINTY_COLUMNS if lesions and key in lesions[0]]
    rows = []
    for lesion in lesions:
        row: dict[str, Any] = {"labels": ";".join(str(v) for v in lesion["labels"])}
        for key, value in lesion.items():
            axes = _LESION_COLUMNS.get(key, ())
            if axes:
                row.update(zip([f"{key}_{axis}" for axis in axes], value, strict=True))
            elif key != "labels":
                row[key] = value
        rows.append(row)
    return _csvBytes(rows, columns)


def _csvBytes(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> bytes:
    """Rows as CSV; ``columns`` default to the first row's keys; None is an empty cell.

    Raises:
        ValueError: a row has a key that is not a column.
    """
    text = io.StringIO()
    fields = list(columns) if columns is not None else list(rows[0]) if rows else []
    writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()
