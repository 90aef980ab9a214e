"""Label-map conversions for training targets: value remapping and nested (sigmoid) regions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# BraTS nested regions, in the order of the sigmoid channels (whole tumour, tumour core,
# enhancing tumour). BraTS 2015 (1 necrosis, 2 oedema, 3 non-enhancing, 4 enhancing) and
# BraTS 2017-2021 (1 necrotic/non-enhancing core, 2 oedema, 4 enhancing):
BRATS_REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3, 4), "TC": (1, 3, 4), "ET": (4,)}
# BraTS 2023 and later (1 non-enhancing core, 2 oedema/infiltration, 3 enhancing) and the
# ``brats`` layout of ``python -m Training synth`` (default ``--brats-et-label 3``):
BRATS_2023_REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
# Both lungs as one class (lung-ct labels 1 right, 2 left).
MERGE_LUNGS: dict[int, int] = {1: 1, 2: 1}


def remap_labels(label: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    """Label map (uint8, same shape) with each value ``old`` replaced by ``mapping[old]``;
    values not in ``mapping`` are kept (map them to 0 to drop them)."""
    table = np.arange(256, dtype=np.uint8)
    for old, new in mapping.items():
        if not (0 <= old <= 255 and 0 <= new <= 255):
            raise ValueError(f"label values must be in 0-255, got {old} -> {new}")
        table[old] = new
    return table[np.asarray(label, dtype=np.uint8)]


def labels_to_regions(
    label: np.ndarray, regions: Mapping[str, Sequence[int]] | Sequence[Sequence[int]]
) -> np.ndarray:
    """Multi-channel binary target (C, ...) uint8 for a sigmoid model: channel c is 1 where the
    label is one of the values of region c (regions in order, e.g. ``BRATS_REGIONS``: WT, TC,
    ET). Channel c is predicted as label value c + 1 (a later region overwrites an earlier one)."""
    groups = list(regions.values()) if isinstance(regions, Mapping) else list(regions)
    if not groups:
        raise ValueError("at least one region is needed")
    return np.stack([np.isin(label, list(values)) for values in groups]).astype(np.uint8)
