"""Chest CT phantom (HU) with right and left lung labels, and chest X-rays projected from it.

Anatomy (nominal RAS mm, +x = patient right): body with subcutaneous fat, ribs, sternum, spine,
lungs with branching vessels, heart, aorta, trachea and main bronchi, liver and stomach domes
under the diaphragm. Labels follow the patient's side: 1 = right lung (+x), 2 = left lung.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from Training.synth.case import SynthCase, SynthObject
from Training.synth.render import render_ct
from Training.synth.shapes import (
    blur,
    ellipsoid_r2,
    polyline_distance,
    segment_distance,
    smooth_field,
)
from Training.synth.space import PhantomSpace, random_geometry, random_rotation, rotation_matrix
from unetseg.engine.geometry import Geometry

RIGHT_LUNG, LEFT_LUNG = 1, 2
LUNG_LABELS = {RIGHT_LUNG: "right lung", LEFT_LUNG: "left lung"}
NOMINAL_EXTENT = (370.0, 260.0, 300.0)
BODY_RADII = (170.0, 120.0)
BACK_Y = -112.0
# Lung ellipsoids: centre, semi-axes (R, A, S).
LUNGS = {
    RIGHT_LUNG: ((72.0, -5.0, 15.0), (60.0, 88.0, 125.0)),
    LEFT_LUNG: ((-70.0, -5.0, 15.0), (57.0, 88.0, 120.0)),
}
HILA = {RIGHT_LUNG: (35.0, 2.0, 18.0), LEFT_LUNG: (-35.0, 2.0, 18.0)}
HEART = ((-20.0, 30.0, -45.0), (62.0, 52.0, 55.0))
LIVER_DOME = ((45.0, 0.0, -150.0), (120.0, 100.0, 85.0))
STOMACH_DOME = ((-50.0, -5.0, -152.0), (105.0, 95.0, 75.0))
SPINE_CENTER, SPINE_RADIUS = (0.0, -68.0), 19.0
# Attenuation of water for the X-ray projection (1/mm, about 70 keV effective).
MU_WATER = 0.019


def lung_ct_case(
    rng: np.random.Generator,
    size: int | Sequence[int] = 96,
    spacing: Sequence[float] | None = None,
    *,
    canonical: bool = False,
) -> SynthCase:
    """One chest CT phantom in HU.

    Args:
        rng: source of all randomness.
        size, spacing, canonical: grid, see ``random_geometry`` (spacing in (I, J, K) mm).

    Returns:
        ``SynthCase`` with images ``{"ct": (K, J, I) float32 HU}``, label uint8 (1 right lung,
        2 left lung; intrapulmonary vessels belong to the lung), one ``SynthObject`` per lung.
    """
    center = rng.uniform(-40.0, 40.0, size=3)
    geometry = random_geometry(rng, size, spacing, canonical=canonical, center_ras=center)
    space = PhantomSpace.fit(geometry, NOMINAL_EXTENT, center + rng.uniform(-3.0, 3.0, size=3))
    hu, label, _ = _chest(rng, space)
    image = render_ct(rng, space, hu, noise_hu=(8.0, 25.0))
    objects = [
        SynthObject(
            value,
            name.replace(" ", "_"),
            tuple(float(v) for v in space.to_world(LUNGS[value][0])),
            0.0,
            0.0,
            int(np.count_nonzero(label == value)),
        )
        for value, name in LUNG_LABELS.items()
    ]
    meta = {"task": "lung-ct", "scale": space.scale, "labels": LUNG_LABELS}
    return SynthCase({"ct": image}, label, geometry, objects, meta)


def lung_cxr_case(rng: np.random.Generator, size: int = 256) -> SynthCase:
    """One posteroanterior chest X-ray projected from a chest CT phantom.

    The CT (canonical RAS grid, real anatomical size times 0.85-1.05) is converted to linear
    attenuation, integrated along the anterior-posterior axis, mapped to 0-255 with a random
    gamma, noise and a small in-plane rotation. The mask is the projection of both lungs minus
    the heart and the sub-diaphragmatic domes (as in JSRT/SCR-style lung field masks).

    Returns:
        ``SynthCase`` with images ``{"image": (J, I) float32 in [0, 255]}`` (row 0 superior,
        column 0 the patient's right, as a radiograph is displayed), label (J, I) uint8 0/1,
        geometry shape (1, J, I) with ``ijk_to_ras = diag(-s, -s, 1, 1)`` (how ITK and Slicer
        place a 2D image of pixel size ``s`` mm).
    """
    field = 400.0 * rng.uniform(1.0, 1.15)
    depth = max(16, size // 8)
    spacing = (field / size, 280.0 / depth, field / size)
    geometry = random_geometry(rng, (size, depth, size), spacing, canonical=True)
    space = PhantomSpace(geometry, rng.uniform(0.85, 1.05), rng.uniform(-10.0, 10.0, size=3))
    hu, label, masks = _chest(rng, space)
    mu = MU_WATER * np.clip(1.0 + hu / 1000.0, 0.0, None)
    path = mu.sum(axis=1) * spacing[1]  # (K, I) line integrals along A-P
    lungs = label.any(axis=1) & ~(masks["heart"] | masks["abdomen"]).any(axis=1)
    # Radiograph display: superior at the top, patient's right on the left.
    path, lungs = path[::-1, ::-1], lungs[::-1, ::-1]
    angle = rng.uniform(-4.0, 4.0)
    path = ndimage.rotate(path, angle, reshape=False, order=1, mode="constant")
    mask = ndimage.rotate(lungs.astype(np.uint8), angle, reshape=False, order=0, mode="constant")
    image = np.clip(path / np.percentile(path, 99.5), 0.0, 1.0) ** rng.uniform(0.7, 1.3)
    image = blur(image, (spacing[0], spacing[0]), 0.8)
    image += rng.uniform(0.005, 0.02) * rng.standard_normal(image.shape)
    image = (255.0 * np.clip(image, 0.0, 1.0)).astype(np.float32)
    flat = Geometry(np.diag([-spacing[0], -spacing[0], 1.0, 1.0]), (1, *image.shape))
    objects = [SynthObject(1, "lungs", (0.0, 0.0, 0.0), 0.0, 0.0, int(mask.sum()))]
    meta = {"task": "lung-cxr", "scale": space.scale, "labels": {1: "lungs"}}
    return SynthCase({"image": image}, mask.astype(np.uint8), flat, objects, meta)


def _chest(
    rng: np.random.Generator, space: PhantomSpace
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Noiseless HU map (K, J, I), lung label (K, J, I) uint8 and masks of the heart and the
    sub-diaphragmatic organs (for X-ray lung fields)."""
    x, y, z = space.coords()
    hu = np.full(space.shape, -1000.0, dtype=np.float32)
    # Elliptic trunk narrowing above the lung apices towards the neck.
    taper = np.clip(1.0 - (z - 150.0) / 60.0 * 0.6, 0.4, 1.0)
    body = ((x / BODY_RADII[0]) ** 2 + (y / BODY_RADII[1]) ** 2 <= taper**2) & (y >= BACK_Y)
    hu[body] = -100.0
    inner = taper - 12.0 / BODY_RADII[1]
    muscle = (x / BODY_RADII[0]) ** 2 + (y / BODY_RADII[1]) ** 2 <= inner**2
    hu[muscle & (y >= BACK_Y + 8.0)] = 40.0

    ring = np.sqrt((x / 150.0) ** 2 + (y / 100.0) ** 2)
    rib_phase = np.mod(z + 0.25 * (y + 100.0) + rng.uniform(0.0, 26.0), 26.0)
    ribs = (np.abs(ring - 1.0) < 0.045) & (rib_phase < 9.0) & (z < 150.0)
    hu[ribs] = np.where(y[ribs] < 60.0, 700.0, 150.0)  # anterior ends: costal cartilage
    sternum = ((x / 16.0) ** 2 + ((y - 100.0) / 6.0) ** 2 <= 1.0) & (z > -60.0) & (z < 100.0)
    hu[sternum] = 400.0

    spine_r = np.hypot(x - SPINE_CENTER[0], y - SPINE_CENTER[1])
    disc = np.mod(z, 30.0) < 5.0
    hu[spine_r <= SPINE_RADIUS] = np.float32(250.0)
    hu[(spine_r <= SPINE_RADIUS) & (spine_r > SPINE_RADIUS - 3.0)] = 600.0
    hu[(spine_r <= SPINE_RADIUS) & disc] = 80.0
    hu[np.hypot(x, y - (SPINE_CENTER[1] - 24.0)) <= 8.0] = 20.0  # spinal canal
    hu[(x / 5.0) ** 2 + ((y - SPINE_CENTER[1] + 38.0) / 9.0) ** 2 <= 1.0] = 500.0  # spinous

    heart = ellipsoid_r2(space, *HEART, rotation_matrix((0, 0, 1), -25.0)) <= 1.0
    abdomen = (ellipsoid_r2(space, *LIVER_DOME) <= 1.0) | (
        ellipsoid_r2(space, *STOMACH_DOME) <= 1.0
    )
    hu[abdomen] = np.where(x[abdomen] > 0, 60.0, 30.0)
    hu[heart] = 40.0
    mediastinum = (np.abs(x) < 20.0) & (y > -60.0)
    blocked = heart | abdomen | mediastinum | (spine_r <= SPINE_RADIUS + 4.0)
    inside_ribs = (x / 138.0) ** 2 + (y / 91.0) ** 2 <= 1.0

    label = np.zeros(space.shape, dtype=np.uint8)
    for value, (center, radii) in LUNGS.items():
        lung = (ellipsoid_r2(space, center, radii) <= 1.0) & inside_ribs & ~blocked
        label[lung] = value
    lungs = label > 0
    texture = smooth_field(rng, space, wavelength=25.0, terms=3)
    hu[lungs] = (-860.0 + 20.0 * texture - 0.5 * y)[lungs]  # denser posteriorly (gravity)
    # Peripheral vessels: tubes where the zero sets of two smooth random fields cross.
    network = np.maximum(
        np.abs(smooth_field(rng, space, wavelength=30.0)),
        np.abs(smooth_field(rng, space, wavelength=30.0)),
    )
    hu[lungs & (network < 0.2)] = 40.0
    for value in LUNGS:
        _vessel_tree(rng, space, hu, label == value, HILA[value], LUNGS[value][0])

    contrast = 200.0 if rng.uniform() < 0.5 else 40.0
    aorta = polyline_distance(
        space,
        np.array(
            [[10.0, 30.0, 20.0], [0.0, 20.0, 75.0], [-25.0, -50.0, 60.0], [-25.0, -52.0, -160.0]]
        ),
    )
    hu[(aorta <= 13.0) & ~lungs] = contrast
    airway = np.minimum(
        polyline_distance(space, np.array([[0.0, 10.0, 160.0], [0.0, 10.0, 45.0]])) - 9.0,
        np.minimum(
            segment_distance(space, (0.0, 10.0, 45.0), HILA[RIGHT_LUNG]),
            segment_distance(space, (0.0, 10.0, 45.0), HILA[LEFT_LUNG]),
        )
        - 6.0,
    )
    hu[(airway <= 0.0) & body] = -1000.0
    return hu, label, {"heart": heart, "abdomen": abdomen}


def _vessel_tree(
    rng: np.random.Generator,
    space: PhantomSpace,
    hu: np.ndarray,
    lung: np.ndarray,
    hilum: Sequence[float],
    target: Sequence[float],
) -> None:
    """Paint branching vessels (+40 HU) inside ``lung``: three trunks from ``hilum`` (upper,
    middle, lower lobe directions around ``target``), 4 generations, each branch 0.75 times as
    long and 0.7 times as thick as its parent (at least 0.6 voxel radius)."""
    min_radius = 0.6 * float(space.geometry.spacing.min()) / space.scale
    start = np.asarray(hilum, dtype=np.float64)
    stack = []
    for offset in ((0.0, 0.0, 80.0), (0.0, 30.0, 0.0), (0.0, -20.0, -70.0)):
        heading = np.asarray(target, dtype=np.float64) + offset - start
        stack.append((start, heading / np.linalg.norm(heading), 35.0, 4.5, 0))
    while stack:
        start, heading, length, radius, generation = stack.pop()
        end = start + length * heading
        radius = max(radius, min_radius)
        block = space.box((start + end) / 2.0, length / 2.0 + radius)
        if block is not None:
            inside = (segment_distance(space, start, end, block) <= radius) & lung[block]
            hu[block][inside] = 40.0
        if generation < 4:
            for sign in (-1.0, 1.0):
                normal = np.cross(heading, rng.normal(size=3))
                bend = rotation_matrix(normal, sign * rng.uniform(20.0, 45.0))
                child = bend @ random_rotation(rng, 10.0) @ heading
                stack.append((end, child, 0.75 * length, 0.7 * radius, generation + 1))
