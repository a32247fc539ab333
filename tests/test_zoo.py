"""The model zoo tester: every registered model goes through the same checks.

The cases are parametrised over ``attnunet.list_models()`` (presets included) and, for each
name, over every dimensionality its registry entry declares
(``model_info(name).spatial_dims``), so a newly registered model is tested without an edit
here. Each model is built small from ``TINY_KWARGS`` (``tests/conftest.py``); a registered
model missing from that table fails every case with a message saying to add it. TorchScript
and torch.export (0.2 to 1 s a model) run a preset in its paper's dimensionality only: a
preset fixes keyword values of a configurable model, which runs them in every dimensionality
it declares. torch.compile (about 1.4 s a model) runs every model once: a preset in its
paper's dimensionality, a configurable model in one its presets leave out.

Every case has an oracle of its own: shapes and finiteness for the forward pass, the
gradient of every parameter for the backward pass, and the eager model for the reloaded,
scripted, exported, compiled and checkpointed forms. Paper figures (parameter counts,
golden outputs) stay in the files of the model families.

``torch.compile`` runs with the ``aot_eager`` backend and ``fullgraph=True``: dynamo has to
capture the whole forward in one graph (the property the model code controls) and
AOTAutograd's functionalised graph has to compute the eager values, for about a second per
model; inductor's generated kernels are checked on one model per kind of layer in
``tests/test_compile.py``, where a cold compile costs ten to thirty seconds.
"""

import copy
import math

import pytest
import torch
from _reference import (
    ODD_SIZES,
    REORDERED_TOL,
    assert_outputs_close,
    assert_same_checkpointed_step,
    assert_same_state,
    output_tensors,
    randomise_norms,
    trained_a_little,
)
from torch import nn

from attnunet import create_model, list_models, model_info
from attnunet.models import accepted_kwargs, from_pretrained, save_pretrained

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = list_models()
IN_CHANNELS, NUM_CLASSES = 2, 3  # neither 1, so that a swapped axis shows


def _accepts(name: str, keyword: str) -> bool:
    return keyword in (accepted_kwargs(model_info(name).model_class) or [])


def _declared_dims(name: str) -> tuple[int, ...]:
    return model_info(name).spatial_dims


def _export_dims(name: str) -> tuple[int, ...]:
    """Every declared dimensionality, except for a preset: its paper's (the preset fixes
    keyword values of a configurable model, whose code runs in every dimensionality)."""
    info = model_info(name)
    paper = info.defaults.get("spatial_dims")
    return (paper,) if info.is_preset and paper in info.spatial_dims else info.spatial_dims


def _cases(names: list[str], dims_of=_declared_dims) -> list:
    return [
        pytest.param(name, dims, id=f"{name}-{dims}d") for name in names for dims in dims_of(name)
    ]


SUPERVISED = [name for name in NAMES if _accepts(name, "deep_supervision")]
each_model = pytest.mark.parametrize(("name", "dims"), _cases(NAMES))
each_deeply_supervised_model = pytest.mark.parametrize(("name", "dims"), _cases(SUPERVISED))
# TorchScript, torch.export and torch.compile cost 0.2 to 3 s per model: presets run them
# in their paper's dimensionality, every other model in each one it declares
each_model_to_export = pytest.mark.parametrize(("name", "dims"), _cases(NAMES, _export_dims))
each_deeply_supervised_model_to_export = pytest.mark.parametrize(
    ("name", "dims"), _cases(SUPERVISED, _export_dims)
)


def _compile_dims(name: str) -> tuple[int, ...]:
    """One dimensionality per model (dynamo's tracing costs about 1.4 s a model): a
    preset's paper one; for a configurable model one that none of its presets takes,
    rotating along the names, so that the zoo is compiled in 1D, 2D and 3D."""
    info = model_info(name)
    if info.is_preset:
        return _export_dims(name)
    presets = [n for n in NAMES if model_info(n).is_preset]
    taken = {
        d for n in presets if model_info(n).model_class is info.model_class for d in _export_dims(n)
    }
    free = [d for d in info.spatial_dims if d not in taken] or list(info.spatial_dims)
    configurable = [n for n in NAMES if not model_info(n).is_preset]
    return (free[configurable.index(name) % len(free)],)


each_model_to_compile = pytest.mark.parametrize(("name", "dims"), _cases(NAMES, _compile_dims))


@pytest.fixture
def build(tiny_kwargs):
    """``build(name, dims, **overrides)``: the registered model, small, with two input
    channels, three classes and non-trivial batch-norm statistics, in training mode."""

    def make(name: str, dims: int, **overrides) -> nn.Module:
        kwargs = tiny_kwargs(
            name, dims, in_channels=IN_CHANNELS, num_classes=NUM_CLASSES, **overrides
        )
        torch.manual_seed(0)
        return randomise_norms(create_model(name, **kwargs)).train()

    return make


