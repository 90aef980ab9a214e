"""Sliding-window inference: equivalence with MONAI, analytic cases, label output."""

import itertools
import random

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference as monai_sliding_window
from torch import nn

from unetseg.engine.inference import sliding_window_inference


def tiny_net(spatial_dims: int, cin: int, cout: int, seed: int = 0) -> nn.Module:
    """Small conv net with a 5-voxel receptive field (window borders matter)."""
    torch.manual_seed(seed)
    conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    return nn.Sequential(conv(cin, 6, 3, padding=1), nn.Tanh(), conv(6, cout, 3, padding=1)).eval()


class Pointwise(nn.Module):
    """Voxel-wise nonlinear predictor: its sliding-window result is the whole-image result."""

    def __init__(self, cin: int, cout: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(cout, cin, generator=generator)
        self.bias = torch.randn(cout, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("oc,nc...->no...", self.weight, x)
        y = y + self.bias.view(1, -1, *([1] * (x.ndim - 2)))
        return torch.sin(y) * 3 + y


def monai_reference(x, roi, net, **kwargs):
    with torch.no_grad():
        return monai_sliding_window(x, roi, kwargs.pop("sw_batch_size", 1), net, **kwargs)


MONAI_CASES = [
    # items, image spatial shape, roi, overlap, sw_batch_size
    (1, (40, 50, 37), (24, 32, 24), 0.5, 1),
    (2, (30, 24, 37), (16, 16, 16), 0.25, 3),
    (2, (10, 50, 37), (16, 20, 24), 0.5, 2),  # axis 0 shorter than the window
    (1, (9, 13, 11), (16, 20, 24), 0.5, 1),  # smaller than the window everywhere
    (2, (64, 45), (32, 32), 0.5, 4),  # 2D
    (1, (20, 45), (32, 16), 0.7, 1),  # 2D, padded on axis 0
]


@pytest.mark.parametrize(("items", "spatial", "roi", "overlap", "batch"), MONAI_CASES)
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_equals_monai_logits(items, spatial, roi, overlap, batch, mode):
    net = tiny_net(len(spatial), 2, 3)
    x = torch.randn(items, 2, *spatial, generator=torch.Generator().manual_seed(1))
    ref = monai_reference(x, roi, net, overlap=overlap, mode=mode, sw_batch_size=batch)
    ours = sliding_window_inference(
        x, roi, net, overlap=overlap, mode=mode, sw_batch_size=batch, activation=None
    )
    assert ours.dtype == torch.float32
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() < 1e-4


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "constant"])
def test_padding_modes_equal_monai(padding_mode):
    net = tiny_net(3, 1, 2)
    x = torch.randn(1, 1, 12, 30, 9)
    kwargs = {"overlap": 0.5, "mode": "gaussian", "padding_mode": padding_mode}
    if padding_mode == "constant":
        kwargs["cval"] = 0.7
    ref = monai_reference(x, (16, 16, 16), net, **kwargs)
    ours = sliding_window_inference(x, (16, 16, 16), net, activation=None, **kwargs)
    assert (ours - ref).abs().max() < 1e-4


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_activation_applied_to_blended_logits(activation):
    net = tiny_net(3, 2, 4)
    x = torch.randn(1, 2, 30, 26, 21)
    ref = monai_reference(x, (16, 16, 16), net, overlap=0.5, mode="gaussian")
    ref = torch.softmax(ref, 1) if activation == "softmax" else torch.sigmoid(ref)
    ours = sliding_window_inference(
        x, (16, 16, 16), net, overlap=0.5, mode="gaussian", activation=activation
    )
    assert (ours - ref).abs().max() < 1e-5


def random_cases(count: int, seed: int):
    rng = random.Random(seed)
    for _ in range(count):
        dims = rng.choice([2, 3])
        spatial = tuple(rng.randint(5, 40) for _ in range(dims))
        roi = tuple(rng.randint(3, 30) for _ in range(dims))
        overlap = tuple(rng.choice([0.0, 0.25, 0.5, 0.6, 0.9]) for _ in range(dims))
        yield spatial, roi, overlap, rng.choice(["gaussian", "constant"]), rng.randint(1, 4)


@pytest.mark.parametrize(("spatial", "roi", "overlap", "mode", "batch"), list(random_cases(12, 7)))
def test_pointwise_predictor_gives_whole_image_result(spatial, roi, overlap, mode, batch):
    predictor = Pointwise(2, 3)
    x = torch.randn(2, 2, *spatial)
    expected = predictor(x)
    ours = sliding_window_inference(
        x, roi, predictor, overlap=overlap, mode=mode, sw_batch_size=batch, activation=None
    )
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-6)
    probs = sliding_window_inference(
        x, roi, predictor, overlap=overlap, mode=mode, activation="softmax"
    )
    torch.testing.assert_close(probs, torch.softmax(expected, 1), rtol=1e-6, atol=1e-6)


