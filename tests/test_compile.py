"""torch.compile with the default (inductor) backend: generated kernels match eager mode.

Every registered model, in every dimensionality, is compiled in one graph by the model zoo
tester (``tests/test_zoo.py``, ``aot_eager`` backend). Here inductor generates and compiles
C++ on the CPU for one model per kind of layer: plain U-Net stages, grid attention gates
with trilinear up-sampling, nested UNet++ nodes with self-attention skips, RAUNet's timm
encoder and attention modules; then ``forward_with_attention`` and a training step.
``fullgraph=True`` makes any graph break an error. A cold compile takes ten to thirty
seconds per model on a small machine: the models are tiny, shapes are static
(``dynamic=False``) and identical widths let later models reuse kernels already compiled
(inductor caches them on disk, so a second run is much faster). Without a working C++
toolchain the whole module is skipped, with the reason.
"""

import copy
from collections.abc import Callable

import pytest
import torch
from _reference import (
    REORDERED_TOL,
    TINY_CHANNELS,
    inductor_problem,
    output_tensors,
    randomise_norms,
)
from torch import nn

from attnunet import AgUNet, AttentionUNet, AttentionUNetPlusPlus, RAUNet, UNet
from attnunet.losses import DeepSupervisionLoss, DiceCELoss

pytestmark = pytest.mark.slow

SIZES = {2: (32, 32), 3: (16, 16, 16)}


@pytest.fixture(autouse=True)
def _fresh_dynamo(one_thread):
    """Skip without a working inductor; give every test a clean dynamo state (compiled
    code of one model must never be reused for another, nor count towards its
    recompilation limit) and one intra-op thread (the generated kernels then do not
    depend on the core count)."""
    reason = inductor_problem()
    if reason is not None:
        pytest.skip(reason)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _assert_close_outputs(actual: object, expected: object) -> None:
    got, want = output_tensors(actual), output_tensors(expected)
    assert len(got) == len(want)
    for a, e in zip(got, want, strict=True):
        torch.testing.assert_close(a, e, **REORDERED_TOL)


# One model per kind of layer (see the module docstring), in 2D and one in 3D; identical
# widths let later models reuse the kernels of earlier ones.
FAMILIES: dict[str, Callable[[int], nn.Module]] = {
    "unet": lambda d: UNet(d, 1, 2, channels=TINY_CHANNELS),
    "attention_unet": lambda d: AttentionUNet(d, 1, 2, channels=TINY_CHANNELS),
    "attention_unet_plus_plus": lambda d: AttentionUNetPlusPlus(d, 1, 2, channels=TINY_CHANNELS),
    # 2D RAUNet has a timm encoder; resnet18 without weights needs no network
    "raunet": lambda d: RAUNet(d, 1, 2, encoder="resnet18"),
}
# AttentionUNet's 2D case is its conv-mapped, deep-supervision form, compiled through
# forward_with_attention below; the plain form compiles in 3D.
EVAL_CASES = [(name, 2) for name in FAMILIES if name != "attention_unet"] + [
    ("attention_unet", 3),
]


def _input(name: str, dims: int, batch: int = 1) -> torch.Tensor:
    size = (32,) * dims if name == "raunet" else SIZES[dims]
    return torch.randn(batch, 1, *size, generator=torch.Generator().manual_seed(2))


def test_fullgraph_turns_a_graph_break_into_an_error():
    """The control: with ``fullgraph=True`` a graph break fails instead of silently
    splitting the model into several graphs (it fails while tracing, before inductor)."""

    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + 1
            torch._dynamo.graph_break()
            return x * 2

    with pytest.raises(torch._dynamo.exc.Unsupported):
        torch.compile(Broken(), fullgraph=True, dynamic=False)(torch.ones(2))


