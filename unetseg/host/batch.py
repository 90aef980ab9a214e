"""Headless segmentation of files and DICOM folders (``python -m unetseg segment``).

Runs the same host logic as the Slicer modules: inputs become real volume nodes in an MRML
scene, the result a real segmentation node written by Slicer's ``.seg.nrrd`` writer. Works on
``slicer-core`` and inside Slicer (``Slicer --no-main-window --python-script``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import slicer

from unetseg.atomic import atomic_path, write_new_file
from unetseg.engine.geometry import Geometry
from unetseg.engine.options import SegmentOptions
from unetseg.engine.package import ModelPackage
from unetseg.engine.plausibility import intensity_warning, modality_warning
from unetseg.engine.preprocessing.resampling import resample_to_geometry
from unetseg.engine.registry import resolve_model
from unetseg.host import exports
from unetseg.host.dicom_series import DicomSeries
from unetseg.host.logic import Progress, SegmentationLogic, SegmentationResult
from unetseg.host.report import roundedStatistics
from unetseg.host.scene_io import newScene, writeSegmentationFile
from unetseg.host.sources import (
    Source,
    describeInput,
    findSources,
    inputFiles,
    inputWarnings,
    loadSource,
    matchSources,
    overrideSource,
)
from unetseg.host.volumes import (
    volumeGeometry,
    volumeToArray,
)
from unetseg.outputs import reserve_outputs


def hostScene():
    """The app's scene inside Slicer, else a new headless scene."""
    if getattr(slicer, "app", None) is not None:
        return slicer.mrmlScene
    return newScene()


