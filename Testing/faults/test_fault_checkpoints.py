"""Training checkpoints carry a checksum: damaged ones are refused with a clear message (not a
SafetensorError, not a resumed run with garbage), and resume falls back to the newest intact
one (the previous version of ``last`` is kept on every save)."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import pytest
import torch

from Testing.command_line import assert_one_line_error
from Training.cli import main as training_main
from Training.loop.checkpoint import (
    CheckpointError,
    load_checkpoint,
    previous_path,
    resume_candidates,
    save_checkpoint,
)
from Training.loop.run import _resume
from Training.loop.trainer import BEST, LAST


def _tree(step: int) -> dict:
    return {"state": {"step": step}, "model": {"w": torch.arange(2000, dtype=torch.float32)}}


def _flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _step_4(path) -> None:
    """Change the step stored in the JSON tree (escaped inside the header) from 3 to 4."""
    data = path.read_bytes()
    changed = data.replace(b'step\\": 3', b'step\\": 4')
    assert changed != data
    path.write_bytes(changed)


def _as_int32(path) -> None:
    """Relabel the float32 tensor as int32 in the header: same size, other values."""
    data = path.read_bytes()
    changed = data.replace(b'"dtype":"F32"', b'"dtype":"I32"')
    assert changed != data
    path.write_bytes(changed)


DAMAGE = {
    "flipped byte in the tensor data": (lambda p: _flip(p, -100), "checksum does not match"),
    "changed digit in the metadata": (lambda p: _step_4(p), "checksum does not match"),
    "changed dtype in the header": (lambda p: _as_int32(p), "checksum does not match"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:-1000]), "is damaged"),
    "header cut": (lambda p: p.write_bytes(p.read_bytes()[:40]), "damaged or truncated"),
    "empty": (lambda p: p.write_bytes(b""), "damaged or truncated"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_checkpoint_is_refused_with_a_clear_message(case, tmp_path):
    path = save_checkpoint(tmp_path / LAST, _tree(3))
    damage, phrase = DAMAGE[case]
    damage(path)
    with pytest.raises(CheckpointError, match=phrase):
        load_checkpoint(path)


def test_every_save_keeps_the_version_it_replaces(tmp_path):
    path = tmp_path / LAST
    save_checkpoint(path, _tree(1))
    assert not previous_path(path).exists()
    save_checkpoint(path, _tree(2))
    assert load_checkpoint(previous_path(path))["state"]["step"] == 1
    assert load_checkpoint(path)["state"]["step"] == 2


class _Trainer(SimpleNamespace):
    """What ``_resume`` uses of a ``Trainer``: the checkpoint folder, load and the step."""

    def load(self, path) -> None:
        self.state = SimpleNamespace(step=load_checkpoint(path)["state"]["step"])


def _run_folder(tmp_path):
    folder = tmp_path / "checkpoints"
    for step in (1, 2):
        save_checkpoint(folder / LAST, _tree(step))
    save_checkpoint(folder / BEST, _tree(1))
    old = folder / BEST
    os.utime(old, ns=(1, 1))  # best is the oldest
    return folder


def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, caplog):
    folder = _run_folder(tmp_path)
    _flip(folder / LAST, -100)
    trainer = _Trainer(checkpoint_dir=folder)
    with caplog.at_level(logging.WARNING, logger="Training"):
        _resume(trainer)
    assert trainer.state.step == 1  # last.previous: the newest intact one
    assert "checksum does not match" in caplog.text and "trying an older checkpoint" in caplog.text
    assert resume_candidates(folder, (LAST, BEST))[0] == folder / LAST


def test_resume_with_no_intact_checkpoint_says_so(tmp_path):
    folder = _run_folder(tmp_path)
    for path in folder.iterdir():
        path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="no intact checkpoint to resume from"):
        _resume(_Trainer(checkpoint_dir=folder))


def test_export_of_a_damaged_checkpoint_is_one_line(tmp_path, capsys):
    folder = tmp_path / "run" / "checkpoints"
    save_checkpoint(folder / BEST, _tree(3))
    _flip(folder / BEST, -100)
    code = training_main(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, "checksum does not match", prefix="export")
    assert not (tmp_path / "m").exists()
