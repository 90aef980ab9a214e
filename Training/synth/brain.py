"""Brain MRI phantom with metastasis-like lesions (BrainMetShare and BraTS label conventions).

Anatomy: scalp, skull, CSF, cortex with sulci, white matter, basal ganglia, lateral ventricles.
Lesions (1-5): ellipsoids of 2-40 mm nominal diameter, an enhancing rim (bright on T1-Gd and
BRAVO), a necrotic core for those of 10 mm or more, and FLAIR-bright oedema around most of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from Training.synth.case import SynthCase, SynthObject
from Training.synth.render import render_mr
from Training.synth.shapes import ellipsoid_r2, is_apart, point_r2, random_axes, smooth_field
from Training.synth.space import PhantomSpace, random_geometry, random_rotation, rotation_matrix

AIR, SCALP, SKULL, CSF, GREY, WHITE, EDEMA, ENHANCING, NECROSIS = range(9)

# Relative signal per tissue class (AIR ... NECROSIS) for each sequence.
SEQUENCE_SIGNAL: dict[str, tuple[float, ...]] = {
    "t1_pre": (0.0, 0.95, 0.10, 0.18, 0.50, 0.70, 0.40, 0.50, 0.22),
    "t1_gd": (0.0, 0.95, 0.10, 0.18, 0.50, 0.70, 0.40, 1.00, 0.22),
    "flair": (0.0, 0.75, 0.05, 0.06, 0.60, 0.48, 0.95, 0.70, 0.55),
    "bravo": (0.0, 0.90, 0.08, 0.12, 0.42, 0.72, 0.38, 0.98, 0.18),
    "t2": (0.0, 0.60, 0.05, 1.00, 0.62, 0.45, 0.88, 0.62, 0.92),
}
# Output image names per layout -> sequence rendered for it.
LAYOUT_SEQUENCES: dict[str, dict[str, str]] = {
    "brainmetshare": {"t1_pre": "t1_pre", "t1_gd": "t1_gd", "flair": "flair", "bravo": "bravo"},
    "brats": {"flair": "flair", "t1": "t1_pre", "t1c": "t1_gd", "t2": "t2"},
}
BRAINMETSHARE_LABELS = {1: "metastasis"}
# BraTS label values: 1 necrosis / non-enhancing core, 2 oedema; enhancing tumour is 3 in the
# BraTS 2023 convention (the default here) and 4 in BraTS 2017-2021 (and 2015).
BRATS_NECROSIS, BRATS_EDEMA = 1, 2

HEAD_RADII = (72.0, 92.0, 80.0)
SKULL_OUTER_RADII = (67.0, 87.0, 75.0)
SKULL_INNER_RADII = (61.0, 81.0, 69.0)
BRAIN_RADII = (59.0, 79.0, 67.0)
NOMINAL_EXTENT = (170.0, 210.0, 185.0)
LESION_DIAMETER_MM = (2.0, 40.0)


def brain_mri_case(
    rng: np.random.Generator,
    size: int | Sequence[int] = 96,
    spacing: Sequence[float] | None = None,
    *,
    layout: str = "brainmetshare",
    lesions: int | None = None,
    et_label: int = 3,
    canonical: bool = False,
) -> SynthCase:
    """One brain MRI phantom.

    Args:
        rng: source of all randomness (same seed, same case).
        size, spacing, canonical: grid, see ``random_geometry`` (spacing in (I, J, K) mm).
        layout: ``"brainmetshare"``: images t1_pre, t1_gd, flair, bravo; label 1 = whole
            metastasis (rim + core, no oedema). ``"brats"``: skull-stripped images flair, t1,
            t1c, t2; labels 1 necrotic core, 2 oedema, ``et_label`` enhancing rim.
        lesions: number of lesions (default: uniform in 1-5; fewer if they do not fit).
        et_label: 3 (BraTS 2023) or 4 (BraTS 2017-2021) for the enhancing tumour.

    Returns:
        ``SynthCase`` with images (K, J, I) float32, label uint8 and one ``SynthObject`` per
        lesion; its ``voxels`` count rim + core (BraTS layout: labels ``et_label`` and 1; the
        object's ``label`` is then ``et_label``).
    """
    if layout not in LAYOUT_SEQUENCES:
        raise ValueError(f"layout must be one of {sorted(LAYOUT_SEQUENCES)}, got {layout!r}")
    if et_label not in (3, 4):
        raise ValueError(f"et_label must be 3 or 4, got {et_label}")
    center = rng.uniform(-40.0, 40.0, size=3)
    geometry = random_geometry(rng, size, spacing, canonical=canonical, center_ras=center)
    space = PhantomSpace.fit(geometry, NOMINAL_EXTENT, center + rng.uniform(-3.0, 3.0, size=3))
    tissue, brain = _anatomy(rng, space)
    count = int(rng.integers(1, 6)) if lesions is None else lesions
    objects = _add_lesions(rng, space, tissue, count)

    if layout == "brainmetshare":
        label = ((tissue == ENHANCING) | (tissue == NECROSIS)).astype(np.uint8)
        names = BRAINMETSHARE_LABELS
    else:
        label = np.zeros(tissue.shape, dtype=np.uint8)
        label[tissue == NECROSIS] = BRATS_NECROSIS
        label[tissue == EDEMA] = BRATS_EDEMA
        label[tissue == ENHANCING] = et_label
        names = {BRATS_NECROSIS: "necrosis", BRATS_EDEMA: "edema", et_label: "enhancing"}
        objects = [replace(lesion, label=et_label) for lesion in objects]

    texture = smooth_field(rng, space, wavelength=9.0, terms=4)
    images = {}
    for name, sequence in LAYOUT_SEQUENCES[layout].items():
        image = render_mr(rng, space, tissue, SEQUENCE_SIGNAL[sequence], texture)
        if layout == "brats":
            image[~brain] = 0.0
        images[name] = image
    meta = {"task": "brain-mri", "layout": layout, "scale": space.scale, "labels": names}
    return SynthCase(images, label, geometry, objects, meta)


def _anatomy(rng: np.random.Generator, space: PhantomSpace) -> tuple[np.ndarray, np.ndarray]:
    """Tissue classes (K, J, I) uint8 of the head and the brain mask (inside the pial surface)."""
    origin = (0.0, 0.0, 0.0)
    tissue = np.zeros(space.shape, dtype=np.uint8)
    tissue[ellipsoid_r2(space, origin, HEAD_RADII) <= 1] = SCALP
    tissue[ellipsoid_r2(space, origin, SKULL_OUTER_RADII) <= 1] = SKULL
    tissue[ellipsoid_r2(space, origin, SKULL_INNER_RADII) <= 1] = CSF
    rho = np.sqrt(ellipsoid_r2(space, origin, BRAIN_RADII))
    brain = rho <= 1.0
    gyri = smooth_field(rng, space, wavelength=14.0, terms=6)
    sulci = (rho > 0.9) & (gyri > 0.6)
    x, z = space.affine(np.eye(3)[[0, 2]], [0.0, 0.0])
    fissure = (np.abs(x) < 1.5) & (rho > 0.45) & (z > -25.0)
    tissue[brain & ~sulci & ~fissure] = GREY
    tissue[(rho < 0.8 + 0.05 * gyri) & ~fissure] = WHITE
    for side in (-1.0, 1.0):
        tissue[ellipsoid_r2(space, (20.0 * side, 6.0, 2.0), (8.0, 14.0, 9.0)) <= 1] = GREY
        splay = rotation_matrix((0.0, 0.0, 1.0), 12.0 * side)
        ventricle = ellipsoid_r2(space, (8.0 * side, 4.0, 12.0), (5.5, 24.0, 8.0), splay)
        tissue[ventricle <= 1] = CSF
    return tissue, brain


def _add_lesions(
    rng: np.random.Generator, space: PhantomSpace, tissue: np.ndarray, count: int
) -> list[SynthObject]:
    """Place up to ``count`` separate lesions in brain parenchyma and paint them into ``tissue``.

    Lesion centres are voxel centres (so even a 2 mm lesion covers at least one voxel) and lesions
    are more than a voxel diagonal apart (so each is its own connected component).
    """
    gap = space.voxel_diagonal + 1.0
    placed: list[tuple[np.ndarray, np.ndarray, np.ndarray, float, float]] = []
    log_low, log_high = np.log(LESION_DIAMETER_MM)
    for _ in range(200 * count):
        if len(placed) == count:
            break
        radii = random_axes(rng, np.exp(rng.uniform(log_low, log_high)) / 2.0, 0.15)
        limit = 0.92 - radii.max() / min(BRAIN_RADII)
        if limit < 0.1:
            continue
        direction = rng.normal(size=3)
        point = direction / np.linalg.norm(direction) * limit * rng.uniform() ** (1 / 3)
        center, index = space.snap(point * BRAIN_RADII)
        if point_r2(center, (0, 0, 0), BRAIN_RADII) > limit**2 or tissue[index] not in (
            GREY,
            WHITE,
        ):
            continue
        if not is_apart(center, radii.max(), [(c, r.max()) for c, r, *_ in placed], gap):
            continue
        core = rng.uniform(0.4, 0.65) if 2.0 * radii.max() >= 10.0 else 0.0
        edema = 0.0 if rng.uniform() < 0.2 else rng.uniform(0.3, 1.5) * radii.mean() + 2.0
        placed.append((center, radii, random_rotation(rng, 180.0), core, edema))

    # Oedema first (parenchyma only), then every lesion over it.
    for center, radii, rotation, _, edema in placed:
        if edema > 0.0:
            block = space.box(center, radii.max() + edema)
            region = tissue[block]
            r2 = ellipsoid_r2(space, center, radii + edema, rotation, block)
            region[(r2 <= 1) & ((region == GREY) | (region == WHITE))] = EDEMA
    objects = []
    for center, radii, rotation, core, _ in placed:
        block = space.box(center, radii.max())
        region = tissue[block]
        r2 = ellipsoid_r2(space, center, radii, rotation, block)
        region[r2 <= 1] = ENHANCING
        region[r2 <= core**2] = NECROSIS
        scale = space.scale
        objects.append(
            SynthObject(
                label=1,
                kind="metastasis",
                center_ras=tuple(float(v) for v in space.to_world(center)),
                diameter_mm=float(2.0 * np.cbrt(np.prod(radii)) * scale),
                volume_mm3=float(4.0 / 3.0 * np.pi * np.prod(radii) * scale**3),
                voxels=int(np.count_nonzero(r2 <= 1)),
            )
        )
    return objects