def segmentFiles(
    model: str | Path | ModelPackage,
    inputs: Sequence[str | Path],
    output: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    dicomSeg: str | Path | None = None,
    summary: str | Path | None = None,
    preview: str | Path | None = None,
    statistics: str | Path | None = None,
    options: SegmentOptions | None = None,
    overrides: Mapping[str, str | Path] | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    stage: Callable[[str], None] | None = None,
    strict: bool = False,
    scene=None,
    logic: SegmentationLogic | None = None,
) -> dict[str, Any]:
    """Segment one case given as files and/or DICOM folders; write ``.seg.nrrd`` / NIfTI /
    one mask per segment (+ SEG, JSON, PNG, CSV).

    Before any work the outputs are reserved (``unetseg.outputs.reserve_outputs``): none may be
    an input (given files, the files of the DICOM series found, the model's files) or another
    output, their folders must be writable, existing files are only replaced with
    ``overwrite``, and a lock keeps a second run from writing the same outputs meanwhile.
    Every output is rendered first and then renamed into place together (``unetseg.atomic``):
    a failure or an interruption leaves the old files as they were and no partial file.

    Args:
        model: model id, model folder or loaded package.
        inputs: NIfTI/NRRD/MHA files, 2D images, or folders: every image file directly in
            a folder (``VOLUME_SUFFIXES``) and every DICOM image series under it is a
            candidate, matched to the model inputs by file name or SeriesDescription (a
            single-input model takes a lone candidate whatever its name).
        output: one path or several, at most one of each kind (``exports.outputKind``):
            ``.seg.nrrd``; ``.nii.gz`` / ``.nii`` (label map + ``<name>.json`` sidecar); a
            folder (a string ending with ``/``, or an existing folder) for one
            ``<segment name>.nii.gz`` mask per segment.
        dicomSeg: also write a DICOM SEG here (the reference input must be a DICOM series).
        summary: also write the returned summary as JSON here.
        preview: also write an overlay montage (PNG) of the result on the reference input.
        statistics: also write a CSV of segment sizes and intensity statistics per input
            (``exports.statisticsCsvBytes``), and for lesion models the lesion table as
            ``<stem>_lesions.csv``.
        options: how to run the model (``SegmentOptions()`` when None).
        overrides: input name -> file path, folder of one image, or the file name, series
            number, SeriesDescription or SeriesInstanceUID of one candidate; taken before
            automatic matching.
        overwrite: replace outputs that exist already (else ``FileExistsError``).
        progress: ``progress(doneWindows, totalWindows)`` during inference (this thread).
        stage: ``stage(name)`` when a stage starts: "loading inputs", "segmenting",
            "writing outputs".
        strict: refuse inputs that do not look like the model's (``_plausibilityWarnings``)
            with a ValueError before inference, instead of warning.
        scene: scene to use (default: the app's, or a new headless one).
        logic: a logic to reuse, in its scene (the networks it loaded are kept between
            runs: a batch loads its model once).

    Returns:
        Summary: model, matched inputs (``{"path", "matched": "auto"|"map"}`` plus the series
        number, description, modality and UID for DICOM), unused inputs, missing optional
        inputs (``missing_inputs``) and their measured effect on the model's Dice when its
        evaluation measured it (``missing_input_effect``, else None), ``warnings`` about the
        inputs used (DICOM series problems; inputs whose DICOM Modality or intensities are not
        the model's), the device, the backend, the run's ``options``, timings per stage in s
        ("discover", "load", the logic's stages, "dicom_seg", "preview", "exports" (NIfTI,
        masks, CSV) when written, "save", "total" wall time), per-segment
        volumes and lesion table (``statistics``), output paths by kind ("seg_nrrd",
        "nifti", "nifti_sidecar", "segment_folder", "statistics_csv", "lesions_csv",
        "dicom_seg", "preview", and "uncertainty" with ``options.uncertainty``).

    Raises:
        ValueError, FileNotFoundError, OSError: bad arguments, outputs or inputs (unreadable,
            damaged, ambiguous), with a message naming the file; checked before the network
            runs.
            A required input that matched nothing, or an ambiguous match, is a ValueError
            listing the candidates found and the ``--map`` to give.
    """
    started = time.perf_counter()
    outputs = exports.outputKinds([output] if isinstance(output, str | os.PathLike) else output)
    exports.checkSuffix("--preview", preview, ".png")
    exports.checkSuffix("--statistics", statistics, ".csv")
    statistics = None if statistics is None else Path(statistics)
    package = model if isinstance(model, ModelPackage) else resolve_model(model)

    options = options if options is not None else SegmentOptions()
    files = exports.plannedFiles(
        outputs, package.labels, statistics, package.lesion_analysis, options.uncertainty
    )
    files |= {"--dicom-seg": dicomSeg, "--summary": summary, "--preview": preview}
    sources = findSources(inputs, exclude=[Path(p) for p in files.values() if p is not None])
    chosen = {
        name: overrideSource(name, value, sources) for name, value in (overrides or {}).items()
    }
    sources += [s for s in chosen.values() if s not in sources]
    assigned = matchSources(package, sources, chosen)
    referenceName = next(spec.name for spec in package.inputs if spec.required)
    referenceSeries = assigned[referenceName].series
    if dicomSeg is not None:
        _checkDicomSegSource(referenceName, referenceSeries)
    with reserve_outputs(files, inputFiles(inputs, sources, package), overwrite=overwrite):
        timings = {"discover": time.perf_counter() - started}
        if logic is None:
            logic = SegmentationLogic(hostScene() if scene is None else scene)
        scene = logic.scene
        announce = stage or (lambda name: None)
        announce("loading inputs")
        loadStarted = time.perf_counter()
        nodes = {
            name: loadSource(scene, source, source.nodeName()) for name, source in assigned.items()
        }
        timings["load"] = time.perf_counter() - loadStarted
        implausible = _plausibilityWarnings(package, assigned, nodes)
        if strict and implausible:
            raise ValueError(f"{'; '.join(implausible)} (refused by --strict)")
        warnings = inputWarnings(assigned) + implausible
        announce("segmenting")
        result = logic.run(package, nodes, options, progress=progress)
        timings.update((k, v) for k, v in result.timings.items() if k != "total")
        announce("writing outputs")
        rendered = {}
        if dicomSeg is not None:
            assert referenceSeries is not None
            rendered["dicom_seg"] = _timed(
                timings, "dicom_seg", Path(dicomSeg), _dicomSeg, package, result, referenceSeries
            )
        if preview is not None:
            rendered["preview"] = _timed(
                timings, "preview", Path(preview), _preview, package, result, nodes[referenceName]
            )
        exportsStarted = time.perf_counter()
        paths, exported = _exports(package, result, nodes, outputs, statistics)
        if exported:
            timings["exports"] = time.perf_counter() - exportsStarted
        report = _report(package, sources, assigned, chosen, result, options, timings, warnings)
        report["outputs"] = {kind: str(path) for kind, path in paths.items()} | {
            kind: str(path) for kind, (path, _) in rendered.items()
        }
        staged = [*rendered.values(), *exported]
        segNrrd = outputs.get(exports.SEG_NRRD)
        _commitOutputs(result.segmentationNode, segNrrd, staged, summary, report, started)
    return report


