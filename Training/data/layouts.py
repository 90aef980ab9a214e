"""Dataset readers for file-based layouts: each returns ``CaseRecord``s (paths only).

- ``read_brainmetshare``: ``<root>/<split>/<case>/{t1_pre,t1_gd,flair,bravo,seg}.nii.gz``.
- ``read_decathlon``: Medical Segmentation Decathlon (``dataset.json`` with ``training`` list,
  4D channels-last images) and nnU-Net v2 (``<case>_0000.nii.gz`` per channel) folders.
- ``read_brats``: one folder per case, one file per sequence found by glob patterns.
- ``read_pairs``: generic image/label pairs by glob patterns (NIfTI, NRRD, MHA, PNG, JPEG).
- ``read_image_mask_pairs``: 2D images and ``<case>-mask.png`` masks (0/255 -> 0/1 on loading).
- ``read_ovarian``: ``<root>/CT/<case>.*`` with ``<root>/Segmentation/<case>.*``.

``patient_regex`` (all readers): a regular expression whose first group, searched in the case id,
is the patient id (e.g. ``r"(pat\\d+)"``); by default each case is its own patient.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatch
from glob import escape
from pathlib import Path
from typing import Any

from Training.data.records import CaseRecord, DatasetError
from Training.data.volumes import strip_suffix

BRAINMETSHARE_INPUTS = ("t1_pre", "t1_gd", "flair", "bravo")
# Per-case sequence patterns (matched case-insensitively inside the case folder).
BRATS_PATTERNS: dict[str, str] = {  # <case>_{flair,t1,t1c,t2}.nii.gz (synth, BraTS 2023-like)
    "flair": "*_flair.nii*",
    "t1": "*_t1.nii*",
    "t1c": "*_t1c.nii*",
    "t2": "*_t2.nii*",
}
BRATS_2021_PATTERNS: dict[str, str] = {
    "flair": "*_flair.nii*",
    "t1": "*_t1.nii*",
    "t1c": "*_t1ce.nii*",
    "t2": "*_t2.nii*",
}
BRATS_2015_PATTERNS: dict[str, str] = {  # DeepMedic's BraTS 2015 copy in ../shared/data
    "flair": "Flair*.nii*",
    "t1c": "T1c*.nii*",
}
BRATS_LABEL_PATTERN = "*_seg.nii*"
BRATS_2015_LABEL_PATTERN = "OTMultiClass*.nii*"
#: BraTS-style layouts (input patterns, label pattern), newest first, as tried by detect_layout.
BRATS_LAYOUTS: tuple[tuple[dict[str, str], str], ...] = (
    (BRATS_PATTERNS, BRATS_LABEL_PATTERN),
    (BRATS_2021_PATTERNS, BRATS_LABEL_PATTERN),
    (BRATS_2015_PATTERNS, BRATS_2015_LABEL_PATTERN),
)
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
IMAGE_2D_PATTERNS = ("*.png", "*.jpg", "*.jpeg")


def _require_folder(root: str | Path) -> Path:
    folder = Path(root)
    if not folder.is_dir():
        raise DatasetError(f"dataset folder not found: {folder}")
    return folder


def _patient(case_id: str, patient_regex: str | None) -> str:
    if patient_regex is None:
        return case_id
    match = re.search(patient_regex, case_id)
    if match is None:
        raise DatasetError(f"case id {case_id!r} does not match patient_regex {patient_regex!r}")
    return match.group(1) if match.groups() else match.group(0)


def _nonempty(records: list[CaseRecord], root: Path, what: str) -> list[CaseRecord]:
    if not records:
        raise DatasetError(f"no cases found in {root} ({what})")
    return records


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _nifti(folder: Path, name: str) -> Path | None:
    for suffix in (".nii.gz", ".nii"):
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    return None


def _folder_record(
    case_folder: Path,
    inputs: Mapping[str, str],
    label: str,
    find: Callable[[Path, str, str], Path | None],
    missing_input: Callable[[Path, str, str], str],
    missing_label: str,
    *,
    require_label: bool,
    patient_regex: str | None,
    label_map: Mapping[int, int] | None = None,
    split: str | None = None,
) -> CaseRecord:
    """The record of a case folder whose files ``find(case_folder, what, name)`` locates.

    Args:
        inputs: input name -> what ``find`` looks for (a file name, a glob pattern).
        label: what ``find`` looks for as the label file (name ``"label"``).
        find: the file of ``what`` in the folder, or None; may raise ``DatasetError``.
        missing_input: ``(case_folder, name, what)`` -> the error message for a missing input.
        missing_label: the error message for a missing label file when ``require_label``.

    Raises:
        DatasetError: an input file, or a required label file, not found.
    """
    image_paths = {}
    for name, what in inputs.items():
        path = find(case_folder, what, name)
        if path is None:
            raise DatasetError(missing_input(case_folder, name, what))
        image_paths[name] = path
    label_path = find(case_folder, label, "label")
    if label_path is None and require_label:
        raise DatasetError(missing_label)
    return CaseRecord(
        case_id=case_folder.name,
        patient_id=_patient(case_folder.name, patient_regex),
        image_paths=image_paths,
        label_path=label_path,
        label_map=label_map,
        split=split,
    )


def read_brainmetshare(
    root: str | Path,
    *,
    inputs: Sequence[str] = BRAINMETSHARE_INPUTS,
    label_name: str = "seg",
    require_label: bool = False,
    patient_regex: str | None = None,
) -> list[CaseRecord]:
    """BrainMetShare-style folders ``<root>/<split>/<case>/<input>.nii[.gz]`` (also accepts case
    folders directly under ``root``). Cases without ``<label_name>.nii[.gz]`` are inference-only
    (``has_label == False``) unless ``require_label``.

    Raises:
        DatasetError: missing root, a case folder missing an input file (named), a missing
            label when required, or no cases.
    """
    folder = _require_folder(root)
    names = (*inputs, label_name)
    records = []
    for child in _subfolders(folder):
        is_case = any(_nifti(child, name) for name in names)
        cases = [(child, None)] if is_case else [(c, child.name) for c in _subfolders(child)]
        for case_folder, split in cases:
            record = _folder_record(
                case_folder,
                {name: name for name in inputs},
                label_name,
                lambda folder, file_name, _: _nifti(folder, file_name),
                lambda folder, name, _: f"missing input file {folder / name}.nii.gz",
                f"missing label file {case_folder / label_name}.nii.gz",
                require_label=require_label,
                patient_regex=patient_regex,
                split=split,
            )
            records.append(record)
    _check_unique(records, folder)
    return _nonempty(records, folder, "expected <split>/<case>/<input>.nii.gz")


def _check_unique(records: list[CaseRecord], root: Path) -> None:
    seen: set[str] = set()
    for record in records:
        if record.case_id in seen:
            raise DatasetError(f"case id {record.case_id!r} appears twice in {root}")
        seen.add(record.case_id)


def _load_dataset_json(folder: Path) -> dict[str, Any]:
    path = folder / "dataset.json"
    if not path.is_file():
        raise DatasetError(f"dataset.json not found in {folder}")
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    if not isinstance(content, dict):
        raise DatasetError(f"{path} must contain a JSON object")
    return content


def _channel_names(meta: Mapping[str, Any], path: Path) -> list[str]:
    """Input names from ``modality`` (MSD) or ``channel_names`` (nnU-Net v2), in channel order."""
    channels = meta.get("channel_names", meta.get("modality"))
    if not isinstance(channels, Mapping) or not channels:
        raise DatasetError(f"{path} has no 'modality' or 'channel_names' mapping")
    names: list[str] = []
    for index in sorted(channels, key=int):
        name = re.sub(r"\W+", "_", str(channels[index]).strip().lower()) or f"channel{index}"
        names.append(name if name not in names else f"{name}_{index}")
    return names


def decathlon_labels(root: str | Path) -> dict[int, str]:
    """Label value -> name from a ``dataset.json`` (MSD ``{"1": "name"}`` or nnU-Net v2
    ``{"name": 1}``; nnU-Net region entries (lists) are skipped)."""
    meta = _load_dataset_json(_require_folder(root))
    labels = meta.get("labels", {})
    result = {}
    for key, value in labels.items():
        if str(key).isdigit():
            result[int(key)] = str(value)
        elif isinstance(value, int):
            result[value] = str(key)
    return dict(sorted(result.items()))


def read_decathlon(
    root: str | Path,
    *,
    include_test: bool = False,
    label_map: Mapping[int, int] | None = None,
    patient_regex: str | None = None,
) -> list[CaseRecord]:
    """Medical Segmentation Decathlon or nnU-Net v2 dataset folder.

    MSD: ``dataset.json`` lists ``training`` pairs; multi-modal images are 4D channels-last
    NIfTI and each input is one channel (``record.channels``), named after ``modality``
    (lower-cased). nnU-Net v2 (no ``training`` list): ``imagesTr/<case>_<XXXX><file_ending>``,
    one file per channel of ``channel_names``, labels ``labelsTr/<case><file_ending>``.
    ``include_test`` adds unlabelled cases (MSD ``test`` list, nnU-Net ``imagesTs``).

    Raises:
        DatasetError: missing or invalid dataset.json, a listed file missing (named), a missing
            channel file or label, or no cases.
    """
    folder = _require_folder(root)
    meta = _load_dataset_json(folder)
    names = _channel_names(meta, folder / "dataset.json")
    if "training" in meta:
        pairs = [
            (_listed(folder, e, "image"), _listed(folder, e, "label")) for e in meta["training"]
        ]
        if include_test:
            pairs += [(_listed(folder, {"image": e}, "image"), None) for e in meta.get("test", [])]
        records = []
        for image, label in pairs:
            case_id = strip_suffix(image.name)
            single = len(names) == 1
            records.append(
                CaseRecord(
                    case_id=case_id,
                    patient_id=_patient(case_id, patient_regex),
                    image_paths={name: image for name in names},
                    label_path=label,
                    channels={} if single else {name: c for c, name in enumerate(names)},
                    label_map=label_map,
                    split="training" if label is not None else "test",
                )
            )
    else:
        ending = str(meta.get("file_ending", ".nii.gz"))
        records = _nnunet_cases(
            folder, "imagesTr", "labelsTr", names, ending, label_map, patient_regex
        )
        if include_test and (folder / "imagesTs").is_dir():
            records += _nnunet_cases(
                folder, "imagesTs", None, names, ending, label_map, patient_regex
            )
    _check_unique(records, folder)
    return _nonempty(records, folder, "dataset.json training list or imagesTr/")


def _listed(folder: Path, entry: Any, key: str) -> Path:
    """Path of ``entry[key]`` (MSD style ``./imagesTr/x.nii.gz``), which must exist."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get(key), str):
        raise DatasetError(f"invalid entry {entry!r} in {folder / 'dataset.json'}")
    path = (folder / entry[key]).resolve()
    if not path.is_file():
        raise DatasetError(f"file listed in dataset.json not found: {path}")
    return path


