"""How one segmentation run is carried out: the options every face (CLI, Slicer panel, web
form, batch) builds once and passes whole to the host layer and the engine.

The options are checked here, once; the layers below trust them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

#: Where the network runs: CUDA when available ("auto"), or as named.
DEVICES = ("auto", "cpu", "cuda")
#: What runs the network: "auto" is OpenVINO on the CPU when installed, else torch.
BACKENDS = ("auto", "torch", "openvino")
#: Arithmetic of the forward passes (see `SegmentOptions.precision`).
PRECISIONS = ("auto", "float32", "reduced")
#: Largest window overlap a run accepts: 0.95 already means 20 windows per axis length.
MAX_OVERLAP = 0.95


@dataclass(frozen=True)
class SegmentOptions:
    """Options of one segmentation run (immutable; `with_changes` makes a modified copy).

    Attributes:
        device: "auto" (CUDA when usable, else CPU), "cpu", "cuda" or "cuda:<index>".
        backend: "auto" (torch on CUDA; OpenVINO on the CPU when installed, else torch),
            "torch" or "openvino" (CPU only).
        overlap: window overlap in [0, MAX_OVERLAP]; None takes the model's.
        fast: approximate and faster: only the fewest windows that cover the body/head box,
            and reduced precision where the model allows it (``inference.reduced_precision``
            in its manifest: measured to agree with float32).
        precision: "auto": float32 on the CPU (reduced with `fast` where the model allows
            it), float16 autocast on CUDA; "float32": float32 everywhere; "reduced": bfloat16
            on CPUs with native bf16 (torch) / OpenVINO's default CPU precision / float16 on
            CUDA, whatever the model says.
        mirroring: test-time augmentation: average the logits over every mirrored copy of
            each window (2 ** spatial axes forward passes per window).
        uncertainty: also compute a per-voxel uncertainty map from mirroring test-time
            augmentation (`unetseg.engine.inference.uncertainty`); implies `mirroring`.
        skip_background: skip windows holding no body/head voxel (exact: labels equal).
        window_batch: windows per forward pass; None takes the backend's best (measured in
            BENCHMARKS.md).
    """

    device: str = "auto"
    backend: str = "auto"
    overlap: float | None = None
    fast: bool = False
    precision: str = "auto"
    mirroring: bool = False
    uncertainty: bool = False
    skip_background: bool = True
    window_batch: int | None = None

    def __post_init__(self) -> None:
        device = str(self.device).strip().lower()
        if device not in DEVICES and not device.startswith("cuda:"):
            raise ValueError(f"device must be one of {DEVICES} or 'cuda:<index>', got {device!r}")
        object.__setattr__(self, "device", device)
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("precision", self.precision, PRECISIONS)
        if self.overlap is not None:
            overlap = float(self.overlap)
            if not 0.0 <= overlap <= MAX_OVERLAP:
                raise ValueError(f"overlap must be in [0, {MAX_OVERLAP}], got {self.overlap}")
            object.__setattr__(self, "overlap", overlap)
        if self.window_batch is not None and int(self.window_batch) < 1:
            raise ValueError(f"window_batch must be >= 1, got {self.window_batch}")
        if self.uncertainty:
            object.__setattr__(self, "mirroring", True)
        if self.backend == "openvino" and device.startswith("cuda"):
            raise ValueError("backend 'openvino' runs on the CPU only: use device 'cpu' or 'auto'")

    @classmethod
    def from_attributes(cls, source: Any) -> SegmentOptions:
        """Options from the attributes of `source` named after the fields (an argparse
        namespace, a Slicer parameter node); fields it lacks keep their defaults."""
        names = [field.name for field in fields(cls) if hasattr(source, field.name)]
        return cls(**{name: getattr(source, name) for name in names})

    def with_changes(self, **changes: Any) -> SegmentOptions:
        """A copy with `changes` applied (checked like a new instance)."""
        return replace(self, **changes)

    @property
    def runner_options(self) -> SegmentOptions:
        """These options reduced to those that decide the loaded network (device, backend,
        precision, fast, window batch), the rest at their defaults: a key under which a
        loaded runner can serve runs that differ only in overlap, mirroring, uncertainty or
        background skipping."""
        return SegmentOptions(
            device=self.device,
            backend=self.backend,
            precision=self.precision,
            fast=self.fast,
            window_batch=self.window_batch,
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain values by field name (JSON-serialisable), for summaries and logs."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
