"""Atomic file writes: a file is either the old one or the complete new one, never partial.

Data goes to a temporary file in the target's folder (hidden, named
``.<name>.<pid>-<random>.tmp<suffixes of name>`` so that writers which pick the format from the
suffix still work), is fsynced, and replaces the target with ``os.replace`` (atomic on POSIX
and Windows); then the folder is fsynced so the rename survives a power cut. A failure (full
disk, exception, kill) leaves the old file as it was; the temporary file of a killed process
is removed by the next write to that name (temporaries of running processes are left alone).

``atomic_path`` is the one helper: it hands out the temporary path to any writer (Slicer's
storage nodes, nibabel, Pillow); ``write_atomically`` writes bytes through it. ``atomic_folder``
does the same for a whole folder (model packages).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

#: Bytes per write call.
CHUNK_BYTES = 1 << 24


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (folders created); write the file there.

    When the block ends normally the file is fsynced and renamed to ``path``; when it raises
    (or the writer created no file) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(folder, path.name)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temporary = folder / f".{path.name}.{tag}.tmp{''.join(path.suffixes)}"
    try:
        yield temporary
        _fsync_file(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(folder)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new empty hidden folder next to ``path`` (parents created); fill it there.

    When the block ends normally its files are fsynced and the folder replaces ``path`` (an
    existing folder is renamed aside, then deleted), so ``path`` holds either the old or the
    complete new content. (Only a hard crash between the two renames of a replacement leaves
    ``path`` missing, with the old content in the hidden ``.<name>.<tag>.old`` folder.) When
    the block raises, the new folder is removed and ``path`` is untouched.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    staging = dest.with_name(f".{dest.name}.{tag}.partial")
    staging.mkdir()
    try:
        yield staging
        for file in staging.rglob("*"):
            if file.is_file() and not file.is_symlink():
                _fsync_file(file)
        _replace_folder(staging, dest, dest.with_name(f".{dest.name}.{tag}.old"))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    fsync_folder(dest.parent)


def _replace_folder(new: Path, dest: Path, backup: Path) -> None:
    """Rename folder ``new`` to ``dest``; an existing ``dest`` goes to ``backup`` first and
    comes back if the rename fails, else it is deleted."""
    if not dest.exists():
        os.rename(new, dest)
        return
    os.rename(dest, backup)
    try:
        os.rename(new, dest)
    except BaseException:
        os.rename(backup, dest)
        raise
    shutil.rmtree(backup)


def write_atomically(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace ``path`` by a file holding ``data`` (folders created); returns the path."""
    with atomic_path(path) as temporary:
        write_new_file(temporary, data)
    return Path(path)


def write_new_file(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) holding ``data``, written in chunks (not synced).
    Short writes (a file size limit reached) are continued, so they end in an ``OSError``."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(descriptor, view[:CHUNK_BYTES]) :]
    finally:
        os.close(descriptor)


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # folders cannot be opened on Windows; the rename is durable there
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _fsync_file(path: Path) -> None:
    """Flush ``path`` to disk (FileNotFoundError when the writer created nothing)."""
    descriptor = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_stale_temporaries(folder: Path, name: str) -> None:
    """Delete temporaries of ``name`` left by processes that no longer run."""
    for stale in folder.glob(f".{glob.escape(name)}.*.tmp*"):
        owner = stale.name[len(name) + 2 :].partition(".")[0].partition("-")[0]
        if owner.isdigit() and _is_running(int(owner)):
            continue
        with contextlib.suppress(OSError):
            stale.unlink()


def _is_running(pid: int) -> bool:
    """True if process ``pid`` exists (always True on Windows, where probing could kill it;
    a temporary still open there cannot be deleted anyway)."""
    if pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
