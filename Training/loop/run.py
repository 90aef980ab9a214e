"""A training run from a config: run folder, data preparation, single- or multi-process training.

Run folder ``<run>/``:

- ``config.yaml``: the resolved config (absolute paths, every default written out);
- ``split.json``: case ids of the train / val / test parts;
- ``train.log``; ``metrics.csv``, ``metrics.json``, ``curves.png``; ``summary.json`` at the end;
- ``checkpoints/last.safetensors`` and ``checkpoints/best.safetensors`` (with the versions they
  replaced, ``*.previous.safetensors``: ``--resume`` takes the newest intact one);
- ``data/`` (generated data when ``data.root`` is omitted), ``prepared/`` (prepared cases,
  unless ``data.cache_dir`` is set).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from Training.config import ConfigError, TrainConfig, load_config
from Training.loop.cases import prepare_cases, read_records, split_records
from Training.loop.checkpoint import CheckpointError, resume_candidates
from Training.loop.distributed import (
    barrier,
    env_rank,
    env_world_size,
    init_from_env,
    shutdown,
    spawn,
)
from Training.loop.progress import Progress, ProgressLogHandler
from Training.loop.trainer import BEST, LAST, Trainer, config_differences
from Training.sampling import DiskCases
from unetseg.atomic import write_atomically
from unetseg.engine.device import describe_device, select_device
from unetseg.exits import stop_signal_handler

logger = logging.getLogger("Training")
LOGGERS = ("Training", "unetseg")


def default_run_dir(config: TrainConfig) -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>`` under the current folder."""
    return Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_config(run_dir: str | Path) -> TrainConfig:
    """The config stored in a run folder (for ``--resume``)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run folder (no config.yaml)")
    return load_config(path)


def run_training(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    nproc: int = 1,
    stop_step: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) ``config`` in ``run_dir``; returns the run summary.

    ``nproc > 1`` spawns that many local DDP processes; under ``torchrun`` every launched
    process calls this with ``nproc = 1``. ``stop_step`` ends the run early after that many
    steps in total (``last`` checkpoint kept, so ``resume`` continues it).
    """
    run_dir = Path(run_dir)
    if env_rank() == 0:
        _check_run_dir(config, run_dir, resume)
    if nproc > 1:
        if env_world_size() > 1:
            raise RuntimeError("use either torchrun or --nproc, not both")
        with _logging(run_dir, main=True, progress=None):
            prepare_data(config, run_dir)
        with _ignore_sigint():
            spawn(_train_process, nproc, config, run_dir, resume, stop_step)
    else:
        _train_process(config, run_dir, resume, stop_step)
    return json.loads((run_dir / "summary.json").read_text())


def prepare_data(config: TrainConfig, run_dir: Path) -> tuple[DiskCases, DiskCases]:
    """Index, split and prepare the data (prepared cases are reused); writes ``split.json``."""
    records = read_records(config.data, run_dir)
    split = split_records(records, config.data)
    cache_dir = Path(config.data.cache_dir) if config.data.cache_dir else run_dir / "prepared"
    train = prepare_cases(split.train, config, cache_dir)
    val = prepare_cases(split.val, config, cache_dir)
    text = json.dumps(split.case_ids(), indent=1)
    if not (run_dir / "split.json").is_file() or (run_dir / "split.json").read_text() != text:
        write_atomically(run_dir / "split.json", text.encode())
    return DiskCases(train), DiskCases(val)