def _nnunet_cases(
    folder: Path,
    images: str,
    labels: str | None,
    names: list[str],
    ending: str,
    label_map: Mapping[int, int] | None,
    patient_regex: str | None,
) -> list[CaseRecord]:
    pattern = re.compile(rf"^(.+)_(\d{{4}}){re.escape(ending)}$")
    image_folder = folder / images
    if not image_folder.is_dir():
        raise DatasetError(f"image folder not found: {image_folder}")
    cases: dict[str, dict[int, Path]] = {}
    for path in sorted(image_folder.iterdir()):
        match = pattern.match(path.name)
        if match:
            cases.setdefault(match.group(1), {})[int(match.group(2))] = path
    records = []
    for case_id, files in cases.items():
        missing = [c for c in range(len(names)) if c not in files]
        if missing:
            raise DatasetError(
                f"missing channel file {image_folder / f'{case_id}_{missing[0]:04d}{ending}'}"
            )
        label = None
        if labels is not None:
            label = folder / labels / f"{case_id}{ending}"
            if not label.is_file():
                raise DatasetError(f"missing label file {label}")
        records.append(
            CaseRecord(
                case_id=case_id,
                patient_id=_patient(case_id, patient_regex),
                image_paths={name: files[c] for c, name in enumerate(names)},
                label_path=label,
                label_map=label_map,
                split="training" if labels else "test",
            )
        )
    return records


