"""Uploaded files, stored safely on the server.

Every upload gets a fresh folder under the uploads root. Names are reduced to their last
component, only image files and zip archives are accepted, the total size is capped, and a zip
archive is checked whole before anything is extracted: an entry that would land outside the
folder (``../``, an absolute path, a drive letter), a symbolic link, too many entries or too
many bytes once unpacked refuses the whole archive. Errors are ``UploadError`` with a message
for the user; nothing raised here may stop the server.
"""

from __future__ import annotations

import io
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from unetseg.atomic import write_new_file

#: Default cap on the bytes of one upload (all its files together).
DEFAULT_MAX_UPLOAD_BYTES = 1 << 30
#: A zip may unpack to at most this many times the upload cap (zip bombs).
UNZIPPED_FACTOR = 4
MAX_ZIP_ENTRIES = 20000
ZIP_SUFFIX = ".zip"
#: Files an upload may hold: images, stored as they are (DICOM files also come inside a zip,
#: with or without suffix), and zip archives, unpacked.
UPLOAD_SUFFIXES = (
    ".nii.gz",
    ".nii",
    ".nrrd",
    ".mha",
    ".dcm",
    ".png",
    ".jpg",
    ".jpeg",
    ZIP_SUFFIX,
)


class UploadError(ValueError):
    """An upload was refused; the message is meant for the user."""


@dataclass(frozen=True)
class UploadedFile:
    """One file as the browser sent it."""

    name: str
    content: bytes


def safe_name(name: str) -> str:
    """The last component of a client file name; refuses empty, hidden and dot names."""
    base = PureWindowsPath(PurePosixPath(str(name)).name).name.strip()
    if not base or base.startswith(".") or any(ord(c) < 32 for c in base):
        raise UploadError(f"Refused file name {name!r}")
    return base


def too_large_message(total: int, limit: int) -> str:
    """The refusal of an upload of ``total`` bytes over the ``limit``."""
    return f"Upload too large: {total / 1e6:.1f} MB, the limit is {limit / 1e6:.0f} MB"


class UploadStore:
    """Upload folders under ``root`` (created; removed by ``cleanup``).

    Args:
        root: where upload folders are made; a private temporary folder when None.
        max_bytes: cap on one upload's total size.
    """

    def __init__(self, root: Path | None = None, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES):
        self._owned = root is None
        self.root = Path(tempfile.mkdtemp(prefix="unetseg-web-")) if root is None else root
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)

    def check_sizes(self, sizes: Iterable[int]) -> None:
        """Refuse an upload whose announced sizes already exceed the cap (before reading)."""
        total = sum(int(size) for size in sizes)
        if total > self.max_bytes:
            raise UploadError(too_large_message(total, self.max_bytes))

    def store(self, files: list[UploadedFile]) -> Path:
        """Save ``files`` (zip archives unpacked) into a new folder and return it.

        Raises:
            UploadError: no file, a refused name or type, too large, a bad zip archive.
        """
        if not files:
            raise UploadError("No file received")
        self.check_sizes(len(f.content) for f in files)
        names = [safe_name(f.name) for f in files]
        for name in names:
            if not name.lower().endswith(UPLOAD_SUFFIXES):
                raise UploadError(
                    f"'{name}' is not a supported file: upload NIfTI (.nii, .nii.gz), NRRD, "
                    "MHA, an image, or a .zip of DICOM files"
                )
        if len(set(names)) != len(names):
            raise UploadError("Two uploaded files have the same name")
        folder = Path(tempfile.mkdtemp(prefix="upload-", dir=self.root))
        try:
            for name, item in zip(names, files, strict=True):
                if name.lower().endswith(ZIP_SUFFIX):
                    extract_zip(item.content, folder / Path(name).stem, self.max_bytes)
                else:
                    write_new_file(folder / name, item.content)
        except OSError as error:  # disk full, file size limit
            shutil.rmtree(folder, ignore_errors=True)
            raise UploadError(f"Cannot store the upload: {error}") from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return folder

    def prune(self, keep: Iterable[Path] = ()) -> None:
        """Remove every upload folder but ``keep`` (uploads no longer in the scene; the one in
        use stays: DICOM SEG export reads its DICOM files again)."""
        kept = {path.resolve() for path in keep}
        for folder in self.root.iterdir():
            if folder.is_dir() and folder.resolve() not in kept:
                shutil.rmtree(folder, ignore_errors=True)

    def cleanup(self) -> None:
        """Remove every upload (and the root when this store made it)."""
        if self._owned:
            shutil.rmtree(self.root, ignore_errors=True)


def _entry_parts(name: str) -> tuple[str, ...]:
    """The path components of a zip entry; refuses absolute paths, drives and ``..``."""
    unified = name.replace("\\", "/")
    windows = PureWindowsPath(unified)
    if unified.startswith("/") or windows.drive or windows.root:
        raise UploadError(f"Refused zip archive: entry '{name}' has an absolute path")
    parts = tuple(part for part in unified.split("/") if part not in ("", "."))
    if ".." in parts:
        raise UploadError(
            f"Refused zip archive: entry '{name}' would land outside the upload folder"
        )
    return parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def extract_zip(data: bytes, folder: Path, max_bytes: int) -> list[Path]:
    """Unpack a zip archive (bytes) into ``folder`` after checking every entry.

    Raises:
        UploadError: not a zip archive, an entry outside ``folder`` or a link, too many
            entries, more than ``UNZIPPED_FACTOR * max_bytes`` once unpacked, encrypted or
            damaged entries. Nothing is written when the archive is refused at the check.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise UploadError(f"Not a valid zip archive: {error}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise UploadError(f"Refused zip archive: more than {MAX_ZIP_ENTRIES} entries")
        planned: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
        total = 0
        for info in infos:
            parts = _entry_parts(info.filename)
            if _is_symlink(info):
                raise UploadError(f"Refused zip archive: entry '{info.filename}' is a link")
            if info.flag_bits & 0x1:
                raise UploadError(f"Refused zip archive: entry '{info.filename}' is encrypted")
            total += info.file_size
            if parts and not info.is_dir():
                planned.append((info, parts))
        if total > UNZIPPED_FACTOR * max_bytes:
            raise UploadError(
                f"Refused zip archive: it unpacks to {total / 1e6:.0f} MB, more than "
                f"{UNZIPPED_FACTOR * max_bytes / 1e6:.0f} MB"
            )
        root = folder.resolve()
        written = []
        for info, parts in planned:
            target = root.joinpath(*parts)
            if not target.resolve().is_relative_to(root):  # belt and braces after the check
                raise UploadError(f"Refused zip archive: entry '{info.filename}' escapes")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                data = archive.read(info)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as error:
                raise UploadError(f"Damaged zip entry '{info.filename}': {error}") from None
            if target.exists():
                raise UploadError(f"Refused zip archive: entry '{info.filename}' appears twice")
            write_new_file(target, data)  # O_EXCL: never through a link, never over a file
            written.append(target)
    return written
