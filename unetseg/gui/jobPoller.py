"""Following a background ``SegmentationJob`` from the GUI thread with a Qt timer.

The engine runs on a worker thread and never touches Qt or MRML; this poller reads its progress
and, once it is done, hands the job back on the GUI thread, where ``job.finish()`` may write the
result into the scene.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import qt


class JobPoller:
    """Calls ``onProgress(done, total)`` every ``intervalMs`` while ``job`` runs, then
    ``onDone(job)`` once (both on the GUI thread). Starts polling immediately.

    Args:
        job: an object with ``isDone()``, ``progress`` (done, total) and ``cancel()``.
        onProgress: receives the engine's window counts (total 0 until tiling is planned).
        onDone: receives the finished job; it calls ``job.finish()``.
        intervalMs: polling period in milliseconds.
    """

    def __init__(
        self,
        job: Any,
        onProgress: Callable[[int, int], None],
        onDone: Callable[[Any], None],
        intervalMs: int = 100,
    ) -> None:
        self.job = job
        self._onProgress = onProgress
        self._onDone = onDone
        self._timer = qt.QTimer()
        self._timer.setInterval(intervalMs)
        self._timer.timeout.connect(self._poll)
        self._timer.start()

    def isActive(self) -> bool:
        """True until ``onDone`` was called or ``stop()``."""
        return self._timer.isActive()

    def cancel(self) -> None:
        """Ask the engine to stop; ``onDone`` still follows (``finish()`` then raises)."""
        self.job.cancel()

    def stop(self) -> None:
        """Stop polling without calling ``onDone`` (the module is being destroyed)."""
        self._timer.stop()

    def _poll(self) -> None:
        done, total = self.job.progress
        self._onProgress(done, total)
        if self.job.isDone():
            self._timer.stop()
            self._onDone(self.job)
