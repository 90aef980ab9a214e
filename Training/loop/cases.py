"""From a config's ``data`` section to prepared training cases on disk.

``read_records`` indexes the dataset (generating synthetic data first when asked),
``split_records`` makes the patient-level split, and ``prepare_cases`` runs every case once
through the engine's preprocessing (``prepare_inputs``: canonical orientation, model spacing,
normalisation, exactly as the modules do at inference) and stores it with
``save_training_case``; the label follows the same grid change with nearest-neighbour
resampling. Prepared cases are cached under a key of the preprocessing settings, so a resumed
run or a second run with the same settings reuses them.

With ``data.sources`` every source is read with its own reader, and its labels become
training targets with its own ``label_map`` / ``regions``; a source with partial labels
(``unknown``) also stores, per case and region, which voxels it labels (``known_regions``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from Training import data as datasets
from Training.config import READERS, DataConfig, SourceConfig, TrainConfig
from Training.data import (
    CaseRecord,
    DatasetError,
    Split,
    fixed_split,
    kfold,
    load_case,
    split_cases,
)
from Training.data.labels import reference_labels, remap_labels
from Training.sampling import TrainingCase, make_training_case, save_training_case
from unetseg.engine.preprocessing.pipeline import prepare_inputs
from unetseg.engine.preprocessing.resampling import resample_to_geometry

logger = logging.getLogger(__name__)


def data_root(data: DataConfig, run_dir: Path) -> Path:
    """The dataset folder of single-source data: ``data.root``, or ``<run>/data`` for
    generated data."""
    return Path(data.root) if data.root is not None else run_dir / "data"


def read_records(data: DataConfig, run_dir: Path) -> list[CaseRecord]:
    """Index the labelled cases of every source (``CaseRecord.source`` names it when the
    config has ``data.sources``); with ``data.synth`` and no dataset folder, generate it first.

    Raises:
        DatasetError: a source without labelled cases, or a case id found in two sources.
    """
    if data.synth is not None and not data_root(data, run_dir).exists():
        from Training.synth import write_dataset

        root, synth = data_root(data, run_dir), data.synth
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
    records: list[CaseRecord] = []
    for source in data.source_list():
        root = Path(source.root) if source.root is not None else data_root(data, run_dir)
        reader = getattr(datasets, READERS[source.reader])
        labelled = [record for record in reader(root, **source.options) if record.has_label]
        if not labelled:
            raise DatasetError(f"no labelled cases in {root}")
        if data.sources:
            labelled = [dataclasses.replace(record, source=source.name) for record in labelled]
        records += labelled
    seen: dict[str, str | None] = {}
    for record in records:
        if record.case_id in seen:
            raise DatasetError(
                f"case id {record.case_id!r} is in sources {seen[record.case_id]!r} and "
                f"{record.source!r}: case ids must be unique"
            )
        seen[record.case_id] = record.source
    return records


def split_records(records: Sequence[CaseRecord], data: DataConfig) -> Split:
    """Patient-level split per ``data.split`` (fixed patient lists, k-fold when
    ``folds > 1``, else random fractions)."""
    split = data.split
    if split.fixed:
        return fixed_split(records, split.val_patients, split.test_patients)
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
    if config.data.sources or config.data.unknown is not None:
        relevant["sources"] = [dataclasses.asdict(s) for s in config.data.source_list()]
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
    """Load one case and put image and label on the model grid (see module docstring); a
    source with partial labels also gives the case its supervised-voxel mask (``known``)."""
    source = config.data.source(record.source)
    images, label, geometry = load_case(record)
    if label is None:
        raise DatasetError(f"case {record.case_id} has no label")
    arrays = []
    for spec in config.inputs:
        name = source.inputs.get(spec.name, spec.name)
        if name not in images and spec.required:
            raise DatasetError(
                f"case {record.case_id} has no image {name!r} for model input "
                f"{spec.name!r} (it has {sorted(images)}); map names with data.inputs"
            )
        arrays.append(images.get(name))
    prepared = prepare_inputs(arrays, [geometry] * len(arrays), config.preparation)
    model_geometry = prepared.model_geometry
    on_grid = resample_to_geometry(label.reshape(geometry.shape), geometry, model_geometry, order=0)
    nested = reference_labels(on_grid, source, config, record.case_id)
    known = known_regions(on_grid, source)
    image = prepared.image if config.spatial_dims == 3 else prepared.image[:, None]
    if known is not None and config.spatial_dims == 2:
        known = known[:, None]
    return make_training_case(
        record.case_id,
        image,
        nested,
        tuple(model_geometry.spacing),
        known=known,
        source=record.source,
    )


def known_regions(label: np.ndarray, source: SourceConfig) -> np.ndarray | None:
    """Supervised voxels per region, ``(C, *label.shape)`` uint8 (1 = labelled), from the
    source's ``unknown`` label values (after its ``label_map``); None when the source labels
    every region everywhere."""
    if not source.partial:
        return None
    assert source.unknown is not None
    if source.label_map:
        label = remap_labels(label, source.label_map)
    return np.stack([~np.isin(label, values) for values in source.unknown]).astype(np.uint8)
