"""Model packages: manifest schema and semantic rules, safe save/load, registry."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from safetensors import safe_open

from Testing.case_files import METASTASIS_TERMINOLOGY
from unetseg.engine import package as package_module
from unetseg.engine.manifest import (
    LabelSpec,
    ModelPackageError,
    load_schema,
    manifest_problems,
    parse_manifest,
    validate_manifest,
    version_key,
)
from unetseg.engine.network import UNet
from unetseg.engine.package import ModelPackage, load_model_package, save_model_package
from unetseg.engine.registry import default_search_paths, list_models, resolve_model

DELETE = object()


def example_manifest() -> dict[str, Any]:
    """A valid manifest using every optional field (weights checksum is a placeholder)."""
    return {
        "schema_version": 1,
        "id": "brainmet-test",
        "title": "Brain metastases (test)",
        "version": "1.0.0",
        "license": "CC-BY-4.0",
        "description": "Synthetic model for the tests.",
        "intended_use": "Research only, not for clinical use.",
        "modality": "MR",
        "spatial_dims": 3,
        "inputs": [
            {
                "name": "t1c",
                "title": "T1 post-contrast",
                "required": True,
                "name_patterns": ["*t1c*", "*t1gd*"],
                "series_description_patterns": ["*t1*post*"],
                "normalization": {"method": "zscore", "mask": "nonzero"},
            },
            {
                "name": "flair",
                "title": "FLAIR",
                "required": False,
                "normalization": {
                    "method": "percentile_minmax",
                    "lower": 0.5,
                    "upper": 99.5,
                    "per_slice": True,
                },
            },
        ],
        "spacing_mm": [1.0, 1.0, 1.5],
        "patch_size": [32, 32, 16],
        "overlap": 0.5,
        "output": {"activation": "softmax"},
        "labels": [
            {
                "value": 1,
                "name": "Metastasis",
                "color": [230, 80, 60],
                "terminology": copy.deepcopy(METASTASIS_TERMINOLOGY),
            },
            {"value": 2, "name": "Edema", "color": [0, 151, 206]},
        ],
        "lesion_analysis": True,
        "network": {
            "spatial_dims": 3,
            "in_channels": 2,
            "out_channels": 3,
            "filters": [4, 8, 16],
            "norm": "instance",
            "dropout": 0.0,
            "residual": True,
            "squeeze_excitation": True,
            "deep_supervision": False,
            "upsample": "transpose",
            "kernel_size": 3,
        },
        "training": {
            "datasets": ["synthetic"],
            "provenance": "unit test",
            "metrics": {"dice_mean": 0.8},
            "epochs": 1,
        },
        "requirements": {"cpu_seconds_estimate": 30, "gpu_memory_gb": 2, "ram_gb": 4},
        "sample_data": [
            {
                "input": "t1c",
                "url": "https://example.org/t1c.nrrd",
                "file_name": "t1c.nrrd",
                "sha256": "a" * 64,
            }
        ],
        "citation": "Doe J. et al. A test model. 2025.",
        "weights": {"file": "weights.safetensors", "sha256": "0" * 64},
    }


def mutated(*edits: tuple[str, Any]) -> dict[str, Any]:
    """example_manifest() with ("a.0.b", value) edits applied; value DELETE removes the key."""
    manifest = example_manifest()
    for dotted, value in edits:
        *parents, last = dotted.split(".")
        node: Any = manifest
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        key: Any = int(last) if isinstance(node, list) else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = value
    return manifest


def make_network(manifest: dict[str, Any], seed: int = 0) -> UNet:
    """UNet of the manifest with random (non-default) values in every parameter."""
    torch.manual_seed(seed)
    network = UNet(**manifest["network"])
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return network.eval()


def save_example(folder: Path, seed: int = 0, **changes: Any) -> tuple[ModelPackage, UNet]:
    manifest = example_manifest()
    manifest.update(changes)
    network = make_network(manifest, seed)
    return save_model_package(folder, manifest, network), network


def set_weights_bytes(folder: Path, data: bytes, name: str = "weights.safetensors") -> None:
    """Replace the weights file and record its checksum, so only the format can fail."""
    (folder / name).write_bytes(data)
    manifest = json.loads((folder / "model.json").read_text())
    manifest["weights"] = {"file": name, "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "model.json").write_text(json.dumps(manifest))


def assert_same_weights(actual: torch.nn.Module, expected: torch.nn.Module) -> None:
    torch.testing.assert_close(actual.state_dict(), expected.state_dict(), rtol=0, atol=0)


class CreatesFileWhenUnpickled:
    """Unpickling this object runs open(path, "w"), creating the marker file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


