"""Backends: ONNX / OpenVINO export of the network, the OpenVINO runner and its cache, and the
choice of backend and precision from `SegmentOptions`."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from Testing.case_files import random_brain_inputs, small_brain_model
from Testing.runners import TORCH_CPU
from unetseg.engine import backends
from unetseg.engine.backends import load_runner, resolve_backend, wants_reduced_precision
from unetseg.engine.export import export_onnx, window_shape
from unetseg.engine.options import SegmentOptions
from unetseg.engine.predict import Segmenter
from unetseg.engine.registry import resolve_model
from unetseg.untrained import brain_mri_manifest, untrained_package

openvino = pytest.importorskip("openvino", reason="the OpenVINO backend is not installed")
onnx = pytest.importorskip("onnx", reason="onnx is not installed")

BUNDLED = ("brain-tumor-mri", "lung-ct", "lung-cxr", "ovarian-ct")
OPENVINO_CPU = SegmentOptions(device="cpu", backend="openvino")


def _small_package(folder: Path, network: dict, seed: int = 0):
    """An untrained package with `network` (a shipped model's options, its channel counts) and
    a small patch (32^3, 2D 64^2): every operator of the shipped network, cheap windows."""
    manifest = brain_mri_manifest((8, 16), patch_size=(32, 32, 32))
    manifest["network"] = copy.deepcopy(network)
    channels = network["in_channels"]
    manifest["inputs"] = manifest["inputs"][:channels]
    for extra in manifest["inputs"][1:]:
        extra["required"] = False
    if network["spatial_dims"] == 2:
        manifest["spatial_dims"] = 2
        manifest["patch_size"] = [64, 64, 1]
        manifest["spacing_mm"] = [1.0, 1.0, 1.0]
    labels = network["out_channels"] - (manifest["output"]["activation"] == "softmax")
    manifest["labels"] = manifest["labels"][:labels]
    return untrained_package(folder, manifest, seed=seed)


def _shipped_networks() -> list:
    networks = [(model, resolve_model(model).manifest["network"]) for model in BUNDLED]
    # Options no shipped model uses yet, so that the next model exports too.
    variant = dict(networks[0][1], squeeze_excitation=True, upsample="interpolate", norm="batch")
    return [
        pytest.param(network, id=name)
        for name, network in [*networks, ("se-interpolate-batchnorm", variant)]
    ]


@pytest.mark.parametrize("network", _shipped_networks())
def test_every_shipped_network_exports_to_onnx_and_openvino_with_torch_s_logits(network, tmp_path):
    package = _small_package(tmp_path / "model", network, seed=3)
    onnx_path = export_onnx(package, tmp_path / "model.onnx")
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model)
    assert (
        max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")) >= 17
    )
    shape = window_shape(package)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == list(shape)

    runner = load_runner(package, OPENVINO_CPU)
    window = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = package.load_network("cpu")(window)
    got = runner(window)

    assert runner.backend == "openvino" and runner.precision == "float32"
    assert got.shape == expected.shape
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) <= 1e-3 * max(scale, 1.0)
    assert float((got.argmax(1) == expected.argmax(1)).float().mean()) >= 0.999


def test_the_ir_is_exported_once_and_only_trusted_with_matching_hashes(tmp_path, monkeypatch):
    from unetseg.engine.backends import openvino_runner

    monkeypatch.setenv("UNETSEG_CACHE_DIR", str(tmp_path / "cache"))
    exports = []
    real_export = openvino_runner.export_in_subprocess

    def counting_export(*args, **kwargs):
        exports.append(args)
        return real_export(*args, **kwargs)

    monkeypatch.setattr(openvino_runner, "export_in_subprocess", counting_export)
    package = _small_package(tmp_path / "a", resolve_model("lung-ct").manifest["network"])

    first = openvino_runner.cached_ir(package, 1)
    assert openvino_runner.cached_ir(package, 1) == first
    assert len(exports) == 1
    record = json.loads((first.parent / "ir.json").read_text())
    assert record["weights_sha256"] == package.manifest["weights"]["sha256"]

    bin_file = first.with_suffix(".bin")
    data = bytearray(bin_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a damaged or altered IR is exported again
    bin_file.write_bytes(bytes(data))
    assert openvino_runner.cached_ir(package, 1) == first
    assert len(exports) == 2

    other = _small_package(tmp_path / "b", package.manifest["network"], seed=1)  # new weights
    assert openvino_runner.cached_ir(other, 1).parent.parent != first.parent.parent
    assert openvino_runner.cached_ir(package, 2) != first  # another window batch
    assert len(exports) == 4


@pytest.fixture(scope="module")
def brain_package(tmp_path_factory):
    return small_brain_model(tmp_path_factory.mktemp("brain"), (8, 16, 32), patch=16, seed=5)


def _brain_case():
    # (K, J, I) at 2 mm: 2 x 3 x 3 windows of 16^3 at overlap 0.5
    return random_brain_inputs((20, 36, 30), 2.0, seed=4)


@pytest.mark.parametrize("window_batch", [1, 4])
def test_openvino_labels_agree_with_torch_and_batches_are_padded(brain_package, window_batch):
    arrays, geometries = _brain_case()
    reference = Segmenter(brain_package, TORCH_CPU).segment(arrays, geometries)
    totals = []
    options = OPENVINO_CPU.with_changes(window_batch=window_batch)
    result = Segmenter(brain_package, options).segment(
        arrays, geometries, progress=lambda done, total: totals.append((done, total))
    )

    assert result.backend.startswith("OpenVINO") and result.backend.endswith("float32")
    assert reference.backend.startswith("torch")
    assert result.labels.shape == reference.labels.shape
    assert np.mean(result.labels == reference.labels) >= 0.999
    assert len(np.unique(reference.labels)) > 1
    windows = totals[-1][1]
    assert totals[-1][0] == windows and len(totals) == -(-windows // window_batch)


def test_auto_picks_openvino_on_the_cpu_only_when_installed(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("auto", cpu) == "openvino"
    assert resolve_backend("auto", cuda) == "torch"
    assert resolve_backend("torch", cpu) == "torch"
    assert resolve_backend("openvino", cpu) == "openvino"
    monkeypatch.setattr(backends, "openvino_installed", lambda: False)
    assert resolve_backend("auto", cpu) == "torch"


def test_openvino_with_device_auto_runs_on_the_cpu_even_where_cuda_is(brain_package, monkeypatch):
    # As on a GPU machine, where device "auto" picks CUDA.
    monkeypatch.setattr(backends, "select_device", lambda name: torch.device("cuda"))
    runner = load_runner(brain_package, SegmentOptions(backend="openvino"))
    assert runner.backend == "openvino" and runner.device == torch.device("cpu")
    with pytest.raises(ValueError, match="CPU only"):
        SegmentOptions(device="cuda", backend="openvino")


def test_asking_for_openvino_without_it_names_the_install_command(brain_package, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(RuntimeError, match=r"pip install openvino.*--backend torch"):
        Segmenter(brain_package, OPENVINO_CPU)


def test_reduced_precision_only_where_asked_or_allowed(brain_package):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    allowed = dataclasses.replace(
        brain_package, manifest={**brain_package.manifest, "reduced_precision": True}
    )
    fast = SegmentOptions(fast=True)
    assert not wants_reduced_precision(SegmentOptions(), allowed, cpu)
    assert not wants_reduced_precision(fast, brain_package, cpu)  # not measured for this model
    assert wants_reduced_precision(fast, allowed, cpu)
    assert not wants_reduced_precision(fast.with_changes(precision="float32"), allowed, cpu)
    assert wants_reduced_precision(SegmentOptions(precision="reduced"), brain_package, cpu)
    assert wants_reduced_precision(SegmentOptions(), brain_package, cuda)  # float16 autocast
    assert not wants_reduced_precision(SegmentOptions(precision="float32"), brain_package, cuda)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_on_cuda_runs_torch_in_float16_and_agrees_with_the_cpu(brain_package):
    arrays, geometries = _brain_case()
    cpu = Segmenter(brain_package, TORCH_CPU).segment(arrays, geometries)
    gpu = Segmenter(brain_package, SegmentOptions(device="cuda"))
    result = gpu.segment(arrays, geometries)
    assert gpu.runner.backend == "torch" and gpu.runner.precision == "float16"
    assert result.device.startswith("CUDA")
    assert np.mean(result.labels == cpu.labels) >= 0.99


def test_options_come_from_any_object_with_the_field_names():
    from types import SimpleNamespace

    form = SimpleNamespace(device="cpu", backend="torch", overlap=0.6, fast=True, unrelated=1)
    options = SegmentOptions.from_attributes(form)
    assert options == SegmentOptions(device="cpu", backend="torch", overlap=0.6, fast=True)
    with pytest.raises(ValueError, match="overlap"):
        SegmentOptions.from_attributes(SimpleNamespace(overlap=0.99))
