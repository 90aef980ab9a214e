"""Label-map conversions for training targets and evaluation references: value remapping and
nested (sigmoid) regions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from Training.data.records import DatasetError
from unetseg.engine.manifest import LabelSpec

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


class LabelledModel(Protocol):
    """What ``reference_labels`` reads of a model: a ``ModelPackage`` or a ``TrainConfig``."""

    @property
    def activation(self) -> str: ...

    @property
    def labels(self) -> tuple[LabelSpec, ...]: ...


def reference_labels(
    label: np.ndarray, data: Any, model: LabelledModel, case_id: str
) -> np.ndarray:
    """Label map in the model's label values (uint8): the training target, and the reference
    an evaluation compares predictions with.

    ``data.label_map`` is applied first; for sigmoid models ``data.regions`` then turns the
    labels into the nested region index (region ``c`` = ``result >= c``). ``data`` is a
    ``Training.config.SourceConfig`` (one source of a data section) or a single-source
    ``DataConfig``.

    Raises:
        DatasetError: regions given for a softmax model, regions not nested, or label values
            above the model's labels (remap them with ``label_map``).
    """
    if data.label_map:
        label = remap_labels(label, data.label_map)
    if data.regions is not None:
        if model.activation != "sigmoid":
            raise DatasetError("data.regions applies to sigmoid models only")
        masks = [np.isin(label, values) for values in data.regions]
        for c in range(1, len(masks)):
            if np.any(masks[c] & ~masks[c - 1]):
                raise DatasetError(
                    f"case {case_id}: data.regions[{c}] is not inside data.regions[{c - 1}]; "
                    "sigmoid regions must be nested"
                )
        label = np.sum(masks, axis=0, dtype=np.uint8)
    n_labels = len(model.labels)
    top = int(label.max(initial=0))
    if top > n_labels:
        raise DatasetError(
            f"case {case_id}: label value {top} but the model has {n_labels} label(s); "
            "map the data's values to the model's with data.label_map"
        )
    return label.astype(np.uint8, copy=False)
