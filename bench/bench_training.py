"""Training throughput: UNetSeg's loop (``Training.loop.Trainer``) against an equivalent MONAI loop.

    python bench/bench_training.py [--cases 8] [--size 96] [--patch 64] [--batch 2] [--workers 2]
                                   [--windows 5] [--window-steps 4] [--warmup 3] [--quick]

Both loops train the same network (UNetSeg's ``UNet``, residual, instance norm, filters
``--filters``, no deep supervision) from the same seed, on the same prepared cases (synthetic
chest CTs from ``Training.synth``, ``--size``^3 voxels on the model grid, normalised by the
engine's preprocessing), with the same patch, batch, loss (Dice + cross-entropy, background
excluded from the Dice), AdamW, gradient clipping at 12, precision (the trainer's ``amp: auto``
choice) and data-loading worker count. Augmentation, per patch:

- ours (the config below): foreground-centred patches with probability 0.33, flips (p 0.5 per
  axis), rotation +-15 deg (p 0.2), zoom 0.8-1.2 (p 0.2), shift 10 % (p 0.2), gamma 0.7-1.5
  (p 0.3), Gaussian noise (p 0.15, std 0.1 x channel std); patches memory-mapped from disk;
- MONAI: ``RandCropByPosNegLabeld`` (pos 1, neg 2), ``RandFlipd`` per axis (p 0.5),
  ``RandAffined`` (rotation +-15 deg, scale 0.8-1.2, translation 10 %, p 0.49 = the chance that
  one of our three spatial transforms fires), ``RandAdjustContrastd`` (gamma 0.7-1.5, p 0.3),
  ``RandGaussianNoised`` (p 0.15, std 0.1), a ``monai.data.Dataset`` over the cases in memory and
  ``monai.data.DataLoader`` (its defaults otherwise); batches enter the network as plain tensors.

Each run of a loop is a subprocess; the loops alternate for ``--rounds`` rounds. After
``--warmup`` steps, ``--windows`` windows of ``--window-steps`` optimizer steps are timed;
throughput = patches / window time, median over the windows of all runs of the loop. Data wait =
time blocked in ``next(iterator)`` of the loader / total time of the timed windows (ours: the
trainer's own loader, wrapped). ``--quick`` shrinks everything to check the script and does not
touch BENCHMARKS.md; otherwise the Markdown table is printed and written to the "Training
throughput" section of BENCHMARKS.md (``--output`` to choose the file).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from report import publish  # noqa: E402

from Training.config import config_from_dict  # noqa: E402
from unetseg.engine import device as device_info  # noqa: E402

SECTION = "Training throughput"
SPATIAL_P = 0.2  # rotation, zoom and shift probabilities of our config
AFFINE_P = 1.0 - (1.0 - SPATIAL_P) ** 3  # chance that at least one of them fires


def bench_config(args: argparse.Namespace) -> dict[str, Any]:
    """Our training config (the lung CT model's inputs and labels, the benchmark's settings)."""
    raw = yaml.safe_load((REPO / "Training" / "configs" / "smoke.yaml").read_text())
    raw["name"] = "bench-training"
    raw["data"] = {
        "reader": "decathlon",
        "synth": {
            "task": "lung-ct",
            "cases": args.cases,
            "seed": 0,
            "size": args.size,
            "spacing": [2.0, 2.0, 2.0],
            "canonical": True,
        },
        "split": {"validation": 0.0},
    }
    raw["model"]["spacing_mm"] = [2.0, 2.0, 2.0]
    raw["model"]["patch_size"] = [args.patch] * 3
    raw["model"]["network"] = {
        "filters": args.filters,
        "norm": "instance",
        "residual": True,
        "deep_supervision": False,
    }
    steps = args.warmup + args.windows * args.window_steps
    raw["training"] = {
        "epochs": 1,
        "steps_per_epoch": steps + 1,  # no epoch end (validation, checkpoint) while timing
        "batch_size": args.batch,
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-5},
        "schedule": {"name": "constant"},
        "loss": {"name": "dice_ce"},
        "amp": "auto",
        "grad_clip": 12.0,
        "workers": args.workers,
        "validation": {"loss_patches": 0},
        "seed": 0,
    }
    raw["sampling"] = {"foreground_oversample": 0.33}
    raw["augmentation"] = {
        "flip": {"p": 0.5, "axes": ["x", "y", "z"]},
        "rotation": {"p": SPATIAL_P, "degrees": 15},
        "scale": {"p": SPATIAL_P, "range": [0.8, 1.2]},
        "shift": {"p": SPATIAL_P, "fraction": 0.1},
        "gamma": {"p": 0.3, "range": [0.7, 1.5]},
        "noise": {"p": 0.15, "std": 0.1},
        "bias_field": {"p": 0.0},
        "modality_dropout": {"p": 0.0},
    }
    return raw


# ----------------------------------------------------------------------------- children


class _TimedLoader:
    """Iterable over a loader recording the time blocked in each ``next``."""

    def __init__(self, loader: Any, waits: list[float]) -> None:
        self.loader = loader
        self.waits = waits

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.loader)
        while True:
            began = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.waits.append(time.perf_counter() - began)
            yield batch


class _StepClock:
    """Stands in for the trainer's progress bar: records when each step ends."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def update(self, step: int, loss: float) -> None:
        self.ends.append(time.perf_counter())


