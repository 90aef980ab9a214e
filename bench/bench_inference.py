"""Sliding-window inference benchmark: MONAI against UNetSeg (equal settings and fast mode).

    python bench/bench_inference.py [--repeats 5] [--cases brain,brain-synth,ct] [--quick]
        [--variants monai,ours,skip,fast] [--models DIR]

Cases (array order (C, K, J, I)): "brain", 4-channel 155x240x240 (the real BraTS-METS case
in ../shared/data/brats_met_unlabeled when present, else a phantom with the same background
share); "brain-synth", a synthetic brain MRI of the same size from the brain network's own
training generator (the label agreement of a network inside its domain); "ct", a 1-channel
300x512x512 chest CT phantom. Synthetic cases are generated once and cached in DIR.
Window 128^3, overlap 0.5, Gaussian blending. The network of each case (MONAI's UNet by
default, see `--network`) is trained on the project's synthetic phantoms by `bench_models`
(trained on first use, cached in DIR, default out/bench_models/). These are not clinical
models: they are trained so that the label agreement between our fast and full outputs
measures what a trained model would show. Variants:
- monai: `monai.inferers.sliding_window_inference` (float32 logits, no label step);
- ours: `sliding_window_inference(output="labels")`, float32, the same windows;
- skip: ours + foreground skipping (windows without foreground are not run; exact);
- fast: skip + `crop_to_foreground` (only the fewest windows of the full tiling that cover
  the foreground box; + CPU bf16 when the CPU has native bf16, reported unavailable
  otherwise).
The labels of skip and fast are compared with ours (Dice per class). Rounds alternate the
variants, each run in its own subprocess (peak RSS = its VmHWM). The predictor calls are
timed inside the runs, so "stitching overhead" = wall time / sum of forward passes.
`--quick` halves the brain, quarters the CT and uses 64^3 windows, to check the script.
The Markdown table is printed and written to BENCHMARKS.md (section "Inference") unless
--quick (use --output to write anyway).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import bench_models  # noqa: E402
from bench_models import BRAIN_SEQUENCES, CT_WINDOW, brain_input, ct_input  # noqa: E402
from phantoms import BRAIN_BACKGROUND_SHARE, brain_phantom  # noqa: E402
from report import publish  # noqa: E402

from unetseg.engine import device as device_info  # noqa: E402
from unetseg.engine.inference import plan_tiling, sliding_window_inference  # noqa: E402

BRAIN_DIR = REPO.parent / "shared" / "data" / "brats_met_unlabeled"
NETWORK_TITLES = {
    "monai": "MONAI UNet(channels 16-256, strides 2, num_res_units 2), 4.8 M parameters",
    "unetseg": "UNetSeg UNet(filters 16-256, residual, instance norm), 5.7 M parameters",
}
VARIANTS = ("monai", "ours", "skip", "fast")
BODY_HU = -500.0
SOURCES = {
    "brain-synth": "brain MRI phantom (Training.synth.brain_mri_case, BraTS layout, 1 mm, seed "
    f"{bench_models.BRAIN_BENCH_SEED}, not a training case; the brain network's own domain)",
    "ct": "chest CT phantom (Training.synth.lung_ct_case, 0.8 x 0.8 x 1.0 mm, seed "
    f"{bench_models.CT_BENCH_SEED}, not a training case; ~70% of the voxels below -500 HU)",
}
#: Generators of the synthetic cases: (I, J, K) shape -> raw (C, K, J, I) float32 image.
GENERATORS = {"brain-synth": bench_models.brain_bench_image, "ct": bench_models.ct_bench_image}


@dataclass(frozen=True)
class Case:
    name: str
    network: str  # bench network (a `bench_models.TASKS` key)
    shape: tuple[int, int, int]  # (K, J, I)
    in_channels: int
    out_channels: int
    roi: int


def cases(quick: bool) -> dict[str, Case]:
    if quick:
        return {
            "brain": Case("brain", "brain", (78, 120, 120), 4, 4, 64),
            "brain-synth": Case("brain-synth", "brain", (78, 120, 120), 4, 4, 64),
            "ct": Case("ct", "ct", (75, 128, 128), 1, 2, 64),
        }
    return {
        "brain": Case("brain", "brain", (155, 240, 240), 4, 4, 128),
        "brain-synth": Case("brain-synth", "brain", (155, 240, 240), 4, 4, 128),
        "ct": Case("ct", "ct", (300, 512, 512), 1, 2, 128),
    }


# --- inputs -------------------------------------------------------------------------------


def brain_source() -> str:
    if all((BRAIN_DIR / f"{s}.nii.gz").exists() for s in BRAIN_SEQUENCES):
        return "BraTS-METS case (real data)"
    return f"phantom ({BRAIN_BACKGROUND_SHARE:.0%} background)"


def load_brain(case: Case) -> np.ndarray:
    """(4, K, J, I) image z-scored inside the brain, 0 outside (real case or phantom)."""
    if all((BRAIN_DIR / f"{s}.nii.gz").exists() for s in BRAIN_SEQUENCES):
        import nibabel as nib

        raw = np.stack(
            [
                np.asarray(nib.load(BRAIN_DIR / f"{s}.nii.gz").dataobj, np.float32).transpose(
                    2, 1, 0
                )
                for s in BRAIN_SEQUENCES
            ]
        )
        step = max(1, round(raw.shape[1] / case.shape[0]))
        raw = raw[:, ::step, ::step, ::step]
    else:
        raw = brain_phantom(case.shape)
    return brain_input(raw)


def image_path(case: Case, models: Path) -> Path:
    """Cached raw image of a synthetic case (`.npy`, (C, K, J, I) float32)."""
    return Path(models) / f"{case.name}-bench-{'x'.join(map(str, case.shape))}.npy"


def ensure_image(case: Case, models: Path) -> None:
    """Generate a synthetic case once (the full-size CT takes ~40 s and ~8 GB) and cache it,
    so that the variants' subprocesses only read it."""
    path = image_path(case, models)
    if case.name in GENERATORS and not path.exists():
        print(f"[{case.name}] generating {case.shape} ...", file=sys.stderr, flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, GENERATORS[case.name](case.shape[::-1]))