def _match_one(folder: Path, pattern: str, what: str) -> Path | None:
    """The single file in ``folder`` matching ``pattern`` (case-insensitive), or None."""
    found = [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and fnmatch(p.name.lower(), pattern.lower())
    ]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DatasetError(f"{what} pattern {pattern!r} matches several files in {folder}: {names}")
    return found[0] if found else None


def read_brats(
    root: str | Path,
    *,
    patterns: Mapping[str, str] = BRATS_PATTERNS,
    label_pattern: str = BRATS_LABEL_PATTERN,
    label_map: Mapping[int, int] | None = None,
    require_label: bool = False,
    patient_regex: str | None = None,
) -> list[CaseRecord]:
    """BraTS-style dataset: one folder per case under ``root``, one file per sequence.

    Args:
        patterns: input name -> file-name glob inside the case folder (exactly one match), e.g.
            ``BRATS_PATTERNS``, ``BRATS_2021_PATTERNS`` or ``BRATS_2015_PATTERNS``.
        label_pattern: label file glob (``BRATS_2015_LABEL_PATTERN`` for the 2015 copy).
        label_map: remapping applied on loading (regions: see ``labels_to_regions``).
        require_label: raise for a case without label (default: ``has_label == False``).

    Raises:
        DatasetError: missing root, a case folder without one of the sequences (named), a
            pattern matching several files, a missing required label, or no cases.
    """
    folder = _require_folder(root)
    records = []
    for case_folder in _subfolders(folder):
        record = _folder_record(
            case_folder,
            patterns,
            label_pattern,
            _match_one,
            lambda folder, name, pattern: f"no {name} file matching {pattern!r} in {folder}",
            f"no label file matching {label_pattern!r} in {case_folder}",
            require_label=require_label,
            patient_regex=patient_regex,
            label_map=label_map,
        )
        records.append(record)
    return _nonempty(records, folder, "expected one folder per case")


