"""Small, TorchScript-friendly helpers for matching spatial sizes."""

import torch
import torch.nn.functional as F


def interp_mode(spatial_dims: int) -> str:
    """The linear interpolation mode for ``spatial_dims`` (linear/bilinear/trilinear)."""
    return ("linear", "bilinear", "trilinear")[spatial_dims - 1]


def match_size(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Crop or replicate-pad ``x`` at the *end* of each spatial axis to ``size``.

    The upsampled decoder feature of an odd-sized skip is one voxel short at the end of
    the axis; replicate padding there keeps every voxel aligned with its skip voxel
    (interpolating would shift the grid by a fraction of a voxel).
    """
    spatial = x.shape[2:]
    pad: list[int] = []
    need_pad = False
    for d in range(len(size) - 1, -1, -1):
        diff = size[d] - spatial[d]
        pad.append(0)
        pad.append(max(diff, 0))
        if diff > 0:
            need_pad = True
    if need_pad:
        x = F.pad(x, pad, mode="replicate")
    return crop_to(x, size)


def crop_to(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Keep the first ``size[d]`` voxels of every spatial axis ``d`` of ``x``."""
    for d in range(len(size)):
        if x.shape[d + 2] > size[d]:
            x = x.narrow(d + 2, 0, size[d])
    return x
