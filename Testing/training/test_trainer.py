"""Training loop: exact resume, validation through the engine, early stopping, schedules, AMP,
and the smoke config through the command line."""

import argparse
import copy
import csv
import dataclasses
import io
import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from Training.commands import train as train_command
from Training.config import ScheduleConfig, config_from_dict, load_config
from Training.data import DatasetError, reference_labels
from Training.loop import trainer as trainer_module
from Training.loop.checkpoint import load_checkpoint, save_checkpoint
from Training.loop.curves import write_history
from Training.loop.objectives import build_loss, training_target
from Training.loop.progress import Progress, ProgressLogHandler
from Training.loop.run import run_training
from Training.loop.schedules import LRSchedule
from Training.loop.trainer import LAST, TRAINING_AUTOCAST, Trainer
from Training.sampling import MemoryCases, load_training_case, make_training_case
from unetseg.engine import device as device_module
from unetseg.engine.inference.precision import resolve_autocast
from unetseg.engine.metrics import compute_metrics

CONFIGS = Path(__file__).resolve().parents[2] / "Training" / "configs"

TINY = {
    "name": "tiny",
    "data": {"reader": "decathlon", "root": "unused"},
    "model": {
        "id": "tiny",
        "title": "Tiny",
        "modality": "CT",
        "spatial_dims": 3,
        "inputs": [
            {"name": "ct", "title": "CT", "required": True, "normalization": {"method": "none"}}
        ],
        "spacing_mm": [1.0, 1.0, 1.0],
        "patch_size": [8, 8, 8],
        "labels": [{"value": 1, "name": "Blob", "color": [200, 50, 50]}],
        "network": {"filters": [4, 8, 16], "dropout": 0.1, "deep_supervision": True},
    },
    "training": {
        "epochs": 2,
        "steps_per_epoch": 2,
        "batch_size": 2,
        "optimizer": {"name": "adamw", "lr": 0.01},
        "schedule": {"name": "onecycle"},
        "workers": 0,
        "validation": {"loss_patches": 1},
    },
    "sampling": {"foreground_oversample": 0.5},
}


def _config(**sections):
    data = copy.deepcopy(TINY)
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return config_from_dict(data)


def _blob_case(case_id, seed, shape=(12, 12, 12)):
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    centre = rng.uniform(4, np.array(shape) - 4)
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))
    label = (distance < 3).astype(np.uint8)
    image = (label + 0.3 * rng.normal(size=shape)).astype(np.float32)[None]
    return make_training_case(case_id, image, label, (1.0, 1.0, 1.0))


TRAIN = MemoryCases([_blob_case(f"t{i}", i) for i in range(3)])
VAL = MemoryCases([_blob_case("v0", 10, shape=(8, 8, 8))])  # one sliding window