# --- schema ---------------------------------------------------------------------------------


def test_schema_is_valid_draft_2020_12_and_documents_every_field() -> None:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    undocumented = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                target = sub
                if "$ref" in sub:
                    target = schema["$defs"][sub["$ref"].rsplit("/", 1)[1]]
                if "description" not in sub and "description" not in target and "const" not in sub:
                    undocumented.append(f"{where}.{name}")
            for key, sub in node.items():
                walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for sub in node:
                walk(sub, where)

    walk(schema, "$")
    assert undocumented == []


def minimal_manifest() -> dict[str, Any]:
    manifest = example_manifest()
    for key in ("training", "lesion_analysis", "requirements", "sample_data", "citation"):
        del manifest[key]
    del manifest["labels"][0]["terminology"]
    del manifest["inputs"][0]["name_patterns"]
    del manifest["inputs"][0]["series_description_patterns"]
    del manifest["network"]["kernel_size"]
    return manifest


@pytest.mark.parametrize(
    "manifest",
    [
        pytest.param(example_manifest(), id="full"),
        pytest.param(minimal_manifest(), id="minimal"),
        pytest.param(
            mutated(
                ("output", {"activation": "sigmoid", "threshold": 0.4}),
                ("network.out_channels", 2),
            ),
            id="sigmoid",
        ),
        pytest.param(
            mutated(
                ("modality", "CT"),
                ("inputs.0.normalization", {"method": "ct_window", "center": -600, "width": 1500}),
                ("inputs.1.normalization", {"method": "none"}),
            ),
            id="ct-window",
        ),
        pytest.param(
            mutated(
                ("modality", "DX"),
                ("spatial_dims", 2),
                ("network.spatial_dims", 2),
                ("patch_size", [64, 64, 1]),
            ),
            id="2d",
        ),
    ],
)
def test_valid_manifests_pass(manifest: dict[str, Any]) -> None:
    assert manifest_problems(manifest) == []
    validate_manifest(manifest)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("id", "BrainMet"), ["$.id"]),
        (("version", "1.0"), ["$.version"]),
        (("schema_version", 2), ["$.schema_version"]),
        (("modality", "MRI"), ["$.modality", "'MRI'"]),
        (("spatial_dims", 4), ["$.spatial_dims"]),
        (("title", DELETE), ["'title' is a required property"]),
        (("spacing", [1, 1, 1]), ["'spacing' was unexpected"]),
        (("patch_size", [32, 32]), ["$.patch_size"]),
        (("spacing_mm", [1.0, 0.0, 1.0]), ["$.spacing_mm[1]"]),
        (("overlap", 1.0), ["$.overlap"]),
        (("inputs", []), ["$.inputs"]),
        (("inputs.0.normalisation", {"method": "none"}), ["$.inputs[0]", "'normalisation'"]),
        (("inputs.0.normalization", {"method": "zscore"}), ["$.inputs[0].normalization", "'mask'"]),
        (("inputs.0.normalization.method", "minmax"), ["$.inputs[0].normalization.method"]),
        (("inputs.1.normalization.center", 40), ["$.inputs[1].normalization", "'center'"]),
        (("output.activation", "relu"), ["$.output.activation"]),
        (("output.threshold", 1.5), ["$.output.threshold"]),
        (("labels.0.color", [256, 0, 0]), ["$.labels[0].color[0]"]),
        (("labels.0.colour", [1, 2, 3]), ["$.labels[0]", "'colour' was unexpected"]),
        (("labels.0.value", 0), ["$.labels[0].value"]),
        (("labels.0.terminology.category.meaning", DELETE), ["terminology.category", "'meaning'"]),
        (("labels.0.terminology.type.value", 14799000), ["$.labels[0].terminology.type.value"]),
        (("network.norm", "group"), ["$.network.norm"]),
        (("network.upsample", "nearest"), ["$.network.upsample"]),
        (("network.activation", "relu"), ["$.network", "'activation' was unexpected"]),
        (("requirements.gpu_mem_gb", 4), ["$.requirements", "'gpu_mem_gb' was unexpected"]),
        (("weights.sha256", "ABC"), ["$.weights.sha256"]),
        (("weights.file", "../weights.safetensors"), ["$.weights.file"]),
        (("sample_data.0.url", "ftp://example.org/x"), ["$.sample_data[0].url"]),
    ],
    ids=lambda v: v[0] if isinstance(v, tuple) else None,
)
def test_schema_rejects_mistakes_naming_the_field(
    edit: tuple[str, Any], expected: list[str]
) -> None:
    manifest = mutated(edit)
    with pytest.raises(ModelPackageError) as caught:
        validate_manifest(manifest)
    assert caught.value.problems, "a validation error lists its problems"
    for fragment in expected:
        assert fragment in str(caught.value)
    # The schema alone (independent validator) rejects it too.
    assert not jsonschema.Draft202012Validator(load_schema()).is_valid(manifest)


