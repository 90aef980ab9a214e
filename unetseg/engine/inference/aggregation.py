"""Weighted aggregation of window predictions with slab-by-slab finalisation.

Windows arrive in `Tiling` order: by batch item, then with non-decreasing start along spatial
axis 0. When a window starts at row `r` of axis 0, no later window of that item touches rows
`< r`: those rows are final. They are normalised by the weight sum, passed through the
activation (or turned into labels) and written to the result, and the rolling band of
in-progress rows moves forward. So the weight sum only ever exists for one band of
`roi[0]` rows, and for label output the float values do too: no full-size float buffer is
allocated. All buffers are float32. Labels need no weight sum at all when the decision does
not depend on the positive scale of the sums (softmax argmax; sigmoid at threshold 0.5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .finalize import finalise_labels_, finalise_probabilities_, labels_need_weights

#: Finalise at most this many float32 values per step (bounds the temporaries: 32 MiB).
_CHUNK_VALUES = 2**23


class Accumulator:
    """Sum of importance-weighted predictions for an `(N, C, *spatial)` output.

    Args:
        items: batch size N.
        channels: predicted channels C.
        spatial: output spatial shape (array order).
        band_rows: rows of axis 0 a window spans (`min(roi[0], spatial[0])`).
        importance: window weight map, already cropped to the part inside the image.
        output: "probabilities" -> `result` is `(N, C, *spatial)` float32;
            "labels" -> `result` is `(N, *spatial)` of `label_dtype`.
        activation: "softmax", "sigmoid" or None (None only with probabilities).
        threshold: sigmoid label threshold.
        label_dtype: integer dtype of label output.
        device: where every buffer lives.
    """

    def __init__(
        self,
        *,
        items: int,
        channels: int,
        spatial: Sequence[int],
        band_rows: int,
        importance: torch.Tensor,
        output: str,
        activation: str | None,
        threshold: float,
        label_dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.device = device
        self._items = items
        self._rows = spatial[0]
        self._band_rows = band_rows
        self._activation = activation
        self._threshold = threshold
        self._importance = importance.to(device, torch.float32)
        plane = tuple(spatial[1:])
        self._chunk_rows = max(1, _CHUNK_VALUES // (channels * math.prod(plane)))
        self._weights: torch.Tensor | None = None
        if output != "labels" or labels_need_weights(activation, threshold):
            self._weights = torch.zeros((band_rows, *plane), dtype=torch.float32, device=device)
        self._values: torch.Tensor | None = None
        if output == "labels":
            self.result = torch.empty((items, *spatial), dtype=label_dtype, device=device)
            self._values = torch.zeros(
                (channels, band_rows, *plane), dtype=torch.float32, device=device
            )
        else:
            self.result = torch.zeros(
                (items, channels, *spatial), dtype=torch.float32, device=device
            )
        self._item = -1  # batch item in progress
        self._origin = 0  # its first row (axis 0) not yet finalised; band row 0

    def add(self, item: int, source: tuple[slice, ...], prediction: torch.Tensor) -> None:
        """Add one window: `prediction (C, *window)` float32 for image region `source`."""
        if item != self._item:
            self._start_item(item)
        if source[0].start > self._origin:
            self._finalise_until(source[0].start)
        band = (slice(source[0].start - self._origin, source[0].stop - self._origin), *source[1:])
        if self._weights is not None:
            self._weights[band].add_(self._importance)
        if self._values is None:
            values = self.result[(item, slice(None), *source)]
        else:
            values = self._values[(slice(None), *band)]
        values.addcmul_(prediction.to(self.device), self._importance)

    def finish(self) -> torch.Tensor:
        """Finalise everything still open (items without windows become background)."""
        self._start_item(self._items)
        return self.result

    def to(self, device: torch.device) -> None:
        """Move every buffer to `device` (used to fall back to CPU when the GPU is full)."""
        with torch.inference_mode(False):
            self.result = self.result.to(device)
            if self._weights is not None:
                self._weights = self._weights.to(device)
            self._importance = self._importance.to(device)
            if self._values is not None:
                self._values = self._values.to(device)
        self.device = device

    def release(self) -> None:
        """Drop every buffer (after cancellation or an error)."""
        self.result = self._importance = torch.empty(0)
        self._weights = self._values = None

    def _start_item(self, item: int) -> None:
        if self._item >= 0:
            self._finalise_until(self._rows)
        for skipped in range(self._item + 1, min(item, self._items)):
            self._fill_background(skipped, 0, self._rows)
        self._item, self._origin = item, 0

    def _finalise_until(self, stop: int) -> None:
        """Finalise rows [origin, stop) of the current item; the band then starts at `stop`."""
        in_band = min(stop, self._origin + self._band_rows)
        for start in range(self._origin, in_band, self._chunk_rows):
            self._emit(start, min(start + self._chunk_rows, in_band))
        if stop > in_band:
            self._fill_background(self._item, in_band, stop)
        self._shift(stop - self._origin)
        self._origin = stop

    def _emit(self, start: int, stop: int) -> None:
        band = slice(start - self._origin, stop - self._origin)
        weights = None if self._weights is None else self._weights[band]
        if self._values is None:
            values = self.result[self._item, :, start:stop]
            finalise_probabilities_(values, weights, self._activation)
        else:
            finalise_labels_(
                self._values[:, band],
                weights,
                self._activation,
                self._threshold,
                self.result[self._item, start:stop],
            )

    def _fill_background(self, item: int, start: int, stop: int) -> None:
        if self._values is not None:
            self.result[item, start:stop] = 0
            return
        self.result[item, :, start:stop] = 0.0
        if self._activation == "softmax":
            self.result[item, 0, start:stop] = 1.0

    def _shift(self, rows: int) -> None:
        """Move band rows [rows, end) to the front and zero the rest."""
        buffers = [] if self._weights is None else [(self._weights, 0)]
        if self._values is not None:
            buffers.append((self._values, 1))
        keep = self._band_rows - rows
        for buffer, axis in buffers:
            band = buffer.movedim(axis, 0)
            # Chunks of at most `rows` rows: source and destination never overlap.
            for start in range(0, max(keep, 0), rows):
                stop = min(start + rows, keep)
                band[start:stop].copy_(band[start + rows : stop + rows])
            band[max(keep, 0) :].zero_()
