"""One segmentation run of the web face, through the host layer only.

``SegmentationLogic.start`` reads the inputs on the calling (scene) thread and runs the engine
on a worker thread; the server polls ``poll()`` from its event loop, ``cancel()`` may come at
any time, and ``finish()`` writes the result into the scene on the event loop's thread. The
scene changes only when a run succeeds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from unetseg.engine.inference import InferenceCancelled
from unetseg.engine.options import SegmentOptions
from unetseg.engine.package import ModelPackage
from unetseg.host.logic import SegmentationJob, SegmentationLogic, SegmentationResult


@dataclass(frozen=True)
class Progress:
    """What the progress bar shows: done and total windows, and the seconds so far."""

    done: int
    total: int
    seconds: float

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 0.0


class RunCancelledError(RuntimeError):
    """The user cancelled the run; the scene is unchanged."""


class SegmentationRunner:
    """Starts, watches, cancels and finishes one run at a time on ``scene``."""

    def __init__(self, scene: Any) -> None:
        self.logic = SegmentationLogic(scene)
        self._job: SegmentationJob | None = None
        self._started = 0.0
        self._cancelled = False

    @property
    def busy(self) -> bool:
        return self._job is not None

    def start(
        self,
        model: ModelPackage,
        inputs: Mapping[str, Any],
        options: SegmentOptions,
        name: str | None = None,
    ) -> None:
        """Start a run (arguments are checked at once: ``ValueError`` for bad inputs).

        Raises:
            RuntimeError: a run is already going on.
        """
        if self._job is not None:
            raise RuntimeError("A segmentation is already running")
        self._cancelled = False
        self._started = time.perf_counter()
        self._job = self.logic.start(model, inputs, options, segmentationName=name)

    def poll(self) -> Progress:
        """Progress of the current run (zeros when idle)."""
        done, total = self._job.progress if self._job is not None else (0, 0)
        return Progress(done, total, time.perf_counter() - self._started)

    def done(self) -> bool:
        """True when the engine part is over (result, error or cancelled)."""
        return self._job is not None and self._job.isDone()

    def cancel(self) -> None:
        """Ask the engine to stop at the next window (no-op when idle)."""
        if self._job is not None:
            self._cancelled = True
            self._job.cancel()

    def finish(self) -> SegmentationResult:
        """Write the result into the scene (event loop thread); call once ``done()``.

        Raises:
            RunCancelledError: the run was cancelled; the engine's errors otherwise.
        """
        job, self._job = self._job, None
        if job is None:
            raise RuntimeError("No segmentation is running")
        if self._cancelled:  # also when the engine finished just before the click
            self._cancelled = False
            raise RunCancelledError("Segmentation cancelled; nothing was changed")
        try:
            return job.finish()
        except InferenceCancelled:
            raise RunCancelledError("Segmentation cancelled; nothing was changed") from None


def form_options(state: Any) -> SegmentOptions:
    """The run's options from the panel's state (``us_device``, ``us_backend``,
    ``us_overlap`` text, ``us_fast``, ``us_uncertainty``).

    Raises:
        ValueError: the overlap is not a number, or an option is out of range.
    """
    text = str(state.us_overlap or "").strip()
    try:
        overlap = float(text) if text else None
    except ValueError:
        raise ValueError(f"Overlap must be a number in [0, 0.95], got '{text}'") from None
    return SegmentOptions(
        device=state.us_device or "auto",
        backend=state.us_backend or "auto",
        overlap=overlap,
        fast=bool(state.us_fast),
        uncertainty=bool(state.us_uncertainty),
    )
