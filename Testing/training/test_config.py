"""Training config: shipped configs are valid; every error names the offending key."""

import copy
from pathlib import Path

import pytest
import yaml

from Training.config import ConfigError, config_from_dict, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "Training" / "configs"
SMOKE = yaml.safe_load((CONFIGS / "smoke.yaml").read_text())


def _with(path: str, value):
    """The smoke config with ``value`` set at dotted ``path`` (None deletes the key)."""
    data = copy.deepcopy(SMOKE)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {}) if not key.isdigit() else node[int(key)]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_are_valid(path):
    config = load_config(path)
    assert config.name
    roots = [source.root for source in config.data.source_list() if source.root]
    assert all(Path(root).is_absolute() for root in roots) and (roots or config.data.synth)
    assert config.model["network"]["in_channels"] == len(config.model["inputs"])
    assert config_from_dict(config.to_dict()) == config  # the resolved config round-trips


def test_course_lab_settings():
    config = load_config(CONFIGS / "cxr_lab.yaml")
    assert config.spatial_dims == 2 and config.patch_size == (256, 256, 1)
    network = config.model["network"]
    assert network["filters"][0] == 8 and network["norm"] == "batch" and network["dropout"] == 0.2
    training = config.training
    assert (training.batch_size, training.optimizer.lr) == (8, 1e-4)
    augmentation = config.augmentation
    assert augmentation.rotation.degrees == 10 and augmentation.shift.fraction == 0.1
    assert augmentation.scale.range == (0.8, 1.2) and augmentation.flip.axes == ("x",)


def test_defaults_fill_the_model_section():
    config = config_from_dict(SMOKE)
    assert config.model["network"]["out_channels"] == 3  # softmax: background + 2 labels
    assert config.model["schema_version"] == 1 and config.model["intended_use"]
    assert config.training.total_steps == 90


@pytest.mark.parametrize(
    ("path", "value", "key", "text"),
    [
        ("training.epochz", 3, "training.epochz", "did you mean 'epochs'"),
        ("training.epochs", "three", "training.epochs", "must be an integer"),
        ("training.epochs", 0, "training.epochs", "must be >= 1"),
        ("training.optimizer.lr", -1.0, "training.optimizer.lr", "must be > 0"),
        ("training.optimizer.name", "lamb", "training.optimizer.name", "must be one of"),
        ("training.amp", True, "training.amp", "must be one of"),
        ("training.grad_clip", "big", "training.grad_clip", "must be a number"),
        ("augmentation.flip.axes", ["x", "w"], "augmentation.flip.axes[1]", "must be one of"),
        ("augmentation.scale.range", [1.2, 0.8], "augmentation.scale.range", "low <= high"),
        ("augmentation.rotation.p", 1.5, "augmentation.rotation.p", "must be in [0, 1]"),
        ("sampling.patch_size", [30, 32, 32], "sampling.patch_size.x", "not divisible by 4"),
        ("sampling.max_background", 2, "sampling.max_background", "must be in [0, 1]"),
        ("data.reader", "nifti", "data.reader", "must be one of"),
        ("data.options", {"pattern": "*.nii"}, "data.options.pattern", "not an option"),
        ("data.split.validation", 1.0, "data.split", "leave cases for training"),
        ("data.label_map", {1: 300}, "data.label_map.1", "0-255"),
        ("data.inputs", {"t1": "x"}, "data.inputs", "not model input names"),
        ("training.loss.name", "bce", "training.loss.name", "needs model.output.activation"),
        ("training.loss.class_weights", [1, 2], "training.loss.class_weights", "needs 3"),
        ("model.labels.1.value", 5, "model.labels", "values must be [1, 2]"),
        ("model.network.norm", "group", "model.network.norm", "is not one of"),
        ("model.patch_size", [32, 32], "model.patch_size", "too short"),
        ("augmentation.modality_dropout", {"p": 0.5}, "augmentation.modality_dropout.p", ">= 2"),
        ("name", None, "name", "is required"),
    ],
)
def test_errors_name_the_key(path, value, key, text):
    with pytest.raises(ConfigError) as error:
        config_from_dict(_with(path, value))
    message = str(error.value)
    assert key in message and text in message, message


def test_numbers_written_without_a_dot_are_numbers():
    data = _with("training.optimizer.lr", "1e-4")  # PyYAML reads 1e-4 as a string
    assert config_from_dict(data).training.optimizer.lr == 1e-4


def test_sigmoid_regions_must_match_the_labels():
    data = yaml.safe_load((CONFIGS / "brain_met.yaml").read_text())
    data["data"]["regions"] = [[1, 2, 3], [3]]
    with pytest.raises(ConfigError, match=r"data\.regions: needs one region per model label"):
        config_from_dict(data)


def test_unreadable_yaml_is_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    data = _with("data.root", "datasets/lungs")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).data.root == str(tmp_path / "datasets" / "lungs")
