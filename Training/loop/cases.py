"""From a config's ``data`` section to prepared training cases on disk.

``read_records`` indexes the dataset (generating synthetic data first when asked),
``split_records`` makes the patient-level split, and ``prepare_cases`` runs every case once
through the engine's preprocessing (``prepare_inputs``: canonical orientation, model spacing,
normalisation, exactly as the modules do at inference) and stores it with
``save_training_case``; the label follows the same grid change with nearest-neighbour
resampling. Prepared cases are cached under a key of the preprocessing settings, so a resumed
run or a second run with the same settings reuses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from Training import data as datasets
from Training.config import READERS, DataConfig, TrainConfig
from Training.data import CaseRecord, DatasetError, Split, kfold, load_case, split_cases
from Training.data.labels import remap_labels
from Training.sampling import TrainingCase, make_training_case, save_training_case
from unetseg.engine.preprocessing.pipeline import prepare_inputs
from unetseg.engine.preprocessing.resampling import resample_to_geometry

logger = logging.getLogger(__name__)


def data_root(data: DataConfig, run_dir: Path) -> Path:
    """The dataset folder: ``data.root``, or ``<run>/data`` for generated data."""
    return Path(data.root) if data.root is not None else run_dir / "data"


def read_records(data: DataConfig, run_dir: Path) -> list[CaseRecord]:
    """Index the dataset; with ``data.synth`` and no dataset folder, generate it first."""
    root = data_root(data, run_dir)
    if data.synth is not None and not root.exists():
        from Training.synth import write_dataset

        synth = data.synth
        logger.info("generating %d synthetic %s cases in %s", synth.cases, synth.task, root)
        write_dataset(
            synth.task,
            root,
            synth.cases,
            synth.seed,
            size=synth.size,
            layout=synth.layout,
            spacing=synth.spacing,
            canonical=synth.canonical,
        )
    reader = getattr(datasets, READERS[data.reader])
    records = reader(root, **data.options)
    labelled = [record for record in records if record.has_label]
    if not labelled:
        raise DatasetError(f"no labelled cases in {root}")
    return labelled


def split_records(records: Sequence[CaseRecord], data: DataConfig) -> Split:
    """Patient-level split per ``data.split`` (k-fold when ``folds > 1``)."""
    split = data.split
    if split.folds > 1:
        return kfold(records, split.folds, split.seed)[split.fold]
    fractions = [1.0 - split.validation - split.test, split.validation]
    if split.test > 0:
        fractions.append(split.test)
    return split_cases(records, fractions, split.seed)


def preprocessing_key(config: TrainConfig) -> str:
    """Hash of everything that changes a prepared case (inputs and their normalisation,
    spacing, dimensionality, label conversion, data source)."""
    model = config.model
    relevant = {
        "inputs": model["inputs"],
        "spacing_mm": model.get("spacing_mm"),
        "image_size": model.get("image_size"),
        "spatial_dims": model["spatial_dims"],
        "modality": model.get("modality"),
        "activation": config.activation,
        "labels": len(model["labels"]),
        "reader": config.data.reader,
        "options": config.data.options,
        "label_map": sorted(config.data.label_map.items()),
        "regions": config.data.regions,
        "input_names": sorted(config.data.inputs.items()),
    }
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def prepare_cases(
    records: Sequence[CaseRecord], config: TrainConfig, cache_dir: Path
) -> list[Path]:
    """Prepared case folders for ``records`` (in order), preparing the missing ones."""
    folder = cache_dir / preprocessing_key(config)
    paths = []
    for n, record in enumerate(records):
        dest = folder / record.case_id
        if not (dest / "case.json").is_file():
            logger.info("preparing case %s (%d/%d)", record.case_id, n + 1, len(records))
            save_training_case(folder, prepare_case(record, config))
        paths.append(dest)
    return paths


def prepare_case(record: CaseRecord, config: TrainConfig) -> TrainingCase:
    """Load one case and put image and label on the model grid (see module docstring)."""
    images, label, geometry = load_case(record)
    if label is None:
        raise DatasetError(f"case {record.case_id} has no label")
    arrays = []
    for entry in config.model["inputs"]:
        source = config.data.inputs.get(entry["name"], entry["name"])
        if source not in images and entry["required"]:
            raise DatasetError(
                f"case {record.case_id} has no image {source!r} for model input "
                f"{entry['name']!r} (it has {sorted(images)}); map names with data.inputs"
            )
        arrays.append(images.get(source))
    prepared = prepare_inputs(arrays, [geometry] * len(arrays), config.model)
    model_geometry = prepared.model_geometry
    on_grid = resample_to_geometry(label.reshape(geometry.shape), geometry, model_geometry, order=0)
    label = training_labels(on_grid, config, record.case_id)
    image = prepared.image if config.spatial_dims == 3 else prepared.image[:, None]
    return make_training_case(record.case_id, image, label, tuple(model_geometry.spacing))


def training_labels(label: np.ndarray, config: TrainConfig, case_id: str) -> np.ndarray:
    """Apply ``data.label_map`` and ``data.regions`` and check the values fit the model."""
    data = config.data
    if data.label_map:
        label = remap_labels(label, data.label_map)
    if data.regions is not None:
        masks = [np.isin(label, values) for values in data.regions]
        for c in range(1, len(masks)):
            if np.any(masks[c] & ~masks[c - 1]):
                raise DatasetError(
                    f"case {case_id}: data.regions[{c}] is not inside data.regions[{c - 1}]; "
                    f"sigmoid regions must be nested"
                )
        label = np.sum(masks, axis=0, dtype=np.uint8)
    n_labels = len(config.model["labels"])
    top = int(label.max(initial=0))
    if top > n_labels:
        raise DatasetError(
            f"case {case_id}: label value {top} but the model has {n_labels} label(s); "
            f"remap values with data.label_map"
        )
    return label.astype(np.uint8, copy=False)
