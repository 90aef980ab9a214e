"""Index entries of a dataset (paths only, no pixel data) and the dataset error type."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class DatasetError(ValueError):
    """A dataset folder or file that cannot be used; the message names the offending path."""


@dataclass(frozen=True)
class CaseRecord:
    """One case of a dataset: where its images and label are, nothing loaded.

    Attributes:
        case_id: unique within the dataset.
        patient_id: cases of one patient share it; splits never separate them.
        image_paths: input name -> file (NIfTI, NRRD, MHA, PNG, JPEG) or, for DICOM, the folder of
            the series (its slices are in ``series_files``).
        label_path: label file (NIfTI, NRRD, PNG mask, DICOM SEG) or DICOM label-series folder;
            None for inference-only cases.
        channels: input name -> channel index, for inputs stored as one channel of a 4D file.
        series_files: DICOM only: input name (or ``"label"``) -> slice files in slice order.
        label_map: label value remapping applied on loading (values not listed are kept).
        split: name of the split folder the case came from (BrainMetShare ``train``/``test``),
            or of the dataset part (``"training"``/``"test"``); None when the layout has none.
        source: name of the data source (``data.sources``) the case belongs to; None for
            single-source data.
    """

    case_id: str
    patient_id: str
    image_paths: Mapping[str, Path]
    label_path: Path | None = None
    channels: Mapping[str, int] = field(default_factory=dict)
    series_files: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)
    label_map: Mapping[int, int] | None = None
    split: str | None = None
    source: str | None = None

    @property
    def has_label(self) -> bool:
        """False for inference-only cases (never used for training or validation)."""
        return self.label_path is not None

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self.image_paths)


def file_stem(case_id: str) -> str:
    """``case_id`` made safe for a file name (characters other than word, ``.``, ``-`` become
    ``_``), for the files written per case."""
    return re.sub(r"[^\w.-]+", "_", case_id)
