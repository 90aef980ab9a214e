"""Training patches from prepared cases: case storage, patch sampling, the torch dataset.

A prepared case is a ``TrainingCase``: image ``(C, K, J, I)`` float32 on the model grid (2D
images have ``K = 1``), label ``(K, J, I)`` uint8, a sample of voxel positions per present
class for class-balanced sampling and, for partially labelled cases, which voxels of each
output region are labelled (``known``, ``(R, K, J, I)`` uint8). Cases live on disk
(``save_training_case``) and are opened memory-mapped when a patch needs them (``DiskCases``),
through a small per-process LRU cache, so a dataset is never held in RAM.

Reproducibility by construction: sample ``n`` of a run (``n = (step * world_size + rank) *
batch_size + b``) is drawn from ``numpy.random.default_rng([seed, n])`` only, and the case it
comes from from a per-block permutation of the cases. The data stream is therefore a pure
function of the seed and the step counter: independent of worker count and scheduling, and
resumable exactly from the step alone.
"""

from __future__ import annotations

import collections
import json
import os
import random
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from Training.augment import (
    SpatialTransform,
    augment_intensity,
    random_spatial_transform,
    warp,
)
from Training.config import AugmentationConfig, SamplingConfig

#: Voxel positions kept per class for foreground sampling (as nnU-Net).
MAX_LOCATIONS = 10_000
_CASE_ORDER_KEY = 0xCA5E


