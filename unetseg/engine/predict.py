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

from unetseg.engine.backends import Runner, load_runner
from unetseg.engine.device import describe_device
from unetseg.engine.geometry import Geometry
from unetseg.engine.inference import CancelToken
from unetseg.engine.inference.finalize import activate, finalise_labels_
from unetseg.engine.inference.uncertainty import with_uncertainty
from unetseg.engine.inference.window_spec import WindowSpec
from unetseg.engine.options import SegmentOptions
from unetseg.engine.package import ModelPackage
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
        backend: what ran it, in words (e.g. "OpenVINO 2026.4.1, float32").
        uncertainty: with ``SegmentOptions.uncertainty``, float32 per-voxel uncertainty in
            [0, 1] shaped like `labels` (`unetseg.engine.inference.uncertainty`), else None.
    """

    labels: np.ndarray
    geometry: Geometry
    missing_inputs: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    device: str = ""
    backend: str = ""
    uncertainty: np.ndarray | None = None


class Segmenter:
    """A model loaded for one kind of run, ready to segment cases one after the other (batch
    runs reuse it).

    Args:
        package: the model package.
        options: how to run it (device, backend, precision, overlap, ...); checked already.
        runner: the package's network already loaded for ``options.runner_options`` (kept
            by a caller across runs that differ only in overlap, mirroring, ...); loaded
            here when None.

    Raises:
        RuntimeError: the device or backend asked for is not available here.
    """

    def __init__(
        self,
        package: ModelPackage,
        options: SegmentOptions | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.package = package
        self.options = options if options is not None else SegmentOptions()
        #: The model's window and output, with this run's overlap.
        self.window: WindowSpec = package.window.with_overlap(self.options.overlap)
        self.runner: Runner = runner or load_runner(package, self.options)
        self._cpu_runner: Runner | None = None

    def segment(
        self,
        arrays: Sequence[np.ndarray | None],
        geometries: Sequence[Geometry | None],
        *,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
    ) -> CaseSegmentation:
        """Segment one case.

        Args:
            arrays: one `(K, J, I)` array per manifest input, in manifest order (2D models:
                `(1, J, I)` or `(J, I)`); None for an absent optional input.
            geometries: the matching geometries (None where the array is None).
            progress: `progress(done_windows, total_windows)`, called after every window batch.
            cancel: cancel token; cancelling raises `InferenceCancelled`.

        Raises:
            ValueError: invalid inputs (see `prepare_inputs`).
            SegmentationError: out of memory.
            InferenceCancelled: `cancel` was cancelled.
        """
        start = time.perf_counter()
        case = prepare_inputs(arrays, geometries, self.package.preparation)
        prepared = time.perf_counter()
        smooth = self._restores_logits(case)
        uncertain = self.options.uncertainty
        values = self._infer(case, progress, cancel, smooth or uncertain)
        inferred = time.perf_counter()
        uncertainty = None
        if uncertain:  # values: C logit channels and the uncertainty channel
            uncertainty = case.restore_probabilities(values[-1:])[0]
            values = values[:-1] if smooth else self._labels(values[:-1])
        restored = self._restore(case, values, smooth)
        self.package.postprocessing.apply(
            restored, case.reference_geometry, self.package.spatial_dims, self._body(case)
        )
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
            device=describe_device(self.runner.device),
            backend=self.runner.describe(),
            uncertainty=uncertainty,
        )

    def probabilities(self, case: PreparedCase) -> np.ndarray:
        """The blended probabilities `(C, *model spatial)` float32 of a prepared case on the
        model grid, as this run computes them (windows, overlap, skipping, mirroring), after
        the model's activation: for calibration and uncertainty studies."""
        logits = self._infer(case, None, None, logits=True)
        if self.options.uncertainty:  # drop the uncertainty channel
            logits = logits[:-1]
        blended = torch.from_numpy(np.ascontiguousarray(logits))
        return activate(blended, self.window.activation, dim=0).numpy()

    def _body(self, case: PreparedCase) -> np.ndarray | None:
        """The body mask on the input grid where the manifest's postprocessing uses it."""
        if not self.package.postprocessing.inside_body:
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
        channels = self.package.out_channels
        return channels * int(np.prod(case.reference_shape)) * 4 <= SMOOTH_RESTORE_MAX_BYTES

    def _labels(self, logits: np.ndarray) -> np.ndarray:
        """Label map from blended logits `(C, *spatial)` (the model's activation and
        threshold)."""
        blended = torch.from_numpy(np.ascontiguousarray(logits))
        labels = torch.empty(blended.shape[1:], dtype=torch.uint8)
        window = self.window
        finalise_labels_(blended, torch.ones(()), window.activation, window.threshold, labels)
        return labels.numpy()

    def _restore(self, case: PreparedCase, values: np.ndarray, logits: bool) -> np.ndarray:
        """Label map on the input grid from model-grid labels, or from model-grid logits
        `(C, *model spatial)` resampled onto the input grid first."""
        if logits:
            return self._labels(case.restore_probabilities(values))
        return case.restore_labels(values)

    def _infer(
        self,
        case: PreparedCase,
        progress: Progress | None,
        cancel: CancelToken | None,
        logits: bool,
    ) -> np.ndarray:
        image = torch.from_numpy(case.image).unsqueeze(0)
        mask = None
        if (self.options.skip_background or self.options.fast) and case.foreground_mask is not None:
            mask = torch.from_numpy(case.foreground_mask)
        run = functools.partial(
            self._run, image, mask, progress=progress, cancel=cancel, logits=logits
        )
        try:
            labels = run(self.runner)
        except torch.cuda.OutOfMemoryError:
            if self.runner.device.type != "cuda":
                raise SegmentationError(_OUT_OF_MEMORY) from None
            logger.warning("GPU out of memory: running this case on the CPU instead")
            torch.cuda.empty_cache()
            labels = run(self._cpu_fallback())
        except MemoryError:
            raise SegmentationError(_OUT_OF_MEMORY) from None
        return labels[0].cpu().numpy()

    def _cpu_fallback(self) -> Runner:
        """The network with torch on the CPU, for cases the GPU has no memory for: loaded
        once, and the same backend (float32 where the GPU used float16) rather than an
        OpenVINO export in the middle of a run."""
        if self._cpu_runner is None:
            options = self.options.with_changes(device="cpu", backend="torch")
            self._cpu_runner = load_runner(self.package, options)
        return self._cpu_runner

    def _run(
        self,
        image: torch.Tensor,
        mask: torch.Tensor | None,
        runner: Runner,
        *,
        progress: Progress | None,
        cancel: CancelToken | None,
        logits: bool,
    ) -> torch.Tensor:
        axes = tuple(range(len(self.window.roi_size)))
        mirror_axes = axes if self.options.mirroring else None
        predictor: Callable[[torch.Tensor], torch.Tensor] = runner
        if self.options.uncertainty:  # the wrapper mirrors, and adds the uncertainty channel
            predictor = with_uncertainty(runner, axes, len(axes), self.window.activation)
            mirror_axes = None
        return self.window.infer(
            image,
            predictor,
            logits=logits,
            sw_batch_size=runner.window_batch,
            foreground_mask=mask,
            crop_to_foreground=self.options.fast and mask is not None,
            mirror_axes=mirror_axes,
            progress=progress,
            cancel=cancel,
            device=runner.device,
            amp="off",  # the runner applies the run's precision
        )


_OUT_OF_MEMORY = (
    "Out of memory while segmenting. Close other programs, segment on a GPU, or use a model with "
    "a smaller patch size; the input was not changed."
)