def _input(dims: int, batch: int = 2, size: tuple[int, ...] | None = None) -> torch.Tensor:
    shape = (batch, IN_CHANNELS, *(size or ODD_SIZES[dims]))
    return torch.randn(shape, generator=torch.Generator().manual_seed(7))


def _loss(output: object) -> torch.Tensor:
    """A loss that reaches every output (each deep-supervision head too)."""
    outputs = output_tensors(output)
    return sum((k + 1) * y.square().mean() + y.mean() for k, y in enumerate(outputs))


def _assert_every_parameter_has_a_gradient(model: nn.Module) -> None:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable, "the model has no trainable parameters"
    for pname, p in trainable:
        assert p.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{pname} has a zero gradient"


def _level_of(shape: torch.Size, size: tuple[int, ...], depth: int) -> int | None:
    """The ``k`` for which ``shape`` is ``ceil(size / 2**k)`` on every axis, or None."""
    for k in range(depth + 1):
        if list(shape) == [math.ceil(s / 2**k) for s in size]:
            return k
    return None


# ----------------------------------------------------------------------------- the table
def test_the_tiny_table_lists_exactly_the_registry(tiny_table):
    missing = sorted(set(NAMES) - set(tiny_table))
    stale = sorted(set(tiny_table) - set(NAMES))
    assert not missing, (
        f"registered models without an entry in TINY_KWARGS (tests/conftest.py): {missing}; "
        f"add the keywords that build each one small"
    )
    assert not stale, f"TINY_KWARGS (tests/conftest.py) names unregistered models: {stale}"


@pytest.mark.parametrize("name", NAMES)
def test_every_model_declares_dimensionalities(name):
    dims = model_info(name).spatial_dims
    assert dims and set(dims) <= {1, 2, 3}, f"{name} declares spatial_dims={dims}"


# ----------------------------------------------------------------------------- eager
@each_model
def test_forward_and_backward(build, name, dims):
    """Training mode at an odd size: the output has the input's size, the class count as
    channels and finite values, and backward gives every parameter a finite, non-zero
    gradient."""
    model = build(name, dims)
    x = _input(dims)
    out = model(x)
    assert isinstance(out, torch.Tensor), type(out)
    assert out.shape == (2, NUM_CLASSES, *ODD_SIZES[dims])
    assert torch.isfinite(out).all()
    _loss(out).backward()
    _assert_every_parameter_has_a_gradient(model)


ODD = {1: [(1,), (5,), (43,)], 2: [(1, 3), (7, 30)], 3: [(1, 2, 3), (5, 9, 7)]}


@each_model
def test_odd_sizes_keep_their_size(build, name, dims):
    """``size_policy="pad"`` (every model's default): any size, down to one voxel, comes
    back at that size."""
    extra = {"size_policy": "pad"} if _accepts(name, "size_policy") else {}
    model = build(name, dims, **extra).eval()
    for size in ODD[dims]:
        with torch.no_grad():
            out = model(_input(dims, batch=1, size=size))
        assert out.shape == (1, NUM_CLASSES, *size), f"input size {size}: {tuple(out.shape)}"
        assert torch.isfinite(out).all(), f"input size {size}"


@each_model
def test_save_and_load_round_trip(build, name, dims, tmp_path):
    """``save_pretrained`` then ``from_pretrained``: same class and config, the same state
    dict (batch-norm statistics included) and identical outputs, in eval mode."""
    x = _input(dims)
    model = trained_a_little(build(name, dims), x)
    loaded = from_pretrained(save_pretrained(model, tmp_path / "saved"))
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    assert not any(m.training for m in loaded.modules())
    assert_same_state(model, loaded)
    with torch.no_grad():
        assert_outputs_close(loaded(x), model(x), rtol=0, atol=0)


@each_model
def test_checkpointing_gives_the_same_step(build, name, dims):
    """``set_checkpointing(True)``: the same loss, gradients and buffers as without, with
    dropout where the model has it (the recomputation replays the masks)."""
    extra = {"dropout": 0.2} if _accepts(name, "dropout") else {}
    model = build(name, dims, **extra)
    assert_same_checkpointed_step(model, _input(dims))


