"""Batches of cases (``python -m unetseg segment-batch``): one model, many cases in turn.

Every case runs through ``batch.segmentFiles``, the single-case path, with one
``SegmentationLogic`` (the network is loaded once) and one scene emptied after each case. A
case that fails is recorded with its reason and skipped; a case whose outputs all exist is
skipped (resumable) unless ``overwrite``. The batch ends with a summary CSV: one row per case
with its status, seconds, segment sizes and error.

Case outputs in the output folder: ``<case>.seg.nrrd`` or ``<case>.nii.gz`` (+ ``<case>.json``
sidecar), ``<case>.summary.json`` and, with statistics, ``<case>_statistics.csv`` (+
``<case>_statistics_lesions.csv`` for lesion models); the batch summary is ``summary.csv``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetseg.atomic import write_atomically
from unetseg.engine.options import SegmentOptions
from unetseg.engine.package import ModelPackage
from unetseg.engine.registry import resolve_model
from unetseg.exits import describe_error
from unetseg.host import exports
from unetseg.host.report import roundedStatistics
from unetseg.outputs import reserve_outputs

if TYPE_CHECKING:  # Slicer and torch are imported when cases run, after the checks
    from unetseg.host.logic import Progress, SegmentationLogic

OUTPUT_FORMATS = ("seg.nrrd", "nii.gz")
SUMMARY_CSV = "summary.csv"
CASE_ID_COLUMN = "case_id"
OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass(frozen=True)
class Case:
    """One case of a batch.

    Attributes:
        id: the case name, used for its output file names.
        inputs: files or folders (as ``segmentFiles`` takes them).
        columns: CSV column -> path; columns named after a model input choose that input
            (as ``--map``).
    """

    id: str
    inputs: tuple[Path, ...]
    columns: Mapping[str, Path] = field(default_factory=dict)


def casesFromFolder(
    folder: str | os.PathLike[str], outputDir: str | os.PathLike[str] | None = None
) -> list[Case]:
    """One case per visible sub-folder of ``folder``, named after it, in name order (the
    output folder ``outputDir`` is no case when it lies in ``folder``).

    Raises:
        NotADirectoryError: ``folder`` is not a folder.
        ValueError: it has no sub-folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"--input-dir {folder} is not a folder")
    output = None if outputDir is None else Path(outputDir).resolve()
    cases = [
        Case(child.name, (child,))
        for child in sorted(folder.iterdir())
        if child.is_dir() and not child.name.startswith(".") and child.resolve() != output
    ]
    if not cases:
        raise ValueError(f"--input-dir {folder} has no sub-folder: one case per sub-folder")
    return cases