def test_all_problems_are_listed() -> None:
    manifest = mutated(("id", "Bad Id"), ("labels.1.color", [0, 0]), ("overlap", -1))
    problems = manifest_problems(manifest)
    assert [p.split(":")[0] for p in problems] == ["$.id", "$.labels[1].color", "$.overlap"]


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        ([("labels.1.value", 1)], "$.labels[1].value: 1 is already used by $.labels[0]"),
        ([("labels.1.name", "Metastasis")], "$.labels[1].name"),
        ([("labels.1.value", 3)], "$.labels: values must be [1, 2]"),
        ([("network.out_channels", 2)], "$.network.out_channels: is 2 but 2 label(s) need 3"),
        (
            [("output", {"activation": "sigmoid"})],
            "$.network.out_channels: is 3 but 2 label(s) need 2",
        ),
        ([("output.threshold", 0.5)], "$.output.threshold"),
        ([("network.in_channels", 1)], "$.network.in_channels: is 1 but there are 2 input(s)"),
        ([("network.spatial_dims", 2)], "$.network.spatial_dims"),
        ([("patch_size", [30, 32, 16])], "$.patch_size: x = 30 is not divisible by 4"),
        ([("patch_size", [32, 32, 18])], "$.patch_size: z = 18 is not divisible by 4"),
        (
            [("spatial_dims", 2), ("network.spatial_dims", 2), ("patch_size", [32, 32, 4])],
            "$.patch_size: 2D models need z = 1",
        ),
        ([("image_size", [64, 64])], "$.image_size: only 2D models"),
        ([("inputs.0.required", False)], "$.inputs: at least one input must have required"),
        ([("inputs.1.name", "t1c")], "$.inputs[1].name: 't1c' is already used"),
        ([("inputs.1.normalization.lower", 99.9)], "lower (99.9) must be less than upper"),
        ([("network.kernel_size", 4)], "$.network.kernel_size: must be odd"),
        (
            [("network.filters", [4, 8]), ("network.deep_supervision", True)],
            "$.network.deep_supervision",
        ),
        ([("weights.file", "weights.pt")], "can run arbitrary code"),
        ([("weights.file", "weights.npz")], "must be a .safetensors file"),
        ([("sample_data.0.input", "t2")], "$.sample_data[0].input: 't2' is not one of"),
    ],
)
def test_semantic_rules(edits: list[tuple[str, Any]], expected: str) -> None:
    manifest = mutated(*edits)
    assert jsonschema.Draft202012Validator(load_schema()).is_valid(manifest)
    with pytest.raises(ModelPackageError, match="not a valid model manifest") as caught:
        validate_manifest(manifest)
    assert expected in str(caught.value)


def test_invalid_json_reports_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text('{\n  "id": "x",\n  "title": \n}\n')
    with pytest.raises(ModelPackageError, match=r"not valid JSON: .* at line 4, column 1"):
        load_model_package(tmp_path)
    with pytest.raises(ModelPackageError, match="duplicate key 'id'"):
        parse_manifest('{"id": "a", "id": "b"}')
    with pytest.raises(ModelPackageError, match="NaN"):
        parse_manifest('{"overlap": NaN}')
    with pytest.raises(ModelPackageError, match="JSON object"):
        parse_manifest("[1, 2]")


