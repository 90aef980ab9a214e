"""Tests of unetseg.engine.network: shapes, options, config round-trip, parameter/FLOP counts."""

from __future__ import annotations

import inspect
import itertools
import json
import math

import pytest
import torch
from torch import nn
from torch.nn import functional
from torch.utils.flop_counter import FlopCounterMode

from unetseg.engine.network import UNet, count_parameters, describe, flops_per_voxel
from unetseg.engine.network.blocks import SqueezeExcitation, Upsample, conv, norm_layer

SMALL = (4, 8, 16)  # three levels: size divisor 4


def _input(spatial_dims: int, channels: int, size: int = 16, batch: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, channels, *(size,) * spatial_dims, generator=generator)


def _conv_params(cin: int, cout: int, kernel_volume: int, bias: bool) -> int:
    return cin * cout * kernel_volume + (cout if bias else 0)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(
    ("norm", "residual", "squeeze_excitation", "upsample"),
    list(
        itertools.product(
            ["instance", "batch", "none"],
            [False, True],
            [False, True],
            ["transpose", "interpolate"],
        )
    ),
)
def test_output_shape_for_every_option(spatial_dims, norm, residual, squeeze_excitation, upsample):
    torch.manual_seed(0)
    net = UNet(
        spatial_dims, 3, 5, SMALL, norm, 0.1, residual, squeeze_excitation, upsample=upsample
    )
    x = _input(spatial_dims, 3)
    for training in (True, False):
        net.train(training)
        y = net(x)
        assert y.shape == (2, 5, *x.shape[2:])
        assert y.is_contiguous() and torch.isfinite(y).all()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_non_cubic_input_and_kernel_size(spatial_dims):
    net = UNet(spatial_dims, 1, 2, (2, 4, 8, 8), kernel_size=5).eval()
    size = (8, 16, 24)[-spatial_dims:]
    assert net.size_divisor == 8
    assert net(torch.randn(1, 1, *size)).shape == (1, 2, *size)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_deep_supervision_list_in_train_tensor_in_eval(spatial_dims):
    net = UNet(spatial_dims, 2, 3, (4, 4, 8, 8), deep_supervision=True)
    x = _input(spatial_dims, 2)
    net.train()
    outputs = net(x)
    assert isinstance(outputs, list)
    assert [tuple(o.shape[2:]) for o in outputs] == [(16,) * spatial_dims, (8,) * spatial_dims,
                                                     (4,) * spatial_dims]  # fmt: skip
    assert all(o.shape[:2] == (2, 3) for o in outputs)
    net.eval()
    y = net(x)
    assert isinstance(y, torch.Tensor)
    # Instance norm and no dropout: train and eval compute the same full-resolution logits.
    torch.testing.assert_close(y, outputs[0])


def test_deep_supervision_with_three_levels_has_one_extra_head():
    net = UNet(3, 1, 2, SMALL, deep_supervision=True).train()
    outputs = net(_input(3, 1))
    assert [o.shape[-1] for o in outputs] == [16, 8]


def test_config_round_trip_rebuilds_identical_network():
    net = UNet(2, 3, 4, (4, 8, 8), "batch", 0.25, True, True, True, "interpolate", 5)
    config = json.loads(json.dumps(net.config))
    assert config == net.config
    assert set(config) == set(inspect.signature(UNet).parameters)
    rebuilt = UNet(**config)
    assert rebuilt.config == net.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in net.state_dict().items()
    }
    rebuilt.load_state_dict(net.state_dict())
    x = _input(2, 3)
    torch.testing.assert_close(rebuilt.eval()(x), net.eval()(x))


def test_default_config_is_json_with_lists():
    config = UNet().config
    assert config["filters"] == [16, 32, 64, 128, 256]
    assert json.loads(json.dumps(config)) == config


def test_default_residual_brain_network_size():
    assert 3e6 <= count_parameters(UNet(3, 4, 4, residual=True)) <= 6e6


def test_parameter_count_plain_network_analytic():
    # 3D, 2 -> 3 channels, filters (4, 8), no norm: every convolution has a bias.
    net = UNet(3, 2, 3, (4, 8), norm="none")
    expected = (
        (2 * 4 * 27 + 4) + (4 * 4 * 27 + 4)  # encoder level 0
        + (4 * 8 * 27 + 8) + (8 * 8 * 27 + 8)  # encoder level 1 (first conv strided)
        + (8 * 4 * 8 + 4)  # transposed conv, kernel 2
        + (8 * 4 * 27 + 4) + (4 * 4 * 27 + 4)  # decoder level 0 on [upsampled, skip]
        + (4 * 3 + 3)  # 1x1 head
    )  # fmt: skip
    assert expected == 4843
    assert count_parameters(net) == expected


