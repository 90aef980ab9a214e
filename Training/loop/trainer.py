"""The training loop: optimisation steps, epoch-end validation, checkpoints, exact resume.

An epoch is ``training.steps_per_epoch`` optimizer steps. After each epoch the loop (every
``validation.every`` epochs, and after the last) validates whole volumes with the engine's
``sliding_window_inference`` (``output="labels"``, the code the modules run) and
``compute_metrics`` per class, plus a validation loss on fixed patches; then it appends a row
to the history, writes ``metrics.csv/json`` and ``curves.png``, saves the ``last`` checkpoint
and, when the mean validation Dice improved, the ``best`` one.

Randomness is a pure function of ``(training.seed, step, rank)``: patches come from
``PatchDataset`` (sample index -> generator) and the torch generator (dropout) is reseeded from
``(seed, step, rank)`` before every step. A checkpoint therefore needs only the step counter
besides model, optimizer, scheduler and scaler states, and training N steps straight equals N/2
steps, a checkpoint, and N/2 resumed steps, for any number of data workers: bit for bit with
``training.deterministic`` (oneDNN's CPU convolution gradients and cuDNN's autotuned kernels
otherwise round differently from run to run, so runs agree only up to float rounding).

Multi-process (DDP): each rank draws its own samples (``StepBatchSampler``), gradients are
averaged by ``DistributedDataParallel``, validation cases are split over the ranks and the
metrics gathered, so every rank takes the same decisions (schedule, early stopping); rank 0
writes the files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from Training.config import TrainConfig, config_from_dict
from Training.loop.checkpoint import load_checkpoint, save_checkpoint
from Training.loop.curves import plot_curves, write_history
from Training.loop.distributed import DistInfo, all_gather_objects, all_reduce_sum
from Training.loop.objectives import build_loss, training_target
from Training.loop.progress import Progress
from Training.loop.schedules import LRSchedule, build_optimizer
from Training.loop.scoring import labelled_metrics
from Training.sampling import (
    CaseSource,
    PatchDataset,
    PatchSampler,
    StepBatchSampler,
    TrainingCase,
    seed_worker,
)
from unetseg.engine.backends.torch_runner import TorchRunner
from unetseg.engine.device import select_device
from unetseg.engine.inference.precision import autocast, resolve_autocast
from unetseg.engine.inference.window_spec import WindowSpec
from unetseg.engine.network import UNet

logger = logging.getLogger(__name__)
#: Training's mixed-precision policy: bf16 where the hardware has it (no loss scaling).
TRAINING_AUTOCAST = {"cpu_bf16": True, "prefer_bf16": True}

CHECKPOINT_FORMAT = "unetseg-training-checkpoint"
LAST, BEST = "last.safetensors", "best.safetensors"
#: Config keys that may differ when resuming (they do not change the result).
RESUME_FREE_KEYS = (
    "data.root",
    "data.cache_dir",
    "training.workers",
    "training.device",
    "training.cache_cases",
    "training.cpu_threads",
    "training.deterministic",
)
#: Learning curves are redrawn at most this often during training (and at the end).
PLOT_INTERVAL_S = 60.0
_STEP_SEED_KEY = 0x57E9
_VAL_PATCH_KEY = 0x7A11


@dataclass
class TrainState:
    """Progress of a run (JSON-serialisable; stored in every checkpoint).

    ``history`` holds one row per finished epoch; ``epoch_loss`` / ``epoch_steps`` accumulate
    the current (unfinished) epoch.
    """

    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_dice: float | None = None
    best_epoch: int | None = None
    stale_validations: int = 0
    stopped_early: bool = False
    epoch_loss: float = 0.0
    epoch_steps: int = 0
    elapsed_s: float = 0.0
    skipped_steps: int = 0


def step_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the torch generator for optimizer step ``step`` of ``rank``."""
    sequence = np.random.SeedSequence([seed, _STEP_SEED_KEY, step, rank])
    return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))


def label_key(name: str) -> str:
    """Metric-column suffix for a label name (``right lung`` -> ``right_lung``)."""
    return re.sub(r"\W+", "_", name.strip().lower()).strip("_") or "label"