# --- save / load ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "network_changes",
    [
        pytest.param({}, id="3d-instance-residual-se"),
        pytest.param(
            {"norm": "batch", "upsample": "interpolate", "deep_supervision": True, "dropout": 0.1},
            id="batchnorm-deep-supervision",
        ),
    ],
)
def test_save_load_round_trip_gives_identical_outputs(
    tmp_path: Path, network_changes: dict[str, Any]
) -> None:
    manifest = example_manifest()
    manifest["network"].update(network_changes)
    network = make_network(manifest)
    if manifest["network"]["norm"] == "batch":  # non-trivial running statistics
        network.train()(torch.randn(2, 2, 8, 8, 8))
        network.eval()
    del manifest["network"]  # taken from network.config
    package = save_model_package(tmp_path / "pkg", manifest, network)

    assert package.manifest["network"] == network.config
    weights = tmp_path / "pkg" / "weights.safetensors"
    on_disk = json.loads((tmp_path / "pkg" / "model.json").read_text())
    assert on_disk == package.manifest
    assert on_disk["weights"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    with safe_open(str(weights), framework="pt") as f:
        assert set(f.keys()) == set(network.state_dict())
        for key, expected in network.state_dict().items():
            torch.testing.assert_close(f.get_tensor(key), expected, rtol=0, atol=0)

    loaded = load_model_package(tmp_path / "pkg").load_network()
    assert isinstance(loaded, UNet)
    assert not loaded.training
    x = torch.randn(1, 2, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), network(x), rtol=0, atol=0)


def test_weights_are_stored_as_float32(tmp_path: Path) -> None:
    manifest = example_manifest()
    network = make_network(manifest).double()
    package = save_model_package(tmp_path / "pkg", manifest, network)
    with safe_open(str(package.weights_path), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict) == {torch.float32}
    loaded = package.load_network()
    assert next(loaded.parameters()).dtype == torch.float32


def test_accessors(tmp_path: Path) -> None:
    package, _ = save_example(tmp_path / "pkg")
    assert package.path == (tmp_path / "pkg").resolve()
    assert (package.id, package.title, package.version) == (
        "brainmet-test",
        "Brain metastases (test)",
        "1.0.0",
    )
    assert [i.name for i in package.inputs] == ["t1c", "flair"]
    assert package.inputs[0].name_patterns == ("*t1c*", "*t1gd*")
    assert package.inputs[1].series_description_patterns == ()
    assert package.inputs[1].normalization["upper"] == 99.5
    first, second = package.labels
    assert first.color_float == pytest.approx((230 / 255, 80 / 255, 60 / 255))
    assert first.terminology["anatomic_region"]["meaning"] == "Brain"
    assert second == LabelSpec(2, "Edema", (0, 151, 206), None)
    assert package.spacing_mm == (1.0, 1.0, 1.5)
    assert package.patch_size == (32, 32, 16)
    assert package.overlap == 0.5
    assert (package.activation, package.threshold) == ("softmax", None)
    assert package.lesion_analysis is True
    sigmoid = ModelPackage(
        package.path,
        mutated(("output", {"activation": "sigmoid"}), ("network.out_channels", 2)),
    )
    assert (sigmoid.activation, sigmoid.threshold) == ("sigmoid", 0.5)


def test_load_by_model_json_path(tmp_path: Path) -> None:
    package, _ = save_example(tmp_path / "pkg")
    assert load_model_package(tmp_path / "pkg" / "model.json") == package


def test_missing_folder_manifest_and_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelPackageError, match="folder not found"):
        load_model_package(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelPackageError, match=r"not a model package: model\.json not found"):
        load_model_package(tmp_path / "empty")
    with pytest.raises(ModelPackageError, match=r"model\.json not found"):
        load_model_package(tmp_path / "empty" / "model.json")
    save_example(tmp_path / "pkg")
    (tmp_path / "pkg" / "weights.safetensors").unlink()
    with pytest.raises(ModelPackageError, match=r"'weights\.safetensors' named in .* is missing"):
        load_model_package(tmp_path / "pkg")


def test_schema_errors_of_a_package_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text(json.dumps(mutated(("modality", "XR"))))
    with pytest.raises(ModelPackageError) as caught:
        load_model_package(tmp_path)
    assert "model.json is not a valid model manifest" in str(caught.value)
    assert "$.modality" in str(caught.value)
    assert caught.value.path == tmp_path.resolve()


