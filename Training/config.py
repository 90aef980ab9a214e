"""Training configuration: YAML schema as dataclasses, loading and validation.

A config file has the sections ``name``, ``data``, ``model``, ``training``, ``sampling`` and
``augmentation`` (see ``Training/configs/*.yaml``). Every error is a ``ConfigError`` whose message
starts with the dotted key it concerns, e.g. ``training.optimizer.lr: must be > 0, got -1``.

Sizes follow docs/CONVENTIONS.md: ``patch_size`` and ``spacing_mm`` are (x, y, z) = (I, J, K);
augmentation axes are named ``x``, ``y``, ``z``. The ``model`` section holds model-manifest fields
(everything but ``weights``); omitted bookkeeping fields and network options get defaults and the
result is checked with the engine's manifest validator. Relative paths are resolved against the
config file's folder when loading.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from unetseg.engine.manifest import (
    InputSpec,
    LabelSpec,
    input_specs,
    label_specs,
    manifest_problems,
)

if TYPE_CHECKING:
    from unetseg.engine.preprocessing.spec import PreparationSpec

Axis = Literal["x", "y", "z"]
PLACEHOLDER_WEIGHTS = {"file": "weights.safetensors", "sha256": "0" * 64}
MODEL_DEFAULTS: dict[str, Any] = {
    "schema_version": 1,
    "version": "0.1.0",
    "license": "unspecified",
    "description": "",
    "intended_use": "research only, not for clinical use",
    "overlap": 0.5,
    "output": {"activation": "softmax"},
}
NETWORK_DEFAULTS: dict[str, Any] = {
    "filters": [16, 32, 64, 128, 256],
    "norm": "instance",
    "dropout": 0.0,
    "residual": False,
    "squeeze_excitation": False,
    "deep_supervision": False,
    "upsample": "transpose",
}
SOFTMAX_LOSSES = ("ce",)
SIGMOID_LOSSES = ("bce",)


class ConfigError(ValueError):
    """An invalid configuration value; ``key`` is its dotted path (e.g. ``training.epochs``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


# ----------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class SynthConfig:
    """Synthetic data written to ``data.root`` when that folder does not exist."""

    task: Literal["brain-mri", "lung-ct", "lung-cxr", "ovarian-ct"]
    cases: int = 8
    seed: int = 0
    size: int | None = None
    layout: str | None = None
    spacing: tuple[float, float, float] | None = None
    canonical: bool = False

    def check(self, key: str) -> None:
        _at_least(self.cases, 2, f"{key}.cases")
        if self.size is not None:
            _at_least(self.size, 8, f"{key}.size")


@dataclass(frozen=True)
class SplitConfig:
    """Patient-level split: ``validation`` and ``test`` fractions, or k-fold when ``folds > 1``
    (fold ``fold`` is the validation set), or fixed lists: ``val_patients`` and
    ``test_patients`` name the patients (patient ids) of those parts, every other patient
    trains (the fractions and folds are then not used)."""

    validation: float = 0.2
    test: float = 0.0
    folds: int = 0
    fold: int = 0
    seed: int = 0
    val_patients: tuple[str, ...] = ()
    test_patients: tuple[str, ...] = ()

    @property
    def fixed(self) -> bool:
        """True when the parts are given as patient lists."""
        return bool(self.val_patients or self.test_patients)

    def check(self, key: str) -> None:
        _fraction(self.validation, f"{key}.validation")
        _fraction(self.test, f"{key}.test")
        if self.validation + self.test >= 1.0:
            raise ConfigError(key, "validation + test must leave cases for training")
        if self.folds:
            _at_least(self.folds, 2, f"{key}.folds")
            if not 0 <= self.fold < self.folds:
                raise ConfigError(f"{key}.fold", f"must be in [0, {self.folds}), got {self.fold}")
        both = set(self.val_patients) & set(self.test_patients)
        if both:
            raise ConfigError(
                f"{key}.test_patients", f"{sorted(both)} are also validation patients"
            )
        if self.fixed and self.folds:
            raise ConfigError(f"{key}.folds", "give folds or patient lists, not both")


#: ``data.reader`` -> function of ``Training.data`` that indexes the dataset folder.
READERS = {
    "brainmetshare": "read_brainmetshare",
    "decathlon": "read_decathlon",
    "brats": "read_brats",
    "pairs": "read_pairs",
    "image_mask_pairs": "read_image_mask_pairs",
    "ovarian": "read_ovarian",
    "dicom": "read_dicom",
}
Reader = Literal[
    "brainmetshare", "decathlon", "brats", "pairs", "image_mask_pairs", "ovarian", "dicom"
]


@dataclass(frozen=True)
class SourceConfig:
    """One data source: a dataset folder, its reader and what its labels mean.

    ``reader`` names a dataset layout (``READERS``); ``options`` are that reader's keyword
    arguments. ``label_map`` remaps label values after loading. ``regions`` (sigmoid models)
    lists, per output label, the label values inside that region, nested (e.g. BraTS WT, TC,
    ET). ``unknown`` (partial labels, needs ``regions``) lists, per output label, the label
    values where that region is not labelled by this source: the loss ignores those voxels for
    that output channel, and validation scores a region only where its negatives are known
    (``0`` not in its ``unknown``) and it has positive values. Example, a binary tumour-core
    mask (1) whose enclosed holes are 2: ``regions: [[1, 2], [1], []]``, ``unknown: [[0], [2],
    [1, 2]]`` (WT is 1 inside the mask, unknown outside; TC is the mask; ET is 0 outside the
    mask, unknown inside). ``inputs`` maps model input names to the dataset's image names.
    """

    name: str
    reader: Reader
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    label_map: dict[int, int] = field(default_factory=dict)
    regions: tuple[tuple[int, ...], ...] | None = None
    unknown: tuple[tuple[int, ...], ...] | None = None
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        """True when some region is unknown somewhere (partial labels)."""
        return self.unknown is not None and any(self.unknown)

    def evaluated_regions(self) -> tuple[bool, ...] | None:
        """Per region, whether validation scores it (None: every label, no regions)."""
        if self.regions is None:
            return None
        unknown = self.unknown or ((),) * len(self.regions)
        return tuple(
            bool(values) and 0 not in missing
            for values, missing in zip(self.regions, unknown, strict=True)
        )

    def check(self, key: str) -> None:
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ConfigError(f"{key}.name", f"must be letters, digits, - or _, got {self.name!r}")
        _check_labels(self.label_map, self.regions, self.unknown, key)
        _check_reader(self.reader, self.options, key)


@dataclass(frozen=True)
class DataConfig:
    """Where the cases are and how to read them: one source (``reader``, ``root``, ...) or
    several (``sources``).

    ``reader`` names a dataset layout (``READERS``); ``options`` are that reader's keyword
    arguments (e.g. ``patterns`` and ``label_pattern`` for ``brats``, ``image_pattern`` and
    ``label_pattern`` for ``pairs``, ``patient_regex`` for all). ``label_map`` remaps label
    values after loading (e.g. ``{2: 1}`` merges left and right lung; ``0`` drops a value).
    ``regions`` (sigmoid models) lists, per output label, the label values it covers, nested
    (each region inside the previous one, e.g. BraTS WT, TC, ET); without it the label value
    ``c`` is region ``c`` and ``label >= c`` its target. ``unknown``: partial labels, see
    ``SourceConfig``. ``inputs`` maps model input names to the dataset's image names where they
    differ. ``root`` may be omitted with ``synth``: data is then generated in ``<run>/data``.
    ``sources`` replaces all of these with a list of ``SourceConfig`` (one per dataset, each
    with its own reader and label meaning); the split is made over the patients of all of them.
    Prepared (resampled, normalised) cases are cached in ``cache_dir`` (default
    ``<run>/prepared``).
    """

    reader: Reader | None = None
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    label_map: dict[int, int] = field(default_factory=dict)
    regions: tuple[tuple[int, ...], ...] | None = None
    unknown: tuple[tuple[int, ...], ...] | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    sources: tuple[SourceConfig, ...] = ()
    split: SplitConfig = field(default_factory=SplitConfig)
    synth: SynthConfig | None = None
    cache_dir: str | None = None

    def source_list(self) -> tuple[SourceConfig, ...]:
        """The sources; a single-source section is one source named ``data``."""
        if self.sources:
            return self.sources
        assert self.reader is not None  # checked
        single = SourceConfig(
            "data",
            self.reader,
            self.root,
            self.options,
            self.label_map,
            self.regions,
            self.unknown,
            self.inputs,
        )
        return (single,)

    def source(self, name: str | None) -> SourceConfig:
        """The source called ``name`` (None: the single source)."""
        sources = self.source_list()
        if name is None and len(sources) == 1:
            return sources[0]
        for source in sources:
            if source.name == name:
                return source
        raise KeyError(f"no data source {name!r}; sources: {[s.name for s in sources]}")

    @property
    def partial(self) -> bool:
        """True when a source has partial labels."""
        return any(source.partial for source in self.source_list())

    def check(self, key: str) -> None:
        if self.sources:
            single = [
                name
                for name in ("reader", "root", "regions", "unknown", "synth")
                if getattr(self, name) is not None
            ]
            single += [n for n in ("options", "label_map", "inputs") if getattr(self, n)]
            if single:
                raise ConfigError(
                    f"{key}.{single[0]}", "give it per source when data.sources is used"
                )
            names = [source.name for source in self.sources]
            if len(set(names)) != len(names):
                raise ConfigError(f"{key}.sources", f"source names must differ, got {names}")
            for n, source in enumerate(self.sources):
                if source.root is None:
                    raise ConfigError(f"{key}.sources[{n}].root", "is required")
            return
        if self.reader is None:
            raise ConfigError(f"{key}.reader", "is required (or give data.sources)")
        if self.root is None and self.synth is None:
            raise ConfigError(f"{key}.root", "is required (or give data.synth to generate data)")
        _check_labels(self.label_map, self.regions, self.unknown, key)
        _check_reader(self.reader, self.options, key)


def _check_labels(
    label_map: Mapping[int, int],
    regions: tuple[tuple[int, ...], ...] | None,
    unknown: tuple[tuple[int, ...], ...] | None,
    key: str,
) -> None:
    for source, target in label_map.items():
        if not (0 <= source <= 255 and 0 <= target <= 255):
            raise ConfigError(
                f"{key}.label_map.{source}", f"values must be 0-255, got {source}: {target}"
            )
    if unknown is not None:
        if regions is None:
            raise ConfigError(f"{key}.unknown", "needs regions (partial labels are per region)")
        if len(unknown) != len(regions):
            raise ConfigError(f"{key}.unknown", f"needs one list per region ({len(regions)})")
        for n, (values, missing) in enumerate(zip(regions, unknown, strict=True)):
            if set(values) & set(missing):
                raise ConfigError(
                    f"{key}.unknown[{n}]", f"{sorted(set(values) & set(missing))} are in the region"
                )
    elif regions is not None and not all(regions):
        raise ConfigError(f"{key}.regions", "every region needs at least one label value")


def _check_reader(reader: str, options: Mapping[str, Any], key: str) -> None:
    import Training.data  # lazy: pulls in the image readers

    function = getattr(Training.data, READERS[reader])
    parameters = inspect.signature(function).parameters
    allowed = [name for name in parameters if name != "root"]
    for name in options:
        if name not in allowed:
            raise ConfigError(
                f"{key}.options.{name}",
                f"is not an option of the {reader!r} reader; options: {allowed}",
            )
    needed = [
        name
        for name, parameter in parameters.items()
        if name != "root" and parameter.default is inspect.Parameter.empty and name not in options
    ]
    if needed:
        raise ConfigError(f"{key}.options", f"the {reader!r} reader needs {needed}")


@dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.99
    nesterov: bool = True

    def check(self, key: str) -> None:
        _positive(self.lr, f"{key}.lr")
        _non_negative(self.weight_decay, f"{key}.weight_decay")
        for i, beta in enumerate(self.betas):
            if not 0.0 <= beta < 1.0:
                raise ConfigError(f"{key}.betas[{i}]", f"must be in [0, 1), got {beta}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"{key}.momentum", f"must be in [0, 1), got {self.momentum}")


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule: ``constant``; ``poly`` (``lr (1 - step/total) ** power``, per
    step); ``onecycle`` (per step, peak ``optimizer.lr``); ``plateau`` (multiply by ``factor``
    after ``patience`` validations without a better validation Dice)."""

    name: Literal["constant", "poly", "onecycle", "plateau"] = "poly"
    power: float = 0.9
    pct_start: float = 0.25
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    factor: float = 0.5
    patience: int = 5
    min_lr: float = 0.0

    def check(self, key: str) -> None:
        _positive(self.power, f"{key}.power")
        if not 0.0 < self.pct_start < 1.0:
            raise ConfigError(f"{key}.pct_start", f"must be in (0, 1), got {self.pct_start}")
        _positive(self.div_factor, f"{key}.div_factor")
        _positive(self.final_div_factor, f"{key}.final_div_factor")
        if not 0.0 < self.factor < 1.0:
            raise ConfigError(f"{key}.factor", f"must be in (0, 1), got {self.factor}")
        _at_least(self.patience, 0, f"{key}.patience")
        _non_negative(self.min_lr, f"{key}.min_lr")


@dataclass(frozen=True)
class LossConfig:
    """Loss of ``unetseg.engine.losses``: ``dice``, ``dice_ce``, ``ce`` (softmax), ``bce``
    (sigmoid), ``focal_tversky`` (``alpha``, ``beta``, ``gamma``) or ``soft_dice`` (the course
    notebook's V-Net Dice, squared denominator, over all channels)."""

    name: Literal["dice", "dice_ce", "ce", "bce", "focal_tversky", "soft_dice"] = "dice_ce"
    include_background: bool = False
    batch_dice: bool = False
    lambda_dice: float = 1.0
    lambda_ce: float = 1.0
    class_weights: tuple[float, ...] | None = None
    background_weight: float = 1.0
    pos_weight: tuple[float, ...] | None = None
    alpha: float = 0.3
    beta: float = 0.7
    gamma: float = 0.75
    deep_supervision_weights: tuple[float, ...] | None = None

    def check(self, key: str) -> None:
        for name in ("lambda_dice", "lambda_ce", "background_weight", "alpha", "beta"):
            _non_negative(getattr(self, name), f"{key}.{name}")
        _positive(self.gamma, f"{key}.gamma")


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop after ``patience`` validations without a validation-Dice gain above ``min_delta``
    (``patience: null`` disables it)."""

    patience: int | None = None
    min_delta: float = 0.0

    def check(self, key: str) -> None:
        if self.patience is not None:
            _at_least(self.patience, 1, f"{key}.patience")
        _non_negative(self.min_delta, f"{key}.min_delta")


@dataclass(frozen=True)
class ValidationConfig:
    """Whole-volume validation every ``every`` epochs (sliding window, engine metrics), plus a
    validation loss on ``loss_patches`` fixed patches per case; ``max_cases`` caps the cases."""

    every: int = 1
    sw_batch_size: int = 2
    overlap: float | None = None
    max_cases: int | None = None
    loss_patches: int = 2
    distances: bool = False

    def check(self, key: str) -> None:
        _at_least(self.every, 1, f"{key}.every")
        _at_least(self.sw_batch_size, 1, f"{key}.sw_batch_size")
        if self.overlap is not None and not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"{key}.overlap", f"must be in [0, 1), got {self.overlap}")
        if self.max_cases is not None:
            _at_least(self.max_cases, 1, f"{key}.max_cases")
        _at_least(self.loss_patches, 0, f"{key}.loss_patches")


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation: ``epochs`` of ``steps_per_epoch`` optimizer steps of ``batch_size`` patches
    (per process); ``amp`` is ``auto`` (CUDA: bf16 where supported, else fp16; CPU: bf16 only
    with native support), ``off``, ``fp16`` (CUDA) or ``bf16``; ``grad_clip`` is the max gradient
    norm (null: off); ``workers`` data-loading processes; ``cache_cases`` prepared cases kept
    open per worker; ``cpu_threads`` torch threads of a CPU training process (null: torch's
    default; one thread is fastest for small models and on busy shared machines);
    ``deterministic`` runs only kernels whose results do not depend on memory layout or thread
    timing (CPU: PyTorch's native convolutions instead of oneDNN's; CUDA: deterministic cuDNN),
    so that a resumed run equals an uninterrupted one bit for bit; it is slower (CPU: about 2-5x)
    and off by default, where a resumed run equals a straight one up to float rounding."""

    epochs: int = 100
    steps_per_epoch: int = 250
    batch_size: int = 2
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    amp: Literal["auto", "off", "fp16", "bf16"] = "auto"
    grad_clip: float | None = 12.0
    workers: int = 2
    cache_cases: int = 8
    cpu_threads: int | None = None
    deterministic: bool = False
    device: str = "auto"
    seed: int = 0

    def check(self, key: str) -> None:
        _at_least(self.epochs, 1, f"{key}.epochs")
        _at_least(self.steps_per_epoch, 1, f"{key}.steps_per_epoch")
        _at_least(self.batch_size, 1, f"{key}.batch_size")
        if self.grad_clip is not None:
            _positive(self.grad_clip, f"{key}.grad_clip")
        _at_least(self.workers, 0, f"{key}.workers")
        _at_least(self.cache_cases, 1, f"{key}.cache_cases")
        if self.cpu_threads is not None:
            _at_least(self.cpu_threads, 1, f"{key}.cpu_threads")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass(frozen=True)
class SamplingConfig:
    """Patches: size (x, y, z) (default: ``model.patch_size``; 2D models use z = 1 and take
    axial slices of 3D cases); ``foreground_oversample``: probability of centring a patch on a
    voxel of a random class present in the case (nnU-Net style); ``max_background``: redraw a
    patch whose background share exceeds it, up to ``tries`` times (the course notebook keeps
    patches with at most 95 % background), keeping the best one; null disables the rule."""

    patch_size: tuple[int, int, int] | None = None
    foreground_oversample: float = 0.33
    max_background: float | None = None
    tries: int = 10

    def check(self, key: str) -> None:
        if self.patch_size is not None:
            for axis, size in zip("xyz", self.patch_size, strict=True):
                _at_least(size, 1, f"{key}.patch_size.{axis}")
        _fraction(self.foreground_oversample, f"{key}.foreground_oversample")
        if self.max_background is not None:
            _fraction(self.max_background, f"{key}.max_background")
        _at_least(self.tries, 1, f"{key}.tries")


@dataclass(frozen=True)
class FlipConfig:
    """Mirror along each listed axis independently with probability ``p``."""

    p: float = 0.5
    axes: tuple[Axis, ...] = ("x", "y", "z")


@dataclass(frozen=True)
class RotationConfig:
    """Rotate by up to ``degrees`` (3D: about each axis; 2D: in plane), with probability p."""

    p: float = 0.2
    degrees: float = 15.0


@dataclass(frozen=True)
class ScaleConfig:
    """Zoom by a factor drawn from ``range`` (> 1 enlarges the content), with probability p."""

    p: float = 0.2
    range: tuple[float, float] = (0.8, 1.2)


@dataclass(frozen=True)
class ShiftConfig:
    """Translate by up to ``fraction`` of the patch size per axis, with probability p."""

    p: float = 0.2
    fraction: float = 0.1


@dataclass(frozen=True)
class GammaConfig:
    """Per-channel gamma from ``range`` on min-max rescaled intensities (mean and std kept)."""

    p: float = 0.3
    range: tuple[float, float] = (0.7, 1.5)


@dataclass(frozen=True)
class NoiseConfig:
    """Gaussian noise, standard deviation up to ``std`` times the channel's std."""

    p: float = 0.15
    std: float = 0.1


@dataclass(frozen=True)
class BiasFieldConfig:
    """Smooth multiplicative field ``exp(polynomial)`` with coefficients up to ``strength``."""

    p: float = 0.1
    strength: float = 0.3


@dataclass(frozen=True)
class ModalityDropoutConfig:
    """Zero a random non-empty proper subset of the input channels (multi-input models);
    ``keep_one_of`` (input names) are never all dropped (e.g. ``[t1c, flair]``)."""

    p: float = 0.0
    keep_one_of: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResolutionConfig:
    """Thick-slice simulation: average along one of ``axes`` down by a factor from ``range``
    and interpolate back (linear); ``per_channel``: each channel is degraded with probability
    1/2 and its own factor instead of all channels together."""

    p: float = 0.0
    axes: tuple[Axis, ...] = ("z",)
    range: tuple[float, float] = (1.5, 3.5)
    per_channel: bool = False


@dataclass(frozen=True)
class AugmentationConfig:
    """Augmentation of training patches; each transform has its own probability ``p``."""

    enabled: bool = True
    flip: FlipConfig = field(default_factory=FlipConfig)
    rotation: RotationConfig = field(default_factory=RotationConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    shift: ShiftConfig = field(default_factory=ShiftConfig)
    gamma: GammaConfig = field(default_factory=GammaConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    bias_field: BiasFieldConfig = field(default_factory=BiasFieldConfig)
    modality_dropout: ModalityDropoutConfig = field(default_factory=ModalityDropoutConfig)
    resolution: ResolutionConfig = field(default_factory=ResolutionConfig)

    def check(self, key: str) -> None:
        for name in (f.name for f in dataclasses.fields(self) if f.name != "enabled"):
            _fraction(getattr(self, name).p, f"{key}.{name}.p")
        _non_negative(self.rotation.degrees, f"{key}.rotation.degrees")
        if not self.resolution.range[0] >= 1.0 or not self.resolution.axes:
            raise ConfigError(f"{key}.resolution", "needs factors >= 1 and at least one axis")
        for name in ("scale", "gamma", "resolution"):
            low, high = getattr(self, name).range
            if not 0.0 < low <= high:
                raise ConfigError(f"{key}.{name}.range", f"needs 0 < low <= high, got {low, high}")
        _fraction(self.shift.fraction, f"{key}.shift.fraction")
        _non_negative(self.noise.std, f"{key}.noise.std")
        _non_negative(self.bias_field.strength, f"{key}.bias_field.strength")


@dataclass(frozen=True)
class TrainConfig:
    """A whole training configuration (one YAML file)."""

    name: str
    data: DataConfig
    model: dict[str, Any]
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)

    @property
    def spatial_dims(self) -> int:
        return int(self.model["spatial_dims"])

    @property
    def activation(self) -> str:
        return str(self.model["output"]["activation"])

    @property
    def patch_size(self) -> tuple[int, int, int]:
        """Training patch (x, y, z) = (I, J, K) in voxels."""
        x, y, z = self.sampling.patch_size or self.model["patch_size"]
        return (int(x), int(y), int(z))

    @property
    def inputs(self) -> tuple[InputSpec, ...]:
        return input_specs(self.model)

    @property
    def labels(self) -> tuple[LabelSpec, ...]:
        return label_specs(self.model)

    @property
    def preparation(self) -> PreparationSpec:
        """How cases are prepared for the model (the engine's ``prepare_inputs``)."""
        from unetseg.engine.preprocessing.spec import PreparationSpec

        return PreparationSpec.from_manifest(self.model)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, no tuples) that ``config_from_dict`` turns back into this."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


# ----------------------------------------------------------------------------- loading


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a YAML config; relative ``data.root`` / ``data.cache_dir`` become
    absolute (resolved against the file's folder). Raises ``ConfigError``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError("", f"cannot read config {path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError("", f"{path} is not valid YAML: {error}") from None
    return config_from_dict(data, base_dir=path.parent)


def data_config_from_dict(section: Any) -> DataConfig:
    """Validate a ``data:`` section (as parsed from YAML) on its own, e.g. for evaluation data
    without a training config; relative roots are left to the caller."""
    return _build(DataConfig, section, "data")


def config_from_dict(data: Any, base_dir: str | Path | None = None) -> TrainConfig:
    """Validate a config mapping (as parsed from YAML) and return the typed config."""
    config = _build(TrainConfig, data, "")
    model = complete_model(config.model)
    data_section = config.data
    if base_dir is not None:
        base = Path(base_dir).absolute()
        data_section = dataclasses.replace(
            data_section,
            root=_absolute(data_section.root, base),
            cache_dir=_absolute(data_section.cache_dir, base),
            sources=tuple(
                dataclasses.replace(source, root=_absolute(source.root, base))
                for source in data_section.sources
            ),
        )
    config = dataclasses.replace(config, model=model, data=data_section)
    _check_consistency(config)
    return config


def complete_model(model: Mapping[str, Any], key: str = "model") -> dict[str, Any]:
    """Fill defaults into a ``model`` section and validate it as a manifest (weights aside).

    ``network.spatial_dims``, ``in_channels`` and ``out_channels`` default to the values that
    ``spatial_dims``, ``inputs`` and ``labels`` imply. Returns the completed section.
    """
    if not isinstance(model, Mapping):
        raise ConfigError(key, f"must be a mapping, got {type(model).__name__}")
    if "weights" in model:
        raise ConfigError(f"{key}.weights", "is written by export; remove it from the config")
    result = {**copy.deepcopy(MODEL_DEFAULTS), **copy.deepcopy(dict(model))}
    network = {**NETWORK_DEFAULTS, **dict(result.get("network") or {})}
    inputs, labels = result.get("inputs"), result.get("labels")
    sigmoid = result.get("output", {}).get("activation") == "sigmoid"
    if "spatial_dims" in result:
        network.setdefault("spatial_dims", result["spatial_dims"])
    if isinstance(inputs, list):
        network.setdefault("in_channels", len(inputs))
    if isinstance(labels, list):
        network.setdefault("out_channels", len(labels) + (0 if sigmoid else 1))
    result["network"] = network
    problems = manifest_problems({**result, "weights": PLACEHOLDER_WEIGHTS})
    if problems:
        listing = "\n".join(f"  - {p.replace('$', key, 1)}" for p in problems)
        raise ConfigError(key, f"is not a valid model description:\n{listing}")
    return result


def _check_consistency(config: TrainConfig) -> None:
    """Rules across sections."""
    dims = config.spatial_dims
    divisor = 2 ** (len(config.model["network"]["filters"]) - 1)
    patch = config.patch_size
    key = "sampling.patch_size" if config.sampling.patch_size else "model.patch_size"
    for axis, size in list(zip("xyz", patch, strict=True))[:dims]:
        if size % divisor:
            raise ConfigError(
                f"{key}.{axis}", f"{size} is not divisible by {divisor} (network down-samplings)"
            )
    if dims == 2 and patch[2] != 1:
        raise ConfigError(f"{key}.z", f"2D models use z = 1, got {patch[2]}")
    if dims == 2 and "z" in config.augmentation.flip.axes:
        raise ConfigError("augmentation.flip.axes", "a 2D model has no z axis to flip")
    resolution = config.augmentation.resolution
    if dims == 2 and resolution.p > 0 and "z" in resolution.axes:
        raise ConfigError("augmentation.resolution.axes", "a 2D model has no z axis")
    loss = config.training.loss
    if loss.name in SOFTMAX_LOSSES and config.activation != "softmax":
        raise ConfigError("training.loss.name", f"{loss.name!r} needs a softmax model output")
    if loss.name in SIGMOID_LOSSES and config.activation != "sigmoid":
        raise ConfigError(
            "training.loss.name",
            f"{loss.name!r} needs model.output.activation: sigmoid (use 'ce' for softmax)",
        )
    n_out = config.model["network"]["out_channels"]
    for name in ("class_weights", "pos_weight"):
        weights = getattr(loss, name)
        if weights is not None and len(weights) != n_out:
            raise ConfigError(
                f"training.loss.{name}", f"needs {n_out} values (one per output channel)"
            )
    sources = config.data.source_list()
    for n, source in enumerate(sources):
        key = f"data.sources[{n}]" if config.data.sources else "data"
        if source.regions is not None:
            if config.activation != "sigmoid":
                raise ConfigError(f"{key}.regions", "applies to sigmoid models only")
            if len(source.regions) != len(config.model["labels"]):
                raise ConfigError(
                    f"{key}.regions",
                    f"needs one region per model label ({len(config.model['labels'])})",
                )
        foreign = set(source.inputs) - {entry["name"] for entry in config.model["inputs"]}
        if foreign:
            raise ConfigError(f"{key}.inputs", f"{sorted(foreign)} are not model input names")
    n_inputs = len(config.model["inputs"])
    if config.augmentation.modality_dropout.p > 0 and n_inputs < 2:
        raise ConfigError("augmentation.modality_dropout.p", "needs a model with >= 2 inputs")
    names = [entry["name"] for entry in config.model["inputs"]]
    for name in config.augmentation.modality_dropout.keep_one_of:
        if name not in names:
            raise ConfigError(
                "augmentation.modality_dropout.keep_one_of", f"{name!r} is not a model input"
            )


# ----------------------------------------------------------------------------- generic


def _build(cls: type, data: Any, key: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, converting and checking every field."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(key, f"must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for name in data:
        if name not in names:
            close = difflib.get_close_matches(str(name), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {names}"
            raise ConfigError(_join(key, str(name)), f"unknown key{hint}")
    values = {}
    for f in dataclasses.fields(cls):
        sub = _join(key, f.name)
        if f.name in data:
            values[f.name] = _convert(hints[f.name], data[f.name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(sub, "is required")
    instance = cls(**values)
    if hasattr(instance, "check"):
        instance.check(key)
    return instance


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(key, "must not be null")
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, key)
    if value is None and tp is not Any:
        raise ConfigError(key, "must not be null")
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, f"must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        return _float(value, key)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            item_types = [args[0]] * len(value)
        else:
            if len(value) != len(args):
                raise ConfigError(key, f"must have {len(args)} items, got {len(value)}")
            item_types = list(args)
        return tuple(
            _convert(t, v, f"{key}[{i}]")
            for i, (t, v) in enumerate(zip(item_types, value, strict=True))
        )
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"must be a mapping, got {value!r}")
        key_type, value_type = args
        return {
            _convert(key_type, k, f"{key}.{k}"): _convert(value_type, v, f"{key}.{k}")
            for k, v in value.items()
        }
    raise TypeError(f"unsupported config type {tp!r} at {key}")


def _float(value: Any, key: str) -> float:
    # PyYAML reads 1e-4 (no dot) as a string: accept numeric strings.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(key, f"must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number, got {value!r}")
    return float(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _absolute(path: str | None, base: Path) -> str | None:
    if path is None:
        return None
    resolved = Path(path).expanduser()
    return str(resolved if resolved.is_absolute() else base / resolved)


def _positive(value: float, key: str) -> None:
    if not value > 0:
        raise ConfigError(key, f"must be > 0, got {value}")


def _non_negative(value: float, key: str) -> None:
    if not value >= 0:
        raise ConfigError(key, f"must be >= 0, got {value}")


def _at_least(value: int, minimum: int, key: str) -> None:
    if value < minimum:
        raise ConfigError(key, f"must be >= {minimum}, got {value}")


def _fraction(value: float, key: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(key, f"must be in [0, 1], got {value}")
