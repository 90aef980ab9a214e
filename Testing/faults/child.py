"""A command line run in a child process, with an optional fault hook (test helper).

Usage: ``python child.py HOOK MARKER unetseg|Training ARGS...``. The hook patches one function
so that the child, at a known point of its work, creates the file MARKER and then waits to be
killed (or, for ``mark-inference``, only creates it and goes on); the parent waits for MARKER,
then sends its signal. ``none`` runs the command unchanged. The exit code is the command's.

Hooks (points of a segmentation run):

- ``before-rename``: every output is completely written under its temporary name, the first
  rename is about to happen;
- ``mid-write``: half of the first output written through ``write_new_file`` (chunks of 64
  bytes);
- ``between-renames``: the first output has been renamed into place, the others not yet;
- ``mark-inference``: the first sliding window is done (the run goes on);
- ``hold-inference``: inference is about to start; the child waits for ``<MARKER>.go``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _wait_for_kill(marker: Path) -> None:
    marker.touch()
    time.sleep(600)


def _hook_before_rename(marker: Path) -> None:
    real_replace = os.replace

    def replace(source, target):
        if ".tmp" in Path(source).name:
            _wait_for_kill(marker)
        real_replace(source, target)

    os.replace = replace


def _hook_between_renames(marker: Path) -> None:
    real_replace = os.replace
    renamed = []

    def replace(source, target):
        if ".tmp" in Path(source).name and renamed:
            _wait_for_kill(marker)
        real_replace(source, target)
        renamed.append(target)

    os.replace = replace


def _hook_mid_write(marker: Path) -> None:
    import unetseg.atomic as atomic

    atomic.CHUNK_BYTES = 64
    real_write = os.write
    written = []

    def write(descriptor: int, data: bytes) -> int:
        count = real_write(descriptor, data)
        written.append(count)
        if len(written) == 8:
            _wait_for_kill(marker)
        return count

    os.write = write


def _hook_hold_inference(marker: Path) -> None:
    """Like ``mark-inference``, then wait until the file ``<marker>.go`` exists."""
    import unetseg.engine.inference.window_spec as windows

    real = windows.sliding_window_inference
    release = marker.with_name(marker.name + ".go")

    def held(*args, **kwargs):
        marker.touch()
        while not release.exists():
            time.sleep(0.02)
        return real(*args, **kwargs)

    windows.sliding_window_inference = held


def _hook_mark_inference(marker: Path) -> None:
    import unetseg.engine.inference.window_spec as windows

    real = windows.sliding_window_inference

    def traced(*args, progress=None, **kwargs):
        def report(done: int, total: int) -> None:
            marker.touch()
            if progress is not None:
                progress(done, total)

        return real(*args, progress=report, **kwargs)

    windows.sliding_window_inference = traced


HOOKS = {
    "none": lambda marker: None,
    "before-rename": _hook_before_rename,
    "between-renames": _hook_between_renames,
    "mid-write": _hook_mid_write,
    "mark-inference": _hook_mark_inference,
    "hold-inference": _hook_hold_inference,
}


def main(argv: list[str]) -> int:
    hook, marker, program, *args = argv
    sys.path.insert(0, str(REPO))
    HOOKS[hook](Path(marker))
    if program == "unetseg":
        from unetseg.cli import main as command
    else:
        from Training.cli import main as command
    return command(args)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
