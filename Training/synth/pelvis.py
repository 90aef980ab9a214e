"""Pelvic CT phantom (HU) with a primary ovarian mass and peritoneal metastatic deposits.

Anatomy (nominal RAS mm): body with subcutaneous fat, abdominal wall and back muscles, psoas,
lumbar spine, sacrum, iliac wings, femoral heads and necks, pubic rami, contrast-filled iliac
vessels, bladder, uterus, rectosigmoid and small-bowel loops, optional ascites.
Labels: 1 = primary ovarian mass (cystic-solid, in the adnexa), 2 = peritoneal deposits (small
nodules on the parietal peritoneum, in the omentum and in the pouch of Douglas).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from Training.synth.case import SynthCase, SynthObject
from Training.synth.render import render_ct
from Training.synth.shapes import (
    ellipsoid_r2,
    is_apart,
    polyline_distance,
    random_axes,
    smooth_field,
)
from Training.synth.space import PhantomSpace, random_geometry, random_rotation, rotation_matrix

MASS, DEPOSIT = 1, 2
OVARIAN_LABELS = {MASS: "ovarian mass", DEPOSIT: "peritoneal metastasis"}
NOMINAL_EXTENT = (380.0, 270.0, 300.0)
BODY_RADII = (175.0, 125.0)
WALL_RADII = (155.0, 105.0)  # inside the subcutaneous fat
CAVITY_RADII = (142.0, 92.0)  # inside the abdominal wall muscles
BACK_Y = -118.0
FAT, FLUID, SOFT, BONE_MARROW, BONE_CORTEX = -95.0, 10.0, 45.0, 250.0, 700.0
MASS_DIAMETER_MM = (40.0, 110.0)
DEPOSIT_DIAMETER_MM = (4.0, 25.0)


def ovarian_ct_case(
    rng: np.random.Generator,
    size: int | Sequence[int] = 96,
    spacing: Sequence[float] | None = None,
    *,
    deposits: int | None = None,
    canonical: bool = False,
) -> SynthCase:
    """One pelvic CT phantom in HU.

    Args:
        rng: source of all randomness.
        size, spacing, canonical: grid, see ``random_geometry`` (spacing in (I, J, K) mm).
        deposits: number of peritoneal deposits (default: uniform in 0-8; fewer if they do not
            fit).

    Returns:
        ``SynthCase`` with images ``{"ct": (K, J, I) float32 HU}``, label uint8 (1 ovarian mass,
        2 peritoneal deposits), one ``SynthObject`` for the mass and one per deposit.
    """
    center = rng.uniform(-40.0, 40.0, size=3)
    geometry = random_geometry(rng, size, spacing, canonical=canonical, center_ras=center)
    space = PhantomSpace.fit(geometry, NOMINAL_EXTENT, center + rng.uniform(-3.0, 3.0, size=3))
    hu, bone, cavity = _pelvis(rng, space)
    label = np.zeros(space.shape, dtype=np.uint8)
    count = int(rng.integers(0, 9)) if deposits is None else deposits
    objects = _add_mass(rng, space, hu, label, bone)
    objects += _add_deposits(rng, space, hu, label, bone, cavity, count, objects[0])
    image = render_ct(rng, space, hu, noise_hu=(8.0, 20.0))
    meta = {"task": "ovarian-ct", "scale": space.scale, "labels": OVARIAN_LABELS}
    return SynthCase({"ct": image}, label, geometry, objects, meta)


def _paint_tube(
    space: PhantomSpace,
    hu: np.ndarray,
    points: np.ndarray,
    radius: float,
    value: float,
    where: np.ndarray | None = None,
) -> np.ndarray:
    """Paint a tube of ``radius`` along the polyline ``points`` (n, 3); returns its mask."""
    distance = polyline_distance(space, np.asarray(points, dtype=np.float64))
    mask = distance <= radius
    if where is not None:
        mask &= where
    hu[mask] = value
    return mask


def _pelvis(
    rng: np.random.Generator, space: PhantomSpace
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noiseless HU map, bone mask and peritoneal-cavity mask (all (K, J, I))."""
    x, y, z = space.coords()
    hu = np.full(space.shape, -1000.0, dtype=np.float32)
    ring = (x / BODY_RADII[0]) ** 2 + (y / BODY_RADII[1]) ** 2
    hu[(ring <= 1.0) & (y >= BACK_Y)] = FAT
    wall = (x / WALL_RADII[0]) ** 2 + (y / WALL_RADII[1]) ** 2 <= 1.0
    hu[wall & (y >= BACK_Y + 10.0)] = SOFT
    cavity = ((x / CAVITY_RADII[0]) ** 2 + (y / CAVITY_RADII[1]) ** 2 <= 1.0) & (y > -50.0)
    hu[cavity] = (FAT + 10.0 * smooth_field(rng, space, wavelength=30.0))[cavity]
    for side in (-1.0, 1.0):
        back = ((x - 60.0 * side) / 55.0) ** 2 + ((y + 88.0) / 28.0) ** 2 <= 1.0
        gluteal = ((x - 95.0 * side) / 55.0) ** 2 + ((y + 70.0) / 45.0) ** 2 <= 1.0
        hu[(back | (gluteal & (z < -30.0))) & wall] = 50.0
        psoas = [
            (45.0 * side, -55.0, 160.0),
            (65.0 * side, -30.0, -40.0),
            (80.0 * side, 20.0, -110.0),
        ]
        _paint_tube(space, hu, np.array(psoas), 17.0, 50.0)
    cavity &= hu < 0.0

    bone = np.zeros(space.shape, dtype=bool)
    spine = np.hypot(x, y + 70.0)
    lumbar = (spine <= 22.0) & (z > 40.0)
    bone |= lumbar
    hu[lumbar] = np.where(np.mod(z[lumbar], 34.0) < 6.0, 80.0, BONE_MARROW)
    tilt = rotation_matrix((1.0, 0.0, 0.0), 35.0)
    sacrum = ellipsoid_r2(space, (0.0, -80.0, -5.0), (50.0, 16.0, 60.0), tilt)
    iliac = np.sqrt(ellipsoid_r2(space, (0.0, -25.0, 35.0), (135.0, 85.0, 70.0)))
    wing = (np.abs(iliac - 1.0) < 0.06) & (np.abs(x) > 45.0) & (y < 25.0) & (z > -25.0)
    bone |= (sacrum <= 1.0) | wing
    hu[sacrum <= 1.0] = np.where(sacrum[sacrum <= 1.0] > 0.7, BONE_CORTEX, BONE_MARROW)
    hu[wing] = BONE_CORTEX
    for side in (-1.0, 1.0):
        s = np.array([side, 1.0, 1.0])
        tubes = [
            (np.array([[88.0, -5.0, -80.0], [88.0, -5.0, -80.0]]), 24.0),  # femoral head
            (np.array([[88.0, -5.0, -80.0], [125.0, -15.0, -105.0]]), 14.0),  # neck
            (np.array([[125.0, -15.0, -105.0], [115.0, 0.0, -200.0]]), 15.0),  # shaft
            (np.array([[20.0, 75.0, -100.0], [70.0, 30.0, -90.0]]), 10.0),  # superior ramus
            (np.array([[20.0, 70.0, -115.0], [60.0, 0.0, -130.0]]), 9.0),  # inferior ramus
            (np.array([[65.0, -20.0, -100.0], [55.0, -40.0, -140.0]]), 14.0),  # ischium
        ]
        for points, radius in tubes:
            distance = polyline_distance(space, points * s)
            bone |= distance <= radius
            hu[distance <= radius] = np.where(
                distance[distance <= radius] > radius - 2.5, BONE_CORTEX, BONE_MARROW
            )
        artery = (
            np.array(
                [[0.0, -45.0, 110.0], [30.0, -40.0, 40.0], [70.0, 0.0, -60.0], [85.0, 30.0, -110.0]]
            )
            * s
        )
        _paint_tube(space, hu, artery + np.array([8.0 * side, -6.0, 0.0]), 7.0, 140.0, ~bone)
        _paint_tube(space, hu, artery, 5.0, 170.0, ~bone)
    cavity &= ~bone

    # Pelvic organs: uterus, then bladder over it, then bowel.
    uterus_axes = rotation_matrix((1.0, 0.0, 0.0), -30.0)
    uterus = ellipsoid_r2(space, (0.0, 20.0, -35.0), (32.0, 22.0, 42.0), uterus_axes)
    hu[(uterus <= 1.0) & cavity] = np.where(uterus[(uterus <= 1.0) & cavity] < 0.16, 40.0, 80.0)
    bladder_radii = (rng.uniform(35.0, 55.0), rng.uniform(28.0, 40.0), rng.uniform(25.0, 40.0))
    bladder = ellipsoid_r2(space, (0.0, 58.0, -75.0), bladder_radii)
    hu[(bladder <= 1.0) & ~bone] = 40.0
    hu[(bladder <= (1.0 - 3.0 / min(bladder_radii)) ** 2) & ~bone] = 5.0
    _bowel(rng, space, hu, cavity)
    if rng.uniform() < 0.5:  # ascites in the free peritoneal fat
        fluid = cavity & (hu < -50.0) & (smooth_field(rng, space, wavelength=60.0) > 0.2)
        hu[fluid] = FLUID
    return hu, bone, cavity


