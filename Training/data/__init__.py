"""Datasets for training: readers that index folders (``CaseRecord``, no pixels), ``load_case``
to read a case as arrays (K, J, I), label conversions and patient-level splits."""

from Training.data.dicom import DEFAULT_LABEL_PATTERNS, read_dicom
from Training.data.labels import (
    BRATS_2023_REGIONS,
    BRATS_REGIONS,
    MERGE_LUNGS,
    labels_to_regions,
    reference_labels,
    remap_labels,
)
from Training.data.layouts import (
    BRAINMETSHARE_INPUTS,
    BRATS_2015_LABEL_PATTERN,
    BRATS_2015_PATTERNS,
    BRATS_2021_PATTERNS,
    BRATS_LABEL_PATTERN,
    BRATS_LAYOUTS,
    BRATS_PATTERNS,
    decathlon_labels,
    read_brainmetshare,
    read_brats,
    read_decathlon,
    read_image_mask_pairs,
    read_ovarian,
    read_pairs,
)
from Training.data.loading import load_case
from Training.data.records import CaseRecord, DatasetError
from Training.data.splits import Split, fixed_split, kfold, split_cases

__all__ = [
    "BRAINMETSHARE_INPUTS",
    "BRATS_2015_LABEL_PATTERN",
    "BRATS_2015_PATTERNS",
    "BRATS_2021_PATTERNS",
    "BRATS_2023_REGIONS",
    "BRATS_LABEL_PATTERN",
    "BRATS_LAYOUTS",
    "BRATS_PATTERNS",
    "BRATS_REGIONS",
    "DEFAULT_LABEL_PATTERNS",
    "MERGE_LUNGS",
    "CaseRecord",
    "DatasetError",
    "Split",
    "decathlon_labels",
    "fixed_split",
    "kfold",
    "labels_to_regions",
    "load_case",
    "read_brainmetshare",
    "read_brats",
    "read_decathlon",
    "read_dicom",
    "read_image_mask_pairs",
    "read_ovarian",
    "read_pairs",
    "reference_labels",
    "remap_labels",
    "split_cases",
]
