"""Sliding-window options: foreground skipping, mirroring, progress, cancel, precision."""

import logging

import pytest
import torch
from monai.data.utils import dense_patch_slices
from torch import nn

from unetseg.engine import device as device_module
from unetseg.engine.inference import (
    CancelToken,
    InferenceCancelled,
    plan_tiling,
    sliding_window_inference,
)

ROI = (12, 16, 12)


def tiny_net(cin: int = 1, cout: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv3d(cin, 4, 3, padding=1), nn.Tanh(), nn.Conv3d(4, cout, (3, 1, 5), padding=(1, 0, 2))
    ).eval()


class Counting(nn.Module):
    """Wraps a predictor and records the batch size of every call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.inner(x)


def blob_mask(shape=(30, 40, 33)) -> torch.Tensor:
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[3:9, 5:14, 20:30] = True
    return mask


def coverage(tiling, shape) -> torch.Tensor:
    covered = torch.zeros(shape, dtype=torch.bool)
    for window in tiling.windows:
        covered[window.source] = True
    return covered


def test_foreground_skipping_keeps_masked_voxels_exact():
    x = torch.randn(1, 1, 30, 40, 33)
    mask = blob_mask()
    net = Counting(tiny_net())
    full = sliding_window_inference(x, ROI, net, overlap=0.5, activation="softmax")
    full_calls = len(net.batches)
    net.batches.clear()
    fast = sliding_window_inference(
        x, ROI, net, overlap=0.5, foreground_mask=mask, activation="softmax"
    )
    assert 0 < len(net.batches) < full_calls
    torch.testing.assert_close(fast[0][:, mask], full[0][:, mask], rtol=0, atol=1e-6)
    covered = coverage(plan_tiling(x.shape[2:], ROI, (0.5,) * 3, 1, mask[None]), mask.shape)
    assert covered.sum() < covered.numel()
    assert torch.all(fast[0, 0][~covered] == 1) and torch.all(fast[0, 1:][:, ~covered] == 0)

    labels = sliding_window_inference(
        x, ROI, net, overlap=0.5, foreground_mask=mask, output="labels", activation="softmax"
    )
    assert torch.all(labels[0][~covered] == 0)
    assert torch.equal(labels[0][mask], full[0].argmax(0)[mask].to(torch.uint8))


@pytest.mark.parametrize("output", ["probabilities", "labels"])
def test_distant_foreground_blobs_along_axis0(output):
    # Gaps between computed windows longer than the window: the band restarts cleanly.
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(2, 3, 5, padding=2), nn.Tanh(), nn.Conv2d(3, 4, 3, padding=1))
    x = torch.randn(2, 2, 100, 30)
    mask = torch.zeros(2, 100, 30, dtype=torch.bool)
    mask[0, 2:4, 3:9] = mask[0, 80:83, 20:30] = mask[1, 97:100, 0:2] = True
    full = sliding_window_inference(
        x, (12, 12), net.eval(), output=output, sw_batch_size=3, activation="softmax"
    )
    fast = sliding_window_inference(
        x, (12, 12), net, output=output, foreground_mask=mask, sw_batch_size=3, activation="softmax"
    )
    channels_first = output == "probabilities"
    for item in range(2):
        inside = full[item][:, mask[item]] if channels_first else full[item][mask[item]]
        ours = fast[item][:, mask[item]] if channels_first else fast[item][mask[item]]
        torch.testing.assert_close(ours, inside, rtol=0, atol=1e-6)
    if channels_first:
        assert torch.all(fast[0, 0, 40:60] == 1) and torch.all(fast[0, 1:, 40:60] == 0)
    else:
        assert torch.all(fast[0, 40:60] == 0)


@pytest.mark.parametrize("activation", ["sigmoid", None])
def test_uncovered_voxels_are_zero_without_softmax(activation):
    x = torch.randn(1, 1, 30, 40, 33)
    out = sliding_window_inference(
        x, ROI, tiny_net(), foreground_mask=blob_mask(), activation=activation
    )
    assert torch.all(out[0, :, 25:, 35:, :5] == 0)
    labels = sliding_window_inference(
        x, ROI, tiny_net(), foreground_mask=blob_mask(), output="labels", activation="sigmoid"
    )
    assert torch.all(labels[0, 25:, 35:, :5] == 0)


def test_per_item_masks_and_empty_mask():
    x = torch.randn(3, 1, 30, 40, 33)
    masks = torch.zeros(3, 30, 40, 33, dtype=torch.bool)
    masks[0] = blob_mask()
    masks[2, 20:25, 30:38, 2:6] = True  # item 1 has no foreground at all
    net = Counting(tiny_net())
    out = sliding_window_inference(
        x, ROI, net, foreground_mask=masks, output="labels", activation="softmax"
    )
    alone = sliding_window_inference(
        x[2:], ROI, net, foreground_mask=masks[2:], output="labels", activation="softmax"
    )
    assert torch.all(out[1] == 0)
    assert torch.equal(out[2], alone[0])

    net.batches.clear()
    empty = torch.zeros(30, 40, 33, dtype=torch.bool)
    probs = sliding_window_inference(x[:1], ROI, net, foreground_mask=empty, activation="softmax")
    assert net.batches == [1]  # one probe call to learn the channel count
    assert probs.shape == (1, 3, 30, 40, 33)
    assert torch.all(probs[:, 0] == 1) and torch.all(probs[:, 1:] == 0)


class Pointwise(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.cos(x), x, x**2 - 1], 1)


def test_crop_to_foreground_is_exact_for_pointwise_predictor():
    x = torch.randn(1, 1, 30, 40, 33)
    mask = blob_mask()
    net = Counting(Pointwise())
    fast = sliding_window_inference(
        x, ROI, net, foreground_mask=mask, crop_to_foreground=True, activation=None
    )
    cropped_calls = len(net.batches)
    net.batches.clear()
    sliding_window_inference(x, ROI, net, foreground_mask=mask, activation=None)
    assert cropped_calls < len(net.batches)
    expected = Pointwise()(x)
    torch.testing.assert_close(fast[0][:, mask], expected[0][:, mask], rtol=1e-6, atol=1e-6)
    assert torch.all(fast[0, :, 20:] == 0)  # outside the grown bounding box


def test_mirroring_flip_equivariant_predictor_changes_nothing():
    x = torch.randn(2, 1, 16, 20, 15)
    net = tiny_net(cout=2)
    symmetric = nn.Sequential(nn.Conv3d(1, 2, 1), nn.Tanh()).eval()
    plain = sliding_window_inference(x, ROI, symmetric, activation=None)
    mirrored = sliding_window_inference(x, ROI, symmetric, activation=None, mirror_axes=(0, 1, 2))
    torch.testing.assert_close(mirrored, plain, rtol=1e-6, atol=1e-6)
    asymmetric = sliding_window_inference(x, ROI, net, activation=None, mirror_axes=(2,))
    assert (asymmetric - sliding_window_inference(x, ROI, net, activation=None)).abs().max() > 1e-3


def test_mirroring_averages_all_flip_combinations():
    x = torch.randn(1, 1, 12, 16, 12)  # one window covers the image
    net = tiny_net(cout=2)
    with torch.no_grad():
        expected = (
            sum(
                torch.flip(net(torch.flip(x, dims)), dims)
                for dims in [(), (2,), (4,), (2, 4)]  # spatial axes 0 and 2
            )
            / 4
        )
    ours = sliding_window_inference(x, ROI, net, activation=None, mirror_axes=[2, 0])
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="mirror_axes"):
        sliding_window_inference(x, ROI, net, mirror_axes=[3], activation="softmax")


def test_progress_counts_windows():
    x = torch.randn(2, 1, 30, 40, 33)
    calls = []
    sliding_window_inference(
        x,
        ROI,
        tiny_net(),
        overlap=0.5,
        sw_batch_size=4,
        progress=lambda d, t: calls.append((d, t)),
        activation="softmax",
    )
    windows = 2 * len(dense_patch_slices((30, 40, 33), ROI, (6, 8, 6)))
    assert calls[-1] == (windows, windows)
    assert len(calls) == -(-windows // 4)
    assert [d for d, _ in calls] == sorted({d for d, _ in calls})


def test_cancel_stops_early_and_raises():
    x = torch.randn(1, 1, 30, 40, 33)
    net = Counting(tiny_net())
    token = CancelToken()

    def progress(done, total):
        if done >= 3:
            token.cancel()

    with pytest.raises(InferenceCancelled, match="3/"):
        sliding_window_inference(
            x, ROI, net, output="labels", progress=progress, cancel=token, activation="softmax"
        )
    assert token.cancelled
    assert len(net.batches) == 3
    assert issubclass(InferenceCancelled, RuntimeError)


class AutocastProbe(nn.Module):
    """Records the CPU autocast state seen by the forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 3, padding=1)
        self.seen: list[tuple[bool, torch.dtype]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((torch.is_autocast_enabled("cpu"), self.conv(x).dtype))
        return self.conv(x)


def test_cpu_bf16_without_support_falls_back_to_float32(monkeypatch, caplog):
    monkeypatch.setattr(device_module, "cpu_supports_bf16", lambda: False)
    probe = AutocastProbe().eval()
    x = torch.randn(1, 1, 12, 16, 12)
    with caplog.at_level(logging.WARNING):
        out = sliding_window_inference(x, ROI, probe, cpu_bf16=True, activation="softmax")
    assert probe.seen == [(False, torch.float32)]
    assert out.dtype == torch.float32
    assert "no native bf16" in caplog.text


def test_cpu_bf16_autocast_path_with_faked_support(monkeypatch):
    # Fakes the CPU capability: the bf16 code path runs on any CPU (slowly when emulated).
    monkeypatch.setattr(device_module, "cpu_supports_bf16", lambda: True)
    probe = AutocastProbe().eval()
    x = torch.randn(1, 1, 12, 16, 12)
    out = sliding_window_inference(x, ROI, probe, cpu_bf16=True, activation=None)
    assert probe.seen == [(True, torch.bfloat16)]
    assert out.dtype == torch.float32
    reference = sliding_window_inference(x, ROI, probe, activation=None)
    assert probe.seen[-1] == (False, torch.float32)
    torch.testing.assert_close(out, reference, rtol=0.05, atol=0.05)
    sliding_window_inference(x, ROI, probe, cpu_bf16=True, amp="off", activation="softmax")
    assert probe.seen[-1] == (False, torch.float32)


def test_explicit_cpu_devices():
    x = torch.randn(1, 1, 20, 25, 18)
    net = tiny_net()
    ref = sliding_window_inference(x, ROI, net, activation="softmax")
    out = sliding_window_inference(
        x, ROI, net, device="cpu", aggregation_device="cpu", activation="softmax"
    )
    assert out.device.type == "cpu"
    assert torch.equal(out, ref)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("aggregation", [None, "cpu"])
def test_cuda_matches_cpu(aggregation):
    x = torch.randn(1, 1, 30, 40, 33)
    net = tiny_net()
    ref = sliding_window_inference(x, ROI, net, activation=None)
    out = sliding_window_inference(
        x,
        ROI,
        net.cuda(),
        device="cuda",
        aggregation_device=aggregation,
        amp="off",
        activation=None,
    )
    assert out.device.type == ("cpu" if aggregation else "cuda")
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-4, atol=1e-4)
    half = sliding_window_inference(x.cuda(), ROI, net, output="labels", activation="softmax")
    assert (half.cpu() == ref.argmax(1)).float().mean() > 0.99
