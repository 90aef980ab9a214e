"""Bench networks: the benchmark's U-Net, briefly trained on the project's synthetic phantoms.

    python bench/bench_models.py [--cases brain,ct] [--models DIR] [--budget 180] [--retrain]

One network per benchmark case and network kind (`--network monai|unetseg`, see
`bench_network`), trained on first use and cached as safetensors weights + `bench.json` in
`DIR/bench-<case>-<kind>` (default `out/bench_models/`):
- "brain": inputs flair, t1, t1c, t2 (BraTS order, as the benchmark loads the real case),
  each z-scored inside its non-zero voxels; labels 1 core, 2 oedema, 3 enhancing, from
  `Training.synth.brain_mri_case(layout="brats")`;
- "ct": one CT input in HU, windowed with `CT_WINDOW` to [0, 1]; label 1 lungs (both:
  telling left from right needs the midline in view, which a 128^3 window of 0.8 mm voxels
  often lacks), from `Training.synth.lung_ct_case` on the benchmark's own grid (512 x 512 x
  300 voxels of 0.8 x 0.8 x 1.0 mm, anatomy at real size), arrays flipped to the DICOM/LPS
  layout (I towards the patient's left, J posterior). `ct_bench_image` is a further case of
  the same generator (a seed no training case uses): the benchmark's CT.
Phantoms are generated on canonical grids. Training: random cubic patches (every second one
centred on a labelled voxel), Dice + cross-entropy, Adam with the learning rate decaying
over the wall-time budget (poly 0.9), fixed seeds, `Settings.steps` steps cut short by the
budget (so the number of steps done depends on the machine; it is recorded in `bench.json`).
The networks are not clinical models; they exist so that the label agreement between
inference variants measures what a trained model would show rather than the near-ties of
random weights.
A cached network is reused whatever settings trained it (they are in `bench.json`);
`--retrain` replaces it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from safetensors.torch import load_file, save_file  # noqa: E402

from Training.synth import brain_mri_case, lung_ct_case  # noqa: E402
from unetseg.engine.losses import DiceCELoss  # noqa: E402
from unetseg.engine.network import UNet  # noqa: E402
from unetseg.engine.preprocessing.normalization import normalize  # noqa: E402

DEFAULT_DIR = REPO / "out" / "bench_models"
NETWORK_KINDS = ("monai", "unetseg")
FILTERS = (16, 32, 64, 128, 256)
BRAIN_SEQUENCES = ("flair", "t1", "t1c", "t2")
BRAIN_NORMALIZATION = {"method": "zscore", "mask": "nonzero"}
CT_WINDOW = (-600.0, 1500.0)  # centre, width (HU)
CT_NORMALIZATION = {"method": "ct_window", "center": CT_WINDOW[0], "width": CT_WINDOW[1]}
CT_SHAPE, CT_SPACING = (512, 512, 300), (0.8, 0.8, 1.0)  # (I, J, K) voxels and mm
CT_BENCH_SEED = 1000  # the benchmark's CT case; training cases use [seed, i]
BRAIN_BENCH_SEED = 1001  # the benchmark's synthetic brain case


@dataclass(frozen=True)
class Settings:
    """Training settings (recorded in `bench.json`)."""

    steps: int = 5000
    budget_s: float = 600.0
    # Cubic patch edge (voxels, a multiple of 16); large enough that instance-norm statistics
    # resemble those of the 128^3 inference windows. On a 2-core AVX2 CPU a step of
    # 2 x 96^3 takes about 2 s, 2 x 64^3 about 0.6 s.
    patch: int = 96
    batch: int = 2
    cases: int = 6
    lr: float = 3e-3
    seed: int = 0


@dataclass(frozen=True)
class Task:
    """What one bench network sees: phantom generator, sizes, inputs and labels."""

    dataset: str
    inputs: tuple[tuple[str, str], ...]  # (name, title) in channel order
    normalization: dict
    labels: tuple[tuple[str, tuple[int, int, int]], ...]  # (name, colour), values 1..N
    modality: str
    spacing_mm: tuple[float, float, float]  # (I, J, K)
    sizes: tuple[int | tuple[int, int, int], ...]  # phantom grids (edge or (I, J, K)), in turn
    generate: Callable[..., tuple[np.ndarray, np.ndarray]]


def brain_input(raw: np.ndarray) -> np.ndarray:
    """(4, K, J, I) MR intensities -> float32, each channel z-scored inside its non-zero
    voxels and 0 outside (the engine's `{"method": "zscore", "mask": "nonzero"}`)."""
    pairs = zip(raw, BRAIN_SEQUENCES, strict=True)
    return np.stack([normalize(channel, BRAIN_NORMALIZATION, name) for channel, name in pairs])


def ct_input(hu: np.ndarray) -> np.ndarray:
    """(1, K, J, I) CT in HU -> float32 in [0, 1] through the window `CT_WINDOW`."""
    return normalize(hu[0], CT_NORMALIZATION, "ct")[None]


def _brain_phantom(
    rng: np.random.Generator, size: int, spacing: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    case = brain_mri_case(rng, size, spacing, layout="brats", canonical=True)
    raw = np.stack([case.images[name] for name in BRAIN_SEQUENCES])
    return brain_input(raw), case.label


def _ct_phantom(
    rng: np.random.Generator, size: tuple[int, int, int], spacing: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    case = lung_ct_case(rng, size, spacing, canonical=True)
    lps = (slice(None), slice(None, None, -1), slice(None, None, -1))  # (K, J, I): flip J, I
    image = ct_input(case.images["ct"][lps][None])
    lungs = (case.label[lps] > 0).astype(np.uint8)
    return np.ascontiguousarray(image), lungs


TASKS = {
    "brain": Task(
        dataset="Training.synth.brain_mri_case (layout brats, canonical, 1 mm)",
        inputs=(("flair", "FLAIR"), ("t1", "T1"), ("t1c", "T1 post-contrast"), ("t2", "T2")),
        normalization=BRAIN_NORMALIZATION,
        labels=(("core", (255, 214, 0)), ("edema", (0, 151, 206)), ("enhancing", (230, 80, 60))),
        modality="MR",
        spacing_mm=(1.0, 1.0, 1.0),
        sizes=(128, 192),
        generate=_brain_phantom,
    ),
    "ct": Task(
        dataset="Training.synth.lung_ct_case (canonical 512x512x300 at 0.8x0.8x1.0 mm, "
        "flipped to LPS arrays)",
        inputs=(("ct", "CT"),),
        normalization=CT_NORMALIZATION,
        labels=(("lungs", (197, 165, 145)),),
        modality="CT",
        spacing_mm=CT_SPACING,
        sizes=(CT_SHAPE,),
        generate=_ct_phantom,
    ),
}


def brain_bench_image(shape: tuple[int, int, int]) -> np.ndarray:
    """A synthetic 4-sequence brain MRI `(4, K, J, I)` (raw intensities, BraTS channel order)
    of (I, J, K) `shape` at 1 mm: the brain network's own domain, for the benchmark."""
    rng = np.random.default_rng(BRAIN_BENCH_SEED)
    case = brain_mri_case(rng, shape, (1.0, 1.0, 1.0), layout="brats", canonical=True)
    return np.stack([case.images[name] for name in BRAIN_SEQUENCES])


def ct_bench_image(shape: tuple[int, int, int] = CT_SHAPE) -> np.ndarray:
    """The benchmark's chest CT `(1, K, J, I)` in HU (float32, LPS arrays), with the
    generator and voxel size of the CT network's training cases; `shape` is (I, J, K), the
    voxel size grows where it is smaller than `CT_SHAPE` (the same field of view)."""
    spacing = tuple(s * f / n for s, f, n in zip(CT_SPACING, CT_SHAPE, shape, strict=True))
    case = lung_ct_case(np.random.default_rng(CT_BENCH_SEED), shape, spacing, canonical=True)
    return np.ascontiguousarray(case.images["ct"][:, ::-1, ::-1])[None]


def bench_network(case: str, kind: str = "monai") -> torch.nn.Module:
    """The benchmark's U-Net for `case`, freshly initialised with seed 0.

    "monai": MONAI `UNet(channels=FILTERS, strides=2, num_res_units=2)` (4.8 M parameters,
    ~13 kFLOP/voxel), the size the benchmark brief names; "unetseg": the engine's `UNet` with
    the same filters (5.7 M parameters, ~118 kFLOP/voxel: two full-resolution convolutions
    per side, about 4x slower per window on this CPU).
    """
    task = TASKS[case]
    channels, classes = len(task.inputs), len(task.labels) + 1
    torch.manual_seed(0)
    if kind == "unetseg":
        return UNet(3, channels, classes, FILTERS, residual=True)
    if kind != "monai":
        raise ValueError(f"network must be one of {NETWORK_KINDS}, got {kind!r}")
    from monai.networks.nets import UNet as MonaiUNet

    return MonaiUNet(3, channels, classes, FILTERS, (2,) * (len(FILTERS) - 1), num_res_units=2)


# --- training -----------------------------------------------------------------------------


class Patches:
    """Random cubic training patches from in-memory phantoms.

    Sample n is centred on a random labelled voxel (class chosen uniformly among the
    classes present) when n is even, else placed uniformly; images (C, K, J, I) float32,
    labels (K, J, I) uint8, every phantom at least `patch` voxels along each axis.
    """

    def __init__(self, cases: list[tuple[np.ndarray, np.ndarray]], patch: int, seed: int):
        self.cases, self.patch = cases, patch
        self.rng = np.random.default_rng(seed)
        self.locations = [
            [np.argwhere(label == c) for c in np.unique(label) if c > 0] for _, label in cases
        ]
        if any(min(label.shape) < patch for _, label in cases):
            raise ValueError(f"every phantom needs at least {patch} voxels per axis")

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        index = int(self.rng.integers(len(self.cases)))
        image, label = self.cases[index]
        shape = np.array(label.shape)
        classes = self.locations[index]
        if n % 2 == 0 and classes:
            points = classes[int(self.rng.integers(len(classes)))]
            centre = points[int(self.rng.integers(len(points)))]
            start = np.clip(centre - self.patch // 2, 0, shape - self.patch)
        else:
            start = self.rng.integers(0, shape - self.patch + 1)
        box = tuple(slice(int(s), int(s) + self.patch) for s in start)
        return image[(slice(None), *box)], label[box]

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        items = [self.sample(step * size + b) for b in range(size)]
        images = torch.from_numpy(np.stack([image for image, _ in items]))
        labels = torch.from_numpy(np.stack([label for _, label in items]).astype(np.int64))
        return images, labels


def train(
    case: str, settings: Settings, kind: str, log: Callable[[str], None] = print
) -> tuple[torch.nn.Module, dict]:
    """Train the bench network of `case`; return it (eval mode) and a training summary."""
    task = TASKS[case]
    start = time.perf_counter()
    phantoms = [
        task.generate(
            np.random.default_rng([settings.seed, i]),
            task.sizes[i % len(task.sizes)],
            task.spacing_mm,
        )
        for i in range(settings.cases)
    ]
    generated = time.perf_counter() - start
    log(f"[{case}] {settings.cases} phantoms generated in {generated:.0f} s")
    patches = Patches(phantoms, settings.patch, settings.seed)
    network = bench_network(case, kind).train()
    torch.manual_seed(settings.seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=settings.lr)
    loss_fn = DiceCELoss()
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(settings.steps):
        decay = max(0.0, 1.0 - (time.perf_counter() - start) / settings.budget_s) ** 0.9
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * decay
        images, labels = patches.batch(step, settings.batch)
        loss = loss_fn(network(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        elapsed = time.perf_counter() - start
        if step % 10 == 0:
            log(f"[{case}] step {step}: loss {losses[-1]:.4f} ({elapsed:.0f} s)")
        if elapsed > settings.budget_s:
            break
    final = float(np.mean(losses[-10:]))
    log(
        f"[{case}] trained {len(losses)} steps in {elapsed:.0f} s; final loss {losses[-1]:.4f}"
        f" (mean of the last {min(10, len(losses))}: {final:.4f})"
    )
    summary = {"steps_done": len(losses), "seconds": round(elapsed, 1), "final_loss": final}
    return network.eval(), summary


# --- cache --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchModel:
    """A trained bench network on disk: `weights.safetensors` + `bench.json` (no pickle)."""

    folder: Path
    info: dict

    @property
    def training(self) -> dict:
        return self.info["training"]


def model_dir(case: str, kind: str, directory: Path) -> Path:
    return Path(directory) / f"bench-{case}-{kind}"


def cached_model(case: str, kind: str, directory: Path) -> BenchModel | None:
    """The cached bench network of `case` and `kind`, or None."""
    folder = model_dir(case, kind, directory)
    if not (folder / "bench.json").is_file() or not (folder / "weights.safetensors").is_file():
        return None
    return BenchModel(folder, json.loads((folder / "bench.json").read_text()))


def ensure_model(
    case: str,
    kind: str = "monai",
    directory: Path = DEFAULT_DIR,
    settings: Settings = Settings(),
    retrain: bool = False,
) -> BenchModel:
    """Return the cached bench network of `case`, training and saving it first if needed."""
    model = None if retrain else cached_model(case, kind, directory)
    if model is None:
        network, summary = train(case, settings, kind, lambda line: print(line, file=sys.stderr))
        folder = model_dir(case, kind, directory)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in network.state_dict().items()}
        save_file(state, str(folder / "weights.safetensors"))
        info = {
            "case": case,
            "network": kind,
            "training": {
                "dataset": TASKS[case].dataset,
                "bench_settings": asdict(settings),
                **summary,
            },
        }
        (folder / "bench.json").write_text(json.dumps(info, indent=1))
        model = BenchModel(folder, info)
        print(f"[{case}] saved {folder}", file=sys.stderr)
    return model


def load_network(case: str, kind: str = "monai", directory: Path = DEFAULT_DIR) -> torch.nn.Module:
    """Load the cached bench network (eval mode); it must exist (`ensure_model`)."""
    network = bench_network(case, kind)
    network.load_state_dict(
        load_file(str(model_dir(case, kind, directory) / "weights.safetensors"))
    )
    return network.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="brain,ct", type=lambda s: s.split(","))
    parser.add_argument("--models", type=Path, default=DEFAULT_DIR, help="cache folder")
    parser.add_argument("--budget", type=float, default=Settings.budget_s, help="seconds/net")
    parser.add_argument("--steps", type=int, default=Settings.steps)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--network", default="monai", choices=NETWORK_KINDS)
    args = parser.parse_args()
    unknown = set(args.cases) - set(TASKS)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {sorted(TASKS)}")
    settings = Settings(steps=args.steps, budget_s=args.budget)
    for case in args.cases:
        model = ensure_model(case, args.network, args.models, settings, args.retrain)
        training = model.training
        print(
            f"{case}: {model.folder} ({training['steps_done']} steps, "
            f"final loss {training['final_loss']:.4f})"
        )


if __name__ == "__main__":
    main()
