"""Device selection and CPU bf16 detection."""

import pytest
import torch

from unetseg.engine import device as device_module
from unetseg.engine.device import cpuinfo_has_bf16, describe_device, select_device

ZEN3 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx2 avx512f avx512bw\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16 amx_int8\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve i8mm bf16 svebf16\n"


def test_cpuinfo_bf16_flags():
    assert not cpuinfo_has_bf16(ZEN3)
    assert cpuinfo_has_bf16(SAPPHIRE)
    assert cpuinfo_has_bf16(GRAVITON3)
    assert not cpuinfo_has_bf16("")


def test_select_cpu_and_auto():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(" CPU ") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected


def test_cuda_without_cuda_build(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(RuntimeError, match="torch has no CUDA build; install a CUDA build"):
        select_device("cuda")


def test_cuda_build_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device is usable"):
        select_device("cuda:0")
    assert select_device("auto") == torch.device("cpu")


def test_unknown_device_name():
    with pytest.raises(ValueError, match="unknown device"):
        select_device("tpu")
    with pytest.raises(ValueError, match="invalid CUDA device"):
        select_device("cuda:x")


def test_describe_cpu(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_supports_bf16", lambda: False)
    text = describe_device("cpu")
    assert text.startswith("CPU: ")
    assert torch.__version__ in text
    assert "no native bf16" in text
