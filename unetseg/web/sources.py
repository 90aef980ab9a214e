"""Where volumes come from (bundled samples, the ``--data`` folder, uploads) and loading them.

Finding is the headless command's (``unetseg.host.sources.findSources``): image files directly in
a folder and every DICOM image series under it, plus 2D images (JPEG, PNG) in a folder, each
described by its file name or its series number, SeriesDescription and modality. The browser
only ever names a sample id or a folder from ``data_folders``: it never sends a server path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetseg.host.sources import IMAGE_SUFFIXES, Source, findSources, loadSource
from unetseg.sampledata import get_sample, list_samples

#: At most this many series are loaded from one source (a folder of 500 series is a mistake).
MAX_SERIES = 24


@dataclass(frozen=True)
class LoadedSeries:
    """A volume node loaded from one source, and how it is described to the user."""

    node_id: str
    name: str
    description: str
    source: Source


def sample_items() -> list[dict[str, str]]:
    """The bundled samples for a select box: ``{"value": id, "title": title}``."""
    return [{"value": s.id, "title": f"{s.title} [{s.model}]"} for s in list_samples()]


def sample_paths(sample_id: str) -> tuple[list[Path], str]:
    """The files of a bundled sample and the model it is meant for."""
    sample = get_sample(sample_id)
    return sample.paths, sample.model


def data_folders(data_root: Path | None, limit: int = 500) -> list[str]:
    """``"."`` and the sub-folders of ``data_root`` (relative, sorted; hidden ones and what
    they hold left out), at most ``limit`` names, for a select box."""
    if data_root is None or not data_root.is_dir():
        return []
    found: list[str] = []
    pending = [data_root]  # depth first, each folder before what it holds, names in order
    while pending and len(found) < limit:
        folder = pending.pop()
        found.append(folder.relative_to(data_root).as_posix())  # "." for the root
        if folder != data_root and folder.is_symlink():
            continue  # a link to a folder is offered, not walked
        try:
            with os.scandir(folder) as entries:
                names = sorted(e.name for e in entries if e.is_dir() and e.name[0] != ".")
        except OSError:
            continue
        pending += [folder / name for name in reversed(names)]
    return found


def resolve_data_folder(data_root: Path | None, relative: str) -> Path:
    """The folder ``relative`` (one of ``data_folders``) inside ``data_root``.

    Raises:
        ValueError: no ``--data`` folder, or the name leaves it or is not a folder.
    """
    if data_root is None:
        raise ValueError("The server was started without --data: no server folder to read")
    root = data_root.resolve()
    folder = (root / relative).resolve()
    if not folder.is_relative_to(root) or not folder.is_dir():
        raise ValueError(f"'{relative}' is not a folder inside the data folder")
    return folder


def describe(source: Source) -> str:
    """One line for the series list: the file name, or number, description and modality."""
    if source.series is None:
        return source.path.name
    return f"DICOM {source.series.label}, {source.series.numberOfFrames} slices"


def find(paths: list[Path]) -> list[Source]:
    """The candidate volumes in ``paths``: files, and in folders the image files and DICOM
    image series (``findSources``) plus 2D images (an X-ray as a JPEG or PNG).

    Raises:
        FileNotFoundError: nothing loadable found; ValueError: too many series.
    """
    sources: list[Source] = []
    for path in paths:
        if not path.is_dir():
            sources += findSources([path])
            continue
        images = [
            Source(item)
            for item in sorted(path.iterdir())
            if item.is_file()
            and not item.name.startswith(".")
            and item.name.lower().endswith(IMAGE_SUFFIXES)
        ]
        try:
            sources += findSources([path])
        except FileNotFoundError:
            if not images:
                raise
        sources += images
    if not sources:
        raise FileNotFoundError("No image files or DICOM image series found")
    if len(sources) > MAX_SERIES:
        raise ValueError(f"{len(sources)} series found; load at most {MAX_SERIES} at a time")
    return sources


def load(scene: Any, sources: list[Source]) -> tuple[list[LoadedSeries], list[str]]:
    """Load every source as a volume node; returns the loaded ones and one error per failure."""
    loaded, errors = [], []
    for source in sources:
        description = describe(source)
        try:
            node = loadSource(scene, source, source.nodeName())
        except (OSError, ValueError, RuntimeError) as error:
            errors.append(f"{description}: {error}")
            continue
        loaded.append(LoadedSeries(node.GetID(), node.GetName(), description, source))
    return loaded, errors
