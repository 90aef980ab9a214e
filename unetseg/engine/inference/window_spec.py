"""How a model is run window by window (``WindowSpec``): the one reading of the manifest's
``patch_size``, ``overlap`` and ``output`` that deployment (``Segmenter``) and training
validation (``Training.loop.trainer``) share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from unetseg.engine.manifest import DEFAULT_THRESHOLD

from .sliding_window import sliding_window_inference


@dataclass(frozen=True)
class WindowSpec:
    """Window, overlap and output of a model.

    Attributes:
        roi_size: window in array order: (K, J, I) for 3D, (J, I) for 2D models.
        overlap: window overlap fraction in [0, 1).
        activation: "softmax" or "sigmoid".
        threshold: sigmoid probability threshold (unused by softmax models).
    """

    roi_size: tuple[int, ...]
    overlap: float
    activation: str
    threshold: float = DEFAULT_THRESHOLD

    @classmethod
    def from_manifest(
        cls, manifest: Mapping[str, Any], patch_size: Sequence[int] | None = None
    ) -> WindowSpec:
        """The spec of a manifest (or a training config's model section); ``patch_size``
        (x, y, z) replaces the manifest's (training validates on its own patch)."""
        dims = int(manifest["spatial_dims"])
        patch = patch_size if patch_size is not None else manifest["patch_size"]
        output = manifest["output"]
        return cls(
            roi_size=tuple(int(p) for p in reversed(tuple(patch)[:dims])),
            overlap=float(manifest["overlap"]),
            activation=output["activation"],
            threshold=float(output.get("threshold", DEFAULT_THRESHOLD)),
        )

    def with_overlap(self, overlap: float | None) -> WindowSpec:
        """This spec with ``overlap`` instead of the model's (None keeps the model's)."""
        return self if overlap is None else dataclasses.replace(self, overlap=float(overlap))

    def infer(
        self,
        image: torch.Tensor,
        predictor: Callable[[torch.Tensor], torch.Tensor],
        *,
        logits: bool = False,
        **options: Any,
    ) -> torch.Tensor:
        """``sliding_window_inference`` of ``image`` ``(N, C, *spatial)`` with this window,
        overlap and Gaussian blending: the label map ``(N, *spatial)`` by the model's
        activation and threshold, or with ``logits`` the blended logits ``(N, C_out,
        *spatial)``. ``options`` are the other keywords of ``sliding_window_inference``
        (device, batch, mask, mirroring, progress, cancel, amp)."""
        return sliding_window_inference(
            image,
            self.roi_size,
            predictor,
            overlap=self.overlap,
            mode="gaussian",
            output="probabilities" if logits else "labels",
            activation=None if logits else self.activation,
            threshold=self.threshold,
            **options,
        )
