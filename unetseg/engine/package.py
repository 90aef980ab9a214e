"""Model packages: a folder with ``model.json`` and a safetensors weights file.

Loading never unpickles anything: weights are read with safetensors only, files that look
like pickles are refused, and the SHA-256 recorded in the manifest is checked before the
bytes are parsed. The weights file must be a regular file inside the package folder (a
symbolic link may point within the package, never out of it), and its size must be the one
its safetensors header describes, so its size is known before it is read. torch is imported
only when a network is loaded or saved, so packages can be listed before torch is installed.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetseg.atomic import atomic_folder
from unetseg.engine.manifest import (
    DEFAULT_THRESHOLD,
    PICKLE_REFUSAL,
    PICKLE_SUFFIXES,
    InputSpec,
    LabelSpec,
    ModelPackageError,
    input_specs,
    label_specs,
    read_manifest,
    validate_manifest,
)
from unetseg.engine.weights import (
    check_safetensors_header,
    check_state_dict,
    checked_weights_file,
)

if TYPE_CHECKING:
    import torch

    from unetseg.engine.inference.window_spec import WindowSpec
    from unetseg.engine.postprocessing import Postprocessing
    from unetseg.engine.preprocessing.spec import PreparationSpec

MANIFEST_FILE = "model.json"
#: The package's human-readable model card (optional); kept when a package is replaced.
MODEL_CARD_FILE = "MODEL_CARD.md"
WEIGHTS_FILE = "weights.safetensors"


@dataclass(frozen=True)
class ModelPackage:
    """A validated model package. ``path`` is the folder; ``manifest`` the parsed
    ``model.json`` (treat as read-only: the typed views are parsed from it once, on first
    use). Sizes are in (x, y, z) = (I, J, K) order."""

    path: Path
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def title(self) -> str:
        return self.manifest["title"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def description(self) -> str:
        return self.manifest["description"]

    @property
    def license(self) -> str:
        return self.manifest["license"]

    @property
    def intended_use(self) -> str:
        return self.manifest["intended_use"]

    @property
    def citation(self) -> str | None:
        return self.manifest.get("citation")

    @property
    def requirements(self) -> Mapping[str, float]:
        """Resource estimates (``cpu_seconds_estimate``, ``ram_gb``, ``gpu_memory_gb``)."""
        return dict(self.manifest.get("requirements", {}))

    @property
    def training(self) -> Mapping[str, Any]:
        """How the model was trained (``datasets``, ``metrics``, ...); empty when unknown."""
        return copy.deepcopy(self.manifest.get("training", {}))

    @property
    def modality(self) -> str:
        return self.manifest["modality"]

    @property
    def spatial_dims(self) -> int:
        return self.manifest["spatial_dims"]

    @functools.cached_property
    def inputs(self) -> tuple[InputSpec, ...]:
        return input_specs(self.manifest)

    @functools.cached_property
    def labels(self) -> tuple[LabelSpec, ...]:
        return label_specs(self.manifest)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Target spacing (x, y, z) = (I, J, K) in mm; z is ignored by 2D models."""
        x, y, z = self.manifest["spacing_mm"]
        return (float(x), float(y), float(z))

    @property
    def patch_size(self) -> tuple[int, int, int]:
        """Sliding-window patch (x, y, z) = (I, J, K) in voxels; z = 1 for 2D models."""
        x, y, z = self.manifest["patch_size"]
        return (int(x), int(y), int(z))

    @functools.cached_property
    def window(self) -> WindowSpec:
        """How the model runs window by window (window, overlap, activation, threshold)."""
        from unetseg.engine.inference.window_spec import WindowSpec

        return WindowSpec.from_manifest(self.manifest)

    @property
    def overlap(self) -> float:
        return float(self.manifest["overlap"])

    @property
    def activation(self) -> str:
        """``"softmax"`` or ``"sigmoid"``."""
        return self.manifest["output"]["activation"]

    @property
    def threshold(self) -> float | None:
        """Sigmoid probability threshold (default 0.5); ``None`` for softmax models."""
        if self.activation == "softmax":
            return None
        return float(self.manifest["output"].get("threshold", DEFAULT_THRESHOLD))

    @property
    def in_channels(self) -> int:
        """Network input channels (one per input, in manifest order)."""
        return int(self.manifest["network"]["in_channels"])

    @property
    def out_channels(self) -> int:
        """Network output channels (logits)."""
        return int(self.manifest["network"]["out_channels"])

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the weights file, as the manifest records it."""
        return self.manifest["weights"]["sha256"]

    @property
    def reduced_precision(self) -> bool:
        """Whether reduced precision was measured to agree with float32 (manifest)."""
        return bool(self.manifest.get("reduced_precision", False))

    def missing_input_effect(self, missing: Sequence[str]) -> dict[str, Any] | None:
        """The measured effect (manifest ``missing_input_effects``) of running without exactly
        the inputs ``missing``, or None when the model's evaluation did not measure it."""
        wanted = set(missing)
        for entry in self.manifest.get("missing_input_effects", []):
            if wanted and set(entry["missing"]) == wanted:
                return dict(entry)
        return None

    @functools.cached_property
    def preparation(self) -> PreparationSpec:
        """What preparing a case for this model needs (``prepare_inputs``)."""
        from unetseg.engine.preprocessing.spec import PreparationSpec

        return PreparationSpec.from_manifest(self.manifest)

    @functools.cached_property
    def postprocessing(self) -> Postprocessing:
        """The label-map clean-up applied on the input grid."""
        from unetseg.engine.postprocessing import Postprocessing

        return Postprocessing.from_manifest(self.manifest.get("postprocessing"))

    @property
    def lesion_analysis(self) -> bool:
        return bool(self.manifest.get("lesion_analysis", False))

    @property
    def weights_path(self) -> Path:
        return self.path / self.manifest["weights"]["file"]

    def read_weights(self) -> bytes:
        """Return the weights file's bytes after checking them against the manifest SHA-256
        (and, before reading, that the file is inside the package and its size is the one its
        header describes)."""
        path = checked_weights_file(self.path, self.weights_path)
        size = check_safetensors_header(path)
        with path.open("rb") as f:
            data = f.read(size)
        if len(data) != size:
            raise ModelPackageError(f"{path} changed while it was read", path=path)
        digest = hashlib.sha256(data).hexdigest()
        expected = self.weights_sha256
        if digest != expected:
            raise ModelPackageError(
                f"{self.weights_path} is corrupt or was modified after packaging: its SHA-256 is "
                f"{digest} but model.json expects {expected}. Download or export the model again.",
                path=self.weights_path,
            )
        return data

    def load_network(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """Build ``UNet(**manifest["network"])``, load the verified weights, move it to
        ``device`` and return it in eval mode."""
        import safetensors.torch
        from safetensors import SafetensorError

        from unetseg.engine.network import UNet

        data = self.read_weights()
        try:
            state = safetensors.torch.load(data)
        except SafetensorError as exc:
            raise ModelPackageError(
                f"{self.weights_path} is not a valid safetensors file: {exc}",
                path=self.weights_path,
            ) from None
        network = UNet(**self.manifest["network"])
        check_state_dict(network.state_dict(), state, self.weights_path)
        network.load_state_dict(state, strict=True)
        return network.to(device).eval()


def load_model_package(path: str | os.PathLike[str]) -> ModelPackage:
    """Load and validate the package in folder ``path`` (or given by its ``model.json``).

    Checks the manifest (schema and semantic rules) and that the weights file exists and is
    a safetensors file; the weights checksum is verified when the network is loaded.
    Raises ``ModelPackageError`` with an actionable message otherwise.
    """
    path = Path(path).expanduser()
    if path.name == MANIFEST_FILE:
        path = path.parent
    elif path.is_file():
        if path.name.lower().endswith(PICKLE_SUFFIXES):
            raise ModelPackageError(f"{path} is a pickle file. {PICKLE_REFUSAL}", path=path)
        raise ModelPackageError(
            f"{path} is not a model package: give its folder or its {MANIFEST_FILE}", path=path
        )
    if not path.is_dir():
        raise ModelPackageError(f"Model package folder not found: {path}", path=path)
    folder = path.resolve()
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        hint = f" It contains pickle files {pickles}. {PICKLE_REFUSAL}" if pickles else ""
        raise ModelPackageError(
            f"{folder} is not a model package: {MANIFEST_FILE} not found.{hint}", path=folder
        )
    try:
        manifest = read_manifest(manifest_path)
        validate_manifest(manifest, source=str(manifest_path))
    except ModelPackageError as exc:
        raise ModelPackageError(str(exc), path=folder, problems=exc.problems) from None
    package = ModelPackage(path=folder, manifest=manifest)
    if not package.weights_path.exists():
        raise ModelPackageError(
            f"Weights file {package.weights_path.name!r} named in {manifest_path} is missing",
            path=folder,
        )
    check_safetensors_header(checked_weights_file(folder, package.weights_path))
    return package


def save_model_package(
    out_dir: str | os.PathLike[str],
    manifest: Mapping[str, Any],
    network: torch.nn.Module,
    *,
    overwrite: bool = False,
) -> ModelPackage:
    """Write ``network`` and ``manifest`` as a package in folder ``out_dir`` and return it.

    Floating-point tensors are stored as contiguous float32 in ``weights.safetensors``;
    ``manifest["weights"]`` is filled in (file name and SHA-256) and ``manifest["network"]``
    is taken from ``network.config`` when the network has that attribute. Before anything
    is written, the manifest is validated and the state dict is checked against
    ``UNet(**manifest["network"])``. The package is assembled in a hidden sibling
    folder and renamed into place, so ``out_dir`` never holds a partial package.

    An existing identical package is left as it is. A different one is replaced (the whole
    folder, except its ``MODEL_CARD.md``, which is carried over) only with
    ``overwrite=True``; a non-empty folder that is not a package is never replaced.
    """
    import safetensors.torch
    import torch

    from unetseg.engine.network import UNet

    out_dir = Path(out_dir).expanduser().absolute()
    manifest = copy.deepcopy(dict(manifest))
    config = getattr(network, "config", None)
    if config is not None:
        manifest["network"] = dict(config)
    tensors = {
        name: (t.detach().to("cpu", torch.float32) if t.is_floating_point() else t.detach().cpu())
        .contiguous()
        .clone()
        for name, t in network.state_dict().items()
    }
    weights = safetensors.torch.save(tensors, metadata={"format": "pt"})
    manifest["weights"] = {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(weights).hexdigest()}
    try:
        # The JSON round trip turns tuples into lists and rejects values JSON cannot hold.
        text = json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ModelPackageError(f"manifest cannot be written as JSON: {exc}") from None
    manifest = json.loads(text)
    validate_manifest(manifest, source="manifest")
    with torch.device("meta"):
        described = UNet(**manifest["network"]).state_dict()
    check_state_dict(described, tensors, "The state dict of `network`")

    existing = _existing_package(out_dir, manifest, overwrite)
    if existing is not None:
        return existing
    files = {WEIGHTS_FILE: weights, MANIFEST_FILE: text.encode()}
    card = out_dir / MODEL_CARD_FILE
    if card.is_file():
        files[MODEL_CARD_FILE] = card.read_bytes()
    _write_folder_atomically(out_dir, files)
    return load_model_package(out_dir)


def _existing_package(
    out_dir: Path, manifest: Mapping[str, Any], overwrite: bool
) -> ModelPackage | None:
    """Return the package already at ``out_dir`` if it is identical to the one being saved;
    ``None`` if ``out_dir`` may be (re)written; raise if it must not be touched."""
    if not out_dir.exists():
        return None
    if not out_dir.is_dir():
        raise ModelPackageError(f"{out_dir} exists and is not a folder", path=out_dir)
    if not any(out_dir.iterdir()):
        return None
    if not (out_dir / MANIFEST_FILE).is_file():
        raise ModelPackageError(
            f"{out_dir} is not empty and holds no model package; refusing to replace it. "
            f"Choose a new or empty folder.",
            path=out_dir,
        )
    try:
        current = load_model_package(out_dir)
        if current.manifest == manifest:
            current.read_weights()
            return current
    except ModelPackageError:
        current = None
    if not overwrite:
        held = f" ({current.id} {current.version})" if current is not None else ""
        raise ModelPackageError(
            f"{out_dir} already holds a different model package{held}; pass overwrite=True "
            f"to replace the folder",
            path=out_dir,
        )
    return None


def _write_folder_atomically(dest: Path, files: Mapping[str, bytes]) -> None:
    """Create folder ``dest`` holding ``files``, replacing any existing folder, such that
    ``dest`` holds either the old or the complete new content (see ``atomic_folder``)."""
    with atomic_folder(dest) as staging:
        for name, data in files.items():
            _write_bytes(staging / name, data)


def _write_bytes(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
