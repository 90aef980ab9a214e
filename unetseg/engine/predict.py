"""Segment one case with a model package: prepare -> sliding window -> back to the input grid.

This is the one code path that the Slicer modules, the headless CLI and training evaluation share.
It touches no MRML: callers pass numpy arrays and geometries and get a label map back.

Back to the input grid: when the model grid is coarser than the input's (a 2 mm model on a
0.7 mm scan, a 256-pixel X-ray model on a 3000-pixel radiograph), the blended logits are
resampled linearly onto the input grid and the labels decided there, as nnU-Net does, so that
boundaries follow the input's resolution instead of the model's voxel steps. Otherwise, or when
the logits on the input grid would exceed ``SMOOTH_RESTORE_MAX_BYTES``, the label map itself is
resampled (nearest neighbour). The manifest's ``postprocessing`` (largest component) is applied
last, on the input grid.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from unetseg.engine.device import describe_device, select_device
from unetseg.engine.geometry import Geometry
from unetseg.engine.inference import CancelToken, sliding_window_inference
from unetseg.engine.inference.finalize import finalise_labels_
from unetseg.engine.package import ModelPackage
from unetseg.engine.postprocessing import apply_postprocessing
from unetseg.engine.preprocessing.pipeline import PreparedCase, prepare_inputs

logger = logging.getLogger(__name__)

#: Largest float32 logit volume on the input grid for the smooth restore (see module docstring).
SMOOTH_RESTORE_MAX_BYTES = 1 << 30
#: The model grid counts as coarser when one of its spacings exceeds the input's by this factor.
COARSER_FACTOR = 1.25

Progress = Callable[[int, int], None]


class SegmentationError(RuntimeError):
    """A case could not be segmented; the message says why and what to do."""


@dataclass
class CaseSegmentation:
    """Result of `Segmenter.segment`.

    Attributes:
        labels: uint8/uint16 label map on the reference input's grid, shaped like the
            reference array as given: `(K, J, I)` (2D models: `(1, J, I)` or `(J, I)`).
            Values are the manifest's label values, 0 is background.
        geometry: the reference input's geometry (the grid of `labels`).
        missing_inputs: optional inputs that were absent (their channel was zero).
        timings: seconds per stage ("prepare", "inference", "restore": back to the input
            grid and the manifest's ``postprocessing``).
        device: where the network ran, in words.
    """

    labels: np.ndarray
    geometry: Geometry
    missing_inputs: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    device: str = ""


class Segmenter:
    """A loaded model ready to segment cases one after the other (batch runs reuse it).

    Args:
        package: the model package.
        device: "auto" (CUDA when available, else CPU), "cpu" or "cuda".
        overlap: window overlap; default the manifest's.
        mirror_axes: spatial axes (array order) for mirroring test-time augmentation.
        skip_background: skip the windows that hold no body/head voxel (voxels no window
            covers get background). Exact: every other voxel is labelled as in a full run.
        cpu_bf16: allow bfloat16 on CPUs with native support (ignored elsewhere).
    """

    def __init__(
        self,
        package: ModelPackage,
        device: str = "auto",
        *,
        overlap: float | None = None,
        mirror_axes: Sequence[int] | None = None,
        skip_background: bool = True,
        cpu_bf16: bool = False,
    ) -> None:
        self.package = package
        self.device = select_device(device)
        self.overlap = package.overlap if overlap is None else _checked_overlap(overlap)
        self.mirror_axes = tuple(mirror_axes) if mirror_axes else None
        self.skip_background = skip_background
        self.cpu_bf16 = cpu_bf16
        self.network = package.load_network(self.device)

    @property
    def roi_size(self) -> tuple[int, ...]:
        """Window size in array order: (K, J, I) for 3D, (J, I) for 2D models."""
        patch_ijk = self.package.patch_size
        spatial = patch_ijk[: self.package.spatial_dims]
        return tuple(int(p) for p in reversed(spatial))

    def segment(
        self,
        arrays: Sequence[np.ndarray | None],
        geometries: Sequence[Geometry | None],
        *,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
        overlap: float | None = None,
        fast: bool = False,
    ) -> CaseSegmentation:
        """Segment one case.

        Args:
            arrays: one `(K, J, I)` array per manifest input, in manifest order (2D models:
                `(1, J, I)` or `(J, I)`); None for an absent optional input.
            geometries: the matching geometries (None where the array is None).
            progress: `progress(done_windows, total_windows)`, called after every window batch.
            cancel: cancel token; cancelling raises `InferenceCancelled`.
            overlap: window overlap for this case; default `self.overlap`.
            fast: also keep only the fewest windows that cover the body/head bounding box
                and allow CPU bfloat16 where native. Approximate: voxels are blended from
                fewer windows, so some can be labelled differently (BENCHMARKS.md).

        Raises:
            ValueError: invalid inputs (see `prepare_inputs`).
            SegmentationError: out of memory.
            InferenceCancelled: `cancel` was cancelled.
        """
        overlap = self.overlap if overlap is None else _checked_overlap(overlap)
        start = time.perf_counter()
        case = prepare_inputs(arrays, geometries, self.package.manifest)
        prepared = time.perf_counter()
        smooth = self._restores_logits(case)
        values = self._infer(case, overlap, fast, progress, cancel, smooth)
        inferred = time.perf_counter()
        restored = self._restore(case, values, smooth)
        manifest = self.package.manifest
        apply_postprocessing(restored, case.reference_geometry, manifest, self._body(case))
        done = time.perf_counter()
        return CaseSegmentation(
            labels=restored,
            geometry=case.reference_geometry,
            missing_inputs=list(case.missing_inputs),
            timings={
                "prepare": prepared - start,
                "inference": inferred - prepared,
                "restore": done - inferred,
            },
            device=describe_device(self.device),
        )

    def _body(self, case: PreparedCase) -> np.ndarray | None:
        """The body mask on the input grid where the manifest's postprocessing uses it."""
        if not self.package.manifest.get("postprocessing", {}).get("inside_body"):
            return None
        if case.foreground_mask is None:
            return None
        return case.restore_labels(case.foreground_mask.view(np.uint8))

    def _restores_logits(self, case: PreparedCase) -> bool:
        """Whether to resample logits rather than labels onto the input grid."""
        model = np.asarray(case.model_geometry.spacing)
        given = np.asarray(case.canonical_geometry.spacing)
        axes = case.spatial_dims  # 2D: in-plane (I, J) only
        if not np.any(model[:axes] > COARSER_FACTOR * given[:axes]):
            return False
        channels = int(self.package.manifest["network"]["out_channels"])
        return channels * int(np.prod(case.reference_shape)) * 4 <= SMOOTH_RESTORE_MAX_BYTES

    def _restore(self, case: PreparedCase, values: np.ndarray, logits: bool) -> np.ndarray:
        """Label map on the input grid from model-grid labels, or from model-grid logits
        `(C, *model spatial)`."""
        if not logits:
            return case.restore_labels(values)
        restored = torch.from_numpy(case.restore_probabilities(values))
        labels = torch.empty(restored.shape[1:], dtype=torch.uint8)
        activation = self.package.activation
        threshold = self.package.threshold or 0.5
        finalise_labels_(restored, torch.ones(()), activation, threshold, labels)
        return labels.numpy()

    def _infer(
        self,
        case: PreparedCase,
        overlap: float,
        fast: bool,
        progress: Progress | None,
        cancel: CancelToken | None,
        logits: bool,
    ) -> np.ndarray:
        image = torch.from_numpy(case.image).unsqueeze(0)
        mask = None
        if (self.skip_background or fast) and case.foreground_mask is not None:
            mask = torch.from_numpy(case.foreground_mask)
        run = functools.partial(
            self._run,
            image,
            mask,
            overlap,
            progress=progress,
            cancel=cancel,
            fast=fast,
            logits=logits,
        )
        try:
            labels = run(self.device)
        except torch.cuda.OutOfMemoryError:
            if self.device.type != "cuda":
                raise SegmentationError(_OUT_OF_MEMORY) from None
            logger.warning("GPU out of memory: running this case on the CPU instead")
            torch.cuda.empty_cache()
            self.network.to("cpu")
            try:
                labels = run(torch.device("cpu"))
            finally:
                self.network.to(self.device)
        except MemoryError:
            raise SegmentationError(_OUT_OF_MEMORY) from None
        return labels[0].cpu().numpy()

    def _run(
        self,
        image: torch.Tensor,
        mask: torch.Tensor | None,
        overlap: float,
        device: torch.device,
        progress: Progress | None,
        cancel: CancelToken | None,
        *,
        fast: bool,
        logits: bool,
    ) -> torch.Tensor:
        return sliding_window_inference(
            image,
            self.roi_size,
            self.network,
            overlap=overlap,
            foreground_mask=mask,
            crop_to_foreground=fast and mask is not None,
            mirror_axes=self.mirror_axes,
            output="probabilities" if logits else "labels",
            activation=None if logits else self.package.activation,
            threshold=self.package.threshold,
            progress=progress,
            cancel=cancel,
            device=device,
            cpu_bf16=self.cpu_bf16 or fast,
        )


def _checked_overlap(overlap: float) -> float:
    if not 0.0 <= float(overlap) < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    return float(overlap)


_OUT_OF_MEMORY = (
    "Out of memory while segmenting. Close other programs, segment on a GPU, or use a model with "
    "a smaller patch size; the input was not changed."
)