def run_ours(raw: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    from Training.loop import Trainer, prepare_data

    config = config_from_dict(raw)
    train, val = prepare_data(config, run_dir)
    trainer = Trainer(config, run_dir, train, val)
    waits: list[float] = []
    make_loader = trainer._loader  # measurement only: wrap the trainer's own DataLoader
    trainer._loader = lambda start, stop: _TimedLoader(make_loader(start, stop), waits)
    clock = _StepClock()
    began = time.perf_counter()
    trainer.fit(stop_step=config.training.steps_per_epoch - 1, progress=clock)  # type: ignore[arg-type]
    return {
        "began": began,
        "ends": clock.ends,
        "waits": waits,
        "precision": str(trainer.amp_dtype or "float32").replace("torch.", ""),
    }


def run_monai(raw: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    import numpy as np
    from monai.data import DataLoader, Dataset
    from monai.losses import DiceCELoss
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandGaussianNoised,
    )
    from monai.utils import set_determinism
    from torch.utils.data import RandomSampler

    from Training.loop import prepare_data
    from Training.loop.trainer import TRAINING_AUTOCAST
    from Training.sampling import load_training_case
    from unetseg.engine.inference.precision import resolve_autocast
    from unetseg.engine.network import UNet

    config = config_from_dict(raw)
    train, _ = prepare_data(config, run_dir)
    cases = []
    for folder in train.folders:
        case = load_training_case(folder, mmap=False)
        cases.append({"image": np.array(case.image), "label": np.array(case.label)[None]})
    patch = tuple(reversed(config.patch_size))
    keys = ["image", "label"]
    transforms = Compose(
        [
            RandCropByPosNegLabeld(keys, "label", patch, pos=1, neg=2, num_samples=1),
            *(RandFlipd(keys, prob=0.5, spatial_axis=axis) for axis in range(3)),
            RandAffined(
                keys,
                prob=AFFINE_P,
                rotate_range=[math.radians(15)] * 3,
                scale_range=[0.2] * 3,
                translate_range=[0.1 * p for p in patch],
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5)),
            RandGaussianNoised("image", prob=0.15, std=0.1),
        ]
    )
    set_determinism(0)
    training = config.training
    steps = training.steps_per_epoch - 1
    dataset = Dataset(cases, transforms)
    sampler = RandomSampler(dataset, replacement=True, num_samples=steps * training.batch_size)
    loader = DataLoader(
        dataset, batch_size=training.batch_size, sampler=sampler, num_workers=training.workers
    )
    device = torch.device("cpu")
    amp_dtype, _ = resolve_autocast(device, training.amp, **TRAINING_AUTOCAST)
    torch.manual_seed(training.seed)
    network = UNet(**config.model["network"])
    optimizer = torch.optim.AdamW(
        network.parameters(),
        lr=training.optimizer.lr,
        betas=training.optimizer.betas,
        weight_decay=training.optimizer.weight_decay,
    )
    loss_fn = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True)
    waits, ends = [], []
    network.train()
    began = time.perf_counter()
    iterator = iter(loader)
    for _ in range(steps):
        start = time.perf_counter()
        batch = next(iterator)
        waits.append(time.perf_counter() - start)
        images = batch["image"].as_tensor().to(device)
        labels = batch["label"].as_tensor().to(device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=amp_dtype or torch.bfloat16, enabled=bool(amp_dtype)):
            logits = network(images)
        loss = loss_fn(logits.float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), training.grad_clip)
        optimizer.step()
        ends.append(time.perf_counter())
    return {"began": began, "ends": ends, "waits": waits}


# ----------------------------------------------------------------------------- parent


