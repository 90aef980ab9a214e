"""Model size and cost: parameter count, FLOPs per input voxel, one-line description."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from .unet import UNet


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not; buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def flops_per_voxel(
    model: nn.Module, spatial_dims: int | None = None, patch: Sequence[int] | None = None
) -> float:
    """Inference FLOPs per input voxel, as 2 x multiply-accumulates (MACs).

    Counted: the weights of every convolution, transposed convolution and linear layer, via
    forward hooks during one eval-mode forward pass of a zero (1, C, *patch) tensor:
    - convolution: output elements x (in_channels / groups) x kernel volume (padded
      positions included, as executed);
    - transposed convolution: input elements x (out_channels / groups) x kernel volume;
    - linear: output elements x in_features.
    Not counted: biases, normalisation, activations, pooling, interpolation, concatenation,
    additions; deep-supervision heads (unused in eval mode).

    Args:
        model: a `UNet` or any module whose first convolution (in `modules()` order) reads the
            input; its training mode is restored afterwards.
        spatial_dims: 2 or 3; taken from the model when None.
        patch: array-order spatial size (K, J, I) or (J, I); default 2 * `size_divisor` per axis
            for a UNet, 32 otherwise. Convolution FLOPs per voxel do not depend on it (only
            global-pooling branches such as squeeze-and-excitation do, slightly).
    """
    dims, in_channels = _input_spec(model, spatial_dims)
    if patch is None:
        patch = (2 * model.size_divisor if isinstance(model, UNet) else 32,) * dims
    patch = tuple(int(s) for s in patch)
    if len(patch) != dims:
        raise ValueError(f"patch {patch} must have {dims} sizes")
    macs = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, _ConvNd):
            kernel = math.prod(module.kernel_size)
            if module.transposed:
                macs += inputs[0].numel() * (module.out_channels // module.groups) * kernel
            else:
                macs += output.numel() * (module.in_channels // module.groups) * kernel
        else:
            macs += output.numel() * module.in_features

    handles = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, (_ConvNd, nn.Linear))
    ]
    reference = next(model.parameters())
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(
                torch.zeros(1, in_channels, *patch, dtype=reference.dtype, device=reference.device)
            )
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return 2.0 * macs / math.prod(patch)


def describe(model: nn.Module) -> str:
    """One line: architecture (for a UNet), parameters (M) and inference kFLOP per voxel."""
    params, flops = count_parameters(model), flops_per_voxel(model)
    cost = f"{params / 1e6:.2f} M params, {flops / 1e3:.1f} kFLOP/voxel"
    if not isinstance(model, UNet):
        return f"{type(model).__name__}: {cost}"
    options = [f"{model.norm} norm", f"{model.upsample} upsampling"]
    options += [name for name in ("residual", "squeeze_excitation", "deep_supervision")
                if getattr(model, name)]  # fmt: skip
    if model.dropout:
        options.append(f"dropout {model.dropout:g}")
    filters = "-".join(str(f) for f in model.filters)
    return (
        f"UNet {model.spatial_dims}D {model.in_channels}->{model.out_channels}, filters {filters}, "
        f"{', '.join(options)}: {cost}"
    )


def _input_spec(model: nn.Module, spatial_dims: int | None) -> tuple[int, int]:
    """(spatial_dims, in_channels) of the model's input."""
    if isinstance(model, UNet):
        if spatial_dims not in (None, model.spatial_dims):
            raise ValueError(f"spatial_dims={spatial_dims} but the UNet is {model.spatial_dims}D")
        return model.spatial_dims, model.in_channels
    first = next((m for m in model.modules() if isinstance(m, _ConvNd)), None)
    if first is None:
        raise ValueError(f"{type(model).__name__} has no convolution to infer its input from")
    dims = len(first.kernel_size) if spatial_dims is None else spatial_dims
    return dims, first.in_channels
