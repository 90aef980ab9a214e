"""Run a model package on volume nodes and store the result as a segmentation node.

The same logic serves the Slicer modules (GUI: ``waitForCompletion=False``, poll the job from a
timer), Slicer batch scripts and plain Python on ``slicer-core`` (``waitForCompletion=True``).

Threading rule: MRML is only touched on the calling thread (reading the input arrays when the job
starts, writing the segmentation in ``SegmentationJob.finish``). Everything in between (loading
the network, preprocessing, inference, statistics) is pure numpy/torch and runs on a worker
thread when the caller does not wait, so the GUI is never blocked.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unetseg.engine.inference import CancelToken
from unetseg.engine.package import ModelPackage
from unetseg.engine.predict import CaseSegmentation, Segmenter
from unetseg.host.matching import MissingInputError
from unetseg.host.report import segmentStatistics
from unetseg.host.segmentation import SegmentationExistsError, writeLabelmapToSegmentation
from unetseg.host.volumes import volumeToArray

Progress = Callable[[int, int], None]

#: Segmentation node attributes written by every run.
MODEL_ATTRIBUTE = "UNetSeg.Model"
MISSING_INPUTS_ATTRIBUTE = "UNetSeg.MissingInputs"


@dataclass
class SegmentationResult:
    """What one run produced.

    Attributes:
        segmentationNode: the (new or updated) ``vtkMRMLSegmentationNode``.
        statistics: ``segmentStatistics`` output (per-segment volume in mL, lesion table).
        timings: seconds per stage: "read", "model" (network loading, 0 when cached),
            "prepare", "inference", "restore", "statistics", "write", and "total" (their sum).
        missingOptionalInputs: optional inputs that were absent; the node is flagged with them
            (attribute ``UNetSeg.MissingInputs``, comma separated).
        device: where the network ran, in words.
        labels: the label map `(K, J, I)` on the reference volume's grid (for DICOM SEG export).
    """

    segmentationNode: Any
    statistics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    missingOptionalInputs: list[str] = field(default_factory=list)
    device: str = ""
    labels: np.ndarray | None = None


@dataclass
class _Computed:
    """Engine output handed from the worker thread to ``finish()``."""

    case: CaseSegmentation
    statistics: dict[str, Any]
    timings: dict[str, float]


class SegmentationJob:
    """One run of a model; the engine part may run on a worker thread.

    ``isDone()`` and ``progress`` may be polled from the GUI thread and ``cancel()`` called from
    any thread; ``finish()`` must be called on the thread that owns the scene: it writes the
    result, or re-raises the engine's error (``InferenceCancelled`` after ``cancel()``) and
    leaves the scene untouched.
    """

    def __init__(
        self,
        compute: Callable[[Progress, CancelToken], _Computed],
        apply: Callable[[_Computed], SegmentationResult],
        cancelToken: CancelToken | None = None,
    ) -> None:
        self._compute = compute
        self._apply = apply
        self._cancel = cancelToken if cancelToken is not None else CancelToken()
        self._done = threading.Event()
        self._computed: _Computed | None = None
        self._error: BaseException | None = None
        self.progress: tuple[int, int] = (0, 0)

    def _run(self) -> None:
        try:
            self._computed = self._compute(self._setProgress, self._cancel)
        except BaseException as error:  # handed to the caller's thread by finish()
            self._error = error
        finally:
            self._done.set()

    def _setProgress(self, done: int, total: int) -> None:
        self.progress = (done, total)

    def start(self, background: bool) -> SegmentationJob:
        """Run the engine part now (``background=False``) or on a daemon worker thread."""
        if background:
            threading.Thread(target=self._run, name="UNetSeg", daemon=True).start()
        else:
            self._run()
        return self

    def isDone(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Ask the engine to stop at the next window; ``finish()`` then raises."""
        self._cancel.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the engine part is done (or ``timeout`` s passed); True when done."""
        return self._done.wait(timeout)

    def finish(self) -> SegmentationResult:
        """Wait for the engine, then write the result into the scene (calling thread)."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._computed is not None
        return self._apply(self._computed)


