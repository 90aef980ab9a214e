"""Progress display of the training loop: a tqdm bar on a terminal, nothing otherwise.

The bar reads ``epoch 3/10:  24%|██▍       | 120/500 [00:38<01:58, 3.20step/s, loss 0.4312]``,
drawn with tqdm (as the command line's bars) on stderr when it is a terminal. Elsewhere (logs,
CI) there is no bar: the run's log lines (console and ``train.log``) say how training goes.
``ProgressLogHandler`` lets log records interrupt the bar cleanly.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from tqdm import tqdm


class Progress:
    """A bar of the training steps with the epoch and the latest loss.

    Args:
        total: last step number.
        start: steps already done (resume), excluded from the rate.
        steps_per_epoch: for the epoch shown before the bar.
        stream: where to draw (default stderr); no bar unless ``stream.isatty()``.
    """

    def __init__(
        self,
        total: int,
        start: int = 0,
        steps_per_epoch: int | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.total = total
        self.start = start
        self.steps_per_epoch = steps_per_epoch
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self._bar: Any = None

    def reset(self, step: int) -> None:
        """Start counting (rate, ETA) from ``step`` now, e.g. after resuming."""
        self.close()
        self.start = step

    def update(self, step: int, loss: float | None = None) -> None:
        """Record ``step`` (and the latest loss); tqdm redraws when due."""
        if not self.enabled:
            return
        if self._bar is None:
            self._bar = tqdm(
                total=self.total,
                initial=self.start,
                desc=self._epoch(self.start),
                unit="step",
                file=self.stream,
                dynamic_ncols=True,
            )
        self._bar.set_description_str(self._epoch(step), refresh=False)
        if loss is not None:
            self._bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
        self._bar.update(step - self._bar.n)

    def _epoch(self, step: int) -> str:
        """``epoch e/E`` of ``step`` (empty without ``steps_per_epoch``)."""
        if not self.steps_per_epoch:
            return ""
        epochs = -(-self.total // self.steps_per_epoch)
        return f"epoch {min(epochs, step // self.steps_per_epoch + 1)}/{epochs}"

    def clear(self) -> None:
        """Erase the bar before other output."""
        if self._bar is not None:
            self._bar.clear()

    def redraw(self) -> None:
        """Draw the bar again after other output."""
        if self._bar is not None:
            self._bar.refresh()

    def close(self) -> None:
        """Leave the final state of the bar on its own line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class ProgressLogHandler(logging.StreamHandler):
    """Log handler on the progress stream that erases and redraws the active bar."""

    def __init__(self, progress: Progress | None = None, stream: TextIO | None = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        if self.progress is not None:
            self.progress.clear()
        super().emit(record)
        if self.progress is not None:
            self.progress.redraw()