def windows(results: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Median patches/s over the timed windows of all rounds and the data-wait share of those
    windows."""
    rates, total, waited, run_medians = [], 0.0, 0.0, []
    for result in results:
        ends, waits = result["ends"], result["waits"]
        run_rates = []
        for w in range(args.windows):
            first = args.warmup + w * args.window_steps  # index of the window's first step
            last = first + args.window_steps - 1
            duration = ends[last] - ends[first - 1]
            run_rates.append(args.window_steps * args.batch / duration)
            total += duration
            waited += sum(waits[first : last + 1])
        rates += run_rates
        run_medians.append(statistics.median(run_rates))
    return {
        "patches_per_s": statistics.median(rates),
        "run_medians": run_medians,
        "spread": (min(rates), max(rates)),
        "wait_share": waited / total,
        "step_s": total / len(rates) / args.window_steps,
        "precision": results[0].get("precision", "float32"),
    }


def run_child(kind: str, raw: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Run one loop in a subprocess; returns its step end times and data waits."""
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--child-config",
        json.dumps(raw),
        "--child-run",
        str(run_dir),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def markdown(results: dict[str, dict], args: argparse.Namespace, load: list[float]) -> str:
    ours, monai = results["ours"], results["monai"]
    command = (
        f"--cases {args.cases} --size {args.size} --patch {args.patch} --batch {args.batch} "
        f"--workers {args.workers} --filters {' '.join(map(str, args.filters))} --warmup "
        f"{args.warmup} --windows {args.windows} --window-steps {args.window_steps} --rounds "
        f"{args.rounds}"
    )
    import monai as monai_package

    lines = [
        f"## {SECTION}",
        "",
        f"Run {datetime.date.today()}: `python bench/bench_training.py {command}`.",
        f"Machine: {device_info.cpu_model()}, {os.cpu_count()} logical CPUs, "
        f"{torch.get_num_threads()} torch threads in the training process, torch "
        f"{torch.__version__}, MONAI {monai_package.__version__}; CPU training in "
        f"{ours['precision']}.",
        f"Data: {args.cases} synthetic chest CTs (`Training.synth`, lung-ct) of {args.size}^3 "
        f"voxels at 2 mm; patch {args.patch}^3, batch {args.batch}, {args.workers} loader "
        f"workers; UNetSeg `UNet` (residual, instance norm, filters "
        f"{'-'.join(map(str, args.filters))}), Dice + CE, AdamW, clipping 12; augmentations as "
        f"described in `bench/bench_training.py`. Median of {args.windows} windows of "
        f"{args.window_steps} steps after {args.warmup} warm-up steps, pooled over "
        f"{args.rounds} alternated runs of each loop, each run in its own process. 1-minute "
        f"load average before / after: {load[0]:.1f} / {load[1]:.1f} (other processes "
        f"share the CPU when it exceeds 0).",
        "",
        "| loop | patches/s (median) | range over windows | s/step | data wait share |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, result in (("UNetSeg `Trainer`", ours), ("MONAI (Dataset + DataLoader)", monai)):
        low, high = result["spread"]
        lines.append(
            f"| {name} | {result['patches_per_s']:.3f} | {low:.3f} – {high:.3f} "
            f"| {result['step_s']:.2f} | {100 * result['wait_share']:.1f} % |"
        )
    ratio = ours["patches_per_s"] / monai["patches_per_s"]
    paired = [a / b for a, b in zip(ours["run_medians"], monai["run_medians"], strict=True)]
    lines += [
        "",
        f"Throughput ratio ours / MONAI: **{ratio:.2f}** (target >= 1.0); per round (each run's "
        f"median, alternated runs paired): {', '.join(f'{r:.2f}' for r in paired)}; data wait "
        f"share of "
        f"our loop with its default worker settings: **{100 * ours['wait_share']:.1f} %** "
        f"(target < 10 %).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--size", type=int, default=96, help="case size in voxels")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--filters", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window-steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each loop, alternated")
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    parser.add_argument("--output", type=Path, help="Markdown file (default BENCHMARKS.md)")
    parser.add_argument("--child", choices=("ours", "monai"), help=argparse.SUPPRESS)
    parser.add_argument("--child-config", help=argparse.SUPPRESS)
    parser.add_argument("--child-run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = run_ours if args.child == "ours" else run_monai
        print(json.dumps(run(json.loads(args.child_config), args.child_run)))
        return
    if args.quick:
        args.cases, args.size, args.patch, args.filters = 3, 48, 32, [4, 8]
        args.warmup, args.windows, args.window_steps, args.rounds = 1, 2, 2, 1
    raw = bench_config(args)
    config_from_dict(raw)  # validate before spending time
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        from Training.loop import prepare_data

        prepare_data(config_from_dict(raw), run_dir)  # synthetic data and prepared cases
        runs: dict[str, list[dict]] = {"ours": [], "monai": []}
        for round_ in range(args.rounds):  # alternate, so that load changes hit both loops alike
            for kind, results in runs.items():
                child_dir = Path(tmp) / f"{kind}-{round_}"  # shares the data and prepared cases
                child_dir.mkdir()
                for name in ("data", "prepared"):
                    (child_dir / name).symlink_to(run_dir / name)
                results.append(run_child(kind, raw, child_dir))
                print(f"{kind} run {round_ + 1}: done", file=sys.stderr)
    results = {kind: windows(kind_runs, args) for kind, kind_runs in runs.items()}
    load.append(os.getloadavg()[0])
    section = markdown(results, args, load)
    publish(section, args.output, args.quick)


if __name__ == "__main__":
    main()
