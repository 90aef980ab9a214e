"""Model manifest (``model.json``): parsing, schema and semantic validation, typed views.

The format is described in docs/CONVENTIONS.md and formally in
``unetseg/schemas/model.schema.json``. Millimetre and voxel sizes in the manifest
(``spacing_mm``, ``patch_size``) are in (I, J, K) = (x, y, z) order. Messages name the
offending field as a JSON path, e.g. ``$.labels[1].value``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
PICKLE_REFUSAL = (
    "Pickle-based weights (.pt, .pth, .ckpt, .pkl, .bin, torch.save files) can run arbitrary "
    "code when loaded, so UNetSeg refuses them. Convert a checkpoint you trust once, in a "
    "trusted environment, with UNetSeg's Training export, or load it into the network yourself "
    "and call unetseg.engine.package.save_model_package(out_dir, manifest, network), which "
    "writes weights.safetensors and model.json."
)

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


class ModelPackageError(ValueError):
    """A model package or manifest is missing, invalid or unsafe to load.

    ``path`` is the package folder or file concerned (if known); ``problems`` lists the
    individual validation messages (empty for single-cause errors).
    """

    def __init__(
        self, message: str, *, path: Path | None = None, problems: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.path = path
        self.problems = tuple(problems)


@dataclass(frozen=True)
class InputSpec:
    """One input image of a model; input i feeds network channel i."""

    name: str
    title: str = ""
    required: bool = True
    name_patterns: tuple[str, ...] = ()
    series_description_patterns: tuple[str, ...] = ()
    normalization: Mapping[str, Any] = field(default_factory=lambda: {"method": "none"})

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any]) -> InputSpec:
        return cls(
            name=entry["name"],
            title=entry["title"],
            required=entry["required"],
            name_patterns=tuple(entry.get("name_patterns", ())),
            series_description_patterns=tuple(entry.get("series_description_patterns", ())),
            normalization=dict(entry["normalization"]),
        )


#: Sigmoid probability threshold when the manifest's ``output`` gives none.
DEFAULT_THRESHOLD = 0.5
#: Colour of a segment that has none (a DICOM SEG without a display colour): Slicer's tissue.
DEFAULT_LABEL_COLOR = (128, 174, 128)


@dataclass(frozen=True)
class LabelSpec:
    """One output label (segment); ``color`` is 0-255 RGB. ``region``: sigmoid models, the name
    of the nested region (values >= ``value``) the label's channel predicts."""

    value: int
    name: str
    color: tuple[int, int, int] = DEFAULT_LABEL_COLOR
    terminology: Mapping[str, Mapping[str, str]] | None = None
    region: str | None = None

    @property
    def region_name(self) -> str:
        """Name of what the network's channel for this label predicts."""
        return self.region or self.name

    @property
    def color_float(self) -> tuple[float, float, float]:
        """Colour as RGB floats in [0, 1], as Slicer's ``SetColor`` expects."""
        r, g, b = (c / 255.0 for c in self.color)
        return (r, g, b)

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any]) -> LabelSpec:
        r, g, b = entry["color"]
        terminology = entry.get("terminology")
        return cls(
            value=entry["value"],
            name=entry["name"],
            color=(r, g, b),
            terminology=None
            if terminology is None
            else {k: dict(v) for k, v in terminology.items()},
            region=entry.get("region"),
        )


def input_specs(manifest: Mapping[str, Any]) -> tuple[InputSpec, ...]:
    """A validated manifest's inputs, in network channel order."""
    return tuple(InputSpec.from_manifest(entry) for entry in manifest["inputs"])


def label_specs(manifest: Mapping[str, Any]) -> tuple[LabelSpec, ...]:
    """A validated manifest's labels, in value order 1..N."""
    return tuple(LabelSpec.from_manifest(entry) for entry in manifest["labels"])


@functools.cache
def load_schema() -> dict[str, Any]:
    """Return the manifest JSON Schema (draft 2020-12) bundled with the package."""
    text = resources.files("unetseg").joinpath("schemas", "model.schema.json").read_text("utf-8")
    return json.loads(text)