def _bowel(
    rng: np.random.Generator, space: PhantomSpace, hu: np.ndarray, cavity: np.ndarray
) -> None:
    """Rectosigmoid and 6-10 small-bowel loops: tubes with a soft-tissue wall and air, fluid or
    oral-contrast content, painted inside the peritoneal cavity."""
    rectum = np.array(
        [
            [0.0, -62.0, -125.0],
            [0.0, -60.0, -60.0],
            [5.0, -45.0, -20.0],
            [30.0, -20.0, 10.0],
            [50.0, 0.0, 30.0],
            [40.0, 20.0, 50.0],
        ]
    )
    loops = [(rectum, 14.0)]
    for _ in range(int(rng.integers(6, 11))):
        point = np.array([rng.uniform(-100, 100), rng.uniform(-30, 70), rng.uniform(-20, 120)])
        heading = rng.normal(size=3)
        points = [point]
        for _ in range(int(rng.integers(8, 13))):
            heading = random_rotation(rng, 50.0) @ (heading / np.linalg.norm(heading))
            points.append(points[-1] + 14.0 * heading)
        loops.append((np.array(points), rng.uniform(9.0, 13.0)))
    for points, radius in loops:
        center = points.mean(axis=0)
        block = space.box(center, np.abs(points - center).max(axis=0) + radius)
        if block is None:
            continue
        distance = polyline_distance(space, points, block)
        inside = cavity[block]
        region = hu[block]
        region[(distance <= radius) & inside] = SOFT
        content = rng.choice([-800.0, 15.0, 250.0], p=[0.3, 0.5, 0.2])
        region[(distance <= radius - 2.5) & inside] = content


