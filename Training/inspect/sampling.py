"""Which voxels of a case the inspection looks at: the foreground mask and a seeded, capped,
label-stratified sample of its voxels.

The mask is where the statistics are taken (``FOREGROUND_MODES``): ``non-background`` (voxels
where some sequence differs from its constant background value, ``background_value``: the
zero or minimum outside the head of skull-stripped or z-scored MRI), ``body`` (the engine's
``body_mask`` of the first sequence: head or body without the air around it), ``all`` (every
voxel), or ``auto``: every pixel of a 2D case (an X-ray); for a 3D case the body mask,
restricted to ``non-background`` when at least ``CONSTANT_BACKGROUND_FRACTION`` of the voxels
are background in every sequence (mode ``body+non-background``). Labelled voxels are always
inside the mask.

The sample draws at most ``cap`` voxels of the mask, shared between the strata (label values;
stratum 0 is the unlabelled part of the mask) as evenly as their sizes allow, so that small
labels are represented; ``weights`` say how many mask voxels each sampled voxel stands for, which
makes weighted statistics of the sample estimate those of the whole mask. The generator is
``numpy.random.default_rng([seed, case_index])``: a case's sample depends only on the seed and
its position, not on the other cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from unetseg.engine.preprocessing.cropping import body_mask

FOREGROUND_MODES = ("auto", "non-background", "body", "all")
CONSTANT_BACKGROUND_FRACTION = 0.05
#: Strata larger than this fraction of the case are sampled by rejection (no index arrays of
#: the size of the case).
REJECTION_FRACTION = 0.02
#: Box of the local-mean feature, in voxels along (K, J, I) (2D cases: (J, I)).
LOCAL_BOX_3D = (3, 5, 5)
LOCAL_BOX_2D = (5, 5)


@dataclass(frozen=True)
class CaseSample:
    """Sampled voxels of one case.

    Attributes:
        values: (n, S) float32 intensities, one column per sequence (the case's order).
        local: (n, S) float32 mean intensity of the box around each voxel (``LOCAL_BOX_*``).
        strata: (n,) int16 label value of each voxel (0: unlabelled voxel of the mask).
        weights: (n,) float64 mask voxels each sampled voxel stands for (sums to the mask size).
        index: (n,) int64 flat index of each voxel in the case array.
    """

    values: np.ndarray
    local: np.ndarray
    strata: np.ndarray
    weights: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return int(self.strata.size)


def case_rng(seed: int, case_index: int) -> np.random.Generator:
    """The generator of case ``case_index`` (see module docstring)."""
    return np.random.default_rng([int(seed), int(case_index)])


def foreground_mask(
    images: Sequence[np.ndarray], label: np.ndarray | None, mode: str = "auto"
) -> tuple[np.ndarray, str]:
    """Mask of the voxels to inspect (see module docstring) and the mode used.

    Args:
        images: the case's sequences, arrays of one shape ((K, J, I) or (J, I)).
        label: label map of that shape, or None.
        mode: one of ``FOREGROUND_MODES``.
    """
    if mode not in FOREGROUND_MODES:
        raise ValueError(f"foreground mode must be one of {FOREGROUND_MODES}, got {mode!r}")
    first = images[0]
    flat = first.ndim == 2 or first.shape[0] == 1
    signal = None
    if mode in ("auto", "non-background"):
        signal = np.zeros(first.shape, dtype=bool)
        for image in images:
            signal |= image != background_value(image)
    if mode == "auto":
        constant = 1.0 - signal.mean() >= CONSTANT_BACKGROUND_FRACTION
        mode = "all" if flat else ("body+non-background" if constant else "body")
    if mode == "all":
        mask = np.ones(first.shape, dtype=bool)
    elif mode == "non-background":
        mask = signal
    else:
        mask = body_mask(first if not flat else first.reshape(first.shape[-2:]), modality="MR")
        mask = mask.reshape(first.shape)
        if mode == "body+non-background":
            mask &= signal
    if label is not None:
        mask |= label.reshape(first.shape) != 0
    return mask, mode


def background_value(image: np.ndarray) -> float:
    """The value of a constant background: the image's minimum or 0, whichever more voxels
    have."""
    low = float(image.min())
    return low if np.count_nonzero(image == low) >= np.count_nonzero(image == 0) else 0.0


def share(sizes: Sequence[int], cap: int) -> list[int]:
    """How many voxels to draw from strata of ``sizes``: at most ``cap`` in all, as evenly as
    the sizes allow (a small stratum gives all it has, the rest goes to the larger ones)."""
    take = [0] * len(sizes)
    left = max(int(cap), 0)
    order = sorted(range(len(sizes)), key=lambda n: sizes[n])
    for position, n in enumerate(order):
        fair = left // (len(order) - position)
        take[n] = min(int(sizes[n]), fair)
        left -= take[n]
    return take


def sample_case(
    images: Sequence[np.ndarray],
    label: np.ndarray | None,
    mask: np.ndarray,
    cap: int,
    rng: np.random.Generator,
) -> CaseSample:
    """Draw at most ``cap`` voxels of ``mask``, stratified by label (see module docstring).

    Args:
        images: the case's sequences ((K, J, I) or (J, I), one shape).
        label: label map of that shape (None: one stratum).
        mask: bool mask of that shape.
        cap: most voxels drawn.
        rng: the case's generator (``case_rng``).
    """
    shape = mask.shape
    labels = np.zeros(shape, dtype=np.uint8) if label is None else label.reshape(shape)
    counts = np.bincount(labels[mask].ravel(), minlength=1)
    values_present = [int(v) for v in np.flatnonzero(counts)]
    sizes = [int(counts[v]) for v in values_present]
    takes = share(sizes, cap)
    picked, strata, weights = [], [], []
    for value, size, take in zip(values_present, sizes, takes, strict=True):
        if take == 0:
            continue
        index = _draw(labels, mask, value, size, take, rng)
        picked.append(index)
        strata.append(np.full(index.size, value, dtype=np.int16))
        weights.append(np.full(index.size, size / index.size, dtype=np.float64))
    index = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    box = LOCAL_BOX_2D if len(shape) == 2 else LOCAL_BOX_3D
    if len(shape) == 3 and shape[0] == 1:
        box = (1, *LOCAL_BOX_2D)
    values = np.empty((index.size, len(images)), dtype=np.float32)
    local = np.empty_like(values)
    for column, image in enumerate(images):
        values[:, column] = image.ravel()[index]
        smooth = ndimage.uniform_filter(image.astype(np.float32, copy=False), box, mode="nearest")
        local[:, column] = smooth.ravel()[index]
        del smooth
    return CaseSample(
        values=values,
        local=local,
        strata=np.concatenate(strata) if strata else np.zeros(0, dtype=np.int16),
        weights=np.concatenate(weights) if weights else np.zeros(0, dtype=np.float64),
        index=index,
    )


def _draw(
    labels: np.ndarray,
    mask: np.ndarray,
    value: int,
    size: int,
    take: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``take`` distinct flat indices of the voxels of ``mask`` labelled ``value`` (``size`` of
    them), sorted."""
    total = mask.size
    if size / total < REJECTION_FRACTION or take > size // 2:
        inside = np.flatnonzero(mask & (labels == value))
        return np.sort(rng.choice(inside, size=take, replace=False))
    flat_mask, flat_labels = mask.ravel(), labels.ravel()
    found = np.zeros(0, dtype=np.int64)
    while found.size < take:
        need = take - found.size
        candidates = rng.integers(0, total, size=int(need * total / size * 1.5) + 16)
        good = candidates[flat_mask[candidates] & (flat_labels[candidates] == value)]
        found = np.union1d(found, good)
    return np.sort(rng.choice(found, size=take, replace=False))
