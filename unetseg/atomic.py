"""Atomic file writes: a file is either the old one or the complete new one, never partial.

Data goes to a temporary file in the target's folder, is flushed and fsynced, and replaces the
target with ``os.replace`` (atomic on POSIX and Windows); then the folder is fsynced so the
rename survives a power cut. A failure (full disk, exception, kill) leaves the old file as it
was; the stale temporary file of a killed write is removed by the next write to that name.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

#: Bytes per write call.
CHUNK_BYTES = 1 << 24


def write_atomically(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace ``path`` by a file holding ``data`` (folders created); returns the path."""
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    temporary = folder / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        for start in range(0, len(view), CHUNK_BYTES):
            os.write(descriptor, view[start : start + CHUNK_BYTES])
        os.fsync(descriptor)
        os.close(descriptor)
        descriptor = -1
        os.replace(temporary, path)
    except BaseException:
        if descriptor >= 0:
            os.close(descriptor)
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(folder)
    return path


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
