"""Inference backends on real cases with the bundled models: MONAI + torch against ours.

    python bench/bench_backends.py [--repeats 5] [--cases brain,ct] [--variants ...] [--output F]

Cases (../shared/data; skipped when absent): the 4-sequence 240x240x155 BraTS-METS brain case
with `brain-tumor-mri`, the 512x512x141 chest CT with `lung-ct`. Each case is prepared once per
run as the engine prepares it (reoriented, resampled to the model's grid, normalised; not
timed); then the sliding window runs over the model-grid image, timed:
- monai: `monai.inferers.sliding_window_inference` with the model's torch network (float32,
  sw_batch_size 1, the model's overlap, Gaussian), then argmax / threshold to labels;
- torch: ours (`SegmentOptions(backend="torch")`, exact: windows without body/head skipped);
- openvino-bN: ours with the OpenVINO backend, float32, N windows per forward pass;
- torch-bf16 / openvino-reduced: exact tiling in reduced precision (bf16 where native);
- fast-torch / fast-openvino: `--fast` (fewest windows covering the body/head box, and reduced
  precision only where the model's manifest allows it).
Every run is its own subprocess (peak RSS = VmHWM, compile/load time apart from inference);
rounds alternate the variants so that drifts of the machine hit all alike, and speed-ups are
paired by round (median); "wall / forward" is the sliding window's time over the time of the
forward passes alone (tiling, padding and stitching overhead). Agreement: share of model-grid
voxels whose label equals MONAI's, and per-class Dice against ours in float32 (`openvino-b1`).
The Markdown table goes to BENCHMARKS.md (section "Backends") unless --output says otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from bench_inference import TimedPredictor, dice_per_class, rss_mib  # noqa: E402
from report import publish  # noqa: E402

from unetseg.engine import device as device_info  # noqa: E402

DATA = REPO.parent / "shared" / "data"
CASES = {
    "brain": ("brain-tumor-mri", [DATA / "brats_met_unlabeled" / f"{s}.nii.gz" for s in (
        "t1c", "flair", "t1", "t2")], "BraTS-METS 240x240x155, 4 sequences"),
    "ct": ("lung-ct", [DATA / "ct_chest_itkelastix" / "chest_ct.nii.gz"], "chest CT 512x512x141"),
}  # fmt: skip
#: variant -> SegmentOptions fields (None: MONAI).
VARIANTS: dict[str, dict | None] = {
    "monai": None,
    "torch": {"backend": "torch"},
    "openvino-b1": {"backend": "openvino", "window_batch": 1},
    "openvino-b2": {"backend": "openvino", "window_batch": 2},
    "openvino-b4": {"backend": "openvino", "window_batch": 4},
    "torch-bf16": {"backend": "torch", "precision": "reduced"},
    "openvino-reduced": {"backend": "openvino", "precision": "reduced"},
    "fast-torch": {"backend": "torch", "fast": True},
    "fast-openvino": {"backend": "openvino", "fast": True},
}
REFERENCE = "openvino-b1"


def child(spec: dict) -> dict:
    """One timed run of a variant on a case; labels saved to spec["labels"]."""
    from monai.inferers import sliding_window_inference as monai_swi

    from Training.data.volumes import read_image
    from unetseg.engine.backends import load_runner
    from unetseg.engine.options import SegmentOptions
    from unetseg.engine.preprocessing.pipeline import prepare_inputs
    from unetseg.engine.registry import resolve_model

    model, paths, _ = CASES[spec["case"]]
    package = resolve_model(model)
    images = [read_image(Path(p)) for p in paths]
    case = prepare_inputs([a for a, _ in images], [g for _, g in images], package.preparation)
    image = torch.from_numpy(case.image)[None]
    roi = package.window.roi_size
    fields = VARIANTS[spec["variant"]]
    baseline = rss_mib("VmRSS")
    loaded = time.perf_counter()
    if fields is None:
        network = package.load_network("cpu")
        predictor, batch = TimedPredictor(network, torch.device("cpu")), 1
    else:
        options = SegmentOptions(device="cpu", **fields)
        runner = load_runner(package, options)
        predictor, batch = TimedPredictor(runner, torch.device("cpu")), runner.window_batch
    load_s = time.perf_counter() - loaded
    with torch.inference_mode():  # warm-up (kernel selection), not timed
        predictor.net(torch.zeros(batch, image.shape[1], *roi))
    predictor.seconds = 0.0
    started = time.perf_counter()
    with torch.inference_mode():
        if fields is None:
            logits = monai_swi(image, roi, 1, predictor, package.overlap, "gaussian")[0]
            labels = _labels(logits, package.window.activation, package.window.threshold)
        else:
            mask = torch.from_numpy(case.foreground_mask)
            labels = package.window.infer(
                image, predictor, sw_batch_size=batch, foreground_mask=mask,
                crop_to_foreground=options.fast, amp="off",
            )[0].numpy()  # fmt: skip
    seconds = time.perf_counter() - started
    np.save(spec["labels"], labels)
    precision = "float32" if fields is None else runner.precision
    channels = int(package.manifest["network"]["out_channels"])
    return {
        "seconds": seconds, "forward": predictor.seconds, "load_s": load_s,
        "peak_mib": rss_mib("VmHWM"), "baseline_mib": baseline, "precision": precision,
        "classes": channels + (package.activation == "sigmoid"),
    }  # fmt: skip


def _labels(logits: torch.Tensor, activation: str, threshold: float) -> np.ndarray:
    """Label map of MONAI's blended logits `(C, ...)`, as the engine decides labels."""
    if activation == "softmax":
        return logits.argmax(0).to(torch.uint8).numpy()
    labels = torch.zeros(logits.shape[1:], dtype=torch.uint8)
    for channel in range(logits.shape[0]):  # nested regions: later channels overwrite
        labels[torch.sigmoid(logits[channel]) > threshold] = channel + 1
    return labels.numpy()


