"""The inputs of a headless run: image files and DICOM series found in the paths given,
matched to a model's inputs (automatically or by ``--map``) and loaded as volume nodes."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetseg.engine.geometry import Geometry
from unetseg.engine.matching import Candidate, MissingInputError, image_stem, match_inputs
from unetseg.engine.package import MANIFEST_FILE, ModelPackage
from unetseg.host.dicom_series import DicomSeries, discoverSeries, loadSeries
from unetseg.host.scene_io import loadVolume
from unetseg.host.volumes import SERIES_DESCRIPTION_ATTRIBUTE, addVolumeFromArray

#: Image files in a case folder that are candidate inputs (2D images only when given as files).
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: 2D images that Slicer's archetype reader cannot open without the app: read with Pillow.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SERIES_UID_ATTRIBUTE = "DICOM.SeriesInstanceUID"


@dataclass(frozen=True)
class Source:
    """Where one candidate volume comes from: a file or a DICOM series."""

    path: Path
    series: DicomSeries | None = None

    def nodeName(self) -> str:
        if self.series is None:
            return image_stem(self.path.name)
        return self.series.seriesDescription or self.series.label

    def describe(self) -> str:
        if self.series is None:
            return str(self.path)
        return f"{self.path} [DICOM series {self.series.label}, {self.series.seriesInstanceUID}]"

    def summary(self) -> str:
        """Short description for error messages: the file, or the series' number,
        description and modality."""
        if self.series is None:
            return str(self.path)
        return f"DICOM series {self.series.label} in {self.path}"

    def candidate(self) -> Candidate:
        """Matching descriptor: file name for files, SeriesDescription for series (a series
        without one matches no pattern)."""
        if self.series is None:
            return Candidate(self.nodeName(), self.path.name, "", self)
        description = self.series.seriesDescription
        return Candidate(description, "", description, self)

    def isNamed(self, text: str) -> bool:
        """True if ``text`` (lower case) is the file's name or stem, or the series' number,
        SeriesDescription or SeriesInstanceUID."""
        if self.series is None:
            return text in (self.path.name.lower(), image_stem(self.path.name).lower())
        series = self.series
        number = "" if series.seriesNumber is None else str(series.seriesNumber)
        return text in (number, series.seriesDescription.lower(), series.seriesInstanceUID.lower())


def findSources(paths: Sequence[str | Path], exclude: Collection[Path] = ()) -> list[Source]:
    """One source per file, and per image file (``VOLUME_SUFFIXES``) directly in each folder
    and image series found in it (DICOM, SEG excluded); files found in folders that are in
    ``exclude`` (the run's own outputs) are left out."""
    excluded = {path.resolve() for path in exclude}
    sources = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = folderSources(path)
            sources += [
                s for s in found if s.series is not None or s.path.resolve() not in excluded
            ]
        elif path.is_file():
            sources.append(Source(path))
        else:
            raise FileNotFoundError(f"Input not found: {path}")
    return list(dict.fromkeys(sources))  # a file given and also found in a given folder


def folderSources(folder: Path) -> list[Source]:
    """The image files directly in ``folder`` (a NIfTI case folder) and the DICOM image
    series under it.

    Raises:
        FileNotFoundError: the folder holds neither.
    """
    files = [Source(path) for path in sorted(folder.iterdir()) if _isVolumeFile(path)]
    series = [Source(folder, item) for item in discoverSeries(folder) if not item.isSeg]
    if not files and not series:
        raise FileNotFoundError(
            f"No image files ({', '.join(VOLUME_SUFFIXES)}) or DICOM image series found in "
            f"folder {folder}"
        )
    return files + series


def _isVolumeFile(path: Path) -> bool:
    """A visible image file that may be a model input (``.seg.nrrd`` results are not)."""
    name = path.name.lower()
    return (
        path.is_file()
        and not name.startswith(".")
        and name.endswith(VOLUME_SUFFIXES)
        and not name.endswith(".seg.nrrd")
    )


def overrideSource(inputName: str, value: str | Path, sources: list[Source]) -> Source:
    """The source a ``--map`` value names: a file path, a folder holding one image, or the
    file name, series number, SeriesDescription or SeriesInstanceUID of one input.

    Raises:
        ValueError: it names none or several (the message lists the candidates found).
        FileNotFoundError: a folder without images.
    """
    path = Path(value)
    if path.is_file():
        same = [s for s in sources if s.series is None and s.path.resolve() == path.resolve()]
        return same[0] if same else Source(path)
    if path.is_dir():
        named = folderSources(path)
        where = f"the folder holds {len(named)} images"
    else:
        text = str(value).strip().lower()
        named = [source for source in sources if source.isNamed(text)]
        where = f"{len(named) or 'no'} file or DICOM series match(es) it"
    if len(named) != 1:
        raise ValueError(
            f"--map {inputName}={value}: {where}; give a file, a folder of one image, or the "
            "file name, series number, SeriesDescription or SeriesInstanceUID of exactly one "
            f"of: {listSources(named or sources)}"
        )
    return next((source for source in sources if source == named[0]), named[0])


def listSources(sources: Sequence[Source]) -> str:
    """The sources as a one-line list for error messages."""
    return "; ".join(source.summary() for source in sources) or "(none)"


def matchSources(
    package: ModelPackage, sources: list[Source], chosen: Mapping[str, Source]
) -> dict[str, Source]:
    """Input name -> source, in manifest order (``unetseg.engine.matching.match_inputs``).

    Raises:
        ValueError: a required input matched nothing, or an input matched several sources
            equally well; the message lists the sources found and the ``--map`` to give.
    """
    try:
        match = match_inputs([s.candidate() for s in sources], package.inputs, overrides=chosen)
    except MissingInputError as error:
        missing = "; ".join(
            f"'{name}' ({title}: names or series descriptions like {list(patterns)})"
            for name, title, patterns in error.inputs
        )
        first = error.inputs[0][0]
        raise ValueError(
            f"Missing required input(s) {missing}. Found: {listSources(sources)}. Choose with "
            f"--map {first}=PATH_OR_SERIES (a file, a folder, a file name, a series number, "
            "a SeriesDescription or a SeriesInstanceUID)"
        ) from None
    refuseAmbiguous(match.assigned, match.ambiguous)
    return {
        spec.name: match.assigned[spec.name]
        for spec in package.inputs
        if spec.name in match.assigned
    }


def loadSource(scene, source: Source, name: str):
    """Volume node for a file or DICOM series (DICOM attributes kept for matching and SEG)."""
    if source.series is not None:
        array, geometry = loadSeries(source.series)
        node = addVolumeFromArray(scene, array, geometry, name)
        node.SetAttribute(SERIES_DESCRIPTION_ATTRIBUTE, source.series.seriesDescription)
        node.SetAttribute(SERIES_UID_ATTRIBUTE, source.series.seriesInstanceUID)
        return node
    if source.path.suffix.lower() in IMAGE_SUFFIXES:
        array = _readImage2d(source.path)
        # Placed as ITK and Slicer place a 2D image without spacing: 1 mm pixels, LPS axes.
        geometry = Geometry(np.diag([-1.0, -1.0, 1.0, 1.0]), array.shape)
        return addVolumeFromArray(scene, array, geometry, name)
    return loadVolume(scene, source.path, name)


def _readImage2d(path: Path) -> np.ndarray:
    """A 2D image file as a `(1, J, I)` float32 array (RGB -> luminance), 1 mm pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("F"), dtype=np.float32)
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(f"Cannot read image {path}: {error}") from error
    # J = row, I = column; 2D models take the pixel grid as stored (no reorientation).
    return array[np.newaxis]


def describeInput(source: Source, automatic: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": str(source.path), "matched": "auto" if automatic else "map"}
    if source.series is not None:
        entry["series_number"] = source.series.seriesNumber
        entry["series_description"] = source.series.seriesDescription
        entry["modality"] = source.series.modality
        entry["series_instance_uid"] = source.series.seriesInstanceUID
    return entry


def refuseAmbiguous(assigned: Mapping[str, Source], ambiguous: Mapping[str, list]) -> None:
    """Raise when an input was matched automatically among equally good candidates."""
    for name, others in ambiguous.items():
        candidates = listSources([assigned[name], *others])
        raise ValueError(
            f"input '{name}' matches several inputs equally well ({candidates}); choose one "
            f"with --map {name}=PATH_OR_SERIES"
        )


def inputFiles(
    inputs: Sequence[str | Path], sources: Sequence[Source], package: ModelPackage
) -> list[Path]:
    """Every file the run reads: inputs, the files of their DICOM series, the model's files."""
    files = [Path(p) for p in inputs] + [package.path / MANIFEST_FILE, package.weights_path]
    for source in sources:
        files += list(source.series.files) if source.series is not None else [source.path]
    return files


def inputWarnings(assigned: Mapping[str, Source]) -> list[str]:
    return [
        f"input {name}: DICOM series {source.series.label}: {warning}"
        for name, source in assigned.items()
        if source.series is not None
        for warning in source.series.warnings
    ]
