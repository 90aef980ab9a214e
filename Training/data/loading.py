"""Load the pixel data of one ``CaseRecord``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from Training.data.dicom import load_dicom_seg, load_dicom_series
from Training.data.labels import remap_labels
from Training.data.records import CaseRecord, DatasetError
from Training.data.volumes import read_image, to_label
from unetseg.engine.geometry import Geometry

GEOMETRY_TOLERANCE_MM = 1e-2  # affine entries of co-registered inputs must agree this well


def load_case(
    record: CaseRecord, *, with_label: bool = True
) -> tuple[dict[str, np.ndarray], np.ndarray | None, Geometry]:
    """Read a case's images (and label) from disk.

    Returns:
        images: input name -> float32 array (K, J, I) (2D datasets: (J, I)), in
            ``record.image_paths`` order; label: uint8 array of the same shape with
            ``record.label_map`` applied, or None (no label or ``with_label=False``);
            geometry: the grid shared by all of them (2D: shape (1, J, I)).

    Raises:
        DatasetError: unreadable file, missing channel, or images / label whose shape or
            geometry differ (the message names the file).
    """
    images: dict[str, np.ndarray] = {}
    geometry: Geometry | None = None
    first_path: Path | None = None
    files: dict[Path, tuple[np.ndarray, Geometry]] = {}  # a 4D file is read once
    sop_uids: dict[str, tuple[str, ...]] = {}
    for name, path in record.image_paths.items():
        if name in record.series_files:
            array, geo, sop_uids[name] = load_dicom_series(record.series_files[name])
        else:
            if path not in files:
                files[path] = read_image(path)
            array, geo = files[path]
            array = _channel(array, record.channels.get(name), path)
        if geometry is None:
            geometry, first_path = geo, path
        else:
            _check_same_grid(geometry, geo, first_path, path)
        images[name] = array

    if geometry is None:
        raise DatasetError(f"case {record.case_id} has no images")
    if not with_label or record.label_path is None:
        return images, None, geometry
    label_path = record.label_path
    if "label" in record.series_files:
        values, label_geometry, _ = load_dicom_series(record.series_files["label"])
        label = to_label(values, label_path)
    elif sop_uids:
        # On the grid of the series it references, which all inputs share.
        label, _ = load_dicom_seg(label_path, sop_uids)
        label_geometry = geometry
    else:
        values, label_geometry = read_image(label_path)
        if values.ndim == 4:
            raise DatasetError(f"label must be a single-channel image: {label_path}")
        label = to_label(values, label_path)
    _check_same_grid(geometry, label_geometry, first_path, label_path)
    if label.shape != next(iter(images.values())).shape:
        raise DatasetError(f"label shape {label.shape} differs from the image's: {label_path}")
    if record.label_map:
        label = remap_labels(label, record.label_map)
    return images, label, geometry


def _channel(array: np.ndarray, channel: int | None, path: Path) -> np.ndarray:
    """One channel of a multi-channel array, or the array itself for a single-channel file."""
    if channel is None:
        if array.ndim == 4:
            raise DatasetError(f"{path} has {array.shape[0]} channels: say which one to use")
        return array
    if array.ndim != 4 or not 0 <= channel < array.shape[0]:
        raise DatasetError(f"{path} has no channel {channel} (array shape {array.shape})")
    return array[channel]


def _check_same_grid(reference: Geometry, other: Geometry, first: Path | None, path: Path) -> None:
    if reference.shape != other.shape:
        raise DatasetError(
            f"shape {other.shape} of {path} differs from shape {reference.shape} of {first}"
        )
    if not reference.is_close(other, atol=GEOMETRY_TOLERANCE_MM):
        raise DatasetError(
            f"geometry of {path} differs from that of {first}: {other} vs {reference}"
        )