def run_variant(case: str, variant: str, workdir: Path) -> dict:
    spec = {"case": case, "variant": variant, "labels": str(workdir / f"{case}-{variant}.npy")}
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"{case}/{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_case(case: str, variants: list[str], repeats: int, workdir: Path) -> list[dict]:
    runs: dict[str, list[dict]] = {variant: [] for variant in variants}
    for round_ in range(repeats):
        for variant in variants:
            print(f"[{case}] round {round_ + 1}: {variant}", file=sys.stderr, flush=True)
            runs[variant].append(run_variant(case, variant, workdir))
    labels = {v: np.load(workdir / f"{case}-{v}.npy", mmap_mode="r") for v in variants}
    monai_times = [run["seconds"] for run in runs["monai"]]
    torch_times = [run["seconds"] for run in runs["torch"]]
    classes = runs["monai"][0]["classes"]
    rows = []
    for variant, results in runs.items():
        times = [run["seconds"] for run in results]
        row = {
            "case": case, "variant": variant, "precision": results[0]["precision"],
            "seconds": statistics.median(times), "times": times,
            "load_s": statistics.median(run["load_s"] for run in results),
            "overhead": statistics.median(run["seconds"] / run["forward"] for run in results),
            "peak_gib": max(run["peak_mib"] for run in results) / 1024,
            "vs_monai": statistics.median(m / t for m, t in zip(monai_times, times, strict=True)),
            "vs_torch": statistics.median(m / t for m, t in zip(torch_times, times, strict=True)),
            "same_as_monai": float(np.mean(np.asarray(labels[variant]) == labels["monai"])),
        }  # fmt: skip
        if REFERENCE in labels:
            row["dice_vs_float32"] = dice_per_class(
                np.asarray(labels[variant]), np.asarray(labels[REFERENCE]), classes
            )
        rows.append(row)
    return rows


def table(rows: list[dict], repeats: int) -> str:
    cpu = f"{device_info.cpu_model()}, {torch.get_num_threads()} threads"
    lines = [
        f"Measured {datetime.date.today()} on {cpu}; medians of {repeats} rounds (each run its "
        "own process, variants alternating); times are the sliding window over the prepared "
        "model-grid image (network compile/load apart).",
        "",
        "| case | variant | precision | inference s | x MONAI | x our torch | wall / forward "
        "| load s | peak GiB | labels = MONAI | Dice vs float32 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        dice = ", ".join(f"{d:.4f}" for d in row.get("dice_vs_float32", []))
        lines.append(
            f"| {row['case']} | {row['variant']} | {row['precision']} | {row['seconds']:.2f} "
            f"| {row['vs_monai']:.2f} | {row['vs_torch']:.2f} | {row['overhead']:.3f} "
            f"| {row['load_s']:.2f} "
            f"| {row['peak_gib']:.2f} | {row['same_as_monai']:.4%} | {dice} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", default="brain,ct")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--output", type=Path, help="default: BENCHMARKS.md")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    variants = args.variants.split(",")
    if "monai" not in variants or "torch" not in variants:
        sys.exit("--variants must include monai and torch (the speed-ups are paired with them)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            if not all(Path(p).exists() for p in CASES[case][1]):
                print(f"{case}: data not found, skipped", file=sys.stderr)
                continue
            rows += bench_case(case, variants, args.repeats, Path(tmp))
    (REPO / "out").mkdir(exist_ok=True)
    (REPO / "out" / "bench_backends.json").write_text(json.dumps(rows, indent=2))
    publish("## Backends\n\n" + table(rows, args.repeats) + "\n", args.output, quick=False)


if __name__ == "__main__":
    main()