@pytest.fixture(autouse=True)
def _fast(request, monkeypatch):
    """Tiny tensors run fastest on one thread (no OpenMP contention on a shared runner), and
    drawing curves costs seconds: only the command-line test checks the PNG."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    if "curves" not in request.node.name:
        monkeypatch.setattr(trainer_module, "plot_curves", lambda history, path: True)
    yield
    torch.set_num_threads(threads)


def _state(trainer):
    return {k: v.clone() for k, v in trainer.network.state_dict().items()}


def test_resume_mid_epoch_gives_bitwise_the_same_weights(tmp_path):
    # Bitwise equality needs deterministic kernels (oneDNN's weight gradients round
    # differently from call to call and with memory alignment).
    config = _config(training={"deterministic": True})
    straight = Trainer(config, tmp_path / "a", TRAIN, VAL)
    straight.fit()
    first = Trainer(config, tmp_path / "b", TRAIN, VAL)
    first.fit(stop_step=3)  # stop inside epoch 2: 'last' is written on the way out
    assert first.state.step == 3
    # Resume in a fresh trainer, with data workers this time: the stream does not change.
    with_workers = dataclasses.replace(
        config, training=dataclasses.replace(config.training, workers=2)
    )
    resumed = Trainer(with_workers, tmp_path / "b", TRAIN, VAL)
    resumed.load(tmp_path / "b" / "checkpoints" / LAST)
    resumed.fit()
    assert resumed.state.step == straight.state.step == 4
    for name, value in _state(straight).items():
        assert torch.equal(value, resumed.network.state_dict()[name]), name
    for a, b in zip(
        straight.optimizer.state_dict()["state"].values(),
        resumed.optimizer.state_dict()["state"].values(),
        strict=True,
    ):
        assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    strip = [{k: v for k, v in row.items() if k != "time_s"} for row in straight.state.history]
    assert strip == [
        {k: v for k, v in row.items() if k != "time_s"} for row in resumed.state.history
    ]
    assert straight.schedule.lr == resumed.schedule.lr
    # The steps did change the weights (the comparison is not vacuous).
    untrained = Trainer(config, tmp_path / "c", TRAIN, VAL)
    assert not torch.equal(
        untrained.network.head.weight, straight.network.state_dict()["head.weight"]
    )


def test_resume_refuses_a_different_config(tmp_path):
    config = _config()
    first = Trainer(config, tmp_path, TRAIN, VAL)
    first.fit(stop_step=1)
    other = _config(training={"batch_size": 4})
    with pytest.raises(ValueError, match=r"training\.batch_size"):
        Trainer(other, tmp_path, TRAIN, VAL).load(tmp_path / "checkpoints" / LAST)


def test_resume_accepts_a_run_that_predates_newer_options(tmp_path):
    """A checkpoint written before options existed (here ``augmentation.resolution`` and
    ``data.split.test_patients``) resumes: they take their defaults; real changes still count."""
    Trainer(_config(), tmp_path, TRAIN, VAL).fit(stop_step=1)
    path = tmp_path / "checkpoints" / LAST
    tree = load_checkpoint(path)
    del tree["config"]["augmentation"]["resolution"]
    del tree["config"]["data"]["split"]["test_patients"]
    save_checkpoint(path, tree)
    resumed = Trainer(_config(), tmp_path, TRAIN, VAL)
    resumed.load(path)
    assert resumed.state.step == 1
    with pytest.raises(ValueError, match=r"training\.batch_size"):
        Trainer(_config(training={"batch_size": 4}), tmp_path, TRAIN, VAL).load(path)


def test_validation_uses_sliding_window_and_engine_metrics(tmp_path):
    trainer = Trainer(_config(), tmp_path, TRAIN, VAL)
    trainer.fit(stop_step=2)
    case = VAL.load(0)
    prediction = trainer.predict(case)
    assert prediction.shape == case.label.shape
    row = trainer.validate()
    expected = compute_metrics(prediction, case.label, [1], case.spacing, False)["1"]
    assert row["dice_blob"] == pytest.approx(expected["dice"])
    assert row["recall_blob"] == pytest.approx(expected["sensitivity"])
    assert row["val_dice"] == pytest.approx(expected["dice"])  # one label, one case
    assert np.isfinite(row["val_loss"])


def test_prediction_of_a_patch_sized_case_equals_the_network_argmax(tmp_path):
    trainer = Trainer(_config(), tmp_path, TRAIN, VAL)
    case = _blob_case("exact", 3, shape=(8, 8, 8))
    trainer.network.eval()
    with torch.no_grad():
        logits = trainer.network(torch.from_numpy(case.image)[None])
    np.testing.assert_array_equal(trainer.predict(case), logits.argmax(1)[0].numpy())


def test_2d_training_and_validation(tmp_path):
    model = copy.deepcopy(TINY["model"])
    model.update(spatial_dims=2, patch_size=[16, 16, 1])
    model["output"] = {"activation": "sigmoid"}
    data = copy.deepcopy(TINY)
    data["model"] = model
    data["training"]["loss"] = {"name": "bce"}
    data["augmentation"] = {"flip": {"axes": ["x", "y"]}}
    config = config_from_dict(data)
    rng = np.random.default_rng(0)
    cases = []
    for i in range(2):
        label = np.zeros((1, 24, 20), dtype=np.uint8)
        label[0, 5 + i : 15, 4:12] = 1
        image = (label + 0.2 * rng.normal(size=label.shape)).astype(np.float32)[None]
        cases.append(make_training_case(f"x{i}", image, label, (1.0, 1.0, 1.0)))
    trainer = Trainer(config, tmp_path, MemoryCases(cases), MemoryCases(cases[:1]))
    state = trainer.fit()
    assert state.step == 4 and "val_dice" in state.history[-1]
    assert trainer.predict(cases[0]).shape == (1, 24, 20)


def test_early_stopping_when_validation_dice_stalls(tmp_path):
    config = _config(
        training={
            "epochs": 6,
            "steps_per_epoch": 1,
            "optimizer": {"name": "sgd", "lr": 1e-12, "momentum": 0.0},
            "schedule": {"name": "constant"},
            "early_stopping": {"patience": 2},
        }
    )
    trainer = Trainer(config, tmp_path, TRAIN, VAL)
    state = trainer.fit()
    assert state.stopped_early and state.step == 3 and state.best_epoch == 1
    assert (tmp_path / "checkpoints" / "best.safetensors").is_file()
    assert [row["epoch"] for row in json.loads((tmp_path / "metrics.json").read_text())] == [
        1,
        2,
        3,
    ]


def test_schedules():
    def used_rates(config, steps, dice=None):
        """Learning rate used by each of ``steps`` optimizer steps."""
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        schedule = LRSchedule(optimizer, config, total_steps=steps)
        rates = []
        for _ in range(steps):
            rates.append(schedule.lr)
            optimizer.step()
            schedule.after_step()
            if dice is not None:
                schedule.after_validation(dice)
        return rates

    poly = used_rates(ScheduleConfig(name="poly", power=1.0), 10)
    assert poly[0] == 0.1 and poly[4] == pytest.approx(0.06) and poly[-1] == pytest.approx(0.01)
    onecycle = used_rates(ScheduleConfig(name="onecycle", pct_start=0.3, div_factor=10), 20)
    assert onecycle[0] == pytest.approx(0.01) and max(onecycle) == pytest.approx(0.1)
    assert onecycle[-1] == pytest.approx(0.01 / 1e4)
    plateau = used_rates(ScheduleConfig(name="plateau", factor=0.5, patience=2), 6, dice=0.5)
    assert plateau[0] == 0.1 and plateau[-1] == 0.05
    assert used_rates(ScheduleConfig(name="constant"), 5) == [0.1] * 5


def test_training_amp_choice_on_cpu(monkeypatch):
    cpu = torch.device("cpu")

    def choice(mode):
        return resolve_autocast(cpu, mode, **TRAINING_AUTOCAST)

    assert choice("off") == (None, None)
    dtype, note = choice("fp16")
    assert dtype is None and "CUDA" in note
    monkeypatch.setattr(device_module, "cpu_supports_bf16", lambda: False)
    for mode in ("auto", "bf16"):
        dtype, note = choice(mode)
        assert dtype is None and "float32" in note
    monkeypatch.setattr(device_module, "cpu_supports_bf16", lambda: True)
    assert choice("auto") == (torch.bfloat16, None)


def test_inference_and_training_differ_only_where_the_policy_says(monkeypatch):
    """One policy: inference keeps float32 on the CPU unless bf16 is asked for, and float16
    on CUDA; training prefers bf16 (faked CUDA bf16 support: no GPU here)."""
    monkeypatch.setattr(device_module, "cpu_supports_bf16", lambda: True)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_autocast(cpu, "auto", cpu_bf16=False) == (None, None)
    assert resolve_autocast(cpu, "auto", cpu_bf16=True) == (torch.bfloat16, None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_autocast(cuda, "auto", cpu_bf16=False) == (torch.float16, None)
    assert resolve_autocast(cuda, "auto", **TRAINING_AUTOCAST) == (torch.bfloat16, None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_autocast(cuda, "auto", **TRAINING_AUTOCAST) == (torch.float16, None)
    dtype, note = resolve_autocast(cuda, "bf16", **TRAINING_AUTOCAST)
    assert dtype == torch.float16 and "no bf16" in note
    with pytest.raises(ValueError, match="amp must be one of"):
        resolve_autocast(cpu, "fp8", cpu_bf16=True)


def test_sigmoid_targets_are_nested_regions():
    labels = torch.tensor([[0, 1, 2, 3]], dtype=torch.uint8)
    target = training_target(labels, "sigmoid", 3)
    expected = [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]]
    assert target.tolist() == [expected]
    assert training_target(labels, "softmax", 4).dtype == torch.int64


@pytest.mark.parametrize("name", ["dice", "dice_ce", "ce", "focal_tversky", "soft_dice"])
def test_every_softmax_loss_is_finite_with_deep_supervision(name):
    config = _config(training={"loss": {"name": name}}).training.loss
    loss = build_loss(config, "softmax", deep_supervision=True)
    outputs = [torch.randn(2, 2, 8, 8, 8, requires_grad=True), torch.randn(2, 2, 4, 4, 4)]
    value = loss(outputs, torch.randint(0, 2, (2, 8, 8, 8)))
    value.backward()
    assert torch.isfinite(value) and outputs[0].grad is not None


def test_soft_dice_matches_the_notebook_formula():
    config = _config(training={"loss": {"name": "soft_dice"}}).training.loss
    logits = torch.randn(2, 3, 5, 6)
    labels = torch.randint(0, 3, (2, 5, 6))
    p = torch.softmax(logits, 1).numpy()
    q = np.eye(3)[labels.numpy()].transpose(0, 3, 1, 2)
    ratio = (2 * (p * q).sum((2, 3)) + 1e-5) / ((p**2).sum((2, 3)) + (q**2).sum((2, 3)) + 1e-5)
    expected = 1 - ratio.mean()
    assert float(build_loss(config, "softmax", False)(logits, labels)) == pytest.approx(
        expected, rel=1e-5
    )


def test_regions_become_a_nested_index_and_bad_labels_are_refused():
    brain = config_from_dict(yaml.safe_load((CONFIGS / "brain_met.yaml").read_text()))
    raw = np.array([0, 1, 2, 3, 2])  # BraTS: 1 necrosis, 2 oedema, 3 enhancing
    # Regions WT (1, 2, 3) > TC (1, 3) > ET (3).
    nested = reference_labels(raw, brain.data, brain, "case")
    assert nested.tolist() == [0, 2, 1, 3, 1]
    assert training_target(torch.from_numpy(nested)[None], "sigmoid", 3)[0].tolist() == [
        [0, 1, 1, 1, 1],
        [0, 1, 0, 1, 0],
        [0, 0, 0, 1, 0],
    ]
    swapped = dataclasses.replace(
        brain, data=dataclasses.replace(brain.data, regions=((3,), (1, 3), (1, 2, 3)))
    )
    with pytest.raises(DatasetError, match="must be nested"):
        reference_labels(raw, swapped.data, swapped, "case")
    small = _config()
    with pytest.raises(DatasetError, match="label value 2 but the model has 1"):
        reference_labels(np.array([0, 2]), small.data, small, "case")


class Terminal(io.StringIO):
    """A captured stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_is_a_tqdm_bar_on_a_terminal():
    terminal = Terminal()
    progress = Progress(10, start=2, steps_per_epoch=5, stream=terminal)
    for step in range(3, 11):
        progress.update(step, loss=1.0 / step)
    progress.close()

    states = re.findall(
        r"epoch (\d)/2: +(\d+)%\|.*?\| (\d+)/10 \[[^]]*?(?:, loss ([\d.]+))?\]",
        terminal.getvalue(),
    )
    assert states[0] == ("1", "20", "2", "")  # drawn at once, resumed at step 2
    assert states[-1] == ("2", "100", "10", "0.1000")
    assert terminal.getvalue().endswith("\n")