class Trainer:
    """Trains ``UNet(**config.model["network"])`` on prepared cases.

    Args:
        config: the validated training config.
        run_dir: run folder; rank 0 writes metrics, curves and ``checkpoints/`` there.
        train_cases, val_cases: prepared cases (``Training.sampling.CaseSource``).
        dist: this process's rank (default: single process).
        device: compute device (default: ``training.device``; CUDA ranks use ``LOCAL_RANK``).
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        train_cases: CaseSource,
        val_cases: CaseSource,
        *,
        dist: DistInfo | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.dist = dist or DistInfo()
        training = config.training
        if device is None:
            device = select_device(training.device)
            if device.type == "cuda" and self.dist.enabled:
                device = torch.device("cuda", self.dist.local_rank)
        self.device = torch.device(device)
        self.amp_dtype, note = resolve_autocast(self.device, training.amp, **TRAINING_AUTOCAST)
        if note and self.dist.is_main:
            logger.info(note)

        torch.manual_seed(training.seed)  # identical initial weights on every rank
        self.network = UNet(**config.model["network"]).to(self.device)
        self.model: torch.nn.Module = self.network
        if self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.network, device_ids=device_ids)
        self.optimizer = build_optimizer(self.network.parameters(), training.optimizer)
        self.schedule = LRSchedule(self.optimizer, training.schedule, training.total_steps)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        network = config.model["network"]
        self.loss_fn = build_loss(training.loss, config.activation, network["deep_supervision"])
        self.out_channels = int(network["out_channels"])
        self.labels = [(label.value, label_key(label.name)) for label in config.labels]
        #: Validation's window (the training patch) and overlap.
        self.window = WindowSpec.from_manifest(config.model, config.patch_size).with_overlap(
            training.validation.overlap
        )

        names = [spec.name for spec in config.inputs]
        sampler = PatchSampler(
            config.patch_size, config.spatial_dims, config.sampling, config.augmentation, names
        )
        known_channels = self.out_channels if config.data.partial else None
        self.dataset = PatchDataset(
            train_cases, sampler, training.seed, training.cache_cases, known_channels
        )
        self.val_cases = val_cases
        self.val_sampler = PatchSampler(
            config.patch_size, config.spatial_dims, config.sampling, None
        )
        self.state = TrainState()
        self.stop_requested = False
        self._step_lr = self.schedule.lr  # learning rate of the latest step
        self._plotted = (0, -float("inf"))  # (epochs plotted, when)
        self._began = time.perf_counter()

    # ------------------------------------------------------------------ checkpoints

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def checkpoint_tree(self) -> dict[str, Any]:
        """Everything needed to resume exactly (see module docstring)."""
        self.state.elapsed_s = self._elapsed()
        return {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "config": self.config.to_dict(),
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "state": dataclasses.asdict(self.state),
        }

    def save(self, name: str) -> Path | None:
        """Write checkpoint ``name`` (rank 0 only; returns its path there)."""
        if not self.dist.is_main:
            return None
        return save_checkpoint(self.checkpoint_dir / name, self.checkpoint_tree())

    def load(self, path: str | Path) -> None:
        """Restore a checkpoint written by ``save`` (same config up to ``RESUME_FREE_KEYS``)."""
        tree = load_checkpoint(path)  # on the CPU; load_state_dict moves tensors
        if tree.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a training checkpoint")
        changed = config_differences(_current_form(tree["config"]), self.config.to_dict())
        if changed:
            raise ValueError(
                f"cannot resume from {path}: the config differs in {changed} (exact resume "
                f"needs the run's own config)"
            )
        self.network.load_state_dict(tree["model"])
        self.optimizer.load_state_dict(tree["optimizer"])
        self.schedule.load_state_dict(tree["schedule"])
        if self.scaler is not None and tree["scaler"]:
            self.scaler.load_state_dict(tree["scaler"])
        self.state = TrainState(**tree["state"])
        self._began = time.perf_counter() - self.state.elapsed_s

    # ------------------------------------------------------------------ training

    def fit(self, stop_step: int | None = None, progress: Progress | None = None) -> TrainState:
        """Train until ``training.epochs`` are done, early stopping, ``stop_step`` (a step
        count, e.g. to interrupt in tests) or ``request_stop``; saves ``last`` on the way out."""
        training = self.config.training
        total = training.total_steps
        stop = total if stop_step is None else min(total, int(stop_step))
        if self.state.stopped_early or self.state.step >= stop:
            return self.state
        with self._kernels():
            self._fit_steps(stop, total, progress)
        self._plot(force=True)
        return self.state

    def _fit_steps(self, stop: int, total: int, progress: Progress | None) -> None:
        training = self.config.training
        loader = self._loader(self.state.step, stop)
        for batch in loader:
            loss = self._train_step(*batch)
            self.state.step += 1
            if math.isfinite(loss):
                self.state.epoch_loss += loss
                self.state.epoch_steps += 1
            if progress is not None:
                progress.update(self.state.step, loss)
            if self.state.step % training.steps_per_epoch == 0 or self.state.step == total:
                self._end_epoch()
                if self.state.stopped_early:
                    break
            if self._should_stop():
                break
        if self.state.step % training.steps_per_epoch and self.state.step != total:
            self._sync_buffers()
            self.save(LAST)  # interrupted mid-epoch

    def request_stop(self) -> None:
        """Stop after the current step (e.g. from a SIGINT handler), saving ``last``."""
        self.stop_requested = True

    def _kernels(self) -> contextlib.AbstractContextManager[None]:
        """Reproducible kernels inside the block when ``training.deterministic`` (see module
        docstring); the process-wide settings are restored afterwards."""
        if self.config.training.deterministic:
            return _deterministic_kernels()
        return contextlib.nullcontext()

    def _should_stop(self) -> bool:
        if not self.dist.enabled:
            return self.stop_requested
        return all_reduce_sum(self.dist, [float(self.stop_requested)])[0] > 0

    def _loader(self, start: int, stop: int) -> DataLoader:
        training = self.config.training
        batches = StepBatchSampler(
            training.batch_size, start, stop, self.dist.rank, self.dist.world_size
        )
        workers = training.workers
        return DataLoader(
            self.dataset,
            batch_sampler=batches,
            num_workers=workers,
            worker_init_fn=seed_worker if workers else None,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers else None,
            persistent_workers=False,
        )

    def _loss(self, outputs: Any, target: torch.Tensor, known: torch.Tensor | None) -> torch.Tensor:
        if known is None:
            return self.loss_fn(outputs, target)
        return self.loss_fn(outputs, target, known.to(self.device, non_blocking=True))

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        return autocast(self.device, self.amp_dtype)

    def _train_step(
        self, images: torch.Tensor, labels: torch.Tensor, known: torch.Tensor | None = None
    ) -> float:
        """One optimizer step on a batch: images ``(N, C, *P)``, labels ``(N, *P)`` and, for
        partial labels, ``known`` ``(N, R, *P)`` (the loss ignores entries that are 0)."""
        training = self.config.training
        torch.manual_seed(step_seed(training.seed, self.state.step, self.dist.rank))
        images = images.to(self.device, non_blocking=True)
        target = training_target(
            labels.to(self.device, non_blocking=True), self.config.activation, self.out_channels
        )
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            outputs = self.model(images)
        loss = self._loss(outputs, target, known)
        value = float(loss.detach())
        if not math.isfinite(value) and self.scaler is None:
            raise FloatingPointError(
                f"training loss is {value} at step {self.state.step}: lower the learning rate "
                f"or set training.grad_clip"
            )
        parameters = self.network.parameters()
        clip = training.grad_clip
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if clip is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(parameters, clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            norm = None if clip is None else torch.nn.utils.clip_grad_norm_(parameters, clip)
            if norm is not None and not torch.isfinite(norm):
                # A finite loss with non-finite gradients: skip the update, as GradScaler does.
                self.state.skipped_steps += 1
                logger.warning(
                    "step %d: gradient norm is %s, update skipped", self.state.step, norm
                )
            else:
                self.optimizer.step()
        self._step_lr = self.schedule.lr
        self.schedule.after_step()
        return value

    def _end_epoch(self) -> None:
        training = self.config.training
        state = self.state
        self._sync_buffers()
        epoch = -(-state.step // training.steps_per_epoch)
        loss_sum, steps = all_reduce_sum(self.dist, [state.epoch_loss, float(state.epoch_steps)])
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": state.step,
            "lr": self._step_lr,
            "train_loss": loss_sum / steps if steps else None,
        }
        state.epoch_loss, state.epoch_steps = 0.0, 0
        validate = epoch % training.validation.every == 0 or state.step == training.total_steps
        improved = False
        if validate and len(self.val_cases):
            row.update(self.validate())
            dice = row["val_dice"]
            stopping = training.early_stopping
            finite = math.isfinite(dice)  # a NaN Dice is never "best" and crashes nothing
            if finite and (state.best_dice is None or dice > state.best_dice + stopping.min_delta):
                state.best_dice, state.best_epoch, state.stale_validations = dice, epoch, 0
                improved = True
            else:
                state.stale_validations += 1
            if finite:
                self.schedule.after_validation(dice)
            if stopping.patience is not None and state.stale_validations >= stopping.patience:
                state.stopped_early = True
        row["time_s"] = round(self._elapsed(), 2)
        state.history.append(row)
        if self.dist.is_main:
            self._report(row, improved)

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics), as DDP does before each
        forward pass, so that validation and the saved model see the same network."""
        if self.dist.enabled:
            for buffer in self.network.buffers():
                torch.distributed.broadcast(buffer, 0)

    def _report(self, row: dict[str, Any], improved: bool) -> None:
        self.save(LAST)
        if improved:
            self.save(BEST)
        write_history(self.run_dir, self.state.history)
        self._plot(force=False)
        text = " ".join(
            f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
            for key, value in row.items()
            if key in ("epoch", "step", "lr", "train_loss", "val_loss", "val_dice")
        )
        logger.info("%s%s", text, " (best)" if improved else "")
        if self.state.stopped_early:
            logger.info(
                "early stopping: no validation Dice gain for %d validations",
                self.state.stale_validations,
            )

    def _plot(self, force: bool) -> None:
        """Redraw ``curves.png`` (rank 0) when the history grew, at most every
        ``PLOT_INTERVAL_S`` seconds unless ``force``."""
        epochs = len(self.state.history)
        now = time.perf_counter()
        if not self.dist.is_main or epochs == self._plotted[0]:
            return
        if force or now - self._plotted[1] >= PLOT_INTERVAL_S:
            plot_curves(self.state.history, self.run_dir / "curves.png")
            self._plotted = (epochs, now)

    def _elapsed(self) -> float:
        return time.perf_counter() - self._began

    # ------------------------------------------------------------------ validation

    def validate(self) -> dict[str, float]:
        """Whole-volume validation; returns ``val_loss``, ``val_dice``, ``val_precision``,
        ``val_recall`` (means over cases of the per-label means) and per-label
        ``dice_<name>`` / ``precision_<name>`` / ``recall_<name>``; with ``data.sources`` also
        ``val_dice_<source>`` and ``<source>_dice_<name>``. A case is scored only on the regions
        its source labels, and only on their known voxels (``case_metrics``)."""
        limit = self.config.training.validation.max_cases
        indices = list(range(len(self.val_cases)))[:limit]
        mine = indices[self.dist.rank :: self.dist.world_size]
        with self._kernels():
            results = [self._validate_case(i) for i in mine]
        gathered = sorted(
            (item for part in all_gather_objects(self.dist, results) for item in part),
            key=lambda item: item[0],
        )
        scored = [(item[1], item[2]) for item in gathered if item[2] is not None]
        loss_sum = sum(item[3] for item in gathered)
        loss_count = sum(item[4] for item in gathered)
        row: dict[str, float] = {}
        if loss_count:
            row["val_loss"] = loss_sum / loss_count
        columns = (("dice", "dice"), ("precision", "precision"), ("recall", "sensitivity"))
        for column, name in columns:
            row[f"val_{column}"] = _mean([m["mean"][name] for _, m in scored])
        for value, key in self.labels:
            for column, name in columns:
                values = [m[str(value)][name] for _, m in scored if str(value) in m]
                if values:
                    row[f"{column}_{key}"] = _mean(values)
        for source in self.config.data.sources:
            mine_scored = [m for name, m in scored if name == source.name]
            if mine_scored:
                row[f"val_dice_{source.name}"] = _mean([m["mean"]["dice"] for m in mine_scored])
            for value, key in self.labels:
                values = [m[str(value)]["dice"] for m in mine_scored if str(value) in m]
                if values:
                    row[f"{source.name}_dice_{key}"] = _mean(values)
        return row

    def _validate_case(
        self, index: int
    ) -> tuple[str, str | None, dict[str, Any] | None, float, int]:
        case = self.val_cases.load(index)
        prediction = self.predict(case)
        settings = self.config.training.validation
        metrics = case_metrics(prediction, case, self.config, settings.distances)
        loss_sum, count = self._patch_loss(case, index, settings.loss_patches)
        return case.case_id, case.source, metrics, loss_sum, count

    def predict(self, case: TrainingCase) -> np.ndarray:
        """Label map ``(K, J, I)`` of a prepared case by sliding-window inference (2D models:
        slice by slice)."""
        image = torch.from_numpy(np.array(case.image, dtype=np.float32))
        batch = image[None] if self.config.spatial_dims == 3 else image.permute(1, 0, 2, 3)
        batch_size = self.config.training.validation.sw_batch_size
        # The deployment runner, in the training's autocast dtype.
        runner = TorchRunner(self.network, self.device, self.amp_dtype, batch_size)
        with _evaluating(self.network):
            labels = self.window.infer(
                batch, runner, sw_batch_size=batch_size, device=self.device, amp="off"
            )
        return labels.cpu().numpy().reshape(case.label.shape)

    def _patch_loss(self, case: TrainingCase, index: int, count: int) -> tuple[float, int]:
        """Summed loss over ``count`` fixed, unaugmented patches of a validation case."""
        if count == 0:
            return 0.0, 0
        seed = self.config.training.seed
        samples = [
            self.val_sampler.draw(case, np.random.default_rng([seed, _VAL_PATCH_KEY, index, j]))
            for j in range(count)
        ]
        images = torch.stack([s[0] for s in samples]).to(self.device)
        labels = torch.stack([s[1] for s in samples]).to(self.device)
        target = training_target(labels, self.config.activation, self.out_channels)
        known = torch.stack([s[2] for s in samples]) if case.known is not None else None
        with torch.no_grad(), self._autocast(), _evaluating(self.network):
            logits = self.network(images)
            loss = self._loss(logits, target, known)
        return float(loss) * count, count


