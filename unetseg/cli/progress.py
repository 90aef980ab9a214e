"""Progress of a command-line run on the terminal: stage lines and a bar of the windows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO


class RunProgress:
    """Progress of a run on ``stream``: a line when a stage starts ("loading inputs...") and a
    tqdm bar of the sliding windows, fed by the engine's ``progress(done, total)`` callback (a
    restart, e.g. on the CPU after a GPU ran out of memory, starts the bar again)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._bar: Any = None

    def stage(self, name: str) -> None:
        """Close the window bar of the previous stage and announce ``name``."""
        from tqdm import tqdm

        self.close()
        tqdm.write(f"{name}...", file=self._stream)

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc="windows", unit="window", file=self._stream, dynamic_ncols=True
            )
        elif total != self._bar.total or done < self._bar.n:
            self._bar.reset(total=total)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextmanager
def run_progress(quiet: bool, stream: TextIO) -> Iterator[RunProgress | None]:
    """A ``RunProgress`` on ``stream`` when it is a terminal and not ``quiet``, else None."""
    if quiet or not stream.isatty():
        yield None
        return
    bar = RunProgress(stream)
    try:
        yield bar
    finally:
        bar.close()