def read_pairs(
    root: str | Path,
    image_pattern: str | Sequence[str],
    label_pattern: str,
    *,
    input_name: str = "image",
    label_map: Mapping[int, int] | None = None,
    require_label: bool = True,
    patient_regex: str | None = None,
) -> list[CaseRecord]:
    """Image/label pairs found by glob patterns relative to ``root``.

    Args:
        image_pattern: glob(s) of the images, e.g. ``"imagesTr/*.nii.gz"``, ``"*.jpg"``; the
            case id is the file name without its image suffix. Files that match the label pattern
            (e.g. ``1-mask.png`` for ``"*.png"``) are not images.
        label_pattern: label path with ``{case}`` for the case id, e.g.
            ``"labelsTr/{case}.nii.gz"``, ``"{case}-mask.png"``, ``"Segmentation/{case}.*"``.
        label_map: remapping applied on loading, e.g. ``MERGE_LUNGS``.
        require_label: raise for an image without label (default), else ``has_label == False``.

    Raises:
        DatasetError: missing root, image without label when required, a label pattern matching
            several files, or no images.
    """
    folder = _require_folder(root)
    patterns = [image_pattern] if isinstance(image_pattern, str) else list(image_pattern)
    label_glob = label_pattern.replace("{case}", "*")
    images = sorted(
        {
            path
            for pattern in patterns
            for path in folder.glob(pattern)
            if path.is_file()
            and not fnmatch(path.relative_to(folder).as_posix(), label_glob)
            and _is_image_file(path)
        }
    )
    records = []
    for image in images:
        case_id = strip_suffix(image.name)
        label_glob_case = label_pattern.replace("{case}", escape(case_id))
        found = [p for p in folder.glob(label_glob_case) if p.is_file() and _is_image_file(p)]
        if len(found) > 1:
            raise DatasetError(f"several labels for {image}: {', '.join(map(str, sorted(found)))}")
        if not found and require_label:
            raise DatasetError(
                f"no label for image {image} "
                f"(expected {folder / label_pattern.replace('{case}', case_id)})"
            )
        records.append(
            CaseRecord(
                case_id=case_id,
                patient_id=_patient(case_id, patient_regex),
                image_paths={input_name: image},
                label_path=found[0] if found else None,
                label_map=label_map,
            )
        )
    _check_unique(records, folder)
    return _nonempty(records, folder, f"images matching {patterns}")


def _is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(IMAGE_SUFFIXES) or any(fnmatch(name, p) for p in IMAGE_2D_PATTERNS)


def read_image_mask_pairs(
    root: str | Path,
    *,
    image_patterns: Sequence[str] = IMAGE_2D_PATTERNS,
    mask_pattern: str = "{case}-mask.png",
    require_label: bool = True,
    patient_regex: str | None = None,
) -> list[CaseRecord]:
    """2D images with lung (or other) masks, e.g. ``1.jpg`` + ``1-mask.png``; masks stored as
    0/255 load as 0/1. Input name ``"image"``."""
    return read_pairs(
        root,
        image_patterns,
        mask_pattern,
        require_label=require_label,
        patient_regex=patient_regex,
    )


def read_ovarian(
    root: str | Path,
    *,
    label_map: Mapping[int, int] | None = None,
    require_label: bool = True,
    patient_regex: str | None = None,
) -> list[CaseRecord]:
    """``<root>/CT/<case>.<ext>`` with ``<root>/Segmentation/<case>.<ext>`` matched by file name
    (NIfTI, NRRD, MHA); input name ``"ct"``; labels 1 primary mass, 2 metastatic deposits."""
    folder = _require_folder(root)
    for sub in ("CT", "Segmentation") if require_label else ("CT",):
        if not (folder / sub).is_dir():
            raise DatasetError(f"folder {folder / sub} not found (expected CT/ and Segmentation/)")
    return read_pairs(
        folder,
        "CT/*",
        "Segmentation/{case}.*",
        input_name="ct",
        label_map=label_map,
        require_label=require_label,
        patient_regex=patient_regex,
    )
