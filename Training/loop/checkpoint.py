"""Checkpoints: one safetensors file per checkpoint, written atomically, never pickled.

A checkpoint holds a tree of plain containers (dicts, lists, tuples), scalars, strings and
tensors, e.g. ``{"model": state_dict, "optimizer": state_dict, "progress": {...}}``. Tensors
are stored as safetensors entries named by their path in the tree (``model/head.weight``);
everything else is JSON in the file's metadata (key ``"tree"``), with tensors replaced by
``{"__tensor__": name}``, tuples by ``{"__tuple__": [...]}`` and dicts with non-string keys (the
optimizer's parameter ids) by ``{"__items__": [[key, value], ...]}``. Loading therefore runs no
code from the file.

Writes are atomic (``unetseg.atomic.write_atomically``): a crash at any moment leaves either
the previous checkpoint or the new one, never a partial file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from unetseg.atomic import write_atomically

_TREE_KEY = "tree"
_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"


def save_checkpoint(path: str | Path, tree: Any) -> Path:
    """Write ``tree`` (see module docstring) to ``path`` atomically; returns the path."""
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(tree, "", tensors)
    metadata = {"format": "pt", _TREE_KEY: json.dumps(encoded)}
    data = safetensors_bytes(tensors, metadata=metadata)
    path = Path(path)
    write_atomically(path, data)
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Read a tree written by ``save_checkpoint``; tensors are placed on ``device``."""
    path = Path(path)
    with safe_open(str(path), framework="pt", device=str(device)) as handle:
        metadata = handle.metadata() or {}
        if _TREE_KEY not in metadata:
            raise ValueError(f"{path} is not a UNetSeg training checkpoint (no '{_TREE_KEY}')")
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    return _decode(json.loads(metadata[_TREE_KEY]), tensors)


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