def test_parameter_count_residual_se_deep_supervision_analytic():
    # 2D, kernel 3x3 (9), instance norm: conv without bias, each norm has 2 * C parameters.
    net = UNet(2, 1, 2, (4, 8, 8), "instance", 0.0, True, True, True, "interpolate")

    def level(cin: int, cout: int, projection: bool) -> int:
        convs = _conv_params(cin, cout, 9, False) + _conv_params(cout, cout, 9, False)
        skip = _conv_params(cin, cout, 1, False) + 2 * cout if projection else 0
        hidden = max(1, cout // 4)
        se = _conv_params(cout, hidden, 1, True) + _conv_params(hidden, cout, 1, True)
        return convs + 2 * 2 * cout + skip + se

    expected = (
        level(1, 4, True) + level(4, 8, True) + level(8, 8, True)  # encoder (strides 1, 2, 2)
        + _conv_params(8, 8, 1, True) + level(16, 8, True)  # decoder level 1
        + _conv_params(8, 4, 1, True) + level(8, 4, True)  # decoder level 0
        + _conv_params(4, 2, 1, True)  # head
        + _conv_params(8, 2, 1, True)  # deep-supervision head on level 1
    )  # fmt: skip
    assert count_parameters(net) == expected


def test_flops_single_convolutions_analytic():
    conv = nn.Conv3d(3, 5, 3, padding=1)
    assert flops_per_voxel(conv, patch=(4, 4, 4)) == 2 * 3 * 5 * 27
    strided = nn.Sequential(nn.Conv2d(2, 6, 3, stride=2, padding=1), nn.Conv2d(6, 6, 1))
    # Outputs at 1/4 of the pixels: (2 * 6 * 9 + 6 * 6) MACs each.
    assert flops_per_voxel(strided, patch=(8, 8)) == 2 * (2 * 6 * 9 + 6 * 6) / 4
    transposed = nn.ConvTranspose3d(4, 2, 2, stride=2)
    # Every output voxel receives one tap from each input channel; 8 output voxels per input.
    assert flops_per_voxel(transposed, patch=(4, 4, 4)) == 2 * (4 * 2 * 8)


@pytest.mark.parametrize("upsample", ["transpose", "interpolate"])
def test_flops_tiny_unet_analytic(upsample):
    net = UNet(3, 1, 2, (2, 4), norm="none", upsample=upsample)
    up = 4 * 2 if upsample == "transpose" else 4 * 2 / 8  # per full-resolution voxel
    macs = (
        1 * 2 * 27 + 2 * 2 * 27  # encoder level 0, full resolution
        + (2 * 4 * 27 + 4 * 4 * 27) / 8  # encoder level 1, 1/8 of the voxels
        + up
        + 4 * 2 * 27 + 2 * 2 * 27  # decoder level 0
        + 2 * 2  # head
    )  # fmt: skip
    assert flops_per_voxel(net, patch=(8, 8, 8)) == pytest.approx(2 * macs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spatial_dims": 3, "filters": (4, 8, 16), "residual": True, "upsample": "transpose"},
        {"spatial_dims": 2, "filters": (4, 8, 16), "kernel_size": 5, "upsample": "interpolate"},
    ],
)
def test_flops_match_torch_flop_counter(kwargs):
    net = UNet(in_channels=2, out_channels=3, norm="none", **kwargs).eval()
    patch = (16,) * net.spatial_dims
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 2, *patch))
    expected = counter.get_total_flops() / math.prod(patch)
    assert flops_per_voxel(net, patch=patch) == pytest.approx(expected)
    # Convolution FLOPs per voxel do not depend on the patch size.
    assert flops_per_voxel(net) == pytest.approx(expected)


def test_flops_restores_training_mode_and_checks_dims():
    net = UNet(2, 1, 2, (2, 4)).train()
    flops_per_voxel(net)
    assert net.training
    with pytest.raises(ValueError, match="2D"):
        flops_per_voxel(net, spatial_dims=3)
    with pytest.raises(ValueError, match="sizes"):
        flops_per_voxel(net, patch=(8, 8, 8))


