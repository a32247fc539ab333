"""ONNX export of every registered model with both exporters, run in onnxruntime.

``torch.onnx.export(..., dynamo=False)`` traces the model (TorchScript-based exporter);
``dynamo=True`` captures it with ``torch.export``. Every registry entry (presets included,
built narrow) is exported in 2D and 3D, with deep supervision where it exists, at odd sizes,
and its onnxruntime outputs (CPUExecutionProvider, float32) must equal eager evaluation to
1e-5 (absolute and relative). The batch axis is always exported dynamic; under
``size_policy="pad"`` the spatial axes are too, and the graph is run at a second odd size
and at a size that needs no padding.

The TorchScript exporter runs every model class in both dimensionalities under both
policies, and every preset in both dimensionalities, its policy alternating. The dynamo
exporter costs ten times as much per export (two to eight seconds here, more with dynamic
spatial axes), so every model class is exported once under "pad" (dynamic spatial axes, the
dimensionality alternating from class to class) and once under "resize", through one of its
presets where it has one (each preset runs "resize" once) or itself. RAUNet's 3D form would
have to be exported at more than 32 voxels per axis with dynamic spatial axes (a coarsest
grid of one voxel specialises the graph), so it meets the dynamo exporter in 2D "pad" and,
as raunet_ni, in 3D "resize".
"""

import contextlib
import io
import warnings

import pytest
import torch
from _reference import output_tensors, randomise_norms

pytest.importorskip("onnx", reason="ONNX export tests need onnx")
pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")
ort = pytest.importorskip("onnxruntime", reason="ONNX export tests run the graphs in onnxruntime")

from attnunet import create_model, list_models, model_info  # noqa: E402
from attnunet.models import accepted_kwargs  # noqa: E402

TOL = {"atol": 1e-5, "rtol": 1e-5}
# odd sizes: the export size, and a second one the dynamic graph is run at
SIZE = {2: (45, 71), 3: (9, 13, 11)}
OTHER = {2: (37, 50), 3: (11, 7, 14)}
NAMES = list_models()
EXPORTERS = {"torchscript": False, "dynamo": True}
pytestmark = pytest.mark.usefixtures("one_thread")


def _dims(name: str) -> list[int]:
    return [d for d in (2, 3) if d in model_info(name).spatial_dims]


def _has_preset(name: str) -> bool:
    cls = model_info(name).model_class
    return any(model_info(n).is_preset and model_info(n).model_class is cls for n in NAMES)


def _cases() -> list[tuple[str, int, str, str]]:
    cases = []
    classes = 0
    for index, name in enumerate(NAMES):
        preset = model_info(name).is_preset
        for dims in _dims(name):
            # presets share their class's code: one policy per dims, alternating
            policies = [("pad", "resize")[(index + dims) % 2]] if preset else ["pad", "resize"]
            cases += [(name, dims, policy, "torchscript") for policy in policies]
        # The dynamo exporter costs ~10x a TorchScript export: every class runs "pad" (with
        # dynamic spatial axes) under it, and "resize" through a preset of the class, or
        # itself where it has none; the dimensionality alternates along the names.
        dims = _dims(name)[index % len(_dims(name))]
        if not preset:
            cases.append((name, _dims(name)[classes % len(_dims(name))], "pad", "dynamo"))
            classes += 1
        if preset or not _has_preset(name):
            other = _dims(name)[(index + 1) % len(_dims(name))]
            cases.append((name, other if not preset else dims, "resize", "dynamo"))
    return cases


CASES = _cases()


@pytest.fixture
def build(tiny_kwargs):
    """``build(name, dims, policy, **overrides)``: the registry entry ``name``, small
    (``TINY_KWARGS`` of tests/conftest.py), with deep supervision where it has it, random
    batch-norm statistics, in eval mode."""

    def make(name: str, dims: int, policy: str, **overrides) -> torch.nn.Module:
        kwargs = tiny_kwargs(name, dims, size_policy=policy)
        if "deep_supervision" in (accepted_kwargs(model_info(name).model_class) or []):
            kwargs["deep_supervision"] = True
        kwargs.update(overrides)
        torch.manual_seed(0)
        return randomise_norms(create_model(name, **kwargs)).eval()

    return make


def output_names(model: torch.nn.Module, x: torch.Tensor) -> list[str]:
    """``["y"]`` for one output, ``["y0", "y1", ...]`` for a deep-supervision list."""
    with torch.no_grad():
        n = len(output_tensors(model(x)))
    return ["y"] if n == 1 else [f"y{k}" for k in range(n)]


def export(
    model: torch.nn.Module, x: torch.Tensor, exporter: str, dynamic_spatial: bool
) -> tuple[bytes, list[str]]:
    """Export ``model`` at ``x`` with a dynamic batch axis (and dynamic spatial axes when
    asked); return the serialised graph and its output names."""
    names = output_names(model, x)
    spatial = range(2, x.dim()) if dynamic_spatial else range(0)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # tracer and deprecation warnings
        if EXPORTERS[exporter]:
            Dim = torch.export.Dim
            axes = {0: Dim("batch"), **{a: Dim(f"s{a - 2}") for a in spatial}}
            torch.onnx.export(
                model,
                (x,),
                buffer,
                dynamo=True,
                input_names=["x"],
                output_names=names,
                dynamic_shapes=(axes,),
            )
        else:
            axes_names = {0: "batch", **{a: f"s{a - 2}" for a in spatial}}
            torch.onnx.export(
                model,
                (x,),
                buffer,
                dynamo=False,
                input_names=["x"],
                output_names=names,
                dynamic_axes={"x": axes_names, **{n: {0: "batch"} for n in names}},
            )
    return buffer.getvalue(), names


