"""Checks of a model package's weights file made before its tensors are parsed: a regular file
inside the package, not a pickle, a sound safetensors header whose size matches the file, and
tensors that match the manifest's network."""

from __future__ import annotations

import json
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from unetseg.engine.manifest import PICKLE_REFUSAL, ModelPackageError

if TYPE_CHECKING:
    import torch

_MAX_LISTED_KEYS = 10
#: Largest safetensors header accepted (the safetensors library's own limit).
MAX_HEADER_BYTES = 100_000_000


def checked_weights_file(folder: Path, weights: Path) -> Path:
    """``weights`` resolved; ``ModelPackageError`` unless it is a regular file in ``folder``."""
    real = weights.resolve()
    if not real.is_relative_to(folder.resolve()):
        raise ModelPackageError(
            f"{weights} links to {real}, outside the package folder {folder}; weights must be "
            "files inside the package",
            path=weights,
        )
    if not stat.S_ISREG(real.stat().st_mode):
        raise ModelPackageError(f"{weights} is not a regular file", path=weights)
    return real


def check_safetensors_header(path: Path) -> int:
    """Refuse files that are not safetensors, pickles in particular, and files whose size is
    not the one their header describes (truncated or with extra bytes), without reading the
    tensors; returns the size in bytes."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(9)
        if head[:1] == b"\x80" or (head[:2] == b"PK" and _zip_holds_pickle(path)):
            raise ModelPackageError(f"{path} is a pickle file. {PICKLE_REFUSAL}", path=path)
        header_len = int.from_bytes(head[:8], "little") if len(head) == 9 else 0
        if not (0 < header_len <= min(size - 8, MAX_HEADER_BYTES) and head[8:9] == b"{"):
            raise ModelPackageError(
                f"{path} is not a safetensors file (no safetensors header). Export the weights "
                f"with save_model_package or safetensors.torch.save_file.",
                path=path,
            )
        described = 8 + header_len + _data_bytes(path, head[8:9] + f.read(header_len - 1))
    if described != size:
        raise ModelPackageError(
            f"{path} is damaged: its header describes {described} bytes but the file has "
            f"{size} (truncated or extended). Download or export the model again.",
            path=path,
        )
    return size


def _data_bytes(path: Path, header: bytes) -> int:
    """Size of the tensor data a safetensors header describes (end of the last tensor)."""
    try:
        entries = json.loads(header)
        ends = [int(e["data_offsets"][1]) for k, e in entries.items() if k != "__metadata__"]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        message = f"{path} has a damaged safetensors header: {exc}"
        raise ModelPackageError(message, path=path) from None
    return max(ends, default=0)


def _zip_holds_pickle(path: Path) -> bool:
    """True if ``path`` is a zip archive containing a pickle (torch.save's format)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(".pkl") for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def check_state_dict(
    expected: Mapping[str, torch.Tensor], loaded: Mapping[str, torch.Tensor], source: Path | str
) -> None:
    """Raise ``ModelPackageError`` listing missing/unexpected keys and shape mismatches."""
    missing = sorted(expected.keys() - loaded.keys())
    unexpected = sorted(loaded.keys() - expected.keys())
    mismatched = [
        f"{key}: file {tuple(loaded[key].shape)}, network {tuple(expected[key].shape)}"
        for key in sorted(expected.keys() & loaded.keys())
        if loaded[key].shape != expected[key].shape
    ]
    parts = [
        f"{title} ({len(items)}): {_abbreviate(items)}"
        for title, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        )
        if items
    ]
    if parts:
        raise ModelPackageError(
            f"{source} does not match the 'network' section of the manifest; "
            f"{'; '.join(parts)}. Check that section against the exported model.",
            path=source if isinstance(source, Path) else None,
        )


def _abbreviate(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED_KEYS])
    extra = len(items) - _MAX_LISTED_KEYS
    return f"{shown}, ... and {extra} more" if extra > 0 else shown