@each_deeply_supervised_model
def test_deep_supervision(build, name, dims):
    """``deep_supervision=True``: a list of at least two outputs, the first at full size,
    each at the input size divided by a power of two, in training and eval mode; backward
    from all of them reaches every parameter (every auxiliary head)."""
    model = build(name, dims, deep_supervision=True)
    x = _input(dims)
    size = ODD_SIZES[dims]
    outputs = model(x)
    assert isinstance(outputs, list) and len(outputs) >= 2, type(outputs)
    assert outputs[0].shape == (2, NUM_CLASSES, *size)
    levels = [_level_of(y.shape[2:], size, model.depth) for y in outputs]
    assert None not in levels, [tuple(y.shape) for y in outputs]
    assert all(y.shape[:2] == (2, NUM_CLASSES) and torch.isfinite(y).all() for y in outputs)
    _loss(outputs).backward()
    _assert_every_parameter_has_a_gradient(model)
    with torch.no_grad():
        evaluated = model.eval()(x)
    assert [y.shape for y in evaluated] == [y.shape for y in outputs]


# ----------------------------------------------------------------------------- export
def _bad_inputs(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Inputs every model refuses in its input check, by what is wrong with them."""
    return {
        "a channel too many": torch.cat([x, x[:, :1]], dim=1),
        "no batch axis": x[0],
        "float64 for float32 weights": x.double(),
    }


def _eager_error(model: nn.Module, x: torch.Tensor, what: str) -> str:
    """The message of the eager model's input check for the bad input ``x``."""
    try:
        model(x)
    except (ValueError, TypeError) as error:
        return str(error)
    except Exception as error:
        pytest.fail(
            f"an input with {what} reaches the layers ({type(error).__name__}: {error}); "
            f"the model's input check (SegmentationModel._check_input) should refuse it"
        )
    pytest.fail(f"the model accepts an input with {what}")


@pytest.mark.export
@each_model_to_export
def test_torchscript_matches_eager(build, name, dims):
    """The scripted model gives the eager outputs (and attention maps) and refuses bad
    inputs with the eager model's messages."""
    model = build(name, dims).eval()
    x = _input(dims)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        assert_outputs_close(scripted(x), model(x))
        if hasattr(model, "forward_with_attention"):
            out, maps = scripted.forward_with_attention(x)
            expected, expected_maps = model.forward_with_attention(x)
            assert_outputs_close(out, expected)
            assert_outputs_close(maps, expected_maps)
    for what, bad in _bad_inputs(x).items():
        message = _eager_error(model, bad, what)
        with pytest.raises(torch.jit.Error) as caught:
            scripted(bad)
        assert message in str(caught.value), what


@pytest.mark.export
@each_deeply_supervised_model_to_export
def test_torchscript_of_deep_supervision_matches_eager(build, name, dims):
    model = build(name, dims, deep_supervision=True).eval()
    x = _input(dims)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        assert_outputs_close(scripted(x), model(x))


@pytest.mark.export
@each_model_to_export
def test_torch_export_matches_eager(build, name, dims):
    """``torch.export``: the exported program gives the eager outputs, at the export input
    and at another input of that shape."""
    model = build(name, dims).eval()
    x = _input(dims)
    program = torch.export.export(model, (x,))
    other = torch.randn(x.shape, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        for inp in (x, other):
            assert_outputs_close(program.module()(inp), model(inp))


@pytest.fixture
def fresh_dynamo():
    """A clean dynamo state around the test (compiled code of one model is never reused
    for another, nor counted towards its recompilation limit)."""
    if not torch._dynamo.is_dynamo_supported():
        pytest.skip("torch.compile (dynamo) is not supported on this Python/platform")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.compile
@pytest.mark.slow
@each_model_to_compile
def test_torch_compile_matches_eager(build, name, dims, fresh_dynamo):
    """One graph (``fullgraph=True``: a graph break is an error) whose output equals the
    eager output within float32 reordering tolerance."""
    model = build(name, dims).eval()
    x = _input(dims)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        assert_outputs_close(compiled(x), model(x), **REORDERED_TOL)


# ----------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@each_model
def test_cuda_matches_cpu(build, name, dims):
    """In float64 (no TF32, no reduced-precision kernels) a CUDA training step gives the
    CPU step's output and gradients."""
    cpu = build(name, dims).double()
    gpu = copy.deepcopy(cpu).cuda()
    x = _input(dims).double()
    out = cpu(x)
    _loss(out).backward()
    gpu_out = gpu(x.cuda())
    _loss(gpu_out).backward()
    tol = {"rtol": 1e-7, "atol": 1e-9}
    assert_outputs_close(output_tensors(gpu_out)[0].cpu(), output_tensors(out)[0], **tol)
    grads = dict(gpu.named_parameters())
    for pname, p in cpu.named_parameters():
        torch.testing.assert_close(grads[pname].grad.cpu(), p.grad, **tol, msg=pname)
