"""Cooperative cancellation of a running inference."""

from __future__ import annotations

import threading


class InferenceCancelled(RuntimeError):  # noqa: N818 (public name of the API)
    """Raised by `sliding_window_inference` when its `CancelToken` was cancelled."""


class CancelToken:
    """Thread-safe flag: call `cancel()` from any thread (e.g. a GUI button); the inference
    checks `cancelled` between window batches and raises `InferenceCancelled`."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Request cancellation (idempotent)."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once `cancel()` has been called."""
        return self._event.is_set()