def load_image(case: Case, models: Path) -> np.ndarray:
    """The network input of `case`, (C, K, J, I) float32, normalised as in training."""
    if case.name == "brain":
        return load_brain(case)
    raw = np.load(image_path(case, models), mmap_mode="r")
    return brain_input(raw) if case.network == "brain" else ct_input(raw)


def brain_mask(image: np.ndarray) -> np.ndarray:
    """Brain mask: voxels where any sequence is non-zero."""
    return np.any(image != 0, axis=0)


def ct_body_mask(image: np.ndarray) -> np.ndarray:
    """Body mask of a windowed CT: above -500 HU, holes (lungs) filled per slice, 4x coarse."""
    from scipy import ndimage

    centre, width = CT_WINDOW
    coarse = image[0, :, ::4, ::4] > (BODY_HU - centre + width / 2) / width
    filled = np.stack([ndimage.binary_fill_holes(s) for s in coarse])
    full = np.repeat(np.repeat(filled, 4, axis=1), 4, axis=2)
    return full[:, : image.shape[2], : image.shape[3]]


def make_network(case: Case, models: Path, kind: str) -> torch.nn.Module:
    """The cached bench network of `case` (eval mode)."""
    return bench_models.load_network(case.network, kind, models)


# --- child: one variant -------------------------------------------------------------------