def test_labels_are_argmax_uint8():
    net = tiny_net(3, 2, 5)
    x = torch.randn(2, 2, 20, 25, 18)
    kwargs = {"overlap": 0.5, "sw_batch_size": 2}
    logits = sliding_window_inference(x, (12, 16, 12), net, activation=None, **kwargs)
    probs = sliding_window_inference(x, (12, 16, 12), net, **kwargs, activation="softmax")
    labels = sliding_window_inference(
        x, (12, 16, 12), net, output="labels", **kwargs, activation="softmax"
    )
    assert labels.dtype == torch.uint8
    assert labels.shape == (2, 20, 25, 18)
    assert torch.equal(labels.long(), logits.argmax(1))
    # Against the probabilities: equal except at float ties of the two best classes.
    top2 = probs.topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1]) > 1e-6
    assert torch.equal(labels.long()[decided], probs.argmax(1)[decided])
    assert decided.float().mean() > 0.999


def test_labels_2d_with_small_image():
    net = tiny_net(2, 1, 3)
    x = torch.randn(3, 1, 20, 70)
    logits = sliding_window_inference(x, (32, 32), net, activation=None)
    labels = sliding_window_inference(x, (32, 32), net, output="labels", activation="softmax")
    assert torch.equal(labels.long(), logits.argmax(1))


def nested_reference(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Label map of sigmoid regions: channel c-1 > threshold -> label c, later wins."""
    labels = np.zeros(prob.shape[1:], np.uint8)
    for index in np.ndindex(*labels.shape):
        for channel in range(prob.shape[0]):
            if prob[(channel, *index)] > threshold:
                labels[index] = channel + 1
    return labels


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_sigmoid_labels_are_nested_regions(threshold):
    class Regions(nn.Module):  # logits x, x - 2 (nested in the first), -1 - x (apart)
        def forward(self, x):
            return torch.cat([x, x - 2, -1 - x], 1)

    x = torch.linspace(-2, 4, 9 * 10 * 11).reshape(1, 1, 9, 10, 11)
    labels = sliding_window_inference(
        x, (8, 8, 8), Regions(), output="labels", activation="sigmoid", threshold=threshold
    )
    prob = torch.sigmoid(Regions()(x))[0].numpy()
    assert labels.dtype == torch.uint8
    np.testing.assert_array_equal(labels[0].numpy(), nested_reference(prob, threshold))
    assert len(np.unique(labels.numpy())) >= 3


def test_many_classes_give_uint16_labels():
    predictor = Pointwise(1, 300)
    x = torch.randn(1, 1, 6, 7, 5)
    labels = sliding_window_inference(
        x, (4, 4, 4), predictor, output="labels", activation="softmax"
    )
    assert labels.dtype == torch.uint16
    assert torch.equal(labels.long(), predictor(x).argmax(1))
    as_int32 = sliding_window_inference(
        x, (4, 4, 4), predictor, output="labels", label_dtype=torch.int32, activation="softmax"
    )
    assert torch.equal(as_int32, labels.to(torch.int32))
    with pytest.raises(ValueError, match="cannot hold"):
        sliding_window_inference(
            x, (4, 4, 4), predictor, output="labels", label_dtype=torch.uint8, activation="softmax"
        )


def test_result_is_a_normal_tensor():
    x = torch.randn(1, 1, 10, 12, 9)
    out = sliding_window_inference(x, (8, 8, 8), Pointwise(1, 2), activation="softmax")
    assert not out.is_inference()
    out.add_(1)  # in-place use outside inference mode works


def test_identity_predictor_does_not_modify_image():
    x = torch.randn(1, 2, 12, 13, 14)
    before = x.clone()
    for batch, mirror in itertools.product([1, 3], [None, (0, 2)]):
        out = sliding_window_inference(
            x, (8, 8, 8), lambda t: t, sw_batch_size=batch, mirror_axes=mirror, activation=None
        )
        torch.testing.assert_close(out, before, rtol=1e-6, atol=1e-6)
    assert torch.equal(x, before)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"output": "labels", "activation": None}, "needs activation"),
        ({"overlap": 1.0}, "overlap"),
        ({"activation": "relu"}, "activation"),
        ({"output": "labels"}, "needs activation"),  # no default activation, as MONAI
        ({"padding_mode": "edge"}, "padding_mode"),
        ({"crop_to_foreground": True}, "foreground_mask"),
        ({"amp": "fp8"}, "amp"),
        ({"sw_batch_size": 0}, "sw_batch_size"),
        ({"output": "labels", "activation": "sigmoid", "threshold": 1.0}, "threshold"),
        ({"output": "labels", "activation": "sigmoid", "threshold": 0.0}, "threshold"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sliding_window_inference(torch.zeros(1, 1, 8, 8, 8), (4, 4, 4), Pointwise(1, 2), **kwargs)


def test_wrong_roi_and_predictor_output():
    x = torch.zeros(1, 1, 8, 8, 8)
    with pytest.raises(ValueError, match="roi_size"):
        sliding_window_inference(x, (4, 4), Pointwise(1, 2), activation="softmax")
    with pytest.raises(ValueError, match="predictor returned"):
        sliding_window_inference(x, (4, 4, 4), lambda t: t[:, :, :2], activation="softmax")