def test_progress_draws_nothing_without_a_terminal():
    stream = io.StringIO()
    progress = Progress(10, steps_per_epoch=5, stream=stream)
    for step in range(1, 11):
        progress.update(step, loss=1.0 / step)
    progress.close()
    assert stream.getvalue() == ""


def test_log_records_interrupt_the_bar_on_their_own_line():
    terminal = Terminal()
    progress = Progress(10, steps_per_epoch=5, stream=terminal)
    handler = ProgressLogHandler(progress, terminal)
    log = logging.getLogger("Testing.progress")
    log.addHandler(handler)
    try:
        progress.update(4, loss=0.5)
        log.warning("epoch 1 val_dice 0.5")
        progress.update(5, loss=0.4)
    finally:
        log.removeHandler(handler)
        progress.close()

    pieces = re.split(r"[\r\n]", terminal.getvalue())
    assert "epoch 1 val_dice 0.5" in pieces
    assert any(piece.startswith("epoch 2/2:") and "5/10" in piece for piece in pieces)


def test_history_files_keep_every_column(tmp_path):
    history = [
        {"epoch": 1, "train_loss": 0.9},
        {"epoch": 2, "train_loss": 0.7, "val_dice": 0.5, "dice_lung": 0.5},
    ]
    write_history(tmp_path, history)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert list(rows[0]) == ["epoch", "train_loss", "val_dice", "dice_lung"]
    assert rows[0]["val_dice"] == "" and float(rows[1]["dice_lung"]) == 0.5
    assert json.loads((tmp_path / "metrics.json").read_text()) == history