@pytest.mark.parametrize(("name", "dims"), EVAL_CASES, ids=[f"{n}-{d}d" for n, d in EVAL_CASES])
def test_compiled_eval_forward_matches_eager(name, dims):
    if name == "raunet":
        pytest.importorskip("timm")
    torch.manual_seed(0)
    model = randomise_norms(FAMILIES[name](dims)).eval()
    x = _input(name, dims)
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    with torch.no_grad():
        expected = model(x)
        actual = compiled(x)
    _assert_close_outputs(actual, expected)


def test_compiled_forward_with_attention_matches_eager():
    """``forward_with_attention`` of Oktay's conv-mapped multi-gate form with deep
    supervision and fusion, in 2D: the list output and every gate map, from one graph
    (this is also the eval test of that form: ``forward`` runs the same code and drops
    the maps)."""
    torch.manual_seed(0)
    model = AttentionUNet(
        2, 1, 2, channels=TINY_CHANNELS, conv_mapping=True, deep_supervision=True, ds_fusion=True
    )
    model = randomise_norms(model).eval()
    x = _input("attention_unet", 2)
    compiled = torch.compile(model.forward_with_attention, fullgraph=True, dynamic=False)
    with torch.no_grad():
        logits, maps = model.forward_with_attention(x)
        c_logits, c_maps = compiled(x)
    assert isinstance(c_logits, list) and len(c_logits) == 3  # fused, y_0, y_1
    _assert_close_outputs(c_logits, logits)
    assert len(maps) == len(c_maps) == 1  # the finest skip is not gated at depth 2
    assert c_maps[0].shape == (1, 2, 16, 16)  # two gates on skip 1
    torch.testing.assert_close(c_maps[0], maps[0], **REORDERED_TOL)
    assert float(c_maps[0].min()) >= 0.0 and float(c_maps[0].max()) <= 1.0


# Training graphs (forward and backward) take the longest to compile, so these models
# have one level (two widths) only.
TRAIN_CASES: dict[str, Callable[[], nn.Module]] = {
    "unet": lambda: UNet(2, 1, 2, channels=TINY_CHANNELS[:2]),
    "ag_unet": lambda: AgUNet(2, 1, 2, channels=TINY_CHANNELS[:2]),
}


def _train_step(
    model: Callable[[torch.Tensor], object],
    params: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
    loss_fn = DeepSupervisionLoss(DiceCELoss())
    params.zero_grad(set_to_none=True)
    output = model(x)
    loss = loss_fn(output, target) if isinstance(output, list) else DiceCELoss()(output, target)
    loss.backward()
    grads = {}
    for n, p in params.named_parameters():
        assert p.grad is not None, n
        grads[n] = p.grad.detach().clone()
    return loss.detach(), [t.detach() for t in output_tensors(output)], grads


@pytest.mark.parametrize("name", list(TRAIN_CASES))
def test_compiled_training_step_matches_eager(name):
    """Train mode (batch statistics): same outputs, loss, gradients and updated running
    statistics, compiled or not."""
    torch.manual_seed(0)
    eager = TRAIN_CASES[name]().train()
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin, fullgraph=True, dynamic=False)
    x = _input(name, 2, batch=2)
    target = torch.randint(0, 2, (2, *SIZES[2]), generator=torch.Generator().manual_seed(3))

    loss, outputs, grads = _train_step(eager, eager, x, target)
    c_loss, c_outputs, c_grads = _train_step(compiled, twin, x, target)

    assert torch.isfinite(loss)
    torch.testing.assert_close(c_loss, loss, **REORDERED_TOL)
    for got, want in zip(c_outputs, outputs, strict=True):
        torch.testing.assert_close(got, want, **REORDERED_TOL)
    assert c_grads.keys() == grads.keys()
    for key, grad in grads.items():
        torch.testing.assert_close(c_grads[key], grad, **REORDERED_TOL, msg=key)
    for (key, buf), (_, c_buf) in zip(
        eager.named_buffers(), twin.named_buffers(), strict=True
    ):  # batch-norm running statistics, updated by the compiled graph too
        torch.testing.assert_close(c_buf, buf, **REORDERED_TOL, msg=key)