class SegmentationLogic:
    """Segments volume nodes of one scene with model packages.

    Args:
        scene: the MRML scene (``slicer.mrmlScene`` in the app, ``newScene()`` elsewhere).
    """

    def __init__(self, scene) -> None:
        self.scene = scene
        self._segmenters: dict[tuple[str, str, str], Segmenter] = {}
        self._segmentersLock = threading.Lock()

    def segmenter(self, model: ModelPackage, device: str = "auto") -> Segmenter:
        """The loaded network for ``model`` on ``device`` (kept for the next run)."""
        key = (str(model.path), model.manifest["weights"]["sha256"], device)
        with self._segmentersLock:
            if key not in self._segmenters:
                self._segmenters[key] = Segmenter(model, device)
            return self._segmenters[key]

    def process(
        self,
        model: ModelPackage,
        inputNodes: Mapping[str, Any],
        *,
        outputSegmentationNode=None,
        replaceModelSegments: bool = False,
        device: str = "auto",
        overlap: float | None = None,
        fast: bool = False,
        progress: Progress | None = None,
        cancelToken: CancelToken | None = None,
        waitForCompletion: bool = True,
        segmentationName: str | None = None,
    ) -> SegmentationResult | SegmentationJob:
        """Segment ``inputNodes`` with ``model``.

        Args:
            model: the model package.
            inputNodes: manifest input name -> ``vtkMRMLScalarVolumeNode`` (None or absent for a
                missing optional input). The first required input is the reference: the result
                lies on its grid and is named after it.
            outputSegmentationNode: write into this node instead of a new one. A node that
                already has segments is only changed with ``replaceModelSegments=True``, and
                then only this model's segments are replaced (others are kept).
            device: "auto", "cpu" or "cuda".
            overlap: sliding-window overlap in [0, 1); default the model's.
            fast: faster but approximate (fewest windows covering the body/head box, CPU bf16).
            progress: ``progress(doneWindows, totalWindows)``, called from the engine thread.
            cancelToken: cancels the run from another thread (``SegmentationJob.cancel()``
                sets the same token).
            waitForCompletion: True: run now and return the result (batch). False: return a
                started ``SegmentationJob`` (GUI); call ``finish()`` when ``isDone()``.
            segmentationName: name of a new node; default ``"<reference> - <model title>"``.

        Raises (at once):
            MissingInputError: a required input has no volume.
            SegmentationExistsError: the output node has segments and replacing was not asked.
            ValueError: unknown input names, bad overlap, a volume without image data.

        Raises (from ``finish()``, or at once when waiting): the engine's ``ValueError`` (bad
        input image), ``SegmentationError`` (out of memory) or ``InferenceCancelled``. Arguments
        are checked before anything is computed, and the scene only changes when a run succeeds.
        """
        started = time.perf_counter()
        self._checkArguments(model, inputNodes, overlap)
        self._checkOutput(outputSegmentationNode, replaceModelSegments)
        reference = next(inputNodes[spec.name] for spec in model.inputs if spec.required)
        arrays, geometries = [], []
        for spec in model.inputs:
            node = inputNodes.get(spec.name)
            array, geometry = volumeToArray(node) if node is not None else (None, None)
            arrays.append(array)
            geometries.append(geometry)
        readSeconds = time.perf_counter() - started

        def compute(report: Progress, cancel: CancelToken) -> _Computed:
            def forward(done: int, total: int) -> None:
                report(done, total)
                if progress is not None:
                    progress(done, total)

            loadStarted = time.perf_counter()
            segmenter = self.segmenter(model, device)
            timings = {"read": readSeconds, "model": time.perf_counter() - loadStarted}
            case = segmenter.segment(
                arrays, geometries, progress=forward, cancel=cancel, overlap=overlap, fast=fast
            )
            timings.update(case.timings)
            statisticsStarted = time.perf_counter()
            lesionLabels = (
                [label.value for label in model.labels] if model.lesion_analysis else None
            )
            statistics = segmentStatistics(case.labels, case.geometry, model.labels, lesionLabels)
            timings["statistics"] = time.perf_counter() - statisticsStarted
            return _Computed(case, statistics, timings)

        def apply(computed: _Computed) -> SegmentationResult:
            writeStarted = time.perf_counter()
            case = computed.case
            if reference.GetScene() is not self.scene:
                raise RuntimeError(
                    f"Volume '{reference.GetName()}' was removed while it was being segmented"
                )
            with _rollbackOnError(self.scene):
                node = writeLabelmapToSegmentation(
                    self.scene,
                    case.labels,
                    reference,
                    model.labels,
                    segmentationNode=outputSegmentationNode,
                    name=segmentationName or f"{reference.GetName()} - {model.title}",
                    replaceModelSegments=replaceModelSegments,
                    modelId=model.id,
                )
            node.SetAttribute(MODEL_ATTRIBUTE, f"{model.id}@{model.version}")
            if case.missing_inputs:
                node.SetAttribute(MISSING_INPUTS_ATTRIBUTE, ",".join(case.missing_inputs))
            else:
                node.RemoveAttribute(MISSING_INPUTS_ATTRIBUTE)
            timings = dict(computed.timings)
            timings["write"] = time.perf_counter() - writeStarted
            timings["total"] = sum(timings.values())
            return SegmentationResult(
                node,
                computed.statistics,
                timings,
                list(case.missing_inputs),
                case.device,
                case.labels,
            )

        job = SegmentationJob(compute, apply, cancelToken)
        job.start(background=not waitForCompletion)
        return job.finish() if waitForCompletion else job

    @staticmethod
    def _checkArguments(
        model: ModelPackage, inputNodes: Mapping[str, Any], overlap: float | None
    ) -> None:
        names = {spec.name for spec in model.inputs}
        unknown = sorted(set(inputNodes) - names)
        if unknown:
            raise ValueError(
                f"Model '{model.id}' has no input(s) {unknown}; its inputs are {sorted(names)}"
            )
        missing = [
            spec for spec in model.inputs if spec.required and inputNodes.get(spec.name) is None
        ]
        if missing:
            raise MissingInputError(missing)
        if overlap is not None and not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")

    @staticmethod
    def _checkOutput(outputSegmentationNode, replaceModelSegments: bool) -> None:
        if outputSegmentationNode is None or replaceModelSegments:
            return
        if outputSegmentationNode.GetSegmentation().GetNumberOfSegments() > 0:
            raise SegmentationExistsError(
                f"Segmentation '{outputSegmentationNode.GetName()}' already has segments. "
                "Choose 'Create new' as output, or tick 'replace existing model segments' to "
                "replace only this model's segments."
            )


def _nodeIds(scene) -> list[str]:
    return [scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())]


@contextlib.contextmanager
def _rollbackOnError(scene) -> Iterator[None]:
    """Remove the nodes added to ``scene`` inside the block if the block raises."""
    before = set(_nodeIds(scene))
    try:
        yield
    except BaseException:
        for nodeId in reversed(_nodeIds(scene)):
            node = scene.GetNodeByID(nodeId)
            # The subject hierarchy node is the scene's singleton, created on first use.
            if nodeId not in before and not node.IsA("vtkMRMLSubjectHierarchyNode"):
                scene.RemoveNode(node)
        raise
