"""Progress display of the training loop: a one-line bar on a terminal, plain lines otherwise.

The line reads ``step 120/500 (epoch 3/10) | loss 0.4312 | 3.2 it/s | ETA 1:58``. On a TTY it is
redrawn in place at most ``refresh_s`` apart; elsewhere (logs, CI) a full line is printed every
``interval_s`` seconds and at the end. ``ProgressLogHandler`` lets log records interrupt the bar
cleanly.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` or ``M:SS``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Step counter with loss, rate and ETA.

    Args:
        total: last step number.
        start: steps already done (resume), excluded from the rate.
        steps_per_epoch: for the epoch shown next to the step.
        stream: where to write (default stderr).
        tty: force terminal mode on or off (default: ``stream.isatty()``).
    """

    def __init__(
        self,
        total: int,
        start: int = 0,
        steps_per_epoch: int | None = None,
        stream: TextIO | None = None,
        tty: bool | None = None,
        refresh_s: float = 0.2,
        interval_s: float = 10.0,
    ) -> None:
        self.total = total
        self.start = start
        self.steps_per_epoch = steps_per_epoch
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.refresh_s = refresh_s if self.tty else interval_s
        self.step = start
        self.loss: float | None = None
        self._began = time.perf_counter()
        self._last_draw = -float("inf")
        self._line = ""
        self._drawn_step: int | None = None

    def reset(self, step: int) -> None:
        """Start counting (rate, ETA) from ``step`` now, e.g. after resuming."""
        self.start = self.step = step
        self._began = time.perf_counter()

    @property
    def rate(self) -> float:
        """Steps per second since the start of this run."""
        elapsed = time.perf_counter() - self._began
        return (self.step - self.start) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        parts = [f"step {self.step}/{self.total}"]
        if self.steps_per_epoch:
            epochs = -(-self.total // self.steps_per_epoch)
            epoch = min(epochs, self.step // self.steps_per_epoch + 1)
            parts[0] += f" (epoch {epoch}/{epochs})"
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        rate = self.rate
        if rate > 0:
            parts.append(f"{rate:.2f} it/s" if rate >= 1 else f"{1 / rate:.2f} s/it")
            parts.append(f"ETA {format_duration((self.total - self.step) / rate)}")
        return " | ".join(parts)

    def update(self, step: int, loss: float | None = None) -> None:
        """Record ``step`` (and the latest loss); redraw when due."""
        self.step = step
        if loss is not None:
            self.loss = loss
        now = time.perf_counter()
        if now - self._last_draw >= self.refresh_s or step >= self.total:
            self._last_draw = now
            self._draw()

    def _draw(self) -> None:
        self._drawn_step = self.step
        self._line = self.line()
        if self.tty:
            self.stream.write("\r\x1b[K" + self._line)
        else:
            self.stream.write(self._line + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Erase the bar (TTY) before other output."""
        if self.tty and self._line:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def redraw(self) -> None:
        if self.tty and self._line:
            self.stream.write(self._line)
            self.stream.flush()

    def close(self) -> None:
        """Final state on its own line."""
        if self._drawn_step != self.step or self.tty:
            self._draw()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
        self._line = ""


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
