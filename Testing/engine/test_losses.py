"""Losses checked against MONAI, torch and the course notebook's numpy formula."""

import numpy as np
import pytest
import torch
import torch.nn.functional as nnf
from monai.losses import DiceCELoss as MonaiDiceCELoss
from monai.losses import DiceLoss as MonaiDiceLoss
from monai.losses import TverskyLoss as MonaiTverskyLoss

from unetseg.engine.losses import (
    BinaryCrossEntropyLoss,
    DeepSupervisionLoss,
    DiceCELoss,
    DiceLoss,
    FocalTverskyLoss,
    WeightedCrossEntropyLoss,
    soft_dice_loss,
    to_dense_target,
)

SPATIAL = {2: (12, 10), 3: (6, 8, 10)}


def _softmax_case(dims: int, n_classes: int = 4, seed: int = 0):
    """Logits (2, C, *spatial) and a label map (2, *spatial) with every class present."""
    gen = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn((2, n_classes, *SPATIAL[dims]), generator=gen)
    labels = torch.randint(0, n_classes, (2, *SPATIAL[dims]), generator=gen)
    return logits, labels


def _sigmoid_case(dims: int, n_channels: int = 3, seed: int = 1):
    """Logits (2, C, *spatial) and nested binary regions (2, C, *spatial), like WT/TC/ET."""
    gen = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn((2, n_channels, *SPATIAL[dims]), generator=gen)
    score = torch.rand((2, *SPATIAL[dims]), generator=gen)
    regions = torch.stack([score > 0.3 + 0.2 * c for c in range(n_channels)], dim=1)
    return logits, regions.float()


def test_soft_dice_loss_matches_notebook_formula():
    rng = np.random.default_rng(0)
    probs = rng.random((2, 3, 5, 6, 7)).astype(np.float32)
    target = (rng.random((2, 3, 5, 6, 7)) > 0.5).astype(np.float32)
    axes = (2, 3, 4)
    eps = 1e-5
    numerator = 2.0 * np.sum(target * probs, axis=axes) + eps
    denominator = np.sum(target**2, axis=axes) + np.sum(probs**2, axis=axes) + eps
    expected = 1.0 - np.mean(numerator / denominator)
    got = soft_dice_loss(torch.from_numpy(probs), torch.from_numpy(target), axes, eps)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    perfect = soft_dice_loss(torch.from_numpy(target), torch.from_numpy(target), axes)
    assert perfect.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("batch", [True, False])
def test_dice_softmax_matches_monai(dims, include_background, squared, batch):
    logits, labels = _softmax_case(dims)
    ours = DiceLoss("softmax", include_background, squared, smooth=1e-5, batch_dice=batch)
    monai = MonaiDiceLoss(
        include_background=include_background,
        to_onehot_y=True,
        softmax=True,
        squared_pred=squared,
        smooth_nr=1e-5,
        smooth_dr=1e-5,
        batch=batch,
    )
    expected = monai(logits, labels.unsqueeze(1)).item()
    assert ours(logits, labels).item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("squared", [True, False])
def test_dice_sigmoid_matches_monai(dims, squared):
    logits, regions = _sigmoid_case(dims)
    ours = DiceLoss("sigmoid", squared_denominator=squared)
    monai = MonaiDiceLoss(sigmoid=True, squared_pred=squared, smooth_nr=1e-5, smooth_dr=1e-5)
    assert ours(logits, regions).item() == pytest.approx(monai(logits, regions).item(), abs=1e-5)


def test_target_forms_are_equivalent():
    logits, labels = _softmax_case(3)
    onehot = nnf.one_hot(labels, 4).movedim(-1, 1)
    loss = DiceCELoss("softmax")
    reference = loss(logits, labels)
    assert loss(logits, onehot).item() == pytest.approx(reference.item(), abs=1e-6)
    assert loss(logits, labels.unsqueeze(1)).item() == pytest.approx(reference.item(), abs=1e-6)


def test_target_validation():
    logits, regions = _sigmoid_case(3)
    with pytest.raises(ValueError, match="multi-channel"):
        to_dense_target(logits, regions[:, 0].long(), "sigmoid")
    with pytest.raises(ValueError, match="does not fit"):
        to_dense_target(logits, regions[:, :2], "sigmoid")
    with pytest.raises(ValueError, match="does not fit"):
        to_dense_target(logits, regions[:, 0, :-1].long(), "softmax")
    with pytest.raises(ValueError, match="activation"):
        DiceLoss("relu")(logits, regions)  # type: ignore[arg-type]
    single = to_dense_target(logits[:, :1], regions[:, 0].long(), "sigmoid")
    assert torch.equal(single, regions[:, :1])


