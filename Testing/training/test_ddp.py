"""Data-parallel training with 2 CPU processes (gloo): both ranks end with identical weights."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_trainer import TINY, TRAIN, VAL

from Training.config import config_from_dict
from Training.loop.distributed import init_from_env, spawn
from Training.loop.trainer import Trainer


def _rank_main(config, run_dir: Path, out_dir: Path) -> None:
    """One rank: train, then save this rank's weights and its first training batch."""
    info = init_from_env("cpu")
    trainer = Trainer(config, run_dir, TRAIN, VAL, dist=info)
    first_batch = next(iter(trainer._loader(0, 1)))[0]
    trainer.fit()
    state = {k: v.contiguous() for k, v in trainer.network.state_dict().items()}
    save_file(state, out_dir / f"rank{info.rank}.safetensors")
    save_file({"batch": first_batch}, out_dir / f"batch{info.rank}.safetensors")


@pytest.mark.slow
def test_two_gloo_processes_train_in_lockstep(tmp_path):
    data = copy.deepcopy(TINY)
    data["model"]["network"] = {"filters": [4, 8], "norm": "batch", "dropout": 0.1}
    data["training"].update(epochs=1, steps_per_epoch=3, batch_size=1)
    config = config_from_dict(data)
    run_dir = tmp_path / "run"
    spawn(_rank_main, 2, config, run_dir, tmp_path)

    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(2)]
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name  # gradients were averaged
    # The ranks saw different data (each its own samples), and training moved the weights.
    batches = [load_file(tmp_path / f"batch{r}.safetensors")["batch"] for r in range(2)]
    assert not torch.equal(batches[0], batches[1])
    initial = Trainer(config, tmp_path / "initial", TRAIN, VAL).network.state_dict()
    assert not torch.equal(initial["head.weight"], ranks[0]["head.weight"])
    # BatchNorm running statistics are the same on both ranks (buffers broadcast from rank 0).
    assert any("running_mean" in name for name in ranks[0])
    # Rank 0 wrote the run files.
    assert (run_dir / "checkpoints" / "last.safetensors").is_file()
    history = json.loads((run_dir / "metrics.json").read_text())
    assert len(history) == 1 and np.isfinite(history[0]["val_dice"])
