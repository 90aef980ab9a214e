"""Sliding-window inference: MONAI-compatible tiling, low-memory stitching, cancellation.

`sliding_window_inference` is the entry point; see its docstring for shapes (array order).
"""

from .cancel import CancelToken, InferenceCancelled
from .sliding_window import sliding_window_inference
from .tiling import Tiling, Window, plan_tiling
from .weighting import importance_map

__all__ = [
    "CancelToken",
    "InferenceCancelled",
    "Tiling",
    "Window",
    "importance_map",
    "plan_tiling",
    "sliding_window_inference",
]