def _object(
    space: PhantomSpace, label: int, kind: str, center: np.ndarray, radii: np.ndarray, voxels: int
) -> SynthObject:
    scale = space.scale
    return SynthObject(
        label=label,
        kind=kind,
        center_ras=tuple(float(v) for v in space.to_world(center)),
        diameter_mm=float(2.0 * np.cbrt(np.prod(radii)) * scale),
        volume_mm3=float(4.0 / 3.0 * np.pi * np.prod(radii) * scale**3),
        voxels=voxels,
    )


def _add_mass(
    rng: np.random.Generator,
    space: PhantomSpace,
    hu: np.ndarray,
    label: np.ndarray,
    bone: np.ndarray,
) -> list[SynthObject]:
    """Paint one cystic-solid adnexal mass that does not touch bone (label 1): fluid cyst, 3 mm
    enhancing wall, septa and mural solid nodules."""
    diameter = rng.uniform(*MASS_DIAMETER_MM)
    side = rng.choice([-1.0, 1.0])
    for _ in range(50):
        center = np.array([side * rng.uniform(25, 55), rng.uniform(-5, 35), rng.uniform(-60, -15)])
        center, _ = space.snap(center)
        radii = random_axes(rng, diameter / 2.0, 0.15)
        rotation = random_rotation(rng, 180.0)
        block = space.box(center, radii.max())
        r2 = ellipsoid_r2(space, center, radii, rotation, block)
        inside = r2 <= 1.0
        if not (inside & bone[block]).any():
            break
        diameter *= 0.9
    else:
        raise RuntimeError("could not place the ovarian mass clear of bone")

    coords = space.coords(block)
    texture = smooth_field(rng, space, wavelength=8.0, block=block)
    region = hu[block]
    region[inside] = (15.0 + 5.0 * texture)[inside]
    region[inside & (r2 > (1.0 - 3.0 / radii.min()) ** 2)] = 60.0
    for _ in range(int(rng.integers(0, 4))):  # septa: planes through the mass
        normal = rng.normal(size=3)
        normal /= np.linalg.norm(normal)
        offset = rng.uniform(-0.5, 0.5) * radii.min()
        plane = np.abs(np.tensordot(normal, coords, axes=1) - normal @ center - offset)
        region[inside & (plane < 1.5)] = 60.0
    solid_fraction = rng.uniform(0.4, 0.7) if rng.uniform() < 0.3 else rng.uniform(0.15, 0.4)
    for _ in range(int(rng.integers(1, 5))):  # mural solid nodules
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        nodule_center = center + 0.85 * rotation @ (radii * direction)
        nodule = ellipsoid_r2(
            space, nodule_center, [solid_fraction * radii.mean()] * 3, None, block
        )
        region[inside & (nodule <= 1.0)] = (65.0 + 10.0 * texture)[inside & (nodule <= 1.0)]
    label[block][inside] = MASS
    return [_object(space, MASS, "ovarian_mass", center, radii, int(inside.sum()))]


