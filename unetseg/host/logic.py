"""Run a model package on volume nodes and store the result as a segmentation node.

The same logic serves the Slicer modules and the web face (``start``: poll the job from a timer),
Slicer batch scripts and plain Python on ``slicer-core`` (``run``).

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
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from unetseg.engine.inference import CancelToken
from unetseg.engine.matching import MissingInputError
from unetseg.engine.options import SegmentOptions
from unetseg.engine.package import ModelPackage
from unetseg.engine.predict import CaseSegmentation, Segmenter
from unetseg.host.report import segmentStatistics
from unetseg.host.segmentation import SegmentationExistsError, writeLabelmapToSegmentation
from unetseg.host.volumes import addUncertaintyVolume, volumeToArray

if TYPE_CHECKING:
    from typing import Unpack

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
        missingInputs: optional inputs that were absent; the node is flagged with them
            (attribute ``UNetSeg.MissingInputs``, comma separated).
        device: where the network ran, in words.
        backend: what ran it, in words (e.g. "OpenVINO 2026.4.1, float32").
        labels: the label map `(K, J, I)` on the reference volume's grid (for DICOM SEG export).
        uncertainty: with ``SegmentOptions.uncertainty``, the per-voxel uncertainty `(K, J, I)`
            in [0, 1] on the same grid, else None.
        uncertaintyNode: with ``SegmentOptions.uncertainty``, a new scalar volume node of the
            uncertainty with a heat colour map (``addUncertaintyVolume``), else None.
    """

    segmentationNode: Any
    statistics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    missingInputs: list[str] = field(default_factory=list)
    device: str = ""
    backend: str = ""
    labels: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    uncertaintyNode: Any = None


class RunOutput(TypedDict, total=False):
    """Keyword arguments of ``SegmentationLogic.run`` and ``start`` (and of the modules'
    logic): where the result goes, and who hears of the progress.

    Attributes:
        outputSegmentationNode: write into this node instead of a new one (default None). A
            node that already has segments is only changed with ``replaceModelSegments=True``,
            and then only this model's segments are replaced (others are kept).
        replaceModelSegments: allow replacing this model's segments (default False).
        segmentationName: name of a new node; default ``"<reference> - <model title>"``.
        progress: ``progress(doneWindows, totalWindows)``, called from the engine thread.
    """

    outputSegmentationNode: Any
    replaceModelSegments: bool
    segmentationName: str | None
    progress: Progress | None


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
        self._segmenters: dict[tuple[str, str, SegmentOptions], Segmenter] = {}
        #: Loaded networks by model and ``SegmentOptions.runner_options``.
        self._runners: dict[tuple[str, str, SegmentOptions], Any] = {}
        self._segmentersLock = threading.Lock()

    def segmenter(self, model: ModelPackage, options: SegmentOptions) -> Segmenter:
        """``model`` set up for ``options``; its loaded network is kept for the next run with
        the same device, backend, precision, fast and window batch (a new overlap or
        uncertainty setting does not load it again)."""
        key = (str(model.path), model.weights_sha256, options)
        runnerKey = (*key[:2], options.runner_options)
        with self._segmentersLock:
            if key not in self._segmenters:
                segmenter = Segmenter(model, options, self._runners.get(runnerKey))
                self._runners.setdefault(runnerKey, segmenter.runner)
                self._segmenters[key] = segmenter
            return self._segmenters[key]

    def run(
        self,
        model: ModelPackage,
        inputNodes: Mapping[str, Any],
        options: SegmentOptions | None = None,
        *,
        cancelToken: CancelToken | None = None,
        **output: Unpack[RunOutput],
    ) -> SegmentationResult:
        """Segment ``inputNodes`` with ``model`` now, on this thread (batch scripts, CLI).

        See ``start`` for the arguments; ``cancelToken`` stops the run from another thread.

        Raises: as ``start``, and then the engine's ``ValueError`` (bad input image),
        ``SegmentationError`` (out of memory) or ``InferenceCancelled``.
        """
        job = self._job(model, inputNodes, options, cancelToken, **output)
        return job.start(background=False).finish()

    def start(
        self,
        model: ModelPackage,
        inputNodes: Mapping[str, Any],
        options: SegmentOptions | None = None,
        **output: Unpack[RunOutput],
    ) -> SegmentationJob:
        """Start segmenting ``inputNodes`` with ``model`` on a worker thread (GUI, web): poll
        ``job.isDone()`` / ``job.progress``, ``job.cancel()`` from any thread, then call
        ``job.finish()`` on this thread to write the result into the scene.

        Args:
            model: the model package.
            inputNodes: manifest input name -> ``vtkMRMLScalarVolumeNode`` (None or absent for a
                missing optional input). The first required input is the reference: the result
                lies on its grid and is named after it.
            options: how to run the model (``SegmentOptions()`` when None).
            output: ``outputSegmentationNode``, ``replaceModelSegments``, ``segmentationName``,
                ``progress`` (keywords only; see ``RunOutput``).

        Raises (at once):
            MissingInputError: a required input has no volume.
            SegmentationExistsError: the output node has segments and replacing was not asked.
            ValueError: unknown input names, a volume without image data.

        ``finish()`` raises the engine's errors. Arguments are checked before anything is
        computed, and the scene only changes when a run succeeds.
        """
        return self._job(model, inputNodes, options, None, **output).start(background=True)

    def _job(
        self,
        model: ModelPackage,
        inputNodes: Mapping[str, Any],
        options: SegmentOptions | None,
        cancelToken: CancelToken | None,
        *,
        outputSegmentationNode=None,
        replaceModelSegments: bool = False,
        segmentationName: str | None = None,
        progress: Progress | None = None,
    ) -> SegmentationJob:
        """A job, not started yet, after checking the arguments and reading the inputs (the
        keywords and their defaults are those of ``RunOutput``)."""
        options = options if options is not None else SegmentOptions()
        started = time.perf_counter()
        self._checkArguments(model, inputNodes)
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
            segmenter = self.segmenter(model, options)
            timings = {"read": readSeconds, "model": time.perf_counter() - loadStarted}
            case = segmenter.segment(arrays, geometries, progress=forward, cancel=cancel)
            timings.update(case.timings)
            statisticsStarted = time.perf_counter()
            lesionLabels = (
                [label.value for label in model.labels] if model.lesion_analysis else None
            )
            statistics = segmentStatistics(
                case.labels, case.geometry, model.labels, lesionLabels,
                uncertainty=case.uncertainty,
            )  # fmt: skip
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
                uncertaintyNode = None
                if case.uncertainty is not None:
                    uncertaintyNode = addUncertaintyVolume(
                        self.scene,
                        case.uncertainty.reshape(case.geometry.shape),
                        case.geometry,
                        f"{node.GetName()} uncertainty",
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
                case.backend,
                case.labels,
                case.uncertainty,
                uncertaintyNode,
            )

        return SegmentationJob(compute, apply, cancelToken)

    @staticmethod
    def _checkArguments(model: ModelPackage, inputNodes: Mapping[str, Any]) -> None:
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
