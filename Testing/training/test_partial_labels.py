"""Partial labels and multi-source data: masked losses, per-source label meaning in the config,
supervised-voxel masks of prepared cases, fixed patient splits and validation on known voxels."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from Training.augment import augment_intensity
from Training.config import (
    AugmentationConfig,
    ConfigError,
    ModalityDropoutConfig,
    ResolutionConfig,
    SamplingConfig,
    config_from_dict,
)
from Training.data import CaseRecord, fixed_split, reference_labels
from Training.loop.cases import known_regions, read_records, split_records
from Training.loop.objectives import training_target
from Training.loop.trainer import Trainer, case_metrics
from Training.sampling import (
    MemoryCases,
    PatchDataset,
    PatchSampler,
    load_training_case,
    make_training_case,
    save_training_case,
)
from unetseg.engine import losses
from unetseg.engine.metrics import binary_metrics, compute_metrics

LABELS = [
    {"value": v, "name": n, "color": [200, 50, 50]}
    for v, n in ((1, "whole"), (2, "core"), (3, "enhancing"))
]
NORM = {"method": "zscore", "mask": "nonzero"}
# A tumour-core mask source: 1 mask, 2 holes in it, 3 far from it (as the PGBM studies).
MASK_REGIONS = {"regions": [[1, 2], [1], []], "unknown": [[0], [2], [1, 2]]}
MULTI = {
    "name": "multi",
    "data": {
        "sources": [
            {
                "name": "full",
                "reader": "brats",
                "root": "full",
                "regions": [[1, 2, 4], [1, 4], [4]],
            },
            {"name": "mask", "reader": "brats", "root": "mask", **MASK_REGIONS},
        ],
        "split": {"val_patients": ["v"], "test_patients": ["t"]},
    },
    "model": {
        "id": "multi",
        "title": "Multi",
        "modality": "MR",
        "spatial_dims": 3,
        "inputs": [
            {"name": "t1c", "title": "T1c", "required": True, "normalization": NORM},
            {"name": "flair", "title": "FLAIR", "required": True, "normalization": NORM},
        ],
        "spacing_mm": [1.0, 1.0, 1.0],
        "patch_size": [8, 8, 8],
        "output": {"activation": "sigmoid"},
        "labels": LABELS,
        "network": {"filters": [4, 8, 16], "deep_supervision": True},
    },
    "training": {
        "epochs": 1,
        "steps_per_epoch": 2,
        "batch_size": 2,
        "workers": 0,
        "loss": {"name": "dice_ce", "batch_dice": True},
    },
    "augmentation": {"modality_dropout": {"p": 0.5, "keep_one_of": ["t1c", "flair"]}},
}

SIGMOID_LOSSES = {
    "dice": lambda: losses.DiceLoss("sigmoid"),
    "dice_batch": lambda: losses.DiceLoss("sigmoid", batch_dice=True),
    "dice_ce": lambda: losses.DiceCELoss("sigmoid", pos_weight=(2.0, 1.0, 3.0)),
    "bce": lambda: losses.BinaryCrossEntropyLoss(),
    "tversky": lambda: losses.FocalTverskyLoss("sigmoid"),
    "deep": lambda: losses.DeepSupervisionLoss(losses.DiceCELoss("sigmoid")),
    "soft_dice": lambda: losses.SoftDiceLoss("sigmoid"),
}
SOFTMAX_LOSSES = {
    "dice": lambda: losses.DiceLoss("softmax"),
    "ce": lambda: losses.WeightedCrossEntropyLoss(inverse_frequency=True, background_weight=0.5),
    "dice_ce": lambda: losses.DiceCELoss("softmax"),
    "tversky": lambda: losses.FocalTverskyLoss("softmax", include_background=True),
}


def _multi(**changes):
    data = copy.deepcopy(MULTI)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value
    return data


def _logits(channels=3, seed=0, shape=(2, 6, 6, 6)):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((shape[0], channels, *shape[1:]), generator=generator).requires_grad_()


def _sigmoid_target(seed=1, shape=(2, 3, 6, 6, 6)):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) > 0.6).float()


def _call(loss_fn, logits, target, mask=None):
    if isinstance(loss_fn, losses.DeepSupervisionLoss):
        outputs = [logits, logits[:, :, ::2, ::2, ::2]]
        return loss_fn(outputs, target) if mask is None else loss_fn(outputs, target, mask)
    return loss_fn(logits, target) if mask is None else loss_fn(logits, target, mask)


# ----------------------------------------------------------------------------- losses


@pytest.mark.parametrize("name", sorted(SIGMOID_LOSSES))
def test_an_all_known_mask_gives_the_full_sigmoid_loss(name):
    logits, target = _logits(), _sigmoid_target()
    loss_fn = SIGMOID_LOSSES[name]()
    full = _call(loss_fn, logits, target)
    masked = _call(loss_fn, logits, target, torch.ones_like(target))
    assert torch.allclose(full, masked, rtol=1e-5, atol=1e-6)
    per_voxel = _call(loss_fn, logits, target, torch.ones_like(target[:, :1]))
    assert torch.allclose(full, per_voxel, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SOFTMAX_LOSSES))
def test_an_all_known_mask_gives_the_full_softmax_loss(name):
    logits = _logits(channels=4)
    labels = torch.randint(0, 4, (2, 6, 6, 6), generator=torch.Generator().manual_seed(3))
    loss_fn = SOFTMAX_LOSSES[name]()
    full = loss_fn(logits, labels)
    masked = loss_fn(logits, labels, torch.ones((2, 1, 6, 6, 6)))
    assert torch.allclose(full, masked, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SIGMOID_LOSSES))
def test_unknown_voxels_and_channels_get_no_gradient_and_do_not_change_the_loss(name):
    logits, target = _logits(), _sigmoid_target()
    mask = torch.ones_like(target)
    mask[0, 2] = 0  # channel 2 of sample 0 unknown everywhere
    mask[1, 0, :3] = 0  # a slab of channel 0 of sample 1 unknown
    mask[:, 1, 2:4, 2:4, 2:4] = 0  # a block of every sample's channel 1
    loss_fn = SIGMOID_LOSSES[name]()
    loss = _call(loss_fn, logits, target, mask)
    (gradient,) = torch.autograd.grad(loss, logits)
    assert torch.all(gradient[mask == 0] == 0)
    assert torch.count_nonzero(gradient[mask == 1]) > 0
    # Whatever the target says where it is unknown, the loss is the same.
    flipped = torch.where(mask == 0, 1.0 - target, target)
    assert torch.allclose(loss, _call(loss_fn, logits, flipped, mask), rtol=1e-6, atol=1e-7)


def test_a_partly_known_channel_scores_only_its_known_voxels():
    logits = _logits(channels=1, shape=(1, 4, 4, 4))
    target = torch.zeros((1, 1, 4, 4, 4))
    target[..., :2, :, :] = 1.0
    mask = torch.zeros_like(target)
    mask[..., :2, :, :] = 1.0  # known only where positive (WT inside a core mask)
    inside = losses.DiceLoss("sigmoid")(logits[..., :2, :, :], target[..., :2, :, :])
    assert torch.allclose(losses.DiceLoss("sigmoid")(logits, target, mask), inside, atol=1e-6)
    bce = losses.BinaryCrossEntropyLoss()(logits[..., :2, :, :], target[..., :2, :, :])
    assert torch.allclose(losses.BinaryCrossEntropyLoss()(logits, target, mask), bce, atol=1e-6)


def test_a_mask_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="mask"):
        losses.DiceLoss("sigmoid")(_logits(), _sigmoid_target(), torch.ones((2, 2, 6, 6, 6)))


# ----------------------------------------------------------------------------- config


def test_multi_source_config_reads_each_source_with_its_label_meaning(tmp_path):
    config = config_from_dict(MULTI, base_dir=tmp_path)
    full, mask = config.data.source_list()
    assert (full.root, mask.root) == (str(tmp_path / "full"), str(tmp_path / "mask"))
    assert not full.partial and mask.partial and config.data.partial
    assert full.evaluated_regions() == (True, True, True)
    assert mask.evaluated_regions() == (False, True, False)  # only the core is scored
    assert config.data.source("mask") is mask
    assert config_from_dict(config.to_dict()) == config
    single = config_from_dict(_multi(**{"data": {"reader": "brats", "root": "x"}}))
    assert [s.name for s in single.data.source_list()] == ["data"] and not single.data.partial


@pytest.mark.parametrize(
    ("changes", "key", "text"),
    [
        ({"data.reader": "brats"}, "data.reader", "per source"),
        ({"data.sources.1.name": "full"}, "data.sources", "must differ"),
        ({"data.sources.1.name": "a b"}, "data.sources[1].name", "letters"),
        ({"data.sources.0.root": None}, "data.sources[0].root", "is required"),
        ({"data.sources.1.unknown": [[0], [2]]}, "data.sources[1].unknown", "one list per"),
        ({"data.sources.1.unknown": [[1], [2], []]}, "data.sources[1].unknown[0]", "in the reg"),
        ({"data.sources.0.regions": [[1], [], [4]]}, "data.sources[0].regions", "at least one"),
        ({"data.sources.0.regions": [[1], [4]]}, "data.sources[0].regions", "one region per"),
        ({"data.sources.1.inputs": {"t2": "x"}}, "data.sources[1].inputs", "not model input"),
        ({"data.sources.1.options": {"x": 1}}, "data.sources[1].options.x", "not an option"),
        ({"data.split.test_patients": ["v"]}, "data.split.test_patients", "also validation"),
        ({"data.split.folds": 3}, "data.split.folds", "not both"),
        (
            {"augmentation.modality_dropout.keep_one_of": ["t2"]},
            "augmentation.modality_dropout.keep_one_of",
            "not a model input",
        ),
        ({"augmentation.resolution": {"range": [0.5, 2]}}, "augmentation.resolution", ">= 1"),
    ],
)
def test_multi_source_errors_name_the_key(changes, key, text):
    with pytest.raises(ConfigError) as error:
        config_from_dict(_multi(**changes))
    assert key in str(error.value) and text in str(error.value), str(error.value)


# ----------------------------------------------------------------------------- data


def _brats_case(root: Path, case_id: str, label: np.ndarray) -> None:
    from Training.synth.writers import save_nifti
    from unetseg.engine.geometry import Geometry

    geometry = Geometry(np.eye(4), label.shape)
    for name in ("t1c", "flair"):
        image = 100 + 50 * np.random.default_rng(0).random(label.shape) + 100 * (label > 0)
        save_nifti(root / case_id / f"{case_id}_{name}.nii.gz", image, geometry, np.int16)
    save_nifti(root / case_id / f"{case_id}_seg.nii.gz", label, geometry, np.uint8)


def test_sources_are_read_split_by_patient_and_prepared_with_their_known_voxels(tmp_path):
    label = np.zeros((8, 10, 10), dtype=np.uint8)
    label[3:6, 3:6, 3:6] = 2
    label[4, 4, 4] = 4
    mask = np.zeros_like(label)
    mask[2:6, 2:6, 2:6] = 1
    mask[3, 3, 3] = 2  # a hole in the mask
    mask[:, :, 9] = 3  # far from it
    for case_id in ("a", "v"):
        _brats_case(tmp_path / "full", case_id, label)
    for case_id in ("m1", "t"):
        _brats_case(tmp_path / "mask", case_id, mask)
    data = _multi(
        **{"data.sources.0.options": {"patterns": {"t1c": "*_t1c.nii*", "flair": "*_flair.nii*"}}}
    )
    data["data"]["sources"][1]["options"] = dict(data["data"]["sources"][0]["options"])
    config = config_from_dict(data, base_dir=tmp_path)
    records = read_records(config.data, tmp_path)
    assert {(r.case_id, r.source) for r in records} == {
        ("a", "full"),
        ("v", "full"),
        ("m1", "mask"),
        ("t", "mask"),
    }
    split = split_records(records, config.data)
    assert split.case_ids() == {"train": ["a", "m1"], "val": ["v"], "test": ["t"]}

    source = config.data.source("mask")
    nested = reference_labels(mask, source, config, "m1")
    known = known_regions(mask, source)
    target = training_target(torch.from_numpy(nested)[None], "sigmoid", 3)[0].numpy()
    # Inside the mask: WT and TC 1, ET unknown; hole: WT 1, TC and ET unknown; next to the
    # mask: TC and ET 0, WT unknown; far from it: all 0 and known.
    for where, values, supervised in (
        ((4, 4, 4), (1, 1, 0), (1, 1, 0)),
        ((3, 3, 3), (1, 0, 0), (1, 0, 0)),
        ((0, 0, 0), (0, 0, 0), (0, 1, 1)),
        ((0, 0, 9), (0, 0, 0), (1, 1, 1)),
    ):
        assert tuple(target[(slice(None), *where)]) == values, where
        assert tuple(known[(slice(None), *where)]) == supervised, where
    assert known_regions(label, config.data.source("full")) is None


def test_fixed_split_keeps_patients_together_and_names_unknown_patients():
    records = [
        CaseRecord(case_id=c, patient_id=p, image_paths={}, label_path=Path("l"))
        for c, p in (("p1_a", "p1"), ("p1_b", "p1"), ("p2", "p2"), ("p3", "p3"))
    ]
    split = fixed_split(records, ["p1"], ["p3"])
    assert split.case_ids() == {"train": ["p2"], "val": ["p1_a", "p1_b"], "test": ["p3"]}
    with pytest.raises(ValueError, match="p9"):
        fixed_split(records, ["p9"])
    with pytest.raises(ValueError, match="none left"):
        fixed_split(records, ["p1", "p2"], ["p3"])


def test_known_voxels_are_stored_and_sampled_with_the_patch(tmp_path):
    label = np.zeros((10, 12, 12), dtype=np.uint8)
    label[4:7, 4:8, 4:8] = 2
    known = np.ones((3, *label.shape), dtype=np.uint8)
    known[0, :, :, :6] = 0
    case = make_training_case(
        "p", np.stack([label, label]), label, (1, 1, 1), known=known, source="s"
    )
    stored = load_training_case(save_training_case(tmp_path, case))
    assert stored.source == "s" and np.array_equal(stored.known, known)
    full = make_training_case("f", np.stack([label, label]), label, (1, 1, 1))
    assert load_training_case(save_training_case(tmp_path, full)).known is None

    sampler = PatchSampler((12, 12, 10), 3, SamplingConfig(foreground_oversample=0.0))
    _, patch, patch_known = sampler.draw(stored, np.random.default_rng(0))
    assert torch.equal(patch_known, torch.from_numpy(known))  # the patch is the whole case
    assert torch.equal(patch, torch.from_numpy(label))
    dataset = PatchDataset(MemoryCases([stored, full]), sampler, seed=0, known_channels=3)
    items = [dataset[n] for n in range(2)]
    assert {int(item[2].min()) for item in items} == {0, 1}  # partial case and all-ones case
    plain = PatchDataset(MemoryCases([full]), sampler, seed=0)
    assert len(plain[0]) == 2  # fully labelled data: (image, label) as before


def test_validation_scores_only_the_labelled_regions_on_their_known_voxels():
    config = config_from_dict(MULTI)
    label = np.zeros((6, 6, 6), dtype=np.uint8)
    label[2:4, 2:4, 2:4] = 2  # WT and TC
    known = np.ones((3, *label.shape), dtype=np.uint8)
    known[1, 2, 2, 2] = 0
    prediction = np.zeros_like(label)
    prediction[2:4, 2:4, 2:5] = 3
    prediction[2, 2, 2] = 0  # wrong, but TC is unknown there
    case = make_training_case("m", label[None], label, (1, 1, 1), known=known, source="mask")
    metrics = case_metrics(prediction, case, config, distances=False)
    assert set(metrics) == {"2", "mean"}  # the core only
    core = known[1].astype(bool)
    expected = binary_metrics((prediction >= 2) & core, (label >= 2) & core, (1, 1, 1), False)
    assert metrics["2"] == expected and metrics["mean"]["dice"] == expected["dice"]
    full = make_training_case("f", label[None], label, (1, 1, 1), source="full")
    assert case_metrics(prediction, full, config, False) == compute_metrics(
        prediction, label, [1, 2, 3], (1, 1, 1), False, nested=True
    )


def test_training_with_a_partially_labelled_source_runs_and_reports_per_source(tmp_path):
    config = config_from_dict(MULTI)
    rng = np.random.default_rng(0)
    label = np.zeros((8, 8, 8), dtype=np.uint8)
    label[2:6, 2:6, 2:6] = 1
    label[3:5, 3:5, 3:5] = 3
    known = np.ones((3, 8, 8, 8), dtype=np.uint8)
    known[0, label == 0] = 0
    known[2, label > 0] = 0
    image = np.stack([label, label]).astype(np.float32) + 0.1 * rng.normal(size=(2, 8, 8, 8))
    full = make_training_case("f", image, label, (1, 1, 1), source="full")
    part = make_training_case("p", image, label, (1, 1, 1), known=known, source="mask")
    trainer = Trainer(config, tmp_path, MemoryCases([full, part]), MemoryCases([full, part]))
    state = trainer.fit()
    row = state.history[-1]
    assert state.step == 2 and np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"])
    assert {"val_dice_full", "val_dice_mask", "mask_dice_core"} <= set(row)
    assert "mask_dice_whole" not in row and "full_dice_whole" in row


# ----------------------------------------------------------------------------- augmentation


def _only(**transforms):
    """An augmentation config with every transform off except ``transforms``."""
    off = {
        name: {"p": 0.0}
        for name in ("flip", "rotation", "scale", "shift", "gamma", "noise", "bias_field")
    }
    data = config_from_dict(_multi(augmentation={**off, **transforms})).augmentation
    assert isinstance(data, AugmentationConfig)
    return data


def test_thick_slice_simulation_blurs_along_z_only():
    config = _only(resolution={"p": 1.0, "axes": ["z"], "range": [2.0, 2.0]})
    assert config.resolution == ResolutionConfig(1.0, ("z",), (2.0, 2.0), False)
    k, j, i = np.meshgrid(np.arange(12), np.arange(10), np.arange(8), indexing="ij")
    in_plane = torch.from_numpy(np.sin(j + 0.5 * i).astype(np.float32))[None].repeat(2, 1, 1, 1)
    result = augment_intensity(in_plane.clone(), np.random.default_rng(0), config)
    assert torch.allclose(result, in_plane, atol=1e-5)  # constant along z: unchanged
    stripes = torch.from_numpy((k % 2).astype(np.float32))[None].repeat(2, 1, 1, 1)
    result = augment_intensity(stripes.clone(), np.random.default_rng(0), config)
    assert float(result.std()) < 1e-5  # 2-voxel slabs average the 1-voxel stripes away
    assert torch.equal(result[0], result[1])  # all channels together


def test_modality_dropout_always_keeps_one_of_the_named_inputs():
    config = _only(modality_dropout=ModalityDropoutConfig(1.0, ("t1c", "flair")).__dict__)
    dropped = set()
    for n in range(200):
        image = torch.ones((4, 2, 2, 2))
        augment_intensity(image, np.random.default_rng(n), config, keep_one_of=(0, 1))
        zero = tuple(int(c) for c in range(4) if not image[c].any())
        assert 0 < len(zero) < 4 and not {0, 1} <= set(zero)
        dropped.add(zero)
    assert (0,) in dropped and (1,) in dropped  # each of them may still be dropped alone


# ----------------------------------------------------------------------------- evaluation


def test_evaluation_scores_each_source_on_what_it_labels(tmp_path):
    import json
    import shutil

    import SimpleITK as sitk
    import yaml

    from Training.cli import main
    from Training.synth import write_dataset
    from unetseg.untrained import brain_mri_manifest, untrained_package

    full = tmp_path / "full"
    write_dataset("brain-mri", full, 2, seed=2, size=32, layout="brats")
    masked = tmp_path / "mask"
    for case in sorted(p for p in full.iterdir() if p.is_dir()):
        shutil.copytree(case, masked / f"m{case.name}")
        for path in (masked / f"m{case.name}").iterdir():
            path.rename(path.with_name(f"m{path.name}"))
        seg = masked / f"m{case.name}" / f"m{case.name}_seg.nii.gz"
        image = sitk.ReadImage(str(seg))
        core = np.isin(sitk.GetArrayFromImage(image), [1, 3])  # synth: 1 core, 2 oedema, 3 ET
        mask = sitk.GetImageFromArray(core.astype(np.uint8))
        mask.CopyInformation(image)
        sitk.WriteImage(mask, str(seg))
    manifest = brain_mri_manifest(filters=(4, 8), patch_size=(16, 16, 16))
    manifest["spacing_mm"] = [2.0] * 3
    manifest["output"] = {"activation": "sigmoid", "threshold": 0.5}
    manifest["network"]["out_channels"] = 3
    package = untrained_package(tmp_path / "pkg", manifest)
    sources = [
        {"name": "full", "reader": "brats", "root": str(full), "regions": [[1, 2, 3], [1, 3], [3]]},
        {"name": "mask", "reader": "brats", "root": str(masked), **MASK_REGIONS},
    ]
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({"data": {"sources": sources}}))
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(package.path), "--data", str(config), "--out", str(out)]
    assert main([*argv, "--no-distances", "--overlays", "1"]) == 0

    result = json.loads((out / "metrics.json").read_text())
    by_case = {case["case_id"]: case for case in result["cases"]}
    assert set(result["sources"]) == {"full", "mask"}
    for case_id, case in by_case.items():
        if case["source"] == "full":
            assert set(case["metrics"]) == {"1", "2", "3", "mean"}
            assert case["lesion_detection"]["label"] is None
            continue
        assert set(case["metrics"]) == {"2", "mean"}  # the mask labels the core only
        assert case["lesion_detection"]["label"] == 2
        prediction = sitk.GetArrayFromImage(
            sitk.ReadImage(str(out / "predictions" / f"{case_id}.nii.gz"))
        )
        seg = masked / case_id / f"{case_id}_seg.nii.gz"
        image = sitk.ReadImage(str(seg))
        core = sitk.GetArrayFromImage(image) == 1
        expected = binary_metrics(prediction >= 2, core, image.GetSpacing(), False)
        assert case["metrics"]["2"]["dice"] == pytest.approx(expected["dice"])
    mask_cases = [c for c in result["cases"] if c["source"] == "mask"]
    assert result["sources"]["mask"]["mean"]["2"]["dice"] == pytest.approx(
        np.mean([c["metrics"]["2"]["dice"] for c in mask_cases])
    )
    assert "1" not in result["sources"]["mask"]["mean"]
    assert "1" in result["summary"] and "Dice" in (out / "report.md").read_text()
