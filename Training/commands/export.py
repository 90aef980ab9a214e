"""``python -m Training export``: a model package from a training run.

The package is built from a checkpoint of the run folder (``checkpoints/best.safetensors`` or
``last.safetensors``, written by ``Training.loop``): its weights and the resolved config stored
in it, whose ``model`` section holds the manifest fields. Added on export: ``training``
provenance (datasets, config hash, steps, dates, the validation metrics of the checkpoint) and
``weights`` (file and SHA-256). Deep-supervision heads, used in training only, are left out
(``network.deep_supervision: false``; the outputs are unchanged). The manifest is validated by
the engine and the package is written atomically, so ``python -m unetseg segment --model
MODEL_DIR`` and the Slicer modules load it as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from Training.config import TrainConfig
    from unetseg.engine.package import ModelPackage

HELP = "export a training run's checkpoint as a model package (model.json + safetensors)"
CHECKPOINTS = ("best", "last")
#: Validation metrics of the training history copied into ``training.metrics``.
METRIC_NAMES = {
    "val_dice": "dice_mean",
    "val_precision": "precision_mean",
    "val_recall": "recall_mean",
    "val_loss": "val_loss",
}
PER_LABEL_PREFIXES = ("dice_", "precision_", "recall_")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # dest run_dir: ``args.run`` is the command function (Training.cli).
    parser.add_argument(
        "--run", dest="run_dir", required=True, metavar="RUN_DIR", help="training run folder"
    )
    parser.add_argument("--out", required=True, metavar="MODEL_DIR", help="package folder")
    parser.add_argument(
        "--checkpoint",
        choices=CHECKPOINTS,
        default="best",
        help="best validation Dice (default) or the last step",
    )
    parser.add_argument("--version", help="model version (default: the config's model.version)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a different package in MODEL_DIR"
    )


def run(args: argparse.Namespace) -> int:
    import sys

    try:
        package = export_run(
            args.run_dir,
            args.out,
            checkpoint=args.checkpoint,
            version=args.version,
            overwrite=args.overwrite,
        )
    except (ValueError, OSError) as error:  # ConfigError, ModelPackageError are ValueErrors
        print(f"export: error: {error}", file=sys.stderr)
        return 2
    dice = package.manifest["training"]["metrics"].get("dice_mean")
    quality = f"validation Dice {dice:.4f}" if dice is not None else "no validation metrics"
    print(f"exported {package.id} {package.version} ({quality}) to {package.path}")
    return 0


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str = "best",
    version: str | None = None,
    overwrite: bool = False,
) -> ModelPackage:
    """Write the model package of a run's checkpoint to ``out_dir`` and return it loaded.

    Args:
        run_dir: training run folder.
        out_dir: package folder (created; an identical package there is kept).
        checkpoint: ``best`` or ``last``.
        version: manifest version (semantic version), default the config's.
        overwrite: replace a different package in ``out_dir``.

    Raises:
        FileNotFoundError: no such run or checkpoint.
        ValueError: not a training checkpoint, invalid config, or a manifest the engine refuses
            (``ModelPackageError``).
    """
    import copy

    from Training.config import config_from_dict
    from Training.loop.checkpoint import load_checkpoint
    from Training.loop.trainer import BEST, CHECKPOINT_FORMAT, LAST
    from unetseg.engine.network import UNet
    from unetseg.engine.package import save_model_package

    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")
    run_dir = Path(run_dir)
    path = run_dir / "checkpoints" / (BEST if checkpoint == "best" else LAST)
    if not path.is_file():
        hint = ""
        if checkpoint == "best" and (run_dir / "checkpoints" / LAST).is_file():
            hint = " (no validation has run yet: use --checkpoint last)"
        raise FileNotFoundError(f"checkpoint {path} not found{hint}")
    tree = load_checkpoint(path)  # CheckpointError (a ValueError) when damaged
    if tree.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a UNetSeg training checkpoint")
    config = config_from_dict(tree["config"])

    trained = UNet(**config.model["network"])
    trained.load_state_dict(tree["model"])
    network = UNet(**{**trained.config, "deep_supervision": False})
    state = {k: v for k, v in tree["model"].items() if not k.startswith("deep_heads.")}
    network.load_state_dict(state)

    manifest = copy.deepcopy(config.model)
    if version is not None:
        manifest["version"] = version
    manifest["training"] = provenance(config, tree, run_dir, checkpoint, path)
    return save_model_package(out_dir, manifest, network, overwrite=overwrite)


def provenance(
    config: TrainConfig,
    tree: dict[str, Any],
    run_dir: Path,
    checkpoint: str,
    path: Path,
) -> dict[str, Any]:
    """The manifest's ``training`` section for a checkpoint ``tree`` of ``run_dir``."""
    import datetime
    import hashlib
    import json
    import math

    from Training.loop.trainer import RESUME_FREE_KEYS

    state = tree["state"]
    row = _validation_row(state)
    metrics: dict[str, float] = {}
    if row is not None:
        for key, value in row.items():
            name = METRIC_NAMES.get(key, key if key.startswith(PER_LABEL_PREFIXES) else None)
            if name is not None and isinstance(value, int | float) and math.isfinite(value):
                metrics[name] = float(value)

    settings = config.to_dict()
    for dotted in RESUME_FREE_KEYS:  # machine-specific keys that do not change the result
        section, _, key = dotted.partition(".")
        settings.get(section, {}).pop(key, None)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

    split_path = run_dir / "split.json"
    split = json.loads(split_path.read_text()) if split_path.is_file() else {}
    saved = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.UTC)
    steps = int(state["step"])
    return {
        "datasets": _dataset_names(config),
        "provenance": (
            f"Trained with UNetSeg Training (python -m Training train), config "
            f"{config.name!r}, run {run_dir.name}; {checkpoint} checkpoint at step {steps} of "
            f"{config.training.total_steps}."
        ),
        "metrics": metrics,
        "config_name": config.name,
        "config_sha256": digest,
        "checkpoint": checkpoint,
        "steps": steps,
        "epochs": len(state["history"]),
        "best_epoch": state.get("best_epoch"),
        "cases": {part: len(ids) for part, ids in split.items()},
        "seed": config.training.seed,
        "date": saved.isoformat(timespec="seconds"),
        "exported": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _validation_row(state: dict[str, Any]) -> dict[str, Any] | None:
    """History row of the checkpoint's step, if a validation ran at that step."""
    for row in reversed(state["history"]):
        if row.get("step") == state["step"] and row.get("val_dice") is not None:
            return row
    return None


def _dataset_names(config: TrainConfig) -> list[str]:
    data = config.data
    if data.synth is not None and data.root is None:
        synth = data.synth
        return [
            f"synthetic {synth.task} phantoms (Training.synth, {synth.cases} cases, "
            f"seed {synth.seed})"
        ]
    return [
        f"{Path(source.root or '').name} ({source.reader} layout"
        f"{', partial labels' if source.partial else ''})"
        for source in data.source_list()
    ]
