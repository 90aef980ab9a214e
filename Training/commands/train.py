"""``python -m Training train``: train a model from a YAML config (or resume a run)."""

from __future__ import annotations

import argparse

HELP = "train a segmentation model from a YAML config, or resume a run folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="training config (YAML); optional with --resume (the run's own)"
    )
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in this folder")
    parser.add_argument(
        "--out", metavar="RUN_DIR", help="run folder (default: runs/<name>-<date>-<time>)"
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="local processes for data-parallel training (DDP; gloo on CPU, NCCL on GPUs); "
        "for several nodes launch with torchrun instead",
    )
    parser.add_argument("--data-root", metavar="DIR", help="override data.root (dataset folder)")
    parser.add_argument("--device", help="override training.device (auto, cpu, cuda, cuda:N)")
    parser.add_argument("--workers", type=int, help="override training.workers")
    parser.add_argument(
        "--stop-at-step",
        type=int,
        metavar="N",
        help="stop after N steps in total, keeping the 'last' checkpoint for --resume",
    )


def run(args: argparse.Namespace) -> int:
    """Train or resume. Bad configs, data or run folders print one line and give 2 (other
    errors go to ``Training.cli``'s policy); a run stopped by SIGINT/SIGTERM saves ``last``
    and gives 130."""
    import dataclasses
    import sys
    from pathlib import Path

    from Training.config import ConfigError, load_config
    from Training.data import DatasetError
    from Training.loop import default_run_dir, run_config, run_training
    from Training.loop.distributed import env_world_size

    try:
        if args.resume:
            run_dir = Path(args.resume)
            if args.out and Path(args.out).resolve() != run_dir.resolve():
                raise ConfigError("", "--out and --resume name different folders")
            config = load_config(args.config) if args.config else run_config(run_dir)
        elif args.config:
            config = load_config(args.config)
            if not args.out and env_world_size() > 1:
                raise ConfigError("", "under torchrun give --out (the same folder for every rank)")
            run_dir = Path(args.out) if args.out else default_run_dir(config)
        else:
            raise ConfigError("", "give --config CFG.yaml (or --resume RUN_DIR)")
        overrides = {}
        if args.device:
            overrides["device"] = args.device
        if args.workers is not None:
            overrides["workers"] = args.workers
        if overrides:
            training = dataclasses.replace(config.training, **overrides)
            training.check("training")
            config = dataclasses.replace(config, training=training)
        if args.data_root:
            root = str(Path(args.data_root).expanduser().absolute())
            config = dataclasses.replace(config, data=dataclasses.replace(config.data, root=root))
        summary = run_training(
            config,
            run_dir,
            resume=bool(args.resume),
            nproc=args.nproc,
            stop_step=args.stop_at_step,
        )
    except (ConfigError, DatasetError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    best = summary["best_dice"]
    print(
        f"{summary['steps']}/{summary['total_steps']} steps in {summary['elapsed_s']:.0f} s; "
        f"best validation Dice {'n/a' if best is None else f'{best:.4f}'}; run folder {run_dir}"
    )
    if summary.get("interrupted"):  # SIGINT/SIGTERM: 'last' was saved after the step
        print(f"interrupted: continue with --resume {run_dir}", file=sys.stderr)
        return 130
    return 0
