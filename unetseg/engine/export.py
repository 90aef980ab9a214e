"""Export a model package's network to ONNX and to OpenVINO IR.

    python -m unetseg.engine.export PACKAGE_DIR OUT.xml [--window-batch N]

(the OpenVINO export in its own process, as the OpenVINO backend runs it: the exporter's
tracing machinery never runs inside a long-lived host process such as Slicer or a test run).

Both exports have a static input shape `(window_batch, in_channels, *roi)` in array order
((K, J, I) for 3D, (J, I) for 2D models): the sliding window always feeds full windows, and a
static shape lets OpenVINO plan its memory once. The network is traced from verified weights
(`ModelPackage.read_weights` checks the SHA-256); while it is traced it takes the portable
operators (`unetseg.engine.network.blocks.cpu_fast_path`).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from unetseg.atomic import atomic_path
from unetseg.engine.package import ModelPackage

#: ONNX opset of the export (the torch.export-based exporter's default).
ONNX_OPSET = 18
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def window_shape(package: ModelPackage, window_batch: int = 1) -> tuple[int, ...]:
    """`(window_batch, in_channels, *roi)`: the network input of one forward pass, in array
    order ((K, J, I) for 3D, (J, I) for 2D models)."""
    if window_batch < 1:
        raise ValueError(f"window_batch must be >= 1, got {window_batch}")
    return (window_batch, package.in_channels, *package.window.roi_size)


def export_onnx(package: ModelPackage, path: str | Path, *, window_batch: int = 1) -> Path:
    """Write the network as ONNX (opset `ONNX_OPSET`, input "image", output "logits") to
    `path` atomically and return it."""
    path = Path(path)
    network = package.load_network("cpu")
    example = torch.zeros(window_shape(package, window_batch))
    with atomic_path(path) as staged, warnings.catch_warnings(), _quiet_exporter():
        # torch.export's own deprecation notices (pytree internals), not ours.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            network,
            (example,),
            str(staged),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=ONNX_OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    return path


#: Loggers of the exporter, quieted during an export: the optional operator libraries it did
#: not find (torchvision, ERROR only), and its graph-rewriting passes (INFO lines).
_EXPORTER_LEVELS = {
    "torch.onnx": logging.ERROR,
    "onnxscript": logging.WARNING,
    "onnx_ir": logging.WARNING,
}


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Quiet the exporter's loggers for the block (`_EXPORTER_LEVELS`)."""
    loggers = {logging.getLogger(name): level for name, level in _EXPORTER_LEVELS.items()}
    previous = {logger: logger.level for logger in loggers}
    try:
        for logger, level in loggers.items():
            logger.setLevel(level)
        yield
    finally:
        for logger, level in previous.items():
            logger.setLevel(level)


def export_openvino(package: ModelPackage, path: str | Path, *, window_batch: int = 1) -> Path:
    """Write the network as OpenVINO IR (`path` = the `.xml`; weights in float32 beside it as
    `.bin`), converted from the ONNX export, and return the `.xml` path.

    Raises:
        RuntimeError: OpenVINO is not installed.
    """
    ov = import_openvino()
    xml = Path(path).with_suffix(".xml")
    xml.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=xml.parent, prefix=".openvino-") as scratch:
        onnx = export_onnx(package, Path(scratch) / "model.onnx", window_batch=window_batch)
        staged = Path(scratch) / "model.xml"
        ov.save_model(ov.convert_model(str(onnx)), str(staged), compress_to_fp16=False)
        # The .bin first: an .xml never appears without its weights.
        staged.with_suffix(".bin").replace(xml.with_suffix(".bin"))
        staged.replace(xml)
    return xml


def import_openvino():
    """The `openvino` module, or RuntimeError with the command that installs it."""
    try:
        import openvino
    except ImportError:
        raise RuntimeError(
            "OpenVINO is not installed: `pip install openvino` (or "
            "`pip install 'unetseg[openvino]'`), or choose the torch backend (--backend torch)"
        ) from None
    return openvino


def main(argv: list[str] | None = None) -> int:
    """Export a package folder's network as OpenVINO IR (see the module docstring)."""
    import argparse

    from unetseg.engine.package import load_model_package

    parser = argparse.ArgumentParser(prog="python -m unetseg.engine.export")
    parser.add_argument("package", type=Path, help="model package folder")
    parser.add_argument("out", type=Path, help="the .xml of the OpenVINO IR to write")
    parser.add_argument("--window-batch", type=int, default=1)
    args = parser.parse_args(argv)
    package = load_model_package(args.package)
    export_openvino(package, args.out, window_batch=args.window_batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