def rss_mib(field: str) -> float:
    """VmRSS / VmHWM of this process in MiB (Linux), else ru_maxrss."""
    try:
        text = Path("/proc/self/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) / 1024
    except (OSError, AttributeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TimedPredictor:
    """Calls the network and sums the time of its calls alone."""

    def __init__(self, net: torch.nn.Module, device: torch.device) -> None:
        self.net, self.device, self.seconds = net, device, 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.net(x)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - start
        return out


def channel_argmax(logits: torch.Tensor) -> np.ndarray:
    """uint8 argmax over channels of (C, ...) without an int64 volume."""
    best, labels = logits[0].clone(), torch.zeros(logits.shape[1:], dtype=torch.uint8)
    for c in range(1, logits.shape[0]):
        labels.masked_fill_(logits[c] > best, c)
        torch.maximum(best, logits[c], out=best)
    return labels.numpy()


def run_child(spec: dict) -> dict:
    """Run one variant `spec["repeats"]` times; save its labels; return timings and RSS."""
    from monai.inferers import sliding_window_inference as monai_swi  # before the RSS baseline

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    case = Case(**{**spec["case"], "shape": tuple(spec["case"]["shape"])})
    device = device_info.select_device(spec["device"])
    models = Path(spec["models"])
    image_np = load_image(case, models)
    image = torch.from_numpy(image_np)[None]
    net = make_network(case, models, spec["network"]).to(device)
    roi, variant = (case.roi,) * 3, spec["variant"]
    bf16 = variant == "fast" and device.type == "cpu" and device_info.cpu_supports_bf16()
    predictor = TimedPredictor(net, device)
    with torch.inference_mode():  # warm-up (oneDNN kernel selection), not timed
        net(image[:, :, : case.roi, : case.roi, : case.roi].to(device))
    baseline = rss_mib("VmRSS")

    times, forward, windows, result = [], [], 0, None
    counts: list[int] = []  # total windows reported by progress
    for _ in range(spec["repeats"]):
        result = None
        predictor.seconds = 0.0
        start = time.perf_counter()
        if variant == "monai":
            with torch.inference_mode():
                result = monai_swi(image, roi, 1, predictor, 0.5, "gaussian", sw_device=device)
            windows = len(plan_tiling(image.shape[2:], roi, (0.5,) * 3, 1).windows)
        else:
            mask = None
            if variant in ("skip", "fast"):
                masker = ct_body_mask if case.network == "ct" else brain_mask
                mask = torch.from_numpy(masker(image_np))
            result = sliding_window_inference(
                image, roi, predictor, overlap=0.5, mode="gaussian", output="labels",
                foreground_mask=mask, crop_to_foreground=variant == "fast", device=device,
                amp="auto" if variant == "fast" else "off", cpu_bf16=bf16,
                progress=lambda done, total: counts.append(total), activation="softmax",
            )  # fmt: skip
            windows = counts[-1] if counts else 0
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
        forward.append(predictor.seconds)
    peak = rss_mib("VmHWM")
    labels = channel_argmax(result[0].cpu()) if variant == "monai" else result[0].cpu().numpy()
    np.save(spec["labels"], labels)
    precision = (
        "bf16" if bf16 else ("fp16" if variant == "fast" and device.type == "cuda" else "fp32")
    )
    return {
        "times": times, "forward": forward, "windows": windows, "baseline_mib": baseline,
        "peak_mib": peak, "precision": precision,
    }  # fmt: skip


# --- parent: all variants, table ----------------------------------------------------------


def dice_per_class(a: np.ndarray, b: np.ndarray, classes: int) -> list[float]:
    out = []
    for c in range(1, classes):
        in_a, in_b = a == c, b == c
        total = int(in_a.sum()) + int(in_b.sum())
        out.append(1.0 if total == 0 else 2 * int((in_a & in_b).sum()) / total)
    return out


def run_variant(case: Case, variant: str, args: argparse.Namespace, workdir: Path) -> dict:
    """One run of `variant` in a fresh subprocess (timings, RSS; labels saved in workdir)."""
    spec = {
        "case": case.__dict__, "variant": variant, "repeats": 1,
        "models": str(args.models), "device": args.device, "network": args.network,
        "threads": args.threads, "labels": str(workdir / f"{case.name}-{variant}.npy"),
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"{case.name}/{variant} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_case(case: Case, args: argparse.Namespace, workdir: Path) -> list[dict]:
    """`args.repeats` rounds; each round runs every variant once, in turn, so that slow
    drifts of the machine affect all variants alike and the ratios can be paired by round."""
    runs: dict[str, list[dict]] = {variant: [] for variant in args.variants}
    for round_ in range(args.repeats):
        for variant in args.variants:
            print(f"[{case.name}] round {round_ + 1}: {variant} ...", file=sys.stderr, flush=True)
            runs[variant].append(run_variant(case, variant, args, workdir))
    rows = []
    monai_times = [run["times"][0] for run in runs["monai"]]
    for variant, results in runs.items():
        times = [run["times"][0] for run in results]
        forward = [run["forward"][0] for run in results]
        rows.append({
            "case": case.name, "variant": variant, "times": times, "forward": forward,
            "windows": results[0]["windows"], "precision": results[0]["precision"],
            "baseline_mib": max(run["baseline_mib"] for run in results),
            "peak_mib": max(run["peak_mib"] for run in results),
            "wall": statistics.median(times),
            "overhead": statistics.median(t / f for t, f in zip(times, forward, strict=True)),
            "vs_monai": statistics.median(m / t for m, t in zip(monai_times, times, strict=True)),
            "vs_monai_rounds": [m / t for m, t in zip(monai_times, times, strict=True)],
        })  # fmt: skip
    labels = {v: np.load(workdir / f"{case.name}-{v}.npy", mmap_mode="r") for v in args.variants}
    rows[0]["agreement"] = f"labels = ours on {np.mean(labels['monai'] == labels['ours']):.4%}"
    rows[1]["agreement"] = "reference"
    mask = (ct_body_mask if case.network == "ct" else brain_mask)(load_image(case, args.models))
    reference = np.asarray(labels["ours"])
    for row in rows[2:]:
        variant = np.asarray(labels[row["variant"]])
        whole = dice_per_class(variant, reference, case.out_channels)
        inside = dice_per_class(variant[mask], reference[mask], case.out_channels)
        row["agreement"] = (
            "Dice " + ", ".join(f"{d:.4f}" for d in whole)
            + "; inside the mask " + ", ".join(f"{d:.4f}" for d in inside)
        )  # fmt: skip
    return rows


def network_note(packages: dict[str, bench_models.BenchModel]) -> str:
    """How each case's bench network was trained (from its `bench.json`)."""
    notes = []
    for name, package in packages.items():
        training = package.training
        settings = training["bench_settings"]
        notes.append(
            f"{name}: {training['steps_done']} steps of {settings['batch']} x "
            f"{settings['patch']}^3 patches, final training loss {training['final_loss']:.3f}"
        )
    return "; ".join(notes)


def markdown(
    rows: list[dict],
    args: argparse.Namespace,
    sources: dict[str, str],
    packages: dict[str, bench_models.BenchModel],
) -> str:
    bf16 = device_info.cpu_supports_bf16()
    command = f"--repeats {args.repeats} --cases {','.join(args.cases)}"
    command += " --quick" if args.quick else ""
    lines = [
        "## Inference",
        "",
        f"Run {datetime.date.today()}: `python bench/bench_inference.py {command}`.",
        f"Machine: {device_info.cpu_model()}, {os.cpu_count()} logical CPUs, "
        f"{torch.get_num_threads() if not args.threads else args.threads} torch threads, "
        f"torch {torch.__version__}, MONAI {_monai_version()}; compute device "
        f"{device_info.describe_device(device_info.select_device(args.device))}.",
        f"Network (the same on every side): {NETWORK_TITLES[args.network]}, trained "
        f"on synthetic phantoms by bench/bench_models.py ({network_note(packages)}); not "
        f"clinical models. Window {'64' if args.quick else '128'}^3, overlap 0.5, Gaussian; "
        "inputs: " + "; ".join(f"{k}: {v}" for k, v in sources.items()) + ".",
        "CPU bf16: "
        + (
            "native, used by `fast`"
            if bf16
            else "unavailable (no avx512_bf16/amx_bf16), `fast` runs fp32"
        )
        + ".",
        "",
        "| case | variant | windows | precision | wall median [s] | forward sum [s] "
        "| wall / forward | speed vs MONAI (range over rounds) | labels vs ours (Dice per class) "
        "| peak RSS [MiB] (before run) |",
        "|---|---|---:|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['variant']} | {r['windows']} | {r['precision']} "
            f"| {r['wall']:.2f} | {statistics.median(r['forward']):.2f} | {r['overhead']:.3f} "
            f"| {r['vs_monai']:.3f}x ({min(r['vs_monai_rounds']):.2f}-"
            f"{max(r['vs_monai_rounds']):.2f}) | {r['agreement']} "
            f"| {r['peak_mib']:.0f} ({r['baseline_mib']:.0f}) |"
        )
    lines += [
        "",
        "monai returns float32 logits (no label step); ours/skip/fast return uint8 labels. "
        "Agreement: Dice per class against ours over the whole volume, then over the "
        "foreground mask that skip/fast use (outside it they label background by design, "
        "while the full run labels whatever the network finds there). "
        f"{args.repeats} rounds; each round runs every variant once, in this order, each run "
        "in a fresh subprocess. Speed vs MONAI: median over rounds of MONAI's wall time "
        "divided by the variant's in the same round. wall / forward: median over runs of wall "
        "time divided by the summed forward-pass time of the same run (the stitching "
        "overhead). Peak RSS: largest VmHWM of the variant's subprocesses, input and network "
        "included (largest RSS before the first window in brackets).",
        "",
    ]
    return "\n".join(lines)


def _monai_version() -> str:
    import monai

    return monai.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", default="brain,brain-synth,ct", type=lambda s: s.split(","))
    parser.add_argument("--quick", action="store_true", help="small volumes, 64^3 windows")
    parser.add_argument(
        "--models", type=Path, default=bench_models.DEFAULT_DIR,
        help="bench model packages (trained there on first use)",
    )  # fmt: skip
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument(
        "--network", default="monai", choices=bench_models.NETWORK_KINDS,
        help="bench network (same on both sides; see bench_models.bench_network)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--output", type=Path, help="Markdown file (default BENCHMARKS.md)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), type=lambda s: s.split(","),
        help="variants to run; monai and ours always run first",
    )  # fmt: skip
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return
    available = cases(args.quick)
    extra = [v for v in args.variants if v not in ("monai", "ours")]
    if set(extra) - set(VARIANTS):
        parser.error(f"unknown variants; choose from {VARIANTS}")
    args.variants = ["monai", "ours", *extra]
    unknown = set(args.cases) - set(available)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {sorted(available)}")
    packages = {
        available[name].network: bench_models.ensure_model(
            available[name].network, args.network, args.models
        )
        for name in args.cases
    }
    rows, sources = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            case = available[name]
            sources[name] = brain_source() if name == "brain" else SOURCES[name]
            ensure_image(case, args.models)
            rows += run_case(case, args, Path(tmp))
    section = markdown(rows, args, sources, packages)
    publish(section, args.output, args.quick)


if __name__ == "__main__":
    main()