def casesFromCsv(path: str | os.PathLike[str]) -> list[Case]:
    """Cases of a CSV file with a ``case_id`` column; every other non-empty cell is an input
    path (relative paths are relative to the CSV file's folder).

    Raises:
        ValueError: no ``case_id`` column, no case, an empty or repeated case id, or a case
            without inputs.
        OSError: the file cannot be read.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        if CASE_ID_COLUMN not in (reader.fieldnames or []):
            raise ValueError(f"--cases {path}: no {CASE_ID_COLUMN!r} column in the header")
        rows = list(reader)
    cases = []
    for line, row in enumerate(rows, start=2):
        caseId = (row.pop(CASE_ID_COLUMN) or "").strip()
        columns = {
            name.strip(): path.parent / value.strip()
            for name, value in row.items()
            if name and isinstance(value, str) and value.strip()
        }
        if not caseId or not columns:
            raise ValueError(f"--cases {path} line {line}: a case needs a case_id and inputs")
        cases.append(Case(caseId, tuple(dict.fromkeys(columns.values())), columns))
    if not cases:
        raise ValueError(f"--cases {path} lists no case")
    return cases


def checkCases(cases: Sequence[Case]) -> None:
    """Raise ``ValueError`` for a case id that is not a plain file name or is repeated."""
    seen: set[str] = set()
    for case in cases:
        if case.id in (".", "..") or any(sep in case.id for sep in {"/", "\\", os.sep}):
            raise ValueError(f"case id {case.id!r} cannot name output files")
        if case.id in seen:
            raise ValueError(f"case id {case.id!r} is given twice")
        seen.add(case.id)


@dataclass(frozen=True)
class CaseOutputs:
    """The files one case writes (``statistics`` None when not asked)."""

    output: Path
    summary: Path
    statistics: Path | None

    def planned(self, package: ModelPackage, uncertainty: bool = False) -> list[Path]:
        """Every file of the case (sidecar and lesion table included, and the uncertainty
        volume with ``uncertainty``)."""
        outputs = exports.outputKinds([self.output])
        files = exports.plannedFiles(
            outputs, package.labels, self.statistics, package.lesion_analysis, uncertainty
        )
        return [*files.values(), self.summary]


def caseOutputs(folder: Path, caseId: str, outputFormat: str, statistics: bool) -> CaseOutputs:
    """Output paths of case ``caseId`` in ``folder`` (see the module doc)."""
    if outputFormat not in OUTPUT_FORMATS:
        raise ValueError(f"--output-format must be one of {OUTPUT_FORMATS}, got {outputFormat}")
    return CaseOutputs(
        folder / f"{caseId}.{outputFormat}",
        folder / f"{caseId}.summary.json",
        folder / f"{caseId}_statistics.csv" if statistics else None,
    )


def segmentCases(
    model: str | Path | ModelPackage,
    cases: Sequence[Case],
    outputDir: str | os.PathLike[str],
    *,
    outputFormat: str = "seg.nrrd",
    statistics: bool = False,
    overwrite: bool = False,
    options: SegmentOptions | None = None,
    strict: bool = False,
    progress: Progress | None = None,
    stage: Callable[[str], None] | None = None,
    onCase: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Segment ``cases`` in turn with one model; write ``summary.csv`` in ``outputDir``.

    Args:
        model: model id, model folder or loaded package (loaded once).
        cases: the cases (``casesFromFolder`` / ``casesFromCsv``).
        outputDir: folder of the outputs (created).
        outputFormat: "seg.nrrd" or "nii.gz" (label map + JSON sidecar).
        statistics: also write each case's statistics CSV.
        overwrite: run finished cases again and replace their outputs.
        options, strict, progress, stage: as ``segmentFiles`` (with ``strict`` an
            implausible case fails).
        onCase: called with each case's row as soon as the case is done.

    Returns:
        One row per case: "case", "status" (ok / failed / skipped: outputs found), "seconds",
        "segments" (name -> mL, or cm2 for single-slice images), "warnings", "error".

    Raises:
        OutputLockedError: another batch is writing the same summary.
        ModelPackageError, OSError: the model cannot be loaded, the folder not written.
    """
    from unetseg.host.batch import hostScene
    from unetseg.host.logic import SegmentationLogic

    checkCases(cases)
    outputDir = Path(outputDir)
    package = model if isinstance(model, ModelPackage) else resolve_model(model)
    logic = SegmentationLogic(hostScene())
    uncertain = options is not None and options.uncertainty
    runArguments = {
        "options": options,
        "strict": strict,
        "progress": progress,
        "stage": stage,
    }
    rows = []
    with reserve_outputs({"batch summary": outputDir / SUMMARY_CSV}, [], overwrite=True):
        for case in cases:
            outputs = caseOutputs(outputDir, case.id, outputFormat, statistics)
            if not overwrite and all(p.exists() for p in outputs.planned(package, uncertain)):
                row = _finishedRow(case.id, outputs.summary)
            else:
                row = _runCase(package, case, outputs, logic, overwrite, runArguments)
            rows.append(row)
            if onCase is not None:
                onCase(row)
        write_atomically(outputDir / SUMMARY_CSV, summaryCsvBytes(rows, package))
    return rows