def _add_deposits(
    rng: np.random.Generator,
    space: PhantomSpace,
    hu: np.ndarray,
    label: np.ndarray,
    bone: np.ndarray,
    cavity: np.ndarray,
    count: int,
    mass: SynthObject,
) -> list[SynthObject]:
    """Paint up to ``count`` separate soft-tissue nodules (label 2) on the parietal peritoneum,
    in the omentum and in the pouch of Douglas, clear of bone and of the mass."""
    gap = space.voxel_diagonal + 1.0
    mass_center = (np.asarray(mass.center_ras) - space.center) / space.scale
    placed = [(mass_center, mass.diameter_mm / space.scale * 0.5 * 1.25)]
    objects = []
    log_low, log_high = np.log(DEPOSIT_DIAMETER_MM)
    for _ in range(100 * count):
        if len(objects) == count:
            break
        radius = np.exp(rng.uniform(log_low, log_high)) / 2.0
        site = rng.choice(["parietal", "omentum", "douglas"], p=[0.5, 0.3, 0.2])
        if site == "parietal":
            angle = np.deg2rad(rng.uniform(15.0, 165.0))
            rim = np.array([np.cos(angle) * CAVITY_RADII[0], np.sin(angle) * CAVITY_RADII[1]])
            rim -= 1.5 * radius * rim / np.linalg.norm(rim)
            center = np.array([rim[0], rim[1], rng.uniform(-50.0, 110.0)])
        elif site == "omentum":
            x = rng.uniform(-90.0, 90.0)
            y = CAVITY_RADII[1] * np.sqrt(1.0 - (x / CAVITY_RADII[0]) ** 2) - rng.uniform(10, 25)
            center = np.array([x, y, rng.uniform(40.0, 120.0)])
        else:
            center = np.array([rng.uniform(-25, 25), rng.uniform(-45, -30), rng.uniform(-85, -60)])
        center, index = space.snap(center)
        if not cavity[index] or not is_apart(center, radius * 1.2, placed, gap):
            continue
        radii = np.array([radius * 1.2, radius, radius * 0.6])
        rotation = random_rotation(rng, 180.0)
        block = space.box(center, radii.max())
        inside = ellipsoid_r2(space, center, radii, rotation, block) <= 1.0
        if (inside & bone[block]).any():
            continue
        hu[block][inside] = 55.0
        label[block][inside] = DEPOSIT
        placed.append((center, radii.max()))
        objects.append(
            _object(space, DEPOSIT, "peritoneal_deposit", center, radii, int(inside.sum()))
        )
    return objects
