"""Reference re-statements, constants and checks shared by the tests (not part of the package).

Fixtures (the tiny-model table, the data folder, one intra-op thread) live in
``tests/conftest.py``; what a test needs at import time (parametrisation, module-level
builders) lives here.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn

# Widths of a small U-Net-family model (depth 2): every test that builds "a small model"
# builds this one, unless it needs a particular depth.
TINY_CHANNELS = (4, 8, 16)
# Spatial sizes that no power of two divides along any axis, so every model pads and crops.
ODD_SIZES = {1: (37,), 2: (21, 18), 3: (9, 10, 11)}
# Functional convolutions and linear interpolation modes by dimensionality.
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}
CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}
# float32 results of the same computation in another order of summation (compiled kernels,
# channels-last convolutions): equal to this tolerance, not bit for bit.
REORDERED_TOL = {"rtol": 1e-4, "atol": 1e-5}
# A training step with activation checkpointing against one without (the recomputed
# decoder sums one convolution per concatenated part).
CHECKPOINT_TOL = {"rtol": 1e-5, "atol": 1e-6}


def batch_norm_train(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """Batch norm in training mode written out: statistics over batch and space."""
    dims = [0, *range(2, x.dim())]
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=False)
    shape = [1, -1] + [1] * (x.dim() - 2)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight.view(shape) + norm.bias.view(shape)


def output_tensors(output: object) -> list[torch.Tensor]:
    """The tensors of a model output: a tensor, a (deep-supervision) list, or nested
    sequences such as ``(output, maps)``."""
    if isinstance(output, torch.Tensor):
        return [output]
    assert isinstance(output, (list, tuple)), type(output)
    return [t for item in output for t in output_tensors(item)]


def assert_outputs_close(a, b, **kwargs) -> None:
    """Compare model outputs that are a tensor or a list/tuple of tensors."""
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, **kwargs)
    else:
        assert isinstance(b, torch.Tensor)
        torch.testing.assert_close(a, b, **kwargs)


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    """The two state dicts have the same keys in the same order, dtypes and values."""
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


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


def trained_a_little(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Move the batch-norm statistics away from their initial values (two training-mode
    passes without gradients); returns the model in eval mode."""
    model.train()
    with torch.no_grad():
        for scale in (1.0, 3.0):
            model(x * scale + 1.0)
    return model.eval()


def checkpointed_step(model: nn.Module, x: torch.Tensor, enabled: bool):
    """One training step (forward, a loss over every output, backward) on a copy of
    ``model`` with activation checkpointing on or off; returns the loss, the gradients
    and the buffers afterwards."""
    model = copy.deepcopy(model).train().set_checkpointing(enabled)
    torch.manual_seed(123)  # the same dropout masks for both runs
    out = model(x)
    outputs = out if isinstance(out, list) else [out]
    loss = sum((k + 1) * (y**2).mean() + y.mean() for k, y in enumerate(outputs))
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    return loss.detach(), grads, buffers


def assert_same_checkpointed_step(model: nn.Module, x: torch.Tensor) -> None:
    """A training step with activation checkpointing gives the loss, the gradients and
    the buffers of the same step without it."""
    loss_off, grads_off, buffers_off = checkpointed_step(model, x, False)
    loss_on, grads_on, buffers_on = checkpointed_step(model, x, True)
    torch.testing.assert_close(loss_on, loss_off, **CHECKPOINT_TOL)
    assert grads_on.keys() == grads_off.keys()
    assert any(grad is not None for grad in grads_off.values())
    for name, grad in grads_off.items():
        if grad is None:  # pruned by ds_mode="fast"
            assert grads_on[name] is None, name
            continue
        torch.testing.assert_close(grads_on[name], grad, **CHECKPOINT_TOL, msg=name)
    # batch-norm running statistics and num_batches_tracked: updated once, not twice (a
    # second update moves a running mean by 10 % of the batch mean). The checkpointed
    # decoder sums one convolution per concatenated part (ConvNormAct.forward_parts), so
    # the float statistics agree to rounding, not bit for bit; the counters exactly.
    assert buffers_on.keys() == buffers_off.keys()
    for name, buffer in buffers_off.items():
        exact = not buffer.is_floating_point()
        tol = 0 if exact else 1e-6
        torch.testing.assert_close(buffers_on[name], buffer, rtol=tol, atol=tol, msg=name)


_PROBE: list[str | None] = []  # the probe's verdict, computed once per session


def inductor_problem() -> str | None:
    """``None`` when torch.compile's inductor backend compiles and runs a tiny function
    here, else why not (no dynamo on this platform, no C++ toolchain, ...): the one
    reason a compile test may skip; any other compile error is a failure."""
    if not _PROBE:
        reason: str | None = None
        try:
            if not torch._dynamo.is_dynamo_supported():
                reason = "torch.compile (dynamo) is not supported on this Python/platform"
            else:
                fn = torch.compile(lambda t: torch.relu(t) * 2.0 + 1.0, fullgraph=True)
                x = torch.linspace(-1.0, 1.0, 8)
                if not torch.allclose(fn(x), torch.relu(x) * 2.0 + 1.0):
                    reason = "inductor compiled a probe function to wrong results"
        except Exception as error:  # no C++ compiler, missing headers, ...
            reason = (
                f"the inductor backend cannot compile on this machine "
                f"({type(error).__name__}: {str(error).strip().splitlines()[0][:300]})"
            )
        finally:
            torch._dynamo.reset()
        _PROBE.append(reason)
    return _PROBE[0]
