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


def randomise_norms(model: nn.Module) -> nn.Module:
    """Give every batch norm non-trivial statistics and affine parameters, so that eval mode
    is not (nearly) the identity on the norms; returns the model."""
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            with torch.no_grad():
                module.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                module.bias.copy_(0.2 * torch.randn(n, generator=gen))
    return model