def test_checksum_mismatch_after_flipping_one_byte(tmp_path: Path) -> None:
    package, _ = save_example(tmp_path / "pkg")
    data = bytearray(package.weights_path.read_bytes())
    data[-1] ^= 0x01  # last byte of tensor data: the header stays valid
    package.weights_path.write_bytes(bytes(data))
    reloaded = load_model_package(tmp_path / "pkg")
    with pytest.raises(ModelPackageError, match="corrupt or was modified after packaging"):
        reloaded.load_network()


def test_not_a_safetensors_file(tmp_path: Path) -> None:
    save_example(tmp_path / "pkg")
    set_weights_bytes(tmp_path / "pkg", b"\x00" * 64)
    with pytest.raises(ModelPackageError, match="not a safetensors file"):
        load_model_package(tmp_path / "pkg")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("filters", [4, 16, 16]), "shape mismatches"),
        (("residual", False), "unexpected keys"),
        (("squeeze_excitation", False), "unexpected keys"),
    ],
)
def test_state_dict_mismatch_lists_keys(
    tmp_path: Path, edit: tuple[str, Any], expected: str
) -> None:
    package, network = save_example(tmp_path / "pkg")
    manifest = copy.deepcopy(package.manifest)
    manifest["network"][edit[0]] = edit[1]
    (tmp_path / "pkg" / "model.json").write_text(json.dumps(manifest))
    reloaded = load_model_package(tmp_path / "pkg")
    with pytest.raises(ModelPackageError, match="does not match the 'network' section") as caught:
        reloaded.load_network()
    message = str(caught.value)
    assert expected in message
    mentioned = [key for key in network.state_dict() if key in message]
    assert mentioned, "the message names the offending keys"


# --- pickles are refused and never unpickled ----------------------------------------------------