def session(graph: bytes) -> "ort.InferenceSession":
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def assert_runs_like_eager(
    graph: bytes, names: list[str], model: torch.nn.Module, x: torch.Tensor
) -> float:
    """Run the graph in onnxruntime at ``x``; every output equals eager to 1e-5 (shape
    included). Returns the largest absolute difference."""
    got = session(graph).run(names, {"x": x.numpy()})
    with torch.no_grad():
        expected = output_tensors(model(x))
    assert len(got) == len(expected)
    worst = 0.0
    for name, a, e in zip(names, got, expected, strict=True):
        a = torch.from_numpy(a)
        assert tuple(a.shape) == tuple(e.shape), (
            f"{name}: shape {tuple(a.shape)} != eager {tuple(e.shape)}"
        )
        torch.testing.assert_close(a, e, **TOL, msg=lambda m, n=name: f"{n}: {m}")
        worst = max(worst, float((a - e).abs().max()))
    return worst


def _size(model: torch.nn.Module, size: tuple[int, ...], policy: str) -> tuple[int, ...]:
    # "resize" needs 2**depth voxels per axis (RAUNet: 32); keep such sizes odd
    if policy == "resize":
        return tuple(max(s, model.divisor + 1) for s in size)
    return size


def _round_up(size: tuple[int, ...], div: int) -> tuple[int, ...]:
    return tuple(-(-s // div) * div for s in size)


@pytest.mark.parametrize(
    ("name", "dims", "policy", "exporter"),
    CASES,
    ids=[f"{n}-{d}d-{p}-{e}" for n, d, p, e in CASES],
)
def test_onnx_matches_eager(build, name, dims, policy, exporter):
    model = build(name, dims, policy)
    torch.manual_seed(1)
    x = torch.randn(2, model.in_channels, *_size(model, SIZE[dims], policy))
    dynamic_spatial = policy == "pad"
    graph, names = export(model, x, exporter, dynamic_spatial)
    assert_runs_like_eager(graph, names, model, x)
    if dynamic_spatial:  # another odd size, and one that needs no padding, batch 1
        other = torch.randn(1, model.in_channels, *OTHER[dims])
        assert_runs_like_eager(graph, names, model, other)
        exact = torch.randn(1, model.in_channels, *_round_up(OTHER[dims], model.divisor))
        assert_runs_like_eager(graph, names, model, exact)
    else:  # the batch axis is dynamic under every policy
        assert_runs_like_eager(graph, names, model, x[:1])


@pytest.mark.parametrize("exporter", list(EXPORTERS))
def test_exported_at_a_divisible_size_runs_at_odd_sizes(build, exporter):
    """Exported where nothing needs padding or cropping, the graph still pads and crops:
    the pad and the crops of every output are in it whatever the export size."""
    model = build("unet", 2, "pad")  # with deep supervision: full and half resolution
    x = torch.randn(1, 1, 48, 72)
    graph, names = export(model, x, exporter, dynamic_spatial=True)
    assert names == ["y0", "y1"]
    for size in [(48, 72), (45, 71), (33, 50)]:
        assert_runs_like_eager(graph, names, model, torch.randn(2, 1, *size))


@pytest.mark.parametrize("ds_mode", ["accurate", "fast"])
def test_unet_plus_plus_deep_supervision_modes(build, ds_mode):
    """The mean of the heads, and the pruned network (the list mode is in the matrix)."""
    exporter = "torchscript"
    model = build("unet_plus_plus", 2, "pad", ds_mode=ds_mode)
    x = torch.randn(1, 1, *SIZE[2])
    graph, names = export(model, x, exporter, dynamic_spatial=True)
    assert names == ["y"]
    assert_runs_like_eager(graph, names, model, x)
    assert_runs_like_eager(graph, names, model, torch.randn(2, 1, *OTHER[2]))


def test_resize_policy_refuses_dynamic_spatial_sizes_in_torch_export(build):
    """Under "resize" the graph is right only for sizes that halve like the export size;
    torch.export with symbolic spatial sizes is refused with a clear message."""
    model = build("unet", 2, "resize")
    x = torch.randn(1, 1, *SIZE[2])
    with pytest.raises(Exception, match="size_policy='resize' cannot be exported with dynamic"):
        export(model, x, "dynamo", dynamic_spatial=True)
    with pytest.raises(ValueError, match="cannot be exported with dynamic spatial sizes"):
        torch.export.export(
            model, (x,), dynamic_shapes=({2: torch.export.Dim("h"), 3: torch.export.Dim("w")},)
        )


def test_error_policy_exports_at_divisible_sizes(build):
    """Like "resize" at sizes that need nothing: static spatial axes, dynamic batch."""
    model = build("ag_res_unet", 3, "error")
    x = torch.randn(2, 1, 8, 12, 16)
    graph, names = export(model, x, "torchscript", dynamic_spatial=False)
    assert_runs_like_eager(graph, names, model, x)
    assert_runs_like_eager(graph, names, model, x[:1])