def _exports(
    package: ModelPackage,
    result: SegmentationResult,
    nodes: Mapping[str, Any],
    outputs: Mapping[str, Path],
    statistics: Path | None,
) -> tuple[dict[str, Path], list[tuple[Path, bytes]]]:
    """Every output path by kind except SEG and preview (the ``.seg.nrrd`` included, written
    by ``_commitOutputs``), and the NIfTI, mask, uncertainty and CSV files rendered as
    ``(path, bytes)``."""
    reference = next(nodes[spec.name] for spec in package.inputs if spec.required)
    geometry = volumeGeometry(reference)
    labels = result.labels
    assert labels is not None
    paths: dict[str, Path] = dict(outputs)
    files: list[tuple[Path, bytes]] = []
    if exports.NIFTI in outputs:
        nifti = outputs[exports.NIFTI]
        paths["nifti_sidecar"] = exports.sidecarPath(nifti)
        model = {"id": package.id, "version": package.version, "title": package.title}
        files += [
            (nifti, exports.labelmapBytes(labels, geometry, nifti)),
            (paths["nifti_sidecar"], exports.sidecarBytes(model, package.labels, nifti)),
        ]
    if exports.FOLDER in outputs:
        files += exports.segmentMasks(labels, geometry, package.labels, outputs[exports.FOLDER])
    if result.uncertainty is not None:
        paths["uncertainty"] = exports.uncertaintyPath(outputs)
        files.append((paths["uncertainty"], exports.volumeNrrdBytes(result.uncertainty, geometry)))
    if statistics is not None:
        images = {spec.name: _onGrid(nodes.get(spec.name), geometry) for spec in package.inputs}
        intensities = exports.intensityStatistics(labels, package.labels, images)
        segments = result.statistics["segments"]
        paths["statistics_csv"] = statistics
        files.append((statistics, exports.statisticsCsvBytes(segments, intensities)))
        if package.lesion_analysis:
            paths["lesions_csv"] = exports.lesionTablePath(statistics)
            lesions = exports.lesionCsvBytes(result.statistics["lesions"])
            files.append((paths["lesions_csv"], lesions))
    return paths, files


def _onGrid(node, geometry: Geometry) -> np.ndarray | None:
    """The voxels of ``node`` on ``geometry``'s grid (linear interpolation when the grids
    differ, NaN outside the volume); None for no node."""
    if node is None:
        return None
    array, own = volumeToArray(node, copy=False)
    if own.is_close(geometry):
        return array
    return resample_to_geometry(array.astype(np.float32), own, geometry, order=1, fill=np.nan)


def _checkDicomSegSource(referenceName: str, series: DicomSeries | None) -> None:
    """Raise before any work when no DICOM SEG can be written for the reference input."""
    if series is None:
        raise ValueError(
            f"--dicom-seg needs the reference input '{referenceName}' to be a DICOM series "
            "(give a DICOM folder as input)"
        )
    from unetseg.host.dicom_seg import checkSegSource

    checkSegSource(series)


def _timed(timings: dict[str, float], stage: str, path: Path, render, *args) -> tuple[Path, bytes]:
    """``(path, render(*args))``, the seconds it took recorded as ``timings[stage]``."""
    started = time.perf_counter()
    data = render(*args)
    timings[stage] = time.perf_counter() - started
    return path, data


