"""Training loop: trainer, checkpoints, schedules, DDP helpers, progress and learning curves."""

from Training.loop.checkpoint import load_checkpoint, save_checkpoint
from Training.loop.run import default_run_dir, prepare_data, run_config, run_training
from Training.loop.trainer import BEST, LAST, Trainer, TrainState

__all__ = [
    "BEST",
    "LAST",
    "TrainState",
    "Trainer",
    "default_run_dir",
    "load_checkpoint",
    "prepare_data",
    "run_config",
    "run_training",
    "save_checkpoint",
]
