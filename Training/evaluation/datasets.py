"""Which labelled cases to evaluate, from ``--data``: a run folder, a YAML config or a dataset
folder whose layout is detected.

``--data`` may be:

- a training run folder (``config.yaml`` + ``split.json``): the run's data and its exact split;
  default part ``test``, or ``val`` when the run has no test cases;
- a training config (YAML with a ``model`` section): its ``data`` section and split (the same
  patient-level split as training); default part as for a run folder;
- a data config (YAML holding a ``data`` section, or that section's keys at the top level:
  ``reader``, ``root``, ``options``, ``label_map``, ``regions``, ``inputs``, ``split``, see
  ``Training.config.DataConfig``); default part ``all``;
- a dataset folder: the layout is detected (``detect_layout``); default part ``all``.

Parts: ``all`` (every labelled case), or ``train`` / ``val`` / ``test`` of the patient-level split
(``data.split``). Records only: pixels are read one case at a time by the runner.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from Training.config import (
    ConfigError,
    DataConfig,
    SourceConfig,
    data_config_from_dict,
    load_config,
)
from Training.data import BRAINMETSHARE_INPUTS, BRATS_LAYOUTS, CaseRecord, DatasetError
from Training.data.labels import reference_labels as reference_labels  # re-exported
from Training.loop.cases import read_records, split_records
from unetseg.engine.manifest import InputSpec
from unetseg.engine.matching import Candidate, MissingInputError, match_inputs

PARTS = ("all", "train", "val", "test")
#: Image/label folder pairs recognised as generic pairs.
PAIR_FOLDERS = (("imagesTr", "labelsTr"), ("images", "labels"))
_DICOM_FILES_CHECKED = 50


@dataclass(frozen=True)
class EvaluationData:
    """The cases to evaluate and how to read their labels.

    Attributes:
        records: labelled cases, in evaluation order.
        data: the data settings (``label_map``, ``regions``, ``inputs`` are applied per case).
        source: what ``--data`` named, in words (for the report).
        part: ``all``, ``train``, ``val`` or ``test``.
    """

    records: tuple[CaseRecord, ...]
    data: DataConfig
    source: str
    part: str


def resolve_data(
    spec: str | Path,
    inputs: Sequence[InputSpec],
    *,
    part: str | None = None,
    work_dir: str | Path,
) -> EvaluationData:
    """Cases named by ``--data`` (see module docstring).

    Args:
        spec: run folder, YAML config or dataset folder.
        inputs: the evaluated model's inputs (a DICOM folder's series are matched with their
            SeriesDescription patterns).
        part: ``all``, ``train``, ``val``, ``test`` or None for the default of the source.
        work_dir: where a config with ``data.synth`` and no ``data.root`` generates its data
            (``<work_dir>/data``).

    Raises:
        DatasetError: unknown layout, unreadable dataset, or an empty part.
        ConfigError: invalid YAML config.
    """
    if part is not None and part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "config.yaml").is_file() and (path / "split.json").is_file():
        return _from_run(path, part)
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return _from_yaml(path, part, Path(work_dir))
    if path.is_dir():
        data = detect_layout(path, inputs)
        try:
            records = read_records(data, Path(work_dir))
        except DatasetError as error:
            raise DatasetError(
                f"{error}\n(read as a {data.reader} dataset; describe it in a data config YAML, "
                f"e.g. reader: {data.reader}, root: {path}, options: {{...}})"
            ) from None
        return _select(records, data, f"{path} ({data.reader} layout)", part or "all")
    raise DatasetError(f"--data must be a dataset folder, a run folder or a YAML config: {path}")


def _from_run(run_dir: Path, part: str | None) -> EvaluationData:
    config = load_config(run_dir / "config.yaml")
    records = {record.case_id: record for record in read_records(config.data, run_dir)}
    split = json.loads((run_dir / "split.json").read_text())
    part = part or ("test" if split.get("test") else "val")
    if part == "all":
        chosen = list(records.values())
    else:
        missing = [case for case in split.get(part, []) if case not in records]
        if missing:
            raise DatasetError(f"cases {missing} of {run_dir / 'split.json'} are not in the data")
        chosen = [records[case] for case in split.get(part, [])]
    return _checked(chosen, config.data, f"training run {run_dir}", part)


def _from_yaml(path: Path, part: str | None, work_dir: Path) -> EvaluationData:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError("", f"cannot read {path}: {error}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError("", f"{path} must hold a mapping")
    if "model" in raw:
        config = load_config(path)
        default = "test" if config.data.split.test > 0 else "val"
        records = read_records(config.data, work_dir)
        return _select(records, config.data, f"training config {path}", part or default)
    section = raw.get("data", raw)
    data = data_config_from_dict(section)
    if data.root is not None and not Path(data.root).expanduser().is_absolute():
        data = dataclasses.replace(data, root=str(path.parent.absolute() / data.root))
    records = read_records(data, work_dir)
    return _select(records, data, f"data config {path}", part or "all")


def _select(
    records: Sequence[CaseRecord], data: DataConfig, source: str, part: str
) -> EvaluationData:
    if part != "all":
        try:
            records = list(getattr(split_records(records, data), part))
        except ValueError as error:
            raise DatasetError(f"cannot split the cases of {source}: {error}") from None
    return _checked(list(records), data, source, part)


def _checked(records: list[CaseRecord], data: DataConfig, source: str, part: str) -> EvaluationData:
    if not records:
        hint = " (data.split.test is 0: choose --split val or all)" if part == "test" else ""
        raise DatasetError(f"no labelled cases in part {part!r} of {source}{hint}")
    return EvaluationData(tuple(records), data, source, part)


# ----------------------------------------------------------------------------- layouts


def detect_layout(root: str | Path, inputs: Sequence[InputSpec]) -> DataConfig:
    """Data settings for a dataset folder, from its content.

    Recognised, in this order: Decathlon / nnU-Net (``dataset.json``), ovarian (``CT/`` and
    ``Segmentation/``), 2D image/mask pairs (``*-mask.png``), BrainMetShare (``<case>/seg.nii.gz``
    or ``<split>/<case>/...``), BraTS case folders (2023-style ``*_t1c``, 2021 ``*_t1ce``, 2015
    ``T1c*`` + ``OTMultiClass*``), generic ``imagesTr/`` + ``labelsTr/`` (or ``images/`` +
    ``labels/``) pairs, and DICOM (series chosen by the model inputs' SeriesDescription
    patterns).

    Raises:
        DatasetError: missing folder or no recognised layout (the message lists them).
    """
    folder = Path(root).expanduser().absolute()
    if not folder.is_dir():
        raise DatasetError(f"dataset folder not found: {folder}")

    def config(reader: str, **options: Any) -> DataConfig:
        return DataConfig(reader=reader, root=str(folder), options=options)  # type: ignore[arg-type]

    if (folder / "dataset.json").is_file():
        return config("decathlon")
    if (folder / "CT").is_dir() and (folder / "Segmentation").is_dir():
        return config("ovarian")
    if any(folder.glob("*-mask.png")):
        return config("image_mask_pairs")
    cases = _subfolders(folder)
    nested = [case for split in cases for case in _subfolders(split)]
    if any(_holds_brainmetshare(case) for case in cases + nested):
        return config("brainmetshare")
    for patterns, label_pattern in BRATS_LAYOUTS:
        if cases and all(_matches(cases[0], p) for p in (*patterns.values(), label_pattern)):
            return config("brats", patterns=dict(patterns), label_pattern=label_pattern)
    for images, labels in PAIR_FOLDERS:
        if (folder / images).is_dir() and (folder / labels).is_dir():
            return config(
                "pairs", image_pattern=f"{images}/*", label_pattern=f"{labels}/{{case}}.*"
            )
    if _holds_dicom(folder):
        patterns = {
            spec.name: list(spec.series_description_patterns or spec.name_patterns or ["*"])
            for spec in inputs
        }
        return config("dicom", inputs=patterns, skip_incomplete=True)
    raise DatasetError(
        f"cannot tell the layout of {folder}: expected dataset.json (Decathlon / nnU-Net), CT/ + "
        f"Segmentation/, <case>-mask.png pairs, BrainMetShare or BraTS case folders, "
        f"imagesTr/ + labelsTr/, or DICOM files; otherwise describe it in a data config YAML "
        f"(reader, root, options)"
    )


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _holds_brainmetshare(case: Path) -> bool:
    names = (*BRAINMETSHARE_INPUTS, "seg")
    return sum(any(case.glob(f"{name}.nii*")) for name in names) >= 2


def _matches(case: Path, pattern: str) -> bool:
    lowered = pattern.lower()
    return any(fnmatch(p.name.lower(), lowered) for p in case.iterdir() if p.is_file())


def _holds_dicom(folder: Path) -> bool:
    """True when one of the first files under ``folder`` has the DICOM preamble."""
    checked = 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        with path.open("rb") as handle:
            if handle.read(132)[128:] == b"DICM":
                return True
        checked += 1
        if checked >= _DICOM_FILES_CHECKED:
            break
    return False


# ----------------------------------------------------------------------------- inputs


def model_inputs(
    images: Mapping[str, np.ndarray],
    record: CaseRecord,
    data: DataConfig | SourceConfig,
    inputs: Sequence[InputSpec],
) -> list[np.ndarray | None]:
    """One array per model input, in the model's order (None for an absent optional input).

    A model input takes, in this order: the image ``data.inputs`` maps it to, the image of the
    same name, the only image of the case for a one-input model, or the image whose name or
    file name its ``name_patterns`` match (the matching the modules use for volumes).

    Raises:
        DatasetError: a mapped image the case lacks, or a required input left without image.
    """
    specs = list(inputs)
    chosen: dict[str, str] = {}
    for model_name, image_name in data.inputs.items():
        if image_name not in images:
            raise DatasetError(
                f"case {record.case_id}: data.inputs maps {model_name!r} to {image_name!r}, "
                f"but the case has only {sorted(images)}"
            )
        chosen[model_name] = image_name
    for spec in specs:
        name = spec.name
        if name not in chosen and name in images and name not in chosen.values():
            chosen[name] = name
    if len(specs) == 1 and not chosen and len(images) == 1:
        chosen[specs[0].name] = next(iter(images))
    candidates = [
        Candidate(name=name, file_name=Path(record.image_paths[name]).name, item=name)
        for name in images
    ]
    try:
        match = match_inputs(candidates, specs, overrides=chosen)
    except MissingInputError as error:
        raise DatasetError(
            f"case {record.case_id}: {error}\nThe case has images {sorted(images)}: map them to "
            f"the model inputs with data.inputs in a data config"
        ) from None
    return [
        images[match.assigned[spec.name]] if spec.name in match.assigned else None for spec in specs
    ]
