"""Installing a model package into a model folder (``python -m unetseg models install``).

The source is a package folder (``model.json`` + weights) or a zip archive holding one, at
its top level or in its one top-level folder. The package is validated with the engine's
loader (manifest schema, SHA-256 of the weights, pickles refused) before anything is written
to the destination. An archive is first extracted into a temporary folder: entries with an
absolute path or ``..``, links and special files are refused before any is extracted, and so
is an archive larger than ``MAX_EXTRACTED_BYTES`` once extracted. The package is copied to
``<destination>/<model id>/`` through ``unetseg.atomic.atomic_folder`` and verified again
there before it takes that name, so the folder holds a complete, verified package or none.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath

from unetseg.atomic import atomic_folder
from unetseg.engine.manifest import PICKLE_SUFFIXES, ModelPackageError
from unetseg.engine.package import MANIFEST_FILE, ModelPackage, load_model_package
from unetseg.engine.registry import environment_folders, user_models_folder

#: Largest total size of the files of an archive, once extracted (bytes).
MAX_EXTRACTED_BYTES = 8 << 30
#: The folder of resource forks that macOS adds to the zip archives it makes (skipped).
MACOS_METADATA = "__MACOSX"


def default_install_folder() -> Path:
    """The first folder of ``$UNETSEG_MODEL_PATH``, else ``~/.unetseg/models``."""
    return (environment_folders() or [user_models_folder()])[0]


def install_model(
    source: str | os.PathLike[str],
    folder: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
) -> ModelPackage:
    """Install the package in ``source`` (a package folder, its ``model.json`` or a .zip) as
    ``<folder>/<model id>/`` (default folder: ``default_install_folder()``) and return it.

    Raises:
        ModelPackageError: an invalid or unsafe package or archive, or a package of that id
            already installed there (replaced only with ``overwrite``); nothing is written.
    """
    source = Path(source).expanduser()
    folder = Path(folder).expanduser() if folder is not None else default_install_folder()
    with _package_folder(source) as root:
        package = _verified(root)
        target = folder.absolute() / package.id
        _check_target(target, overwrite)
        files = _package_files(package.path)
        with atomic_folder(target) as staging:
            for relative in files:
                (staging / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(package.path / relative, staging / relative)
            _verified(staging)
    return load_model_package(target)


def _verified(folder: Path) -> ModelPackage:
    """The package in ``folder``, loaded and with its weights checked against their SHA-256."""
    package = load_model_package(folder)
    package.read_weights()
    return package


@contextmanager
def _package_folder(source: Path) -> Iterator[Path]:
    """The package folder ``source`` gives: itself (or, for a file, what the loader makes of
    it), or for a .zip the package extracted into a temporary folder (removed afterwards)."""
    if source.is_file() and source.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory(prefix="unetseg-install-") as scratch:
            yield _extract(source, Path(scratch))
        return
    name = source.name.lower()
    # Pickles go on to the loader, which explains why they are refused.
    if source.is_file() and name != MANIFEST_FILE and not name.endswith(PICKLE_SUFFIXES):
        raise ModelPackageError(
            f"{source} is not a model package: give its folder, its {MANIFEST_FILE} or a .zip "
            "archive holding it",
            path=source,
        )
    yield source


def _extract(archive: Path, scratch: Path) -> Path:
    """Extract ``archive`` into ``scratch`` after checking every entry; returns the package
    folder (``scratch`` or its one top-level folder)."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            entries = [(member, _member_parts(archive, member)) for member in zipped.infolist()]
            entries = [
                (member, parts) for member, parts in entries if parts[:1] != (MACOS_METADATA,)
            ]
            size = sum(member.file_size for member, _ in entries)
            if size > MAX_EXTRACTED_BYTES:
                raise ModelPackageError(
                    f"{archive} would extract to {size} bytes, more than the "
                    f"{MAX_EXTRACTED_BYTES} a model package may hold; nothing was installed",
                    path=archive,
                )
            for member, parts in entries:
                _extract_member(zipped, member, scratch.joinpath(*parts))
    except zipfile.BadZipFile as error:
        message = f"{archive} is not a valid zip archive: {error}"
        raise ModelPackageError(message, path=archive) from None
    return _archive_root(archive, scratch)


def _member_parts(archive: Path, member: zipfile.ZipInfo) -> tuple[str, ...]:
    """The path components of ``member``; refuses absolute paths, ``..``, links and special
    files."""
    parts = PurePosixPath(member.filename.replace("\\", "/")).parts
    if PureWindowsPath(member.filename).anchor or ".." in parts:
        raise ModelPackageError(
            f"{archive} holds an unsafe path {member.filename!r} (absolute or with '..'); "
            "nothing was installed",
            path=archive,
        )
    if stat.S_IFMT(member.external_attr >> 16) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ModelPackageError(
            f"{archive} holds {member.filename!r}, a link or special file; a model package "
            "archive holds only files and folders",
            path=archive,
        )
    return parts


def _extract_member(zipped: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path) -> None:
    """Write ``member`` to ``target`` (never over an existing file). zipfile stops reading at
    the size the entry declares, so the declared sizes bound what is written."""
    if member.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipped.open(member) as source, target.open("xb") as destination:
        shutil.copyfileobj(source, destination)


def _archive_root(archive: Path, scratch: Path) -> Path:
    """``scratch`` if the archive had ``model.json`` at its top level, else its only
    top-level folder if that holds one."""
    if (scratch / MANIFEST_FILE).is_file():
        return scratch
    top = [entry for entry in scratch.iterdir() if not entry.name.startswith(".")]
    if len(top) == 1 and (top[0] / MANIFEST_FILE).is_file():
        return top[0]
    raise ModelPackageError(
        f"{archive} holds no model package: {MANIFEST_FILE} must be at the top level of the "
        "archive or in its one top-level folder",
        path=archive,
    )


def _check_target(target: Path, overwrite: bool) -> None:
    """Refuse to replace ``target`` unless it is free, or a package and ``overwrite``."""
    if not (target.exists() or target.is_symlink()):
        return
    if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
        return
    if target.is_symlink() or not (target / MANIFEST_FILE).is_file():
        raise ModelPackageError(
            f"{target} exists and is not a model package folder; refusing to replace it",
            path=target,
        )
    if not overwrite:
        raise ModelPackageError(
            f"a model package is already installed in {target}; pass --overwrite to replace it",
            path=target,
        )


def _package_files(root: Path) -> list[Path]:
    """The files to install, relative to package folder ``root``: every regular file under
    it, hidden names skipped; a link counts as the file it points to inside the package.

    Raises:
        ModelPackageError: a link to a folder or out of the package, or a special file.
    """
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        for name in [*dirs, *sorted(name for name in names if not name.startswith("."))]:
            path = Path(folder) / name
            if path.is_symlink():
                real = path.resolve()
                if not (real.is_relative_to(root) and real.is_file()):
                    raise ModelPackageError(
                        f"{path} links to {real}; only links to files inside the package "
                        "are installed",
                        path=path,
                    )
            elif path.is_dir():  # walked next (os.walk does not follow links)
                continue
            elif not path.is_file():
                raise ModelPackageError(f"{path} is not a regular file", path=path)
            files.append(path.relative_to(root))
    return files