def _report(
    package: ModelPackage,
    sources: Sequence[Source],
    assigned: Mapping[str, Source],
    chosen: Mapping[str, Source],
    result: SegmentationResult,
    options: SegmentOptions,
    timings: dict[str, float],
    warnings: list[str],
) -> dict[str, Any]:
    """The summary of a run (see ``segmentFiles``), without its "outputs"."""
    used = {id(source) for source in assigned.values()}
    return {
        "model": {"id": package.id, "version": package.version, "title": package.title},
        "inputs": {
            name: describeInput(source, name not in chosen) for name, source in assigned.items()
        },
        "unused_inputs": [s.describe() for s in sources if id(s) not in used],
        "missing_inputs": result.missingInputs,
        "missing_input_effect": package.missing_input_effect(result.missingInputs),
        "warnings": warnings,
        "device": result.device,
        "backend": result.backend,
        "options": options.as_dict(),
        "timings_s": timings,
        "statistics": result.statistics,
    }


def _plausibilityWarnings(
    package: ModelPackage, assigned: Mapping[str, Source], nodes: Mapping[str, Any]
) -> list[str]:
    """Inputs that do not look like the model's: another DICOM Modality, or intensities
    unlike its modality's (``engine.plausibility``)."""
    warnings = []
    for spec in package.inputs:
        if spec.name not in nodes:
            continue
        series = assigned[spec.name].series
        image, _ = volumeToArray(nodes[spec.name], copy=False)
        found = [
            modality_warning(package.modality, series.modality if series is not None else ""),
            intensity_warning(package.modality, spec.normalization, image),
        ]
        warnings += [f"input {spec.name}: {warning}" for warning in found if warning]
    return warnings


def _commitOutputs(
    segmentationNode,
    segNrrd: Path | None,
    rendered: Sequence[tuple[Path, bytes]],
    summary: str | Path | None,
    report: dict[str, Any],
    started: float,
) -> None:
    """Write every output under a temporary name, then rename them all into place; fills in
    the "save" and "total" timings of ``report`` before the summary is written."""
    timings = report["timings_s"]
    saveStarted = time.perf_counter()
    with contextlib.ExitStack() as commit:
        if segNrrd is not None:
            temporary = commit.enter_context(atomic_path(segNrrd))
            writeSegmentationFile(segmentationNode, temporary, segNrrd)
        for path, data in rendered:
            write_new_file(commit.enter_context(atomic_path(path)), data)
        timings["save"] = time.perf_counter() - saveStarted
        timings["total"] = time.perf_counter() - started
        if summary is not None:
            text = json.dumps(_rounded(report), indent=2).encode()
            write_new_file(commit.enter_context(atomic_path(summary)), text)
    if segNrrd is not None:
        segmentationNode.GetStorageNode().SetFileName(str(segNrrd))


def _rounded(report: Mapping[str, Any]) -> dict[str, Any]:
    """``report`` as written to the JSON summary: timings to 0.01 s, statistics rounded
    (``roundedStatistics``)."""
    timings = {stage: round(seconds, 2) for stage, seconds in report["timings_s"].items()}
    statistics = roundedStatistics(report["statistics"])
    return dict(report) | {"timings_s": timings, "statistics": statistics}


def _preview(package: ModelPackage, result: SegmentationResult, referenceNode) -> bytes:
    """Overlay montage of the result on the reference input, as PNG bytes."""
    from unetseg.preview import overlay_montage_png

    image, geometry = volumeToArray(referenceNode, copy=False)
    return overlay_montage_png(
        image,
        result.labels,
        geometry,
        package.labels,
        nested=package.activation == "sigmoid",
        title=f"{referenceNode.GetName()} - {package.title}",
    )


def _dicomSeg(package: ModelPackage, result: SegmentationResult, series: DicomSeries) -> bytes:
    from unetseg.host.dicom_seg import dicomSegBytes

    return dicomSegBytes(
        result.labels,
        package.labels,
        series,
        seriesDescription=f"{package.title} (UNetSeg)",
        algorithmName=f"UNetSeg {package.id}",
        algorithmVersion=package.version,
    )