def _short_smoke_config(folder: Path) -> Path:
    """The shipped smoke config shortened to 2 epochs of 4 steps on 4 small cases, written
    into ``folder``; returns its path."""
    data = yaml.safe_load((CONFIGS / "smoke.yaml").read_text())
    data["data"]["synth"].update(cases=4, size=24)
    data["data"]["split"]["validation"] = 0.25
    data["model"]["patch_size"] = [16, 16, 16]  # smaller than shipped, for a fast test
    data["training"].update(epochs=2, steps_per_epoch=4)
    config_path = folder / "smoke.yaml"
    config_path.write_text(yaml.safe_dump(data))
    return config_path


@pytest.mark.slow
def test_training_draws_a_bar_on_a_terminal_and_keeps_the_log_plain(tmp_path, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    run_dir = tmp_path / "run"

    summary = run_training(load_config(_short_smoke_config(tmp_path)), run_dir)

    assert summary["steps"] == 8
    assert re.search(r"epoch 2/2: 100%\|.*\| 8/8 \[.*, loss [\d.]+\]\n", terminal.getvalue())
    log = (run_dir / "train.log").read_text().splitlines()
    assert sum(" INFO epoch " in line for line in log) == 2  # one line per epoch
    assert all(re.match(r"\d\d:\d\d:\d\d (INFO|WARNING) ", line) for line in log), log
    assert "%|" not in "".join(log) and "\r" not in "".join(log)


@pytest.mark.slow
def test_smoke_config_through_the_command_line_learns_and_draws_curves(tmp_path):
    """The shipped smoke config, shortened, via ``train`` with an interruption and --resume."""
    config_path = _short_smoke_config(tmp_path)
    run_dir = tmp_path / "run"
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)

    def main(*argv):
        return train_command.run(parser.parse_args(list(argv)))

    assert main("--config", str(config_path), "--out", str(run_dir), "--stop-at-step", "5") == 0
    assert main("--config", str(config_path), "--out", str(run_dir)) == 2  # run exists
    assert main("--resume", str(run_dir)) == 0
    for name in ("config.yaml", "split.json", "train.log", "metrics.csv", "curves.png"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "checkpoints" / "best.safetensors").is_file()
    history = json.loads((run_dir / "metrics.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 8 and len(history) == 2
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert 0.0 <= history[-1]["val_dice"] <= 1.0
    assert "resumed at step 5" in (run_dir / "train.log").read_text()
    # Prepared cases follow the engine's canonical RAS grid: the right lung (label 1) lies at
    # larger I (towards patient right) than the left lung (label 2) in every case.
    for folder in sorted(run_dir.glob("prepared/*/*")):
        case = load_training_case(folder)
        i_index = np.indices(case.label.shape)[2]
        assert i_index[case.label == 1].mean() > i_index[case.label == 2].mean() + 5


def test_deterministic_mode_restores_the_kernel_settings(tmp_path):
    before = torch.backends.mkldnn.enabled
    Trainer(_config(training={"deterministic": True}), tmp_path, TRAIN, VAL).fit(stop_step=1)
    assert torch.backends.mkldnn.enabled == before


def test_a_nan_validation_metric_is_logged_and_written_as_empty(tmp_path, monkeypatch, caplog):
    trainer = Trainer(_config(), tmp_path, TRAIN, VAL)
    real = trainer.validate

    def nan_dice():
        return {**real(), "val_dice": float("nan"), "val_loss": float("inf")}

    monkeypatch.setattr(trainer, "validate", nan_dice)
    state = trainer.fit()  # two epochs, both validated
    assert state.step == 4 and state.best_dice is None and state.stale_validations == 2
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert [row["val_dice"] for row in rows] == [None, None]
    assert "not finite" in caplog.text


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step()`")
def test_non_finite_gradients_skip_the_update(tmp_path):
    trainer = Trainer(_config(), tmp_path, TRAIN, VAL)
    before = _state(trainer)

    def poison(grad):
        return torch.full_like(grad, float("nan"))

    handle = trainer.network.head.weight.register_hook(poison)
    images, labels = next(iter(trainer._loader(0, 1)))
    trainer._train_step(images, labels)
    handle.remove()
    assert trainer.state.skipped_steps == 1
    for name, value in trainer.network.state_dict().items():
        assert torch.equal(value, before[name]), name
