"""Output files of a command, checked before any work and locked while it runs.

``reserve_outputs`` refuses, before anything is computed: two outputs that are the same file,
an output that is one of the inputs (after resolving links, hard links included), an output
that is a folder or whose folder cannot be written, and an existing output unless
``overwrite``. It then holds an exclusive lock per output (a hidden ``.<name>.lock`` file next
to it, ``flock``/``msvcrt`` locks that the system drops when a process dies) until the block
ends, so two runs writing the same output cannot interleave: the second one is refused at once.
The files themselves are written with ``unetseg.atomic``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt


class OutputLockedError(OSError):
    """Another process is writing the same output."""


@contextlib.contextmanager
def reserve_outputs(
    outputs: Mapping[str, str | os.PathLike[str] | None],
    inputs: Iterable[str | os.PathLike[str]],
    *,
    overwrite: bool = False,
) -> Iterator[None]:
    """Check and lock ``outputs`` (option name -> path, None = not written) for the block.

    Raises:
        ValueError: an output repeats another or is an input, or is a folder.
        PermissionError, NotADirectoryError: its folder cannot be written.
        FileExistsError: it exists and ``overwrite`` is False.
        OutputLockedError: another run holds its lock.
    """
    paths = {option: Path(path) for option, path in outputs.items() if path is not None}
    _check_distinct(paths, [Path(p) for p in inputs])
    for option, path in paths.items():
        _check_folder(option, path)
    with contextlib.ExitStack() as locks:
        for option, path in sorted(paths.items(), key=lambda item: str(item[1].resolve())):
            locks.enter_context(_locked(option, path))
            if path.exists() and not overwrite:
                raise FileExistsError(
                    f"{option} {path} already exists; pass --overwrite to replace it"
                )
        yield


def _identity(path: Path) -> tuple[Path, tuple[int, int] | None]:
    """Resolved path and, for existing files, (device, inode) (catches hard links)."""
    real = path.expanduser().resolve()
    try:
        stat = real.stat()
    except OSError:
        return real, None
    return real, (stat.st_dev, stat.st_ino)


def _check_distinct(outputs: Mapping[str, Path], inputs: list[Path]) -> None:
    taken: dict[Path | tuple[int, int], str] = {}
    for path in inputs:
        real, inode = _identity(path)
        taken[real] = f"the input {path}"
        if inode is not None:
            taken[inode] = f"the input {path}"
    for option, path in outputs.items():
        real, inode = _identity(path)
        for key in (real, inode):
            if key is not None and key in taken:
                raise ValueError(
                    f"{option} {path} is {taken[key]}; choose another output path "
                    "(inputs are never overwritten)"
                )
        if real.is_dir():
            raise ValueError(f"{option} {path} is a folder; give a file name")
        taken[real] = option
        if inode is not None:
            taken[inode] = option


def _check_folder(option: str, path: Path) -> None:
    """The folder of ``path`` (or its nearest existing parent, to be created) is writable."""
    folder = path.expanduser().absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(f"{option} {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{option} {path}: folder {folder} is not writable")


@contextlib.contextmanager
def _locked(option: str, path: Path) -> Iterator[None]:
    """Hold the lock file of ``path`` (created with its folder) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    while True:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(descriptor):
            os.close(descriptor)
            raise OutputLockedError(
                f"{option} {path} is being written by another run (lock {lock}); wait for it "
                "to finish or choose another output"
            )
        if _same_file(descriptor, lock):
            break
        os.close(descriptor)  # the previous holder removed this lock file: take a new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(descriptor)


def _try_lock(descriptor: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _same_file(descriptor: int, path: Path) -> bool:
    """True if ``path`` still names the open file (it was not removed and re-created)."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)