def test_describe_one_line():
    text = describe(UNet(3, 4, 2, (4, 8), residual=True))
    assert "\n" not in text
    assert "filters 4-8" in text and "residual" in text
    assert "M params" in text and "kFLOP/voxel" in text


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_gradient_reaches_every_parameter(norm):
    torch.manual_seed(0)
    net = UNet(3, 2, 3, SMALL, norm, 0.2, True, True, True).train()
    outputs = net(_input(3, 2))
    sum(o.square().mean() for o in outputs).backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_autograd_free_inference_matches_autograd_forward():
    # Without autograd on CPU, instance norm takes its in-place channels-last path.
    torch.manual_seed(0)
    net = UNet(3, 2, 3, SMALL, "instance", 0.0, True, True, upsample="interpolate").eval()
    x = _input(3, 2)
    expected = net(x)
    with torch.inference_mode():
        fast = net(x)
    with torch.no_grad():
        torch.testing.assert_close(net(x), fast)
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)


def test_eval_is_deterministic_despite_dropout():
    torch.manual_seed(0)
    net = UNet(3, 2, 2, SMALL, "batch", 0.5, True, True).eval()
    x = _input(3, 2)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 2, 16, 16), "5D tensor"),
        ((2, 16, 16, 16), "5D tensor"),
        ((1, 3, 16, 16, 16), "2 input channel"),
        ((1, 2, 16, 16, 18), "multiples of 4"),
        ((1, 2, 16, 0, 16), "multiples of 4"),
    ],
)
def test_bad_input_raises_clear_error(shape, message):
    net = UNet(3, 2, 2, SMALL)
    with pytest.raises(ValueError, match=message):
        net(torch.zeros(shape))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"in_channels": 0}, "in_channels"),
        ({"filters": (8,)}, "filters"),
        ({"filters": (8, 0)}, "filters"),
        ({"norm": "group"}, "norm"),
        ({"dropout": 1.0}, "dropout"),
        ({"upsample": "nearest"}, "upsample"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"filters": (4, 8), "deep_supervision": True}, "deep_supervision"),
    ],
)
def test_bad_constructor_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNet(**kwargs)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
def test_instance_norm_matches_float64_instance_norm(spatial_dims, grad, channels_last):
    norm = norm_layer("instance", spatial_dims, 4)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    reference = (nn.InstanceNorm2d if spatial_dims == 2 else nn.InstanceNorm3d)(4, affine=True)
    reference.load_state_dict(norm.state_dict())
    # Offset data, 32^3 voxels per channel: one-pass channels-last kernels err by ~1e-3.
    x = _input(spatial_dims, 4, size=32 if spatial_dims == 3 else 128) * 5 + 50
    expected = reference.double()(x.double())
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d if spatial_dims == 3 else
                         torch.channels_last)  # fmt: skip
    with torch.set_grad_enabled(grad):
        y = norm(x)
    torch.testing.assert_close(y.double(), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_pointwise_conv_matches_conv(spatial_dims):
    pointwise = conv(spatial_dims, 6, 3, 1)
    assert isinstance(pointwise, nn.Conv2d if spatial_dims == 2 else nn.Conv3d)
    x = _input(spatial_dims, 6, size=8)
    expected = functional.conv2d if spatial_dims == 2 else functional.conv3d
    fmt = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
    for tensor in (x, x.contiguous(memory_format=fmt)):
        torch.testing.assert_close(pointwise(tensor), expected(x, pointwise.weight, pointwise.bias))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_interpolate_upsample_equals_interpolation_then_conv(spatial_dims):
    up = Upsample(spatial_dims, 6, 3, "interpolate")
    x = _input(spatial_dims, 6, size=6)
    mode = "bilinear" if spatial_dims == 2 else "trilinear"
    expected = up.conv(functional.interpolate(x, scale_factor=2, mode=mode, align_corners=False))
    torch.testing.assert_close(up(x), expected)


def test_squeeze_excitation_matches_monai():
    monai_blocks = pytest.importorskip("monai.networks.blocks")
    se = SqueezeExcitation(3, 8)
    activation = ("leakyrelu", {"negative_slope": 0.01, "inplace": True})
    reference = monai_blocks.ChannelSELayer(3, 8, r=4, acti_type_1=activation)
    with torch.no_grad():
        reference.fc[0].weight.copy_(se.squeeze.weight.flatten(1))
        reference.fc[0].bias.copy_(se.squeeze.bias)
        reference.fc[2].weight.copy_(se.excite.weight.flatten(1))
        reference.fc[2].bias.copy_(se.excite.bias)
    x = _input(3, 8, size=4)
    torch.testing.assert_close(se(x), reference(x))
