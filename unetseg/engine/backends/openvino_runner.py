"""The OpenVINO backend: the network compiled for the CPU from a cached OpenVINO IR.

The IR is exported once per model version, window shape and OpenVINO version, in a child
process (`export_in_subprocess`), into the cache (`cache_folder`), in a folder named after the
weights' SHA-256. Before an IR is used, its record (`ir.json`) must name the SHA-256 of the
package's weights, and the `.bin` file must still have the SHA-256 recorded when it was
written; otherwise it is exported again. OpenVINO keeps its compiled blobs in the cache too
(its `CACHE_DIR`), so a second run skips compiling.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetseg.atomic import atomic_folder
from unetseg.engine.export import import_openvino, window_shape
from unetseg.engine.package import ModelPackage

logger = logging.getLogger(__name__)

#: Environment variable overriding the cache folder.
CACHE_ENV = "UNETSEG_CACHE_DIR"
IR_RECORD = "ir.json"
_PRECISION_NAMES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


def cache_folder() -> Path:
    """`$UNETSEG_CACHE_DIR`, else `$XDG_CACHE_HOME/unetseg`, else `~/.cache/unetseg`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unetseg"


class OpenVinoRunner:
    """Runs `(B, C, *roi)` float32 windows through the network compiled by OpenVINO (CPU).

    The compiled input shape is static (`window_batch` windows); a shorter last batch is
    padded with zero windows whose outputs are dropped.

    Args:
        package: the model package.
        window_batch: windows per forward pass.
        reduced: let OpenVINO use its default CPU precision (bf16/f16 where the CPU has it)
            instead of float32.
    """

    backend = "openvino"
    device = torch.device("cpu")

    def __init__(self, package: ModelPackage, window_batch: int, reduced: bool) -> None:
        self.window_batch = window_batch
        core = shared_core()
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "CACHE_DIR": str(cache_folder() / "openvino" / "compiled"),
        }
        if not reduced:
            config["INFERENCE_PRECISION_HINT"] = "f32"
        model = core.read_model(str(cached_ir(package, window_batch)))
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = _PRECISION_NAMES.get(hint.get_type_name(), str(hint))

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        """`(B, C, *roi)` float32 CPU tensor, B <= window_batch -> `(B, C_out, *roi)` logits
        (a new tensor: the request's output buffer is reused by the next call)."""
        count = windows.shape[0]
        array = windows.detach().to("cpu", torch.float32).numpy()
        if count < self.window_batch:
            padding = np.zeros((self.window_batch - count, *array.shape[1:]), np.float32)
            array = np.concatenate([array, padding])
        self._request.infer({0: np.ascontiguousarray(array)})
        return torch.from_numpy(self._request.get_output_tensor(0).data[:count].copy())

    def describe(self) -> str:
        return f"OpenVINO {openvino_version()}, {self.precision}"


def cached_ir(package: ModelPackage, window_batch: int) -> Path:
    """The `.xml` of the package's OpenVINO IR for `window_batch` windows, exported into the
    cache unless a verified copy is there (see the module docstring)."""
    weights = package.weights_sha256
    shape = "x".join(str(s) for s in window_shape(package, window_batch))
    version = openvino_version()
    folder = cache_folder() / "openvino" / f"{package.id}-{weights[:16]}" / f"{shape}-{version}"
    xml = folder / "model.xml"
    if _verified(folder, weights):
        return xml
    logger.info("exporting %s %s to OpenVINO (once per model version)", package.id, shape)
    with atomic_folder(folder) as staging:
        export_in_subprocess(package, staging / "model.xml", window_batch)
        record = {
            "model": package.id,
            "version": package.version,
            "weights_sha256": weights,
            "bin_sha256": _sha256(staging / "model.bin"),
            "openvino": version,
        }
        (staging / IR_RECORD).write_text(json.dumps(record, indent=2))
    return xml


def export_in_subprocess(package: ModelPackage, xml: Path, window_batch: int) -> None:
    """Export the package's IR to `xml` with ``python -m unetseg.engine.export`` in a child
    process: the exporter (torch.export tracing, ONNX conversion) then never runs in the host
    process, whose other threads (a GUI, a web server, a test run) it could disturb.

    Raises:
        RuntimeError: the export failed (its last error line is quoted).
    """
    library = str(Path(__file__).resolve().parents[3])  # the folder holding `unetseg`
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [library, os.environ.get("PYTHONPATH")])),
    )
    command = [sys.executable, "-m", "unetseg.engine.export", str(package.path), str(xml)]
    command += ["--window-batch", str(window_batch)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no error message"]
        raise RuntimeError(f"exporting {package.id} to OpenVINO failed: {lines[-1]}")


@functools.cache
def shared_core():
    """The process's one OpenVINO `Core` (each Core starts its own plugins and thread pools;
    OpenVINO recommends one per application)."""
    return import_openvino().Core()


def openvino_version() -> str:
    """OpenVINO's release, e.g. "2026.4.1" (the build suffix left out)."""
    return import_openvino().get_version().split("-")[0]


def _verified(folder: Path, weights_sha256: str) -> bool:
    """True when `folder` holds an IR recorded for these weights whose `.bin` is unchanged."""
    try:
        record = json.loads((folder / IR_RECORD).read_text())
        if record.get("weights_sha256") != weights_sha256:
            return False
        return (folder / "model.xml").is_file() and record.get("bin_sha256") == _sha256(
            folder / "model.bin"
        )
    except (OSError, ValueError):
        return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