@functools.cache
def _validator() -> Any:
    """The schema's validator; jsonschema is imported here, on first validation, so that the
    specs above load without it (a fresh Slicer, before the first run installs it)."""
    import jsonschema

    return jsonschema.Draft202012Validator(load_schema())


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_manifest(text: str, source: str = "model.json") -> dict[str, Any]:
    """Parse manifest JSON text into a dict (not yet validated).

    Rejects duplicate keys and NaN/Infinity, which plain ``json`` silently accepts.
    Raises ``ModelPackageError`` with line and column for syntax errors.
    """
    try:
        data = json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise ModelPackageError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except ValueError as exc:
        raise ModelPackageError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelPackageError(f"{source} must contain a JSON object, not {type(data).__name__}")
    return data


def read_manifest(path: Path) -> dict[str, Any]:
    """Read and parse a ``model.json`` file (UTF-8, a byte-order mark is tolerated)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModelPackageError(f"{path} is not UTF-8 text: {exc}", path=Path(path)) from None
    return parse_manifest(text, source=str(path))


def manifest_problems(manifest: Mapping[str, Any]) -> list[str]:
    """Return every problem of a manifest as ``"<JSON path>: <message>"`` strings.

    Schema violations are reported first; the semantic rules (which assume a
    schema-valid manifest) are checked only when there are none. Empty list = valid.
    """
    errors = sorted(_validator().iter_errors(manifest), key=lambda e: (e.json_path, e.message))
    if errors:
        return [f"{error.json_path}: {error.message}" for error in errors]
    return _semantic_problems(manifest)


def validate_manifest(manifest: Mapping[str, Any], source: str = "model.json") -> None:
    """Raise ``ModelPackageError`` listing all problems if ``manifest`` is not valid."""
    problems = manifest_problems(manifest)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise ModelPackageError(
            f"{source} is not a valid model manifest ({len(problems)} problem(s)):\n{listing}",
            problems=problems,
        )


def _semantic_problems(m: Mapping[str, Any]) -> list[str]:
    """Cross-field rules that JSON Schema cannot express."""
    problems = _label_problems(m) + _input_problems(m)
    net = m["network"]
    sigmoid = m["output"]["activation"] == "sigmoid"
    n_labels = len(m["labels"])
    expected_out = n_labels if sigmoid else n_labels + 1
    if net["out_channels"] != expected_out:
        rule = (
            "sigmoid: one channel per label"
            if sigmoid
            else "softmax: background channel 0 + one channel per label"
        )
        problems.append(
            f"$.network.out_channels: is {net['out_channels']} but {n_labels} label(s) need "
            f"{expected_out} ({rule})"
        )
    for i, label in enumerate(m["labels"]):
        if not sigmoid and "region" in label:
            problems.append(
                f"$.labels[{i}].region: only sigmoid models predict nested regions; remove it"
            )
    if not sigmoid and "threshold" in m["output"]:
        problems.append(
            "$.output.threshold: only sigmoid models use a threshold; remove it (softmax "
            "models take the argmax)"
        )
    if net["in_channels"] != len(m["inputs"]):
        problems.append(
            f"$.network.in_channels: is {net['in_channels']} but there are "
            f"{len(m['inputs'])} input(s); each input feeds one channel"
        )
    if net["spatial_dims"] != m["spatial_dims"]:
        problems.append(
            f"$.network.spatial_dims: is {net['spatial_dims']} but $.spatial_dims is "
            f"{m['spatial_dims']}"
        )
    if net.get("kernel_size", 3) % 2 == 0:
        problems.append(f"$.network.kernel_size: must be odd, got {net['kernel_size']}")
    if net["deep_supervision"] and len(net["filters"]) < 3:
        problems.append("$.network.deep_supervision: needs at least 3 levels in network.filters")
    problems += _patch_problems(m)
    weights_file = m["weights"]["file"]
    if weights_file.lower().endswith(PICKLE_SUFFIXES):
        problems.append(f"$.weights.file: {weights_file!r} is a pickle format. {PICKLE_REFUSAL}")
    elif not weights_file.endswith(".safetensors"):
        problems.append(f"$.weights.file: {weights_file!r} must be a .safetensors file")
    optional = {entry["name"] for entry in m["inputs"] if not entry["required"]}
    for i, effect in enumerate(m.get("missing_input_effects", [])):
        if not set(effect["missing"]) <= optional:
            problems.append(
                f"$.missing_input_effects[{i}].missing: {effect['missing']} must be optional "
                f"inputs of the model {sorted(optional)}"
            )
    label_values = {label["value"] for label in m["labels"]}
    for value in m.get("postprocessing", {}).get("largest_component", ()):
        if value not in label_values:
            problems.append(
                f"$.postprocessing.largest_component: {value} is not a label value "
                f"{sorted(label_values)}"
            )
    input_names = {entry["name"] for entry in m["inputs"]}
    for i, sample in enumerate(m.get("sample_data", ())):
        if sample["input"] not in input_names:
            problems.append(
                f"$.sample_data[{i}].input: {sample['input']!r} is not one of the input names "
                f"{sorted(input_names)}"
            )
    return problems


def _label_problems(m: Mapping[str, Any]) -> list[str]:
    problems = []
    labels = m["labels"]
    first_by_value: dict[int, int] = {}
    first_by_name: dict[str, int] = {}
    for i, label in enumerate(labels):
        value, name = label["value"], label["name"]
        if value in first_by_value:
            problems.append(
                f"$.labels[{i}].value: {value} is already used by $.labels[{first_by_value[value]}]"
            )
        first_by_value.setdefault(value, i)
        if name in first_by_name:
            problems.append(
                f"$.labels[{i}].name: {name!r} is already used by $.labels[{first_by_name[name]}]"
            )
        first_by_name.setdefault(name, i)
    values = [label["value"] for label in labels]
    expected = list(range(1, len(labels) + 1))
    if len(first_by_value) == len(labels) and values != expected:
        problems.append(
            f"$.labels: values must be {expected} in this order, because network output channels "
            f"map to label values by position (softmax: channel c = label c; sigmoid: "
            f"channel c - 1 = label c); got {values}"
        )
    return problems


def _input_problems(m: Mapping[str, Any]) -> list[str]:
    problems = []
    first_by_name: dict[str, int] = {}
    for i, entry in enumerate(m["inputs"]):
        name = entry["name"]
        if name in first_by_name:
            problems.append(
                f"$.inputs[{i}].name: {name!r} is already used by $.inputs[{first_by_name[name]}]"
            )
        first_by_name.setdefault(name, i)
        norm = entry["normalization"]
        if norm["method"] == "percentile_minmax" and norm["lower"] >= norm["upper"]:
            problems.append(
                f"$.inputs[{i}].normalization: lower ({norm['lower']}) must be less than "
                f"upper ({norm['upper']})"
            )
    if not any(entry["required"] for entry in m["inputs"]):
        problems.append("$.inputs: at least one input must have required: true")
    return problems


def _patch_problems(m: Mapping[str, Any]) -> list[str]:
    problems = []
    patch = m["patch_size"]
    factor = 2 ** (len(m["network"]["filters"]) - 1)
    if m["spatial_dims"] == 2 and patch[2] != 1:
        problems.append(f"$.patch_size: 2D models need z = 1, got {patch}")
    if m.get("image_size") is not None and m["spatial_dims"] != 2:
        problems.append("$.image_size: only 2D models resample to a fixed image size")
    for axis, size in zip("xyz"[: m["spatial_dims"]], patch, strict=False):
        if size % factor:
            problems.append(
                f"$.patch_size: {axis} = {size} is not divisible by {factor} "
                f"(2 ** (len(network.filters) - 1) down-samplings)"
            )
    return problems


def version_key(version: str) -> tuple[Any, ...]:
    """Sort key implementing semantic-version precedence (build metadata ignored).

    ``1.10.0 > 1.2.0`` and a pre-release sorts before its release (``2.0.0-rc.1 < 2.0.0``).
    """
    match = _VERSION_RE.match(version)
    if match is None:
        raise ValueError(f"not a MAJOR.MINOR.PATCH version: {version!r}")
    major, minor, patch, pre = match.groups()
    if pre is None:
        return (int(major), int(minor), int(patch), 1, ())
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (int(major), int(minor), int(patch), 0, ids)