@dataclass(frozen=True)
class TrainingCase:
    """One prepared case.

    Attributes:
        case_id: identifier (folder name on disk).
        image: ``(C, K, J, I)`` float32, normalised, on the model grid.
        label: ``(K, J, I)`` uint8 training labels (softmax: class values; sigmoid: nested
            region index, region ``c`` = ``label >= c``).
        spacing: voxel size (I, J, K) in mm.
        locations: class value -> ``(n, 3)`` int32 voxel positions (k, j, i) of that class.
        known: partial labels: ``(R, K, J, I)`` uint8, 1 where output region ``r`` is labelled
            (sigmoid channel ``r``); None when every region is labelled everywhere.
        source: name of the data source (``data.sources``), None for single-source data.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    locations: dict[int, np.ndarray]
    known: np.ndarray | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.image.ndim != 4 or self.label.shape != self.image.shape[1:]:
            raise ValueError(
                f"case {self.case_id}: image {self.image.shape} must be (C, K, J, I) and label "
                f"{self.label.shape} (K, J, I)"
            )
        if self.known is not None and (
            self.known.ndim != 4 or self.known.shape[1:] != self.label.shape
        ):
            raise ValueError(
                f"case {self.case_id}: known {self.known.shape} must be (R, K, J, I) with (K, J, "
                f"I) = {self.label.shape}"
            )


def class_locations(label: np.ndarray, max_per_class: int = MAX_LOCATIONS) -> dict[int, np.ndarray]:
    """Up to ``max_per_class`` voxel positions (k, j, i) per non-zero label value (a fixed
    random subset when there are more)."""
    rng = np.random.default_rng(0)
    result = {}
    for value in np.unique(label):
        if value == 0:
            continue
        positions = np.argwhere(label == value).astype(np.int32)
        if len(positions) > max_per_class:
            positions = positions[np.sort(rng.choice(len(positions), max_per_class, False))]
        result[int(value)] = positions
    return result


def make_training_case(
    case_id: str,
    image: np.ndarray,
    label: np.ndarray,
    spacing: Sequence[float],
    *,
    known: np.ndarray | None = None,
    source: str | None = None,
) -> TrainingCase:
    """``TrainingCase`` from arrays; 2D ``(C, J, I)`` / ``(J, I)`` (and ``known`` ``(R, J,
    I)``) become ``K = 1``."""
    image = np.asarray(image, dtype=np.float32)
    label = np.asarray(label, dtype=np.uint8)
    if known is not None:
        known = np.asarray(known, dtype=np.uint8)
        known = known[:, None] if known.ndim == 3 and label.ndim == 2 else known
    if image.ndim == 3 and label.ndim == 2:
        image, label = image[:, None], label[None]
    x, y, *z = (float(s) for s in spacing)
    return TrainingCase(
        case_id,
        image,
        label,
        (x, y, z[0] if z else 1.0),
        class_locations(label),
        known,
        source,
    )


# ----------------------------------------------------------------------------- storage


def save_training_case(folder: str | Path, case: TrainingCase) -> Path:
    """Write ``case`` as ``<folder>/<case_id>/`` (image.npy, label.npy, locations.npz,
    case.json, and known.npy for partial labels), atomically: a complete folder or none."""
    dest = Path(folder) / case.case_id
    staging = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.partial")
    staging.mkdir(parents=True)
    try:
        np.save(staging / "image.npy", np.ascontiguousarray(case.image, dtype=np.float32))
        np.save(staging / "label.npy", np.ascontiguousarray(case.label, dtype=np.uint8))
        np.savez(staging / "locations.npz", **{str(k): v for k, v in case.locations.items()})
        if case.known is not None:
            np.save(staging / "known.npy", np.ascontiguousarray(case.known, dtype=np.uint8))
        meta: dict[str, object] = {"case_id": case.case_id, "spacing": list(case.spacing)}
        if case.source is not None:
            meta["source"] = case.source
        (staging / "case.json").write_text(json.dumps(meta))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def load_training_case(folder: str | Path, mmap: bool = True) -> TrainingCase:
    """Open a case written by ``save_training_case`` (arrays memory-mapped read-only)."""
    folder = Path(folder)
    meta = json.loads((folder / "case.json").read_text())
    mode = "r" if mmap else None
    with np.load(folder / "locations.npz") as stored:
        locations = {int(k): stored[k] for k in stored.files}
    known_path = folder / "known.npy"
    return TrainingCase(
        meta["case_id"],
        np.load(folder / "image.npy", mmap_mode=mode),
        np.load(folder / "label.npy", mmap_mode=mode),
        tuple(meta["spacing"]),
        locations,
        np.load(known_path, mmap_mode=mode) if known_path.is_file() else None,
        meta.get("source"),
    )


class CaseSource(Protocol):
    """Indexable collection of prepared cases."""

    def __len__(self) -> int: ...

    def load(self, index: int) -> TrainingCase: ...


class MemoryCases:
    """Cases held in memory (tests, tiny datasets)."""

    def __init__(self, cases: Sequence[TrainingCase]) -> None:
        self.cases = list(cases)

    def __len__(self) -> int:
        return len(self.cases)

    def load(self, index: int) -> TrainingCase:
        return self.cases[index]


class DiskCases:
    """Cases in folders written by ``save_training_case``, opened memory-mapped on demand."""

    def __init__(self, folders: Sequence[str | Path]) -> None:
        self.folders = [Path(f) for f in folders]

    def __len__(self) -> int:
        return len(self.folders)

    def load(self, index: int) -> TrainingCase:
        return load_training_case(self.folders[index])


class CaseCache:
    """Least-recently-used cache of ``maxsize`` opened cases of a ``CaseSource``."""

    def __init__(self, source: CaseSource, maxsize: int = 8) -> None:
        self.source = source
        self.maxsize = max(1, int(maxsize))
        self._cases: collections.OrderedDict[int, TrainingCase] = collections.OrderedDict()

    def get(self, index: int) -> TrainingCase:
        case = self._cases.pop(index, None)
        if case is None:
            case = self.source.load(index)
            while len(self._cases) >= self.maxsize:
                self._cases.popitem(last=False)
        self._cases[index] = case
        return case

    def __getstate__(self) -> dict[str, object]:
        # Worker processes start with an empty cache (no memory maps are pickled).
        return {"source": self.source, "maxsize": self.maxsize, "_cases": collections.OrderedDict()}


# ----------------------------------------------------------------------------- sampling


class PatchSampler:
    """Draw one (augmented) training patch from a case.

    Args:
        patch_size: (x, y, z) = (I, J, K) voxels; 2D models (``spatial_dims = 2``) use (x, y)
            and take one axial slice (K index) of the case.
        spatial_dims: 3 or 2.
        sampling: foreground oversampling and the background rule (``SamplingConfig``).
        augmentation: ``None`` for plain crops.
        input_names: the model's input names in channel order (they resolve
            ``modality_dropout.keep_one_of``).
    """

    def __init__(
        self,
        patch_size: Sequence[int],
        spatial_dims: int,
        sampling: SamplingConfig,
        augmentation: AugmentationConfig | None = None,
        input_names: Sequence[str] = (),
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims = spatial_dims
        self.patch = tuple(int(p) for p in reversed(tuple(patch_size)[:spatial_dims]))
        self.sampling = sampling
        self.augmentation = augmentation
        names = list(input_names)
        kept = augmentation.modality_dropout.keep_one_of if augmentation else ()
        self.keep_one_of = tuple(names.index(name) for name in kept)

    def sample(
        self, case: TrainingCase, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns image ``(C, *P)`` float32 and label ``(*P)`` uint8, array order."""
        image, label, _ = self.draw(case, rng)
        return image, label

    def draw(
        self, case: TrainingCase, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """As ``sample``, plus the patch of ``case.known`` (``(R, *P)`` uint8, 0 outside the
        case; None for a fully labelled case)."""
        use_foreground = bool(case.locations) and rng.random() < self.sampling.foreground_oversample
        limit = self.sampling.max_background
        tries = self.sampling.tries if limit is not None else 1
        best: tuple[float, int, tuple[int, ...], SpatialTransform, torch.Tensor] | None = None
        for _ in range(tries):
            k, centre = self._centre(case, rng, use_foreground)
            transform = self._transform(rng, case)
            label = warp(self._label(case, k), centre, self.patch, transform, "nearest")
            background = float((label == 0).float().mean())
            if best is None or background < best[0]:
                best = (background, k, centre, transform, label)
            if limit is None or background <= limit:
                break
        assert best is not None
        _, k, centre, transform, label = best
        known = None
        if case.known is not None:
            volume = case.known if self.spatial_dims == 3 else case.known[:, k]
            known = warp(volume, centre, self.patch, transform, "nearest").to(torch.uint8)
        image = warp(self._image(case, k), centre, self.patch, transform, "bilinear")
        if self.augmentation is not None:
            image = augment_intensity(image, rng, self.augmentation, self.keep_one_of)
        return image, label[0].to(torch.uint8), known

    def _image(self, case: TrainingCase, k: int) -> np.ndarray:
        return case.image if self.spatial_dims == 3 else case.image[:, k]

    def _label(self, case: TrainingCase, k: int) -> np.ndarray:
        return case.label[None] if self.spatial_dims == 3 else case.label[None, k]

    def _centre(
        self, case: TrainingCase, rng: np.random.Generator, use_foreground: bool
    ) -> tuple[int, tuple[int, ...]]:
        """(slice index for 2D, patch centre voxel in array order)."""
        shape = case.label.shape
        if use_foreground:
            classes = sorted(case.locations)
            positions = case.locations[classes[int(rng.integers(len(classes)))]]
            k, j, i = (int(v) for v in positions[int(rng.integers(len(positions)))])
            return k, ((k, j, i) if self.spatial_dims == 3 else (j, i))
        k = int(rng.integers(shape[0]))
        spatial = shape if self.spatial_dims == 3 else shape[1:]
        centre = []
        for extent, size in zip(spatial, self.patch, strict=True):
            # Range of centres keeping the patch inside the case (or the case inside the patch).
            low, high = size // 2, extent - size + size // 2
            centre.append(int(rng.integers(min(low, high), max(low, high) + 1)))
        return k, tuple(centre)

    def _transform(self, rng: np.random.Generator, case: TrainingCase) -> SpatialTransform:
        if self.augmentation is None:
            return SpatialTransform.identity(self.spatial_dims)
        spacing = tuple(reversed(case.spacing[: self.spatial_dims]))
        return random_spatial_transform(rng, self.augmentation, self.patch, spacing)


def case_order(seed: int, n_cases: int, index: int) -> int:
    """Case of sample ``index``: position ``index % n`` of permutation ``index // n`` (so
    every case appears once per ``n`` consecutive samples)."""
    block, position = divmod(int(index), n_cases)
    permutation = np.random.default_rng([seed, _CASE_ORDER_KEY, block]).permutation(n_cases)
    return int(permutation[position])


class PatchDataset(Dataset):
    """Map-style dataset: item ``n`` is training sample ``n`` (any non-negative integer).

    Returns ``(image (C, *P) float32, label (*P) uint8)``, and with ``known_channels`` (partial
    labels) also ``known (known_channels, *P) uint8`` (all ones for a fully labelled case).
    Use with ``StepBatchSampler``.
    """

    def __init__(
        self,
        cases: CaseSource,
        sampler: PatchSampler,
        seed: int,
        cache_size: int = 8,
        known_channels: int | None = None,
    ) -> None:
        if len(cases) == 0:
            raise ValueError("no training cases")
        self.cache = CaseCache(cases, cache_size)
        self.n_cases = len(cases)
        self.sampler = sampler
        self.seed = int(seed)
        self.known_channels = known_channels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        rng = np.random.default_rng([self.seed, int(index)])
        case = self.cache.get(case_order(self.seed, self.n_cases, index))
        if self.known_channels is None:
            return self.sampler.sample(case, rng)
        image, label, known = self.sampler.draw(case, rng)
        if known is None:
            known = torch.ones((self.known_channels, *label.shape), dtype=torch.uint8)
        return image, label, known


class StepBatchSampler(Sampler[list[int]]):
    """Sample indices of optimizer steps ``start_step .. stop_step - 1`` for one process:
    step ``s`` of rank ``r`` gets samples ``(s * world_size + r) * batch_size + b``."""

    def __init__(
        self, batch_size: int, start_step: int, stop_step: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.batch_size = int(batch_size)
        self.start_step = int(start_step)
        self.stop_step = int(stop_step)
        self.rank = int(rank)
        self.world_size = int(world_size)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.stop_step):
            first = (step * self.world_size + self.rank) * self.batch_size
            yield list(range(first, first + self.batch_size))

    def __len__(self) -> int:
        return max(0, self.stop_step - self.start_step)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one torch thread per worker, and the global numpy /
    ``random`` generators seeded from the worker's torch seed (samples do not use them)."""
    del worker_id
    torch.set_num_threads(1)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
