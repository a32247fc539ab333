"""Reference re-statements shared by the tests (not part of the package)."""

import torch
from torch import nn


def batch_norm_train(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """Batch norm in training mode written out: statistics over batch and space."""
    dims = [0, *range(2, x.dim())]
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=False)
    shape = [1, -1] + [1] * (x.dim() - 2)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight.view(shape) + norm.bias.view(shape)


def assert_outputs_close(a, b, **kwargs) -> None:
    """Compare model outputs that are a tensor or a list/tuple of tensors."""
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, **kwargs)
    else:
        assert isinstance(b, torch.Tensor)
        torch.testing.assert_close(a, b, **kwargs)
