"""``unetseg models export``: the network of a model as ONNX or OpenVINO IR, read back by the
independent readers (onnx, OpenVINO) and run against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from Testing.command_line import assert_one_line_error, run_cli
from unetseg.engine.registry import resolve_model

onnx = pytest.importorskip("onnx", reason="onnx is not installed")
openvino = pytest.importorskip("openvino", reason="OpenVINO is not installed")


def test_export_writes_onnx_and_openvino_ir_that_compute_the_network(tmp_path, capsys):
    package = resolve_model("lung-cxr")
    code, out, err = run_cli(
        capsys, "models", "export", "lung-cxr", "--out", str(tmp_path / "m.onnx"),
        "--window-batch", "2",
    )  # fmt: skip
    assert code == 0, err
    assert "input 2x1x256x256" in out
    model = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(model)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [
        2,
        1,
        256,
        256,
    ]

    xml = tmp_path / "ir" / "m.xml"
    code, _, err = run_cli(
        capsys, "models", "export", "lung-cxr", "--format", "openvino", "--out", str(xml)
    )
    assert code == 0, err
    compiled = openvino.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    window = np.random.default_rng(0).normal(size=(1, 1, 256, 256)).astype(np.float32)
    with torch.inference_mode():
        expected = package.load_network("cpu")(torch.from_numpy(window)).numpy()
    got = compiled(window)[0]
    assert np.abs(got - expected).max() <= 1e-3 * max(np.abs(expected).max(), 1.0)


def test_export_refuses_a_wrong_suffix_and_existing_files(tmp_path, capsys):
    code, _, err = run_cli(capsys, "models", "export", "lung-cxr", "--out", str(tmp_path / "m.xml"))
    assert_one_line_error(code, err, "--out must end with .onnx")
    existing = tmp_path / "m.onnx"
    existing.write_bytes(b"mine")
    code, _, err = run_cli(capsys, "models", "export", "lung-cxr", "--out", str(existing))
    assert_one_line_error(code, err, "exist", "--overwrite")
    assert existing.read_bytes() == b"mine"
