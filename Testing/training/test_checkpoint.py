"""Checkpoints: lossless round trip without pickle, atomic writes that survive a crash."""

import json
import math

import pytest
import torch
from safetensors import safe_open

import unetseg.atomic as atomic
from Training.loop.checkpoint import load_checkpoint, save_checkpoint


def _tree():
    model = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3), torch.nn.InstanceNorm3d(4, affine=True))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(1, 2, 5, 5, 5)).sum().backward()
    optimizer.step()
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "plateau": {"best": -math.inf, "mode_worse": math.inf},
        "misc": {
            "step": 7,
            "tuple": (1, "a", None, 2.5),
            "bf16": torch.arange(4, dtype=torch.bfloat16),
            "scalar": torch.tensor(3.0),
            "ints": {3: "three", 10: [1, 2]},
        },
    }


def _assert_equal(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _assert_equal(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_equal(x, y)
    else:
        assert a == b


def test_round_trip_keeps_types_keys_and_bits(tmp_path):
    tree = _tree()
    path = save_checkpoint(tmp_path / "c.safetensors", tree)
    _assert_equal(tree, load_checkpoint(path))


def test_optimizer_resumes_identically_from_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    x = torch.randn(8, 4)
    for _ in range(3):
        optimizer.zero_grad()
        net(x).pow(2).sum().backward()
        optimizer.step()
    path = save_checkpoint(
        tmp_path / "o.safetensors", {"net": net.state_dict(), "opt": optimizer.state_dict()}
    )
    clone = torch.nn.Linear(4, 3)
    clone_optimizer = torch.optim.Adam(clone.parameters(), lr=0.1)
    tree = load_checkpoint(path)
    clone.load_state_dict(tree["net"])
    clone_optimizer.load_state_dict(tree["opt"])
    for model, opt in ((net, optimizer), (clone, clone_optimizer)):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
    for a, b in zip(net.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b)


def test_file_is_plain_safetensors_with_json_metadata(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", _tree())
    head = path.read_bytes()[:9]
    assert head[8:9] == b"{"  # safetensors header, not a pickle (0x80) or zip (PK)
    with safe_open(str(path), framework="pt") as handle:
        tree = json.loads(handle.metadata()["tree"])
        assert "model/0.weight" in handle.keys()  # noqa: SIM118
    assert tree["misc"]["step"] == 7


def test_crash_mid_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, {"step": 1, "w": torch.ones(1000)})
    before = path.read_bytes()
    writes = []
    real_write = atomic.os.write

    def crashing_write(fd, data):
        writes.append(len(data))
        if len(writes) == 3:
            raise OSError("disk gone (simulated crash)")
        return real_write(fd, data)

    monkeypatch.setattr(atomic, "CHUNK_BYTES", 256)
    monkeypatch.setattr(atomic.os, "write", crashing_write)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(1000)})
    monkeypatch.undo()
    assert len(writes) == 3  # the new file was partly written when the crash came
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


def test_crash_before_rename_and_stale_temporaries(tmp_path, monkeypatch):
    path = tmp_path / "best.safetensors"
    save_checkpoint(path, {"step": 1})

    def no_rename(src, dst):
        raise KeyboardInterrupt  # e.g. killed between fsync and rename

    monkeypatch.setattr(atomic.os, "replace", no_rename)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    # A process killed outright leaves its temporary file: it is ignored, then cleaned up.
    stale = tmp_path / ".best.safetensors.deadbeef.tmp"
    stale.write_bytes(b"\x00" * 10)
    assert load_checkpoint(path)["step"] == 1
    save_checkpoint(path, {"step": 3})
    assert not stale.exists() and load_checkpoint(path)["step"] == 3


def test_refuses_files_that_are_not_training_checkpoints(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.ones(2)}, path)
    with pytest.raises(ValueError, match="not a UNetSeg training checkpoint"):
        load_checkpoint(path)
    with pytest.raises(TypeError, match="object at misc"):
        save_checkpoint(tmp_path / "x.safetensors", {"misc": object()})