def _check_run_dir(config: TrainConfig, run_dir: Path, resume: bool) -> None:
    config_path = run_dir / "config.yaml"
    last = run_dir / "checkpoints" / LAST
    if resume:
        if not resume_candidates(last.parent, (LAST, BEST)):
            raise FileNotFoundError(f"nothing to resume in {run_dir}: {last} not found")
        changed = config_differences(run_config(run_dir).to_dict(), config.to_dict())
        if changed:
            raise ConfigError("", f"the config differs from {config_path} in {changed}")
        return
    if last.is_file():
        raise FileExistsError(f"{run_dir} already holds a run; use --resume or another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(config_path, config.to_yaml().encode())


def _train_process(config: TrainConfig, run_dir: Path, resume: bool, stop_step: int | None) -> None:
    """One training process (rank): data, trainer, optional resume, fit, summary."""
    device = select_device(config.training.device)
    if device.type == "cpu" and config.training.cpu_threads is not None:
        torch.set_num_threads(config.training.cpu_threads)
    info = init_from_env(device.type)
    try:
        progress = Progress(
            config.training.total_steps, steps_per_epoch=config.training.steps_per_epoch
        )
        with _logging(run_dir, main=info.is_main, progress=progress):
            if info.is_main:
                logger.info("run folder %s; %s", run_dir, describe_device(device))
                train, val = prepare_data(config, run_dir)
            barrier(info)  # rank 0 has generated and prepared the data
            if not info.is_main:
                train, val = prepare_data(config, run_dir)
            if info.is_main:
                logger.info("%d training and %d validation cases", len(train), len(val))
            trainer = Trainer(config, run_dir, train, val, dist=info)
            if resume:
                _resume(trainer)
            progress.reset(trainer.state.step)
            with _graceful_sigint(trainer):
                trainer.fit(stop_step, progress if info.is_main else None)
            if info.is_main:
                progress.close()
                _write_summary(run_dir, trainer)
            barrier(info)  # every rank returns the summary rank 0 wrote
    finally:
        shutdown()


def _resume(trainer: Trainer) -> None:
    """Load the newest intact checkpoint of the run (``last``, ``best`` or the versions they
    replaced); damaged ones are skipped with a warning.

    Raises:
        CheckpointError: none of them is intact.
    """
    problems = []
    for path in resume_candidates(trainer.checkpoint_dir, (LAST, BEST)):
        try:
            trainer.load(path)
        except CheckpointError as error:
            logger.warning("%s; trying an older checkpoint", error)
            problems.append(str(error))
            continue
        logger.info("resumed at step %d from %s", trainer.state.step, path.name)
        return
    raise CheckpointError(f"no intact checkpoint to resume from: {'; '.join(problems)}")


def _write_summary(run_dir: Path, trainer: Trainer) -> None:
    state = trainer.state
    summary = {
        "run_dir": str(run_dir),
        "steps": state.step,
        "total_steps": trainer.config.training.total_steps,
        "epochs": len(state.history),
        "best_dice": state.best_dice,
        "best_epoch": state.best_epoch,
        "stopped_early": state.stopped_early,
        "interrupted": trainer.stop_requested,
        "final_train_loss": state.history[-1]["train_loss"] if state.history else None,
        "elapsed_s": round(state.elapsed_s, 2),
    }
    write_atomically(run_dir / "summary.json", json.dumps(summary, indent=1).encode())
    if state.best_dice is not None:
        logger.info(
            "best validation Dice %.4f (epoch %s); checkpoints in %s",
            state.best_dice,
            state.best_epoch,
            run_dir / "checkpoints",
        )


@contextlib.contextmanager
def _logging(run_dir: Path, main: bool, progress: Progress | None) -> Iterator[None]:
    """Rank 0: INFO to ``train.log`` and the console (around the progress bar); other ranks:
    warnings to the console."""
    handlers: list[logging.Handler] = [ProgressLogHandler(progress)]
    handlers[0].setLevel(logging.INFO if main else logging.WARNING)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(run_dir / "train.log", encoding="utf-8"))
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    previous = {}
    for handler in handlers:
        handler.setFormatter(formatter)
    for name in LOGGERS:
        target = logging.getLogger(name)
        previous[name] = target.level
        target.setLevel(logging.INFO)
        for handler in handlers:
            target.addHandler(handler)
    try:
        yield
    finally:
        for name in LOGGERS:
            target = logging.getLogger(name)
            target.setLevel(previous[name])
            for handler in handlers:
                target.removeHandler(handler)
        for handler in handlers:
            handler.close()


@contextlib.contextmanager
def _graceful_sigint(trainer: Trainer) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM): finish the step, save ``last`` and stop (the summary says
    ``"interrupted": true``); second: abort."""

    def handler(signum: int, frame: Any) -> None:
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.request_stop()
        logger.warning("stopping after this step (checkpoint 'last'); Ctrl-C again to abort")

    with stop_signal_handler(handler):
        yield


@contextlib.contextmanager
def _ignore_sigint() -> Iterator[None]:
    """The parent of spawned ranks leaves Ctrl-C to them (they stop gracefully)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
