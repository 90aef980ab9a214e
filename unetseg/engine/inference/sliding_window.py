"""Sliding-window inference (MONAI-compatible tiling and blending, low-memory stitching)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
from torch.nn import functional

from .aggregation import Accumulator
from .cancel import CancelToken, InferenceCancelled
from .finalize import ACTIVATIONS
from .mirroring import mirrored
from .precision import autocast, resolve_autocast
from .tiling import Tiling, Window, plan_tiling
from .weighting import importance_map

logger = logging.getLogger(__name__)

Predictor = Callable[[torch.Tensor], torch.Tensor]
OUTPUTS = ("probabilities", "labels")
PADDING_MODES = ("constant", "reflect", "replicate", "circular")
#: Aggregate on the GPU only while the buffers take at most this share of its free memory.
_GPU_BUFFER_SHARE = 0.5


def sliding_window_inference(
    image: torch.Tensor,
    roi_size: Sequence[int],
    predictor: Predictor,
    *,
    overlap: float | Sequence[float] = 0.25,
    sw_batch_size: int = 1,
    mode: str = "constant",
    sigma_scale: float | Sequence[float] = 0.125,
    padding_mode: str = "constant",
    cval: float = 0.0,
    foreground_mask: torch.Tensor | None = None,
    crop_to_foreground: bool = False,
    mirror_axes: Sequence[int] | None = None,
    output: str = "probabilities",
    activation: str | None = None,
    threshold: float = 0.5,
    label_dtype: torch.dtype | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: CancelToken | None = None,
    device: torch.device | str | None = None,
    aggregation_device: torch.device | str | None = None,
    amp: str = "auto",
    cpu_bf16: bool = False,
) -> torch.Tensor:
    """Predict a whole image window by window and blend the windows.

    MONAI's `sliding_window_inference` name, defaults (overlap 0.25, constant weights) and
    default output: tiling, padding, Gaussian/constant weighting and the blended raw logits
    equal MONAI's (the predictor comes third, the options are keywords). The
    activation ("softmax"/"sigmoid") and the label map are explicit options: the logits are
    blended (weighted mean) first and `activation` is applied afterwards.

    Args:
        image: `(N, C, K, J, I)` (3D) or `(N, C, J, I)` (2D) tensor; windows are cast to
            float32 and moved to the compute device.
        roi_size: window size in ARRAY order (same order as the spatial axes of `image`).
        predictor: maps `(B, C, *roi_size)` float32 to `(B, C_out, *roi_size)` logits (an
            `nn.Module` in eval mode). Its output is never modified in place.
        overlap: window overlap fraction in [0, 1), one value or one per axis.
        sw_batch_size: windows per predictor call.
        mode: "gaussian" or "constant" blending weights.
        sigma_scale: Gaussian sigma as a fraction of the window size.
        padding_mode: how axes shorter than the window are padded ("constant", "reflect",
            "replicate", "circular"); `cval` is the constant.
        foreground_mask: bool `(N, *spatial)` or `(*spatial)`: windows holding no foreground
            voxel are skipped. Voxels no computed window covers are background (softmax:
            probability 1 for class 0; sigmoid and None: 0 in every channel; label 0).
            Without `crop_to_foreground`, voxels inside the mask get exactly the unmasked
            result. If no window holds foreground, the predictor still runs once (first
            window) to learn C_out.
        crop_to_foreground: also thin the tiling: along each axis keep only the fewest
            windows of the full tiling that cover the mask's bounding box. Windows never
            move (each predicts exactly as in the full run) but fewer overlap, so voxels
            are blended from fewer windows: faster, approximate (labels can change where
            the network's windows disagree; see BENCHMARKS.md).
        mirror_axes: spatial axes (array order) for mirroring test-time augmentation: logits
            are averaged over all flip combinations (2**len(axes) forward passes per window).
        output: "probabilities": `(N, C_out, *spatial)` float32 after `activation`
            (None, the default: the blended raw logits, as MONAI; "softmax" over channels;
            "sigmoid" per channel).
            "labels": `(N, *spatial)` label map: softmax -> argmax (label = channel);
            sigmoid -> channel c - 1 above `threshold` gives label c, later channels
            overwrite earlier ones. Only `roi_size[0]` rows of float buffers are kept.
        label_dtype: label dtype; default uint8, uint16 when labels exceed 255.
        progress: `progress(done_windows, total_windows)` after every window batch.
        cancel: checked before every batch; when cancelled, buffers are freed and
            `InferenceCancelled` is raised.
        device: compute device (default: the image's).
        aggregation_device: where the blending buffers and the result live (default: the
            compute device; for CUDA only if they take at most half the free GPU memory,
            else the CPU). On CUDA out-of-memory they move to the CPU (logged warning).
        amp: "auto": float16 autocast on CUDA, bfloat16 on the CPU only with `cpu_bf16`
            and native CPU bf16 support (else float32 and a logged note); "off": float32;
            "fp16"/"bf16": that dtype where the device has it (`precision.resolve_autocast`).
            Predictions are cast to float32 before blending.
        cpu_bf16: allow bfloat16 autocast on a CPU with native bf16.

    Returns:
        The result on the aggregation device (a normal tensor, not an inference tensor).
    """
    spatial = tuple(int(s) for s in image.shape[2:])
    roi = tuple(int(r) for r in roi_size)
    overlaps = _per_axis(overlap, len(spatial), "overlap")
    _check_arguments(
        image, roi, overlaps, sw_batch_size, padding_mode, output, activation, threshold
    )
    if mirror_axes:
        predictor = mirrored(predictor, mirror_axes, len(spatial))
    mask = _prepare_mask(foreground_mask, image.shape)
    if crop_to_foreground and mask is None:
        raise ValueError("crop_to_foreground needs a foreground_mask")
    compute = torch.device(device) if device is not None else image.device
    cast, note = resolve_autocast(compute, amp, cpu_bf16=cpu_bf16)
    if note:
        logger.warning(note)
    tiling = plan_tiling(spatial, roi, overlaps, image.shape[0], mask, crop_to_foreground)
    windows = tiling.windows
    importance = importance_map(roi, mode, sigma_scale, compute)[tiling.crop]

    def predict(batch: Sequence[Window]) -> torch.Tensor:
        x = _window_batch(image, batch, tiling, padding_mode, cval).to(compute, torch.float32)
        with autocast(compute, cast):
            logits = predictor(x)
        if not isinstance(logits, torch.Tensor):
            raise TypeError(f"predictor must return a tensor, got {type(logits).__name__}")
        if (
            logits.ndim != x.ndim
            or logits.shape[0] != x.shape[0]
            or logits.shape[2:] != x.shape[2:]
        ):
            raise ValueError(f"predictor returned {tuple(logits.shape)} for input {tuple(x.shape)}")
        return logits.float()

    def create(channels: int) -> Accumulator:
        return _create_accumulator(
            image.shape[0],
            channels,
            spatial,
            roi,
            importance,
            output,
            activation,
            threshold,
            label_dtype,
            compute,
            aggregation_device,
        )

    accumulator: Accumulator | None = None
    done, total = 0, len(windows)
    try:
        with torch.inference_mode():
            if not windows:  # the mask excludes everything: learn C_out from one window
                probe = plan_tiling(spatial, roi, overlaps, 1).windows[:1]
                accumulator = create(predict(probe).shape[1])
            for first in range(0, total, sw_batch_size):
                if cancel is not None and cancel.cancelled:
                    raise InferenceCancelled(f"inference cancelled after {done}/{total} windows")
                batch = windows[first : first + sw_batch_size]
                try:
                    logits = predict(batch)
                except torch.cuda.OutOfMemoryError:
                    if accumulator is None or accumulator.device.type != "cuda":
                        raise
                    logger.warning("CUDA out of memory: aggregating on the CPU from now on")
                    accumulator.to(torch.device("cpu"))
                    torch.cuda.empty_cache()
                    logits = predict(batch)
                if accumulator is None:
                    accumulator = create(logits.shape[1])
                for window, window_logits in zip(batch, logits, strict=True):
                    accumulator.add(window.item, window.source, window_logits[:, *tiling.crop])
                done += len(batch)
                if progress is not None:
                    progress(done, total)
            return accumulator.finish()
    except BaseException:
        if accumulator is not None:
            accumulator.release()
        raise


def _per_axis(value: float | Sequence[float], dims: int, name: str) -> tuple[float, ...]:
    values = (float(value),) * dims if isinstance(value, int | float) else tuple(map(float, value))
    if len(values) != dims:
        raise ValueError(f"{name} needs {dims} values, got {len(values)}")
    return values


def _check_arguments(
    image: torch.Tensor,
    roi: tuple[int, ...],
    overlaps: tuple[float, ...],
    sw_batch_size: int,
    padding_mode: str,
    output: str,
    activation: str | None,
    threshold: float,
) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim not in (4, 5):
        raise ValueError("image must be a (N, C, J, I) or (N, C, K, J, I) tensor")
    if len(roi) != image.ndim - 2 or min(roi) < 1:
        raise ValueError(f"roi_size must be {image.ndim - 2} positive sizes, got {roi}")
    if not all(0 <= o < 1 for o in overlaps):
        raise ValueError(f"overlap must be in [0, 1), got {overlaps}")
    if sw_batch_size < 1:
        raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if output == "labels" and activation is None:
        raise ValueError("output='labels' needs activation 'softmax' or 'sigmoid'")
    if output == "labels" and activation == "sigmoid" and not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")


def _prepare_mask(mask: torch.Tensor | None, shape: torch.Size) -> torch.Tensor | None:
    """Bool `(N, *spatial)` CPU copy of a `(N, *spatial)` or `(*spatial)` mask."""
    if mask is None:
        return None
    mask = torch.as_tensor(mask).to("cpu", torch.bool)
    spatial = tuple(shape[2:])
    if tuple(mask.shape) == spatial:
        return mask.expand(shape[0], *spatial)
    if tuple(mask.shape) != (shape[0], *spatial):
        raise ValueError(f"foreground_mask must be {spatial} or {(shape[0], *spatial)}")
    return mask


def _window_batch(
    image: torch.Tensor,
    batch: Sequence[Window],
    tiling: Tiling,
    padding_mode: str,
    cval: float,
) -> torch.Tensor:
    """`(B, C, *roi)` input of a window batch, padded as MONAI pads the image."""
    if len(batch) == 1:
        window = batch[0]
        tiles = image[window.item : window.item + 1, :, *window.source]
    else:
        tiles = torch.stack([image[(w.item, slice(None), *w.source)] for w in batch])
    if not any(before or after for before, after in tiling.pad):
        return tiles
    pad = [p for before_after in reversed(tiling.pad) for p in before_after]
    if padding_mode == "constant":
        return functional.pad(tiles, pad, mode="constant", value=cval)
    return functional.pad(tiles, pad, mode=padding_mode)


def _create_accumulator(
    items: int,
    channels: int,
    spatial: tuple[int, ...],
    roi: tuple[int, ...],
    importance: torch.Tensor,
    output: str,
    activation: str | None,
    threshold: float,
    label_dtype: torch.dtype | None,
    compute: torch.device,
    requested: torch.device | str | None,
) -> Accumulator:
    """Allocate the blending buffers (outside inference mode), on the GPU when they fit."""
    dtype = _label_dtype(channels, activation, label_dtype) if output == "labels" else None
    band_rows = min(roi[0], spatial[0])
    plane, voxels = math.prod(spatial[1:]), items * math.prod(spatial)
    if dtype is not None:
        nbytes = voxels * dtype.itemsize + (channels + 1) * band_rows * plane * 4
    else:
        nbytes = (voxels * channels + band_rows * plane) * 4
    target = _aggregation_device(requested, compute, nbytes)

    def allocate(where: torch.device) -> Accumulator:
        with torch.inference_mode(False):
            return Accumulator(
                items=items,
                channels=channels,
                spatial=spatial,
                band_rows=band_rows,
                importance=importance,
                output=output,
                activation=activation,
                threshold=threshold,
                label_dtype=dtype or torch.uint8,
                device=where,
            )

    try:
        return allocate(target)
    except torch.cuda.OutOfMemoryError:
        if target.type != "cuda":
            raise
        logger.warning(
            "CUDA out of memory for the %.2f GiB output: aggregating on the CPU", nbytes / 2**30
        )
        torch.cuda.empty_cache()
        return allocate(torch.device("cpu"))


def _aggregation_device(
    requested: torch.device | str | None, compute: torch.device, nbytes: int
) -> torch.device:
    if requested is not None:
        return torch.device(requested)
    if compute.type != "cuda":
        return compute
    free, _ = torch.cuda.mem_get_info(compute)
    if nbytes <= _GPU_BUFFER_SHARE * free:
        return compute
    logger.info(
        "aggregating on the CPU: buffers need %.2f GiB, GPU has %.2f GiB free",
        nbytes / 2**30,
        free / 2**30,
    )
    return torch.device("cpu")


def _label_dtype(
    channels: int, activation: str | None, requested: torch.dtype | None
) -> torch.dtype:
    """uint8, or uint16 when the largest label (C - 1 softmax, C sigmoid) exceeds 255."""
    largest = channels if activation == "sigmoid" else channels - 1
    if requested is None:
        return torch.uint8 if largest <= 255 else torch.uint16
    if requested.is_floating_point or requested.is_complex or requested == torch.bool:
        raise ValueError(f"label_dtype must be an integer dtype, got {requested}")
    if torch.iinfo(requested).max < largest:
        raise ValueError(f"label_dtype {requested} cannot hold label {largest}")
    return requested
