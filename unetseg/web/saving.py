"""Saving the edited segmentation: ``.seg.nrrd`` and DICOM SEG, for download and into the
output folder.

Files go only inside the output folder: the name comes from the segmentation's name reduced
to safe characters, never from a client path, and an existing file is never replaced (a
number is added). Every write is atomic (``unetseg.atomic``).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unetseg.atomic import write_atomically
from unetseg.engine.manifest import LabelSpec
from unetseg.host.dicom_seg import dicomSegBytes
from unetseg.host.dicom_series import DicomSeries
from unetseg.host.scene_io import saveSegmentation, writeSegmentationFile
from unetseg.host.segmentation import segmentId
from unetseg.web.results import labels_from_segmentation, segment_ids, segment_specs

SEG_NRRD = ".seg.nrrd"
DICOM_SEG = ".dcm"


def file_stem(name: str) -> str:
    """A file name stem from a node name: letters, digits, ``-`` and ``_`` only."""
    stem = re.sub(r"[^0-9A-Za-z_-]+", "_", name).strip("_.")[:100]
    return stem or "segmentation"


class OutputFolder:
    """The server folder that saving may write to (created when missing)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def new_path(self, name: str, suffix: str) -> Path:
        """A path for ``name`` + ``suffix`` inside the folder that no file has yet.

        Raises:
            ValueError: the result would lie outside the folder (cannot happen with
                ``file_stem``; checked anyway).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        stem = file_stem(name)
        path = self.root / f"{stem}{suffix}"
        number = 1
        while path.exists():
            path = self.root / f"{stem}-{number}{suffix}"
            number += 1
        if path.resolve().parent != self.root:
            raise ValueError(f"Refusing to write outside the output folder: {path}")
        return path

    def save_seg_nrrd(self, segmentation_node: Any) -> Path:
        """Write the node as ``<name>.seg.nrrd`` here; returns the path."""
        path = self.new_path(segmentation_node.GetName(), SEG_NRRD)
        return saveSegmentation(segmentation_node, path)

    def save_dicom_seg(self, segmentation_node: Any, data: bytes) -> Path:
        """Write DICOM SEG bytes (``dicom_seg_bytes``) as ``<name>.dcm`` here."""
        return write_atomically(self.new_path(segmentation_node.GetName(), DICOM_SEG), data)


def seg_nrrd_bytes(segmentation_node: Any) -> bytes:
    """The node as ``.seg.nrrd`` file bytes (for a download), written through a temporary file."""
    storage = segmentation_node.GetStorageNode()
    previous = storage.GetFileName() if storage is not None else None
    with tempfile.TemporaryDirectory(prefix="unetseg-web-") as folder:
        path = Path(folder) / f"{file_stem(segmentation_node.GetName())}{SEG_NRRD}"
        writeSegmentationFile(segmentation_node, path)
        data = path.read_bytes()
    if previous:  # the node keeps pointing to its saved file, not to the temporary one
        segmentation_node.GetStorageNode().SetFileName(previous)
    return data


def dicom_seg_bytes(
    segmentation_node: Any,
    reference_volume: Any,
    series: DicomSeries | None,
    model_labels: Sequence[LabelSpec] = (),
    model_id: str | None = None,
) -> bytes:
    """The segmentation as a DICOM SEG referencing the reference volume's DICOM series.

    Segments keep their current names and colours; a segment the model made keeps its
    terminology codes, others are coded "Tissue".

    Raises:
        ValueError: the reference volume was not loaded from DICOM, or the series cannot be
            referenced (see ``unetseg.host.dicom_seg``).
    """
    if series is None:
        raise ValueError(
            "DICOM SEG needs a reference volume loaded from DICOM (a zip of DICOM files or a "
            "DICOM folder); save as .seg.nrrd instead"
        )
    ids = segment_ids(segmentation_node)
    if not ids:
        raise ValueError("The segmentation has no segments")
    codes = {segmentId(spec, model_id): spec.terminology for spec in model_labels}
    specs = segment_specs(segmentation_node, ids, codes)
    labels = labels_from_segmentation(segmentation_node, reference_volume, ids)
    return dicomSegBytes(
        labels,
        specs,
        series,
        seriesDescription=segmentation_node.GetName(),
    )
