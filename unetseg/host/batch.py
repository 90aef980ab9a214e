"""Headless segmentation of files and DICOM folders (``python -m unetseg segment``).

Runs the same host logic as the Slicer modules: inputs become real volume nodes in an MRML
scene, the result a real segmentation node written by Slicer's ``.seg.nrrd`` writer. Works on
``slicer-core`` and inside Slicer (``Slicer --no-main-window --python-script``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import slicer

from unetseg.engine.geometry import Geometry
from unetseg.engine.package import ModelPackage
from unetseg.engine.registry import resolve_model
from unetseg.host.dicom_series import DicomSeries, discoverSeries, loadSeries
from unetseg.host.logic import SegmentationLogic, SegmentationResult
from unetseg.host.matching import Candidate, matchInputs
from unetseg.host.scene_io import loadVolume, newScene, saveSegmentation
from unetseg.host.volumes import addVolumeFromArray

#: 2D images that Slicer's archetype reader cannot open without the app: read with Pillow.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Source:
    """Where one candidate volume comes from: a file or a DICOM series."""

    path: Path
    series: DicomSeries | None = None

    def nodeName(self) -> str:
        if self.series is None:
            return _stem(self.path)
        return self.series.seriesDescription or self.series.label

    def describe(self) -> str:
        if self.series is None:
            return str(self.path)
        return f"{self.path} [DICOM series {self.series.label}, {self.series.seriesInstanceUID}]"


def hostScene():
    """The app's scene inside Slicer, else a new headless scene."""
    if getattr(slicer, "app", None) is not None:
        return slicer.mrmlScene
    return newScene()


def findCandidates(paths: list[str | Path]) -> list[Candidate]:
    """One candidate per image file, and per image series found in each DICOM folder."""
    candidates = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            series = [s for s in discoverSeries(path) if not s.isSeg]
            if not series:
                raise FileNotFoundError(f"No DICOM image series found in folder {path}")
            for item in series:
                source = Source(path, item)
                candidates.append(Candidate(source.nodeName(), "", item.seriesDescription, source))
        elif path.is_file():
            source = Source(path)
            candidates.append(Candidate(source.nodeName(), path.name, "", source))
        else:
            raise FileNotFoundError(f"Input not found: {path}")
    return candidates


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".seg.nrrd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def loadSource(scene, source: Source, name: str):
    """Volume node for a file or DICOM series (DICOM attributes kept for matching and SEG)."""
    if source.series is not None:
        array, geometry = loadSeries(source.series)
        node = addVolumeFromArray(scene, array, geometry, name)
        node.SetAttribute("DICOM.SeriesDescription", source.series.seriesDescription)
        node.SetAttribute("DICOM.SeriesInstanceUID", source.series.seriesInstanceUID)
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
            grey = image.convert("F")
            array = np.asarray(grey, dtype=np.float32)
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(f"Cannot read image {path}: {error}") from error
    # J = row, I = column; 2D models take the pixel grid as stored (no reorientation).
    return array[np.newaxis]


def segmentFiles(
    model: str | Path | ModelPackage,
    inputs: list[str | Path],
    output: str | Path,
    *,
    dicomSeg: str | Path | None = None,
    summary: str | Path | None = None,
    device: str = "auto",
    overlap: float | None = None,
    overrides: dict[str, str] | None = None,
    scene=None,
) -> dict[str, Any]:
    """Segment one case given as files and/or DICOM folders; write ``.seg.nrrd`` (+ SEG, JSON).

    Args:
        model: model id, model folder or loaded package.
        inputs: NIfTI/NRRD/MHA files, 2D images, or DICOM folders (every image series in them
            is a candidate, matched to the model inputs by SeriesDescription).
        output: ``.seg.nrrd`` path.
        dicomSeg: also write a DICOM SEG here (the reference input must be a DICOM series).
        summary: also write the returned summary as JSON here.
        overrides: input name -> file path or SeriesDescription, taking precedence over
            automatic matching.
        scene: scene to use (default: the app's, or a new headless one).

    Returns:
        Summary: model, matched inputs, missing optional inputs, timings per stage (s),
        per-segment volumes and lesion table, output paths.
    """
    started = time.perf_counter()
    package = model if isinstance(model, ModelPackage) else resolve_model(model)
    output = Path(output)
    if not output.name.lower().endswith(".seg.nrrd"):
        raise ValueError(f"--output must end with .seg.nrrd, got {output}")
    scene = hostScene() if scene is None else scene

    match = matchInputs(findCandidates(inputs), package.inputs, overrides=overrides)
    loadStarted = time.perf_counter()
    nodes, sources = {}, {}
    for spec in package.inputs:
        source = match.assigned.get(spec.name)
        if source is None:
            continue
        nodes[spec.name] = loadSource(scene, source, source.nodeName())
        sources[spec.name] = source
    loadSeconds = time.perf_counter() - loadStarted

    result = SegmentationLogic(scene).process(package, nodes, device=device, overlap=overlap)
    assert isinstance(result, SegmentationResult)
    writeStarted = time.perf_counter()
    output.parent.mkdir(parents=True, exist_ok=True)
    saveSegmentation(result.segmentationNode, output)
    written = {"seg_nrrd": str(output)}
    if dicomSeg is not None:
        written["dicom_seg"] = str(_writeDicomSeg(package, result, sources, Path(dicomSeg)))
    saveSeconds = time.perf_counter() - writeStarted

    timings = {"load": loadSeconds, **result.timings, "save": saveSeconds}
    timings.pop("total", None)
    timings["total"] = time.perf_counter() - started
    report = {
        "model": {"id": package.id, "version": package.version, "title": package.title},
        "inputs": {name: source.describe() for name, source in sources.items()},
        "missing_optional_inputs": result.missingOptionalInputs,
        "device": result.device,
        "timings_s": timings,
        "statistics": result.statistics,
        "outputs": written,
    }
    if summary is not None:
        Path(summary).parent.mkdir(parents=True, exist_ok=True)
        Path(summary).write_text(json.dumps(report, indent=2))
    return report


def _writeDicomSeg(
    package: ModelPackage, result: SegmentationResult, sources: dict[str, Source], path: Path
) -> Path:
    from unetseg.host.dicom_seg import writeDicomSeg

    referenceName = next(spec.name for spec in package.inputs if spec.required)
    series = sources[referenceName].series
    if series is None:
        raise ValueError(
            "--dicom-seg needs the reference input "
            f"'{referenceName}' to be a DICOM series (give a DICOM folder as input)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return writeDicomSeg(
        result.labels,
        package.labels,
        series,
        path,
        seriesDescription=f"{package.title} (UNetSeg)",
        algorithmName=f"UNetSeg {package.id}",
        algorithmVersion=package.version,
    )
