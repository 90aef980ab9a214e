"""Checkpoints: one safetensors file per checkpoint, written atomically, never pickled.

A checkpoint holds a tree of plain containers (dicts, lists, tuples), scalars, strings and
tensors, e.g. ``{"model": state_dict, "optimizer": state_dict, "progress": {...}}``. Tensors
are stored as safetensors entries named by their path in the tree (``model/head.weight``);
everything else is JSON in the file's metadata (key ``"tree"``), with tensors replaced by
``{"__tensor__": name}``, tuples by ``{"__tuple__": [...]}`` and dicts with non-string keys (the
optimizer's parameter ids) by ``{"__items__": [[key, value], ...]}``. Loading therefore runs no
code from the file.

Integrity: the metadata key ``"sha256"`` holds the SHA-256 of the tree JSON, the tensor
entries of the header (names, dtypes, shapes, offsets) and the tensor data section, so flipped
or missing bytes anywhere but in that key are refused on loading (``CheckpointError``) instead
of resuming with garbage. (Checkpoints written before checksums were added load
without this check.)

Writes are atomic (``unetseg.atomic``): a crash at any moment leaves either the previous
checkpoint or the new one, never a partial file. Before a checkpoint is replaced, the version
it replaces is kept as ``<stem>.previous<suffix>`` (a hard link where the file system allows),
so a damaged file still leaves a good one to resume from (see ``resume_candidates``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_tensors
from safetensors.torch import save as safetensors_bytes

from unetseg.atomic import atomic_path, write_new_file

_TREE_KEY, _SHA256_KEY = "tree", "sha256"
_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"
_PREVIOUS = ".previous"


class CheckpointError(ValueError):
    """A checkpoint file is damaged (truncated, bytes changed) or not a training checkpoint."""


def save_checkpoint(path: str | Path, tree: Any) -> Path:
    """Write ``tree`` (see module docstring) to ``path`` atomically, keeping the version it
    replaces as ``previous_path(path)``; returns the path."""
    tensors: dict[str, torch.Tensor] = {}
    encoded = json.dumps(_encode(tree, "", tensors))
    metadata = {"format": "pt", _TREE_KEY: encoded}
    unsigned = safetensors_bytes(tensors, metadata=metadata)
    digest = _digest(unsigned, _header(path, unsigned))
    data = safetensors_bytes(tensors, metadata=metadata | {_SHA256_KEY: digest})
    path = Path(path)
    with atomic_path(path) as temporary:
        write_new_file(temporary, data)
        if path.is_file():
            _keep_previous(path)
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Read a tree written by ``save_checkpoint``; tensors are placed on ``device``.

    Raises:
        CheckpointError: the file is truncated, its bytes changed (checksum), or it is not a
            training checkpoint.
    """
    path = Path(path)
    data = path.read_bytes()
    header = _header(path, data)
    metadata = header.get("__metadata__") or {}
    if _TREE_KEY not in metadata:
        raise CheckpointError(
            f"{path} is not a UNetSeg training checkpoint (no '{_TREE_KEY}' metadata)"
        )
    expected = metadata.get(_SHA256_KEY)
    if expected is not None and _digest(data, header) != expected:
        raise CheckpointError(
            f"checkpoint {path} is damaged: its checksum does not match its contents (bytes "
            "changed on disk); resume from another checkpoint of the run"
        )
    try:
        tensors = safetensors_tensors(data)
    except SafetensorError as error:
        raise CheckpointError(f"checkpoint {path} is damaged: {error}") from None
    tensors = {name: tensor.to(device) for name, tensor in tensors.items()}
    return _decode(json.loads(metadata[_TREE_KEY]), tensors)


def previous_path(path: str | Path) -> Path:
    """Where ``save_checkpoint`` keeps the version of ``path`` it replaced."""
    path = Path(path)
    return path.with_name(f"{path.stem}{_PREVIOUS}{path.suffix}")


def resume_candidates(folder: str | Path, names: tuple[str, ...]) -> list[Path]:
    """The checkpoints ``names`` in ``folder`` and their previous versions that exist, newest
    (modification time) first: the order in which to try resuming."""
    folder = Path(folder)
    paths = [folder / name for name in names]
    existing = [p for p in paths + [previous_path(p) for p in paths] if p.is_file()]
    return sorted(existing, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def _keep_previous(path: Path) -> None:
    """Make ``previous_path(path)`` the current content of ``path`` (atomically)."""
    with atomic_path(previous_path(path)) as copy:
        try:
            os.link(path, copy)
        except OSError:  # no hard links on this file system
            shutil.copyfile(path, copy)


def _digest(data: bytes, header: Mapping[str, Any]) -> str:
    """SHA-256 of a checkpoint file ``data`` with parsed ``header``: tree JSON, tensor entries
    and tensor bytes (see the module docstring)."""
    entries = {name: entry for name, entry in header.items() if name != "__metadata__"}
    digest = hashlib.sha256(header["__metadata__"][_TREE_KEY].encode("utf-8"))
    digest.update(json.dumps(entries, sort_keys=True).encode("utf-8"))
    digest.update(memoryview(data)[8 + int.from_bytes(data[:8], "little") :])
    return digest.hexdigest()


def _header(path: Path, data: bytes) -> dict[str, Any]:
    """The parsed safetensors header of ``data``; ``CheckpointError`` if unreadable."""
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    try:
        if not 0 < size <= len(data) - 8:
            raise ValueError(f"header of {size} bytes in a file of {len(data)} bytes")
        header = json.loads(bytes(data[8 : 8 + size]))
        if not isinstance(header, dict) or not isinstance(header.get("__metadata__", {}), dict):
            raise ValueError("the header is not a JSON object")
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path} is damaged or truncated ({error})") from None
    return header


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        name = path or "tensor"
        while name in tensors:  # keys containing "/" could repeat a path
            name += "'"
        tensors[name] = value.detach().to("cpu").contiguous().clone()
        return {_TENSOR: name}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v, f"{path}/{k}" if path else k, tensors) for k, v in value.items()}
        return {
            _ITEMS: [
                [_encode(k, f"{path}/key{i}", tensors), _encode(v, f"{path}/{k}", tensors)]
                for i, (k, v) in enumerate(value.items())
            ]
        }
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store {type(value).__name__} at {path or '<root>'} in a checkpoint")


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if _TENSOR in value:
            return tensors[value[_TENSOR]]
        if _TUPLE in value:
            return tuple(_decode(v, tensors) for v in value[_TUPLE])
        if _ITEMS in value:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in value[_ITEMS]}
        return {k: _decode(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    return value
