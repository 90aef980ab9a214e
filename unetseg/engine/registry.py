"""Finding installed model packages by id.

A search path is a folder of package folders (or a package folder itself). The default
search paths, in priority order, are the models bundled in ``unetseg/models/``, the
folders in the ``UNETSEG_MODEL_PATH`` environment variable (``os.pathsep`` separated)
and ``~/.unetseg/models``. Hidden folders (names starting with ``.``) are skipped.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from unetseg.engine.manifest import ModelPackageError, version_key
from unetseg.engine.package import MANIFEST_FILE, ModelPackage, load_model_package

MODEL_PATH_ENV = "UNETSEG_MODEL_PATH"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

logger = logging.getLogger(__name__)


def default_search_paths() -> list[Path]:
    """Bundled models, then ``$UNETSEG_MODEL_PATH`` entries, then ``~/.unetseg/models``."""
    bundled = Path(str(resources.files("unetseg").joinpath("models")))
    return [bundled, *environment_folders(), user_models_folder()]


def environment_folders() -> list[Path]:
    """The folders of ``$UNETSEG_MODEL_PATH`` (``os.pathsep`` separated), in order."""
    value = os.environ.get(MODEL_PATH_ENV, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p]


def user_models_folder() -> Path:
    """The user's own model folder, ``~/.unetseg/models``."""
    return Path.home() / ".unetseg" / "models"


def list_models(
    search_paths: Sequence[str | os.PathLike[str]] | None = None,
    errors: list[ModelPackageError] | None = None,
) -> list[ModelPackage]:
    """Return the valid packages found in ``search_paths`` (default: ``default_search_paths()``),
    sorted by id and then by decreasing version.

    When the same id and version occur in several places, the first search path wins.
    Invalid packages (folders with a ``model.json`` that fails to load) are skipped: they are
    appended to ``errors`` when a list is given, else logged as warnings. Missing search
    paths are ignored. Weights are not read (see ``ModelPackage.load_network``).
    """
    paths = default_search_paths() if search_paths is None else [Path(p) for p in search_paths]
    problems: list[ModelPackageError] = []
    found: dict[tuple[str, str], ModelPackage] = {}
    for folder in _candidate_folders(paths, problems):
        try:
            package = load_model_package(folder)
        except ModelPackageError as exc:
            problems.append(exc)
            continue
        except OSError as exc:
            problems.append(ModelPackageError(f"Cannot read {folder}: {exc}", path=folder))
            continue
        found.setdefault((package.id, package.version), package)
    for problem in problems:
        if errors is None:
            logger.warning("Skipping invalid model package: %s", problem)
        else:
            errors.append(problem)
    by_version = sorted(found.values(), key=lambda p: version_key(p.version), reverse=True)
    return sorted(by_version, key=lambda p: p.id)


def resolve_model(
    id_or_path: str | os.PathLike[str],
    search_paths: Sequence[str | os.PathLike[str]] | None = None,
) -> ModelPackage:
    """Return the package given by a folder path, a ``model.json`` path or a model id.

    A ``Path``, or a string containing a path separator or not shaped like an id, is loaded
    as a path. Otherwise it is an id, optionally pinned to a version as ``id@1.2.0``, and only
    ``search_paths`` are searched (the highest version wins): a folder of that name in the
    current directory never shadows an installed model (give ``./name`` to use it). Raises
    ``ModelPackageError`` listing the available ids when nothing matches.
    """
    text = os.fspath(id_or_path)
    is_id = (
        isinstance(id_or_path, str)
        and "/" not in text
        and os.sep not in text
        and not text.endswith(".json")
        and _ID_RE.match(text.partition("@")[0]) is not None
    )
    if not is_id:
        return load_model_package(text)
    model_id, _, version = text.partition("@")
    errors: list[ModelPackageError] = []
    packages = list_models(search_paths, errors)
    for package in packages:  # highest version of each id comes first
        if package.id == model_id and version in ("", package.version):
            return package
    available = (
        ", ".join(f"{p.id}@{p.version}" for p in packages)
        or "none (install packages in one of the search paths)"
    )
    searched = search_paths if search_paths is not None else default_search_paths()
    skipped = "".join(f"\n  skipped invalid package: {e}" for e in errors)
    local = f" (for the folder {text!r} here, give ./{text})" if Path(text).is_dir() else ""
    raise ModelPackageError(
        f"No model {text!r} found in {[str(p) for p in searched]}{local}. "
        f"Available: {available}.{skipped}"
    )


def _candidate_folders(
    search_paths: Sequence[Path], problems: list[ModelPackageError]
) -> list[Path]:
    """Package folders (holding ``model.json``) in or at ``search_paths``, in order.
    Unreadable search paths are appended to ``problems``."""
    folders = []
    for root in search_paths:
        root = root.expanduser()
        try:
            if (root / MANIFEST_FILE).is_file():
                folders.append(root)
            elif root.is_dir():
                folders += sorted(
                    child
                    for child in root.iterdir()
                    if child.is_dir() and not child.name.startswith(".")
                    if (child / MANIFEST_FILE).is_file()
                )
        except OSError as exc:
            problems.append(ModelPackageError(f"Cannot read search path {root}: {exc}", path=root))
    return folders