def test_marker_payload_would_run_if_unpickled(tmp_path: Path) -> None:
    """Control: the payload used below really executes code when unpickled."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(CreatesFileWhenUnpickled(marker))).close()
    assert marker.exists()


def test_pickle_named_safetensors_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    package, _ = save_example(tmp_path / "pkg")
    set_weights_bytes(tmp_path / "pkg", pickle.dumps(CreatesFileWhenUnpickled(marker)))
    with pytest.raises(ModelPackageError, match=r"is a pickle file\..*arbitrary code"):
        load_model_package(tmp_path / "pkg")
    # Even bypassing the loader's checks, load_network checks the header before reading.
    manifest = json.loads((tmp_path / "pkg" / "model.json").read_text())
    with pytest.raises(ModelPackageError, match=r"is a pickle file\."):
        ModelPackage(package.path, manifest).load_network()
    assert not marker.exists()


def test_torch_save_zip_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    save_example(tmp_path / "pkg")
    torch.save({"model": CreatesFileWhenUnpickled(marker)}, tmp_path / "payload")
    set_weights_bytes(tmp_path / "pkg", (tmp_path / "payload").read_bytes())
    with pytest.raises(ModelPackageError, match=r"is a pickle file\..*Training export"):
        load_model_package(tmp_path / "pkg")
    assert not marker.exists()


def test_pt_files_are_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    save_example(tmp_path / "pkg")
    torch.save({"model": CreatesFileWhenUnpickled(marker)}, tmp_path / "pkg" / "model.pt")
    set_weights_bytes(tmp_path / "pkg", (tmp_path / "pkg" / "model.pt").read_bytes(), "model.pt")
    with pytest.raises(ModelPackageError, match=r"\$\.weights\.file: 'model\.pt' is a pickle"):
        load_model_package(tmp_path / "pkg")
    with pytest.raises(ModelPackageError, match=r"is a pickle file\..*save_model_package"):
        load_model_package(tmp_path / "pkg" / "model.pt")
    (tmp_path / "pkg" / "model.json").unlink()
    with pytest.raises(ModelPackageError, match=r"contains pickle files \['model\.pt'\]"):
        load_model_package(tmp_path / "pkg")
    assert not marker.exists()


# --- overwrite and atomic writes ---------------------------------------------------------------


def test_saving_the_same_package_again_is_a_no_op(tmp_path: Path) -> None:
    package, network = save_example(tmp_path / "pkg")
    again = save_model_package(tmp_path / "pkg", example_manifest(), network)
    assert again == package


def test_overwrite_needs_permission(tmp_path: Path) -> None:
    save_example(tmp_path / "pkg", seed=0)
    with pytest.raises(ModelPackageError, match=r"different model package \(brainmet-test 1\.0"):
        save_example(tmp_path / "pkg", seed=1)
    manifest = example_manifest()
    network = make_network(manifest, seed=1)
    package = save_model_package(tmp_path / "pkg", manifest, network, overwrite=True)
    assert_same_weights(package.load_network(), network)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_replacing_a_package_keeps_its_model_card(tmp_path: Path) -> None:
    save_example(tmp_path / "pkg", seed=0)
    (tmp_path / "pkg" / "MODEL_CARD.md").write_text("# card\nwritten by hand\n")
    (tmp_path / "pkg" / "scratch.txt").write_text("not part of the package")
    manifest = example_manifest()
    network = make_network(manifest, seed=1)
    package = save_model_package(tmp_path / "pkg", manifest, network, overwrite=True)
    assert_same_weights(package.load_network(), network)
    assert (tmp_path / "pkg" / "MODEL_CARD.md").read_text() == "# card\nwritten by hand\n"
    assert not (tmp_path / "pkg" / "scratch.txt").exists()


def test_a_folder_that_is_not_a_package_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    manifest = example_manifest()
    with pytest.raises(ModelPackageError, match="holds no model package"):
        save_model_package(tmp_path / "notes", manifest, make_network(manifest), overwrite=True)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_network_without_config_uses_the_manifest(tmp_path: Path) -> None:
    manifest = example_manifest()
    unet = make_network(manifest)
    bare = torch.nn.Module()  # same state dict, no `config` attribute
    for name, child in unet.named_children():
        bare.add_module(name, child)
    package = save_model_package(tmp_path / "pkg", manifest, bare)
    assert package.manifest["network"] == manifest["network"]
    assert_same_weights(package.load_network(), unet)


def test_weights_not_matching_the_manifest_network_are_not_saved(tmp_path: Path) -> None:
    foreign = torch.nn.Sequential(torch.nn.Conv3d(2, 3, 1))
    with pytest.raises(ModelPackageError, match=r"unexpected keys \(2\): 0\.bias, 0\.weight"):
        save_model_package(tmp_path / "pkg", example_manifest(), foreign)
    assert list(tmp_path.iterdir()) == []


def test_invalid_manifest_writes_nothing(tmp_path: Path) -> None:
    manifest = mutated(("labels.1.value", 5))
    with pytest.raises(ModelPackageError, match=r"\$\.labels"):
        save_model_package(tmp_path / "pkg", manifest, make_network(example_manifest()))
    assert list(tmp_path.iterdir()) == []


def fail_on_manifest_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the write of model.json fail after the weights were written."""
    real_write = package_module._write_bytes

    def write(path: Path, data: bytes) -> None:
        if path.name == "model.json":
            raise OSError("disk full")
        real_write(path, data)

    monkeypatch.setattr(package_module, "_write_bytes", write)


