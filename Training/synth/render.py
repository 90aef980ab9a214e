"""Turn a tissue-class map into an MR or CT image: per-class signal, partial volume, noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from Training.synth.shapes import blur, linear_bias
from Training.synth.space import PhantomSpace


def render_mr(
    rng: np.random.Generator,
    space: PhantomSpace,
    tissue: np.ndarray,
    signal: Sequence[float],
    texture: np.ndarray,
) -> np.ndarray:
    """MR image (K, J, I) float32 of ``tissue`` (class indices into ``signal``).

    Relative signal times (1 + 0.05 texture), 0.6 mm blur, smooth multiplicative bias field (up
    to 25 % over 20 cm), noise of 1-3.5 % of the scale (magnitude: |signal + Gaussian noise|),
    then a random global scale in [400, 2500].
    """
    image = np.asarray(signal, dtype=np.float32)[tissue]
    image *= 1.0 + 0.05 * texture
    image = blur(image, space.geometry.spacing[::-1], 0.6)
    image *= linear_bias(rng, space, rng.uniform(0.0, 0.25))
    image += np.float32(rng.uniform(0.01, 0.035)) * rng.standard_normal(image.shape, np.float32)
    np.abs(image, out=image)
    return image * np.float32(rng.uniform(400.0, 2500.0))


def render_ct(
    rng: np.random.Generator, space: PhantomSpace, hu: np.ndarray, noise_hu: tuple[float, float]
) -> np.ndarray:
    """CT image (K, J, I) float32 in HU from a noiseless HU map: 0.5 mm blur, Gaussian noise with
    standard deviation uniform in ``noise_hu``, clipped to [-1024, 3071]."""
    image = blur(hu.astype(np.float32), space.geometry.spacing[::-1], 0.5)
    image += np.float32(rng.uniform(*noise_hu)) * rng.standard_normal(image.shape, np.float32)
    return np.clip(image, -1024.0, 3071.0)