def _runCase(
    package: ModelPackage,
    case: Case,
    outputs: CaseOutputs,
    logic: SegmentationLogic,
    overwrite: bool,
    runArguments: Mapping[str, Any],
) -> dict[str, Any]:
    """Segment one case through ``segmentFiles``; a failure becomes a "failed" row."""
    from unetseg.host.batch import segmentFiles

    started = time.perf_counter()
    names = {spec.name for spec in package.inputs}
    overrides = {name: path for name, path in case.columns.items() if name in names}
    try:
        with _nodesRemovedAfter(logic.scene):
            report = segmentFiles(
                package,
                case.inputs,
                outputs.output,
                summary=outputs.summary,
                statistics=outputs.statistics,
                overrides=overrides,
                overwrite=overwrite,
                logic=logic,
                **runArguments,
            )
    except Exception as error:  # reported in the row, the batch goes on
        seconds = time.perf_counter() - started
        return _row(case.id, FAILED, seconds, error=describe_error(error))
    sizes = _segmentSizes(roundedStatistics(report["statistics"]))
    seconds = report["timings_s"]["total"]
    return _row(case.id, OK, seconds, sizes, report["warnings"])


def _finishedRow(caseId: str, summary: Path) -> dict[str, Any]:
    """The row of a case finished by an earlier run, from its JSON summary."""
    try:
        report = json.loads(summary.read_text(encoding="utf-8"))
        seconds = report["timings_s"]["total"]
        sizes, warnings = _segmentSizes(report["statistics"]), report.get("warnings", [])
    except (OSError, ValueError, KeyError, TypeError) as error:
        return _row(caseId, SKIPPED, None, error=f"outputs exist; summary unreadable: {error}")
    return _row(caseId, SKIPPED, seconds, sizes, warnings)


def _row(
    caseId: str,
    status: str,
    seconds: float | None,
    segments: Mapping[str, float] | None = None,
    warnings: Sequence[str] = (),
    error: str = "",
) -> dict[str, Any]:
    return {
        "case": caseId,
        "status": status,
        "seconds": None if seconds is None else round(seconds, 2),
        "segments": dict(segments or {}),
        "warnings": list(warnings),
        "error": error,
    }


def _segmentSizes(statistics: Mapping[str, Any]) -> dict[str, float]:
    """Segment name -> size, from rounded statistics (``report.roundedStatistics``, as in the
    JSON summaries): mL, or cm2 for single-slice images."""
    return {
        segment["name"]: (
            round(segment["area_mm2"] / 100.0, 3) if "area_mm2" in segment else segment["volume_ml"]
        )
        for segment in statistics["segments"]
    }


def summaryCsvBytes(rows: Sequence[Mapping[str, Any]], package: ModelPackage) -> bytes:
    """The batch summary: ``case, status, seconds``, one column per segment (``<name>
    (mL)``, ``(cm2)`` for 2D models), ``warnings`` (joined by `` | ``) and ``error``."""
    unit = "mL" if package.spatial_dims == 3 else "cm2"
    segments = {label.name: f"{label.name} ({unit})" for label in package.labels}
    text = io.StringIO()
    columns = ["case", "status", "seconds", *segments.values(), "warnings", "error"]
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        sizes = {segments[n]: size for n, size in row["segments"].items() if n in segments}
        common = {key: row[key] for key in ("case", "status", "seconds", "error")}
        writer.writerow(common | sizes | {"warnings": " | ".join(row["warnings"])})
    return text.getvalue().encode()


def _nodeIds(scene) -> set[str]:
    return {scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())}


@contextlib.contextmanager
def _nodesRemovedAfter(scene) -> Iterator[None]:
    """Remove the nodes added to ``scene`` in the block (its subject hierarchy stays)."""
    before = _nodeIds(scene)
    try:
        yield
    finally:
        for nodeId in _nodeIds(scene) - before:
            node = scene.GetNodeByID(nodeId)
            if node is not None and not node.IsA("vtkMRMLSubjectHierarchyNode"):
                scene.RemoveNode(node)