@pytest.mark.parametrize("dims", [2, 3])
def test_cross_entropy_matches_torch(dims):
    logits, labels = _softmax_case(dims)
    assert WeightedCrossEntropyLoss()(logits, labels).item() == pytest.approx(
        nnf.cross_entropy(logits, labels).item(), abs=1e-5
    )
    weights = [0.2, 1.0, 3.0, 0.5]
    ours = WeightedCrossEntropyLoss(class_weights=weights)(logits, labels)
    expected = nnf.cross_entropy(logits, labels, weight=torch.tensor(weights))
    assert ours.item() == pytest.approx(expected.item(), abs=1e-5)
    ours = WeightedCrossEntropyLoss(class_weights=weights, background_weight=0.5)(logits, labels)
    expected = nnf.cross_entropy(logits, labels, weight=torch.tensor([0.1, 1.0, 3.0, 0.5]))
    assert ours.item() == pytest.approx(expected.item(), abs=1e-5)


def test_inverse_frequency_balances_present_classes():
    logits, labels = _softmax_case(3, n_classes=4)
    labels[labels == 2] = 0  # class 2 absent, background frequent
    per_voxel = nnf.cross_entropy(logits, labels, reduction="none")
    class_means = [per_voxel[labels == c].mean() for c in (0, 1, 3)]
    expected = torch.stack(class_means).mean()
    ours = WeightedCrossEntropyLoss(inverse_frequency=True)(logits, labels)
    assert ours.item() == pytest.approx(expected.item(), abs=1e-5)
    onehot = nnf.one_hot(labels, 4).movedim(-1, 1).float()
    weights = WeightedCrossEntropyLoss(inverse_frequency=True, background_weight=0.1).weights(
        onehot
    )
    frequency = torch.bincount(labels.flatten(), minlength=4).float() / labels.numel()
    assert weights[2] == 0
    assert weights[0].item() == pytest.approx(0.1 / frequency[0].item(), rel=1e-5)
    assert weights[3].item() == pytest.approx(1.0 / frequency[3].item(), rel=1e-5)
    with pytest.raises(ValueError):
        WeightedCrossEntropyLoss(class_weights=[1, 1, 1, 1], inverse_frequency=True)