def test_failure_mid_write_leaves_no_partial_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_on_manifest_write(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        save_example(tmp_path / "models" / "pkg")
    assert list((tmp_path / "models").iterdir()) == []
    assert list_models([tmp_path / "models"]) == []


def test_failure_mid_overwrite_keeps_the_old_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, old_network = save_example(tmp_path / "pkg", seed=0)
    manifest = example_manifest()
    new_network = make_network(manifest, seed=1)

    fail_on_manifest_write(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        save_model_package(tmp_path / "pkg", manifest, new_network, overwrite=True)
    monkeypatch.undo()

    real_rename = os.rename
    calls = []

    def rename(src: Any, dst: Any) -> None:  # fail moving the new folder into place
        calls.append(Path(src).name)
        if Path(src).name.endswith(".partial"):
            raise OSError("rename failed")
        real_rename(src, dst)

    monkeypatch.setattr(package_module.os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        save_model_package(tmp_path / "pkg", manifest, new_network, overwrite=True)
    monkeypatch.undo()
    assert len(calls) == 3  # old -> backup, new -> place (fails), backup -> old

    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]
    assert_same_weights(load_model_package(tmp_path / "pkg").load_network(), old_network)
    assert load_model_package(tmp_path / "pkg") == old


# --- registry ---------------------------------------------------------------------------------


def test_version_order_follows_semver() -> None:
    # Precedence example from semver.org, section 11.
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.2.0",
        "1.10.0+build.5",
        "2.0.0",
    ]
    assert sorted(reversed(ordered), key=version_key) == ordered


@pytest.fixture(scope="module")
def registry_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Search path with brainmet-test 1.2.0 and 1.10.0, lung 0.1.0, an invalid package,
    a hidden package and a folder that is not a package."""
    root = tmp_path_factory.mktemp("models")
    manifest = example_manifest()
    network = make_network(manifest)
    for folder, model_id, version in [
        ("bm-1.2", "brainmet-test", "1.2.0"),
        ("bm-1.10", "brainmet-test", "1.10.0"),
        ("lung", "lung", "0.1.0"),
        (".hidden", "hidden", "9.0.0"),
    ]:
        manifest.update(id=model_id, version=version)
        save_model_package(root / folder, manifest, network)
    (root / "broken").mkdir()
    (root / "broken" / "model.json").write_text("{")
    (root / "stuff").mkdir()
    return root


def test_list_models_sorts_and_reports_invalid_packages(registry_root: Path) -> None:
    errors: list[ModelPackageError] = []
    packages = list_models([registry_root], errors)
    assert [(p.id, p.version) for p in packages] == [
        ("brainmet-test", "1.10.0"),
        ("brainmet-test", "1.2.0"),
        ("lung", "0.1.0"),
    ]
    assert len(errors) == 1
    assert errors[0].path == registry_root / "broken"
    assert "not valid JSON" in str(errors[0])


def test_list_models_logs_invalid_packages_without_error_list(
    registry_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="unetseg.engine.registry"):
        assert len(list_models([registry_root])) == 3
    assert "broken" in caplog.text


def test_resolve_model_by_id_version_and_path(registry_root: Path) -> None:
    paths = [registry_root]
    assert resolve_model("brainmet-test", paths).version == "1.10.0"
    assert resolve_model("brainmet-test@1.2.0", paths).path == registry_root / "bm-1.2"
    assert resolve_model(registry_root / "lung", paths).id == "lung"
    assert resolve_model(str(registry_root / "bm-1.2" / "model.json")).version == "1.2.0"
    with pytest.raises(ModelPackageError) as caught:
        resolve_model("brainmet", paths)
    message = str(caught.value)
    assert "No model 'brainmet'" in message
    assert "brainmet-test@1.10.0, brainmet-test@1.2.0, lung@0.1.0" in message
    assert "skipped invalid package" in message
    with pytest.raises(ModelPackageError, match=r"No model 'brainmet-test@3\.0\.0'"):
        resolve_model("brainmet-test@3.0.0", paths)


def test_first_search_path_wins_for_the_same_version(registry_root: Path, tmp_path: Path) -> None:
    manifest = example_manifest()
    manifest.update(id="lung", version="0.1.0", title="Shadowing copy")
    save_model_package(tmp_path / "lung", manifest, make_network(manifest))
    assert resolve_model("lung", [tmp_path, registry_root]).title == "Shadowing copy"
    assert resolve_model("lung", [registry_root, tmp_path]).path == registry_root / "lung"
    # A search path may also be a package folder itself.
    assert [p.title for p in list_models([tmp_path / "lung"])] == ["Shadowing copy"]


def test_default_search_paths_use_environment_and_home(
    registry_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = tmp_path / "extra"
    monkeypatch.setenv("UNETSEG_MODEL_PATH", f"{registry_root}{os.pathsep}{extra}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "home"))
    bundled, *rest = default_search_paths()
    assert bundled.parts[-2:] == ("unetseg", "models")
    assert rest == [registry_root, extra, tmp_path / "home" / ".unetseg" / "models"]

    manifest = example_manifest()
    manifest.update(id="home-model")
    save_model_package(
        tmp_path / "home" / ".unetseg" / "models" / "m", manifest, make_network(manifest)
    )
    ids = {p.id for p in list_models(errors=[])}
    assert {"brainmet-test", "lung", "home-model"} <= ids
    assert resolve_model("home-model").path == tmp_path / "home" / ".unetseg" / "models" / "m"
