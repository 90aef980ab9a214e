"""Fixtures for host-layer tests: a real MRML scene (slicer-core) and volumes from real files."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from Testing.case_files import save_nifti
from unetseg.host.scene_io import loadVolume, newScene


def obliqueIjkToRas(spacing=(0.8, 1.1, 2.5), origin=(-20.0, 14.5, 31.25)) -> np.ndarray:
    """IJKToRAS rotated 20 deg about S then 15 deg about A, with anisotropic (I, J, K) spacing."""
    a, b = np.radians(20.0), np.radians(15.0)
    about_s = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    about_a = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    matrix = np.eye(4)
    matrix[:3, :3] = about_s @ about_a @ np.diag(spacing)
    matrix[:3, 3] = origin
    return matrix


OBLIQUE_IJK_TO_RAS = obliqueIjkToRas()


@pytest.fixture
def oblique_affine() -> np.ndarray:
    """Oblique, anisotropic IJKToRAS (NIfTI affine) used by ``make_volume`` by default."""
    return OBLIQUE_IJK_TO_RAS.copy()


@pytest.fixture
def scene():
    """A fresh scene with the colour, subject hierarchy and segmentations logics."""
    return newScene()


@pytest.fixture
def make_volume(scene, tmp_path) -> Callable:
    """Factory: write a (K, J, I) array as NIfTI with the given IJKToRAS and load it."""

    def make(array: np.ndarray, ijk_to_ras: np.ndarray = OBLIQUE_IJK_TO_RAS, name: str = "ref"):
        path = tmp_path / f"{name}.nii.gz"
        return loadVolume(scene, save_nifti(path, array, ijk_to_ras), name=name)

    return make
