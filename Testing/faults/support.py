"""Helpers of the fault and bad-input suite (fixtures are in conftest.py).

Every case asserts the outcome a user sees: one line on stderr and exit code 2 (130 for a
signal), inputs untouched (SHA-256), an existing output intact, and no partial file under an
output's name. Faults that need a real process (kill -9, a file size limit standing in for a
full disk, SIGINT/SIGTERM, two concurrent runs) run ``child.py`` in a subprocess.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("child.py")
#: Seconds a child may take to start and reach a hook (the CPU is shared).
START_TIMEOUT_S = 240


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def digests(paths: Iterable[Path]) -> dict[Path, str]:
    return {Path(p): digest(p) for p in paths}


def visible_files(folder: Path) -> set[str]:
    """Names of the non-hidden files in ``folder`` (temporaries and locks are hidden)."""
    return {p.name for p in Path(folder).iterdir() if not p.name.startswith(".")}


def hidden_files(folder: Path) -> set[str]:
    return {p.name for p in Path(folder).iterdir() if p.name.startswith(".")}


def file_size_limit(limit: int) -> Callable[[], None]:
    """``preexec_fn`` standing in for a full disk: no file may grow beyond ``limit`` bytes
    (writes fail with EFBIG; Python ignores SIGXFSZ)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def ignore_sigint() -> None:
    """``preexec_fn`` of a background job of a non-interactive shell: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_child(
    hook: str,
    marker: Path,
    program: str,
    *args,
    preexec_fn: Callable[[], None] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """Start ``child.py HOOK MARKER PROGRAM ARGS`` (see child.py) with pipes for its output."""
    command = [sys.executable, str(CHILD), hook, str(marker), program, *map(str, args)]
    return subprocess.Popen(
        command,
        cwd=cwd or REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
        env=_environment(),
    )


def run_child(program: str, *args, preexec_fn=None, cwd=None) -> subprocess.CompletedProcess:
    """Run a command line to the end in a child process (no hook)."""
    process = start_child("none", Path(os.devnull), program, *args, preexec_fn=preexec_fn, cwd=cwd)
    out, err = process.communicate(timeout=START_TIMEOUT_S)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def wait_for_marker(process: subprocess.Popen, marker: Path) -> None:
    """Wait until the child created ``marker`` (it reached its hook)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not marker.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"child ended ({process.returncode}) before its hook:\n{out}\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("child did not reach its hook in time")
        time.sleep(0.02)


def kill_at(process: subprocess.Popen, marker: Path) -> None:
    """kill -9 the child once it reached its hook."""
    wait_for_marker(process, marker)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL


def _environment() -> dict[str, str]:
    """The child imports the repository from its root (cwd may differ)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env