def case_metrics(
    prediction: np.ndarray, case: TrainingCase, config: TrainConfig, distances: bool
) -> dict[str, Any] | None:
    """Metrics of a validation case on what its source labels (``labelled_metrics``); None
    when it scores no region."""
    return labelled_metrics(
        prediction,
        np.asarray(case.label),
        [label.value for label in config.labels],
        case.spacing,
        nested=config.activation == "sigmoid",
        distances=distances,
        evaluated=config.data.source(case.source).evaluated_regions(),
        known=case.known,
    )


def _mean(values: list[float]) -> float:
    """Mean of ``values``; NaN for none (a validation that scored no case)."""
    return float(np.mean(values)) if values else float("nan")


@contextlib.contextmanager
def _deterministic_kernels() -> Iterator[None]:
    """PyTorch's native CPU convolutions instead of oneDNN's, deterministic cuDNN."""
    backends = torch.backends
    saved = (backends.mkldnn.enabled, backends.cudnn.deterministic, backends.cudnn.benchmark)
    backends.mkldnn.enabled = False
    backends.cudnn.deterministic, backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        backends.mkldnn.enabled, backends.cudnn.deterministic, backends.cudnn.benchmark = saved


@contextlib.contextmanager
def _evaluating(network: torch.nn.Module) -> Iterator[None]:
    """``network`` in eval mode inside the block, its previous mode afterwards."""
    was_training = network.training
    network.eval()
    try:
        yield
    finally:
        network.train(was_training)


def _current_form(stored: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config as this version writes it: options added since the run started
    take their defaults, so that they do not count as changes. Unparsable: as stored."""
    try:
        return config_from_dict(stored).to_dict()
    except ValueError:  # ConfigError is a ValueError
        return stored


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts, ignoring
    ``RESUME_FREE_KEYS``."""
    keys = sorted(set(old) | set(new))
    changed = []
    for key in keys:
        dotted = f"{prefix}.{key}" if prefix else key
        if dotted in RESUME_FREE_KEYS:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += config_differences(a, b, dotted)
        elif a != b:
            changed.append(dotted)
    return changed