def test_cross_entropy_is_stable_for_huge_logits():
    logits, labels = _softmax_case(2)
    logits = (1e4 * logits).requires_grad_()
    loss = WeightedCrossEntropyLoss()(logits, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    bce_logits = torch.tensor([[[1e4, -1e4, 0.0]]]).requires_grad_()
    bce = BinaryCrossEntropyLoss()(bce_logits, torch.tensor([[[0.0, 0.0, 1.0]]]))
    bce.backward()
    assert bce.item() == pytest.approx((1e4 + np.log(2.0)) / 3, rel=1e-5)
    assert torch.isfinite(bce_logits.grad).all()


@pytest.mark.parametrize("dims", [2, 3])
def test_bce_matches_torch(dims):
    logits, regions = _sigmoid_case(dims)
    expected = nnf.binary_cross_entropy_with_logits(logits, regions)
    assert BinaryCrossEntropyLoss()(logits, regions).item() == pytest.approx(
        expected.item(), abs=1e-6
    )
    pos_weight = [2.0, 3.0, 4.0]
    shape = (3,) + (1,) * dims
    expected = nnf.binary_cross_entropy_with_logits(
        logits, regions, pos_weight=torch.tensor(pos_weight).view(shape)
    )
    ours = BinaryCrossEntropyLoss(pos_weight)(logits, regions)
    assert ours.item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("include_background", [True, False])
def test_dice_ce_softmax_matches_monai(dims, include_background):
    logits, labels = _softmax_case(dims)
    ours = DiceCELoss(
        "softmax", lambda_dice=0.7, lambda_ce=1.3, include_background=include_background
    )
    monai = MonaiDiceCELoss(
        include_background=include_background,
        to_onehot_y=True,
        softmax=True,
        lambda_dice=0.7,
        lambda_ce=1.3,
    )
    expected = monai(logits, labels.unsqueeze(1)).item()
    assert ours(logits, labels).item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_dice_ce_sigmoid_matches_monai(dims):
    logits, regions = _sigmoid_case(dims)
    ours = DiceCELoss("sigmoid", lambda_dice=0.5, lambda_ce=2.0)
    # MONAI's DiceCELoss uses BCE only for one channel (softmax CE otherwise): compare there, and
    # compose the multi-channel reference from MONAI's sigmoid Dice and torch's BCE.
    monai = MonaiDiceCELoss(sigmoid=True, lambda_dice=0.5, lambda_ce=2.0)
    expected = monai(logits[:, :1], regions[:, :1]).item()
    assert ours(logits[:, :1], regions[:, :1]).item() == pytest.approx(expected, abs=1e-5)
    dice = MonaiDiceLoss(sigmoid=True)(logits, regions)
    expected = 0.5 * dice + 2.0 * nnf.binary_cross_entropy_with_logits(logits, regions)
    assert ours(logits, regions).item() == pytest.approx(expected.item(), abs=1e-5)
    with pytest.raises(ValueError):
        DiceCELoss("sigmoid", class_weights=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        DiceCELoss("softmax", pos_weight=[1.0])


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
@pytest.mark.parametrize("gamma", [1.0, 0.75, 2.0])
def test_focal_tversky_matches_monai(dims, activation, gamma):
    if activation == "softmax":
        logits, target = _softmax_case(dims)
        monai_target = target.unsqueeze(1)
        monai_options = {"softmax": True, "to_onehot_y": True, "include_background": False}
    else:
        logits, target = _sigmoid_case(dims)
        monai_target = target
        monai_options = {"sigmoid": True}
    monai = MonaiTverskyLoss(alpha=0.3, beta=0.7, reduction="none", **monai_options)
    expected = torch.mean(monai(logits, monai_target) ** gamma).item()
    ours = FocalTverskyLoss(activation, alpha=0.3, beta=0.7, gamma=gamma)(logits, target)
    assert ours.item() == pytest.approx(expected, abs=1e-5)


def test_focal_tversky_gradient_finite_at_perfect_prediction():
    _, regions = _sigmoid_case(3)
    logits = (200.0 * (2.0 * regions - 1.0)).requires_grad_()
    loss = FocalTverskyLoss("sigmoid", gamma=0.75)(logits, regions)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(logits.grad).all()


def test_deep_supervision_label_map_uses_nearest_and_halving_weights():
    gen = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 3, (2, 8, 8, 8), generator=gen)
    outputs = [
        torch.randn((2, 3, 8 // 2**lvl, 8 // 2**lvl, 8 // 2**lvl), generator=gen)
        for lvl in range(3)
    ]
    base = DiceCELoss("softmax")
    # nearest-exact at factor f samples the voxel at f * i + f // 2 along each axis.
    targets = [labels, labels[:, 1::2, 1::2, 1::2], labels[:, 2::4, 2::4, 2::4]]
    expected = sum(w * base(o, t) for w, o, t in zip([4, 2, 1], outputs, targets, strict=True)) / 7
    got = DeepSupervisionLoss(base)(outputs, labels)
    assert got.item() == pytest.approx(expected.item(), abs=1e-6)
    with_channel = DeepSupervisionLoss(base)(outputs, labels.unsqueeze(1))
    assert with_channel.item() == pytest.approx(expected.item(), abs=1e-6)
    assert DeepSupervisionLoss(base).level_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    single = DeepSupervisionLoss(base)(outputs[0], labels)
    assert single.item() == pytest.approx(base(outputs[0], labels).item(), abs=1e-6)


def test_deep_supervision_multichannel_uses_max_pooling_2d():
    regions = torch.zeros((1, 2, 8, 8))
    regions[0, 0, 3, 5] = 1.0  # a one-pixel region must survive 4x downsampling
    regions[0, 1, :4, :] = 1.0
    outputs = [torch.zeros((1, 2, 8, 8)), torch.zeros((1, 2, 2, 2))]
    base = DiceLoss("sigmoid")
    pooled = regions.reshape(1, 2, 2, 4, 2, 4).amax(dim=(3, 5))
    assert pooled[0, 0].sum() == 1
    expected = (2 * base(outputs[0], regions) + 1 * base(outputs[1], pooled)) / 3
    got = DeepSupervisionLoss(base, weights=[2.0, 1.0])(outputs, regions)
    assert got.item() == pytest.approx(expected.item(), abs=1e-6)
    with pytest.raises(ValueError):
        DeepSupervisionLoss(base, weights=[1.0])(outputs, regions)


LOSSES = {
    "dice_softmax": lambda: DiceLoss("softmax"),
    "dice_ce_softmax": lambda: DiceCELoss("softmax", inverse_frequency=True),
    "tversky_softmax": lambda: FocalTverskyLoss("softmax"),
    "dice_ce_sigmoid": lambda: DiceCELoss("sigmoid"),
    "tversky_sigmoid": lambda: FocalTverskyLoss("sigmoid"),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_bf16_autocast_output_is_float32_and_close(name):
    torch.manual_seed(0)
    sigmoid = name.endswith("sigmoid")
    conv = torch.nn.Conv3d(2, 3 if sigmoid else 4, kernel_size=1)
    image = torch.randn((2, 2, 6, 8, 10))
    target = _sigmoid_case(3)[1] if sigmoid else _softmax_case(3)[1]
    loss_fn = LOSSES[name]()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = conv(image)
        assert logits.dtype == torch.bfloat16
        loss = loss_fn(logits, target)
    assert loss.dtype == torch.float32
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in conv.parameters())
    reference = loss_fn(conv(image), target)
    assert loss.item() == pytest.approx(reference.item(), abs=2e-2)
