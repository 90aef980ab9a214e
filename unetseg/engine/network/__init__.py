"""U-Net for 2D/3D segmentation and its size/cost helpers."""

from .complexity import count_parameters, describe, flops_per_voxel
from .unet import UNet

__all__ = ["UNet", "count_parameters", "describe", "flops_per_voxel"]
