"""attnunet.training.calibration: exact batch-norm statistics, restored state, the pitfall fixed."""

import copy

import pytest
import torch
from torch import nn

from attnunet import AgResUNet, UNet
from attnunet.training.calibration import batchnorm_layers, recalibrate_batchnorm


def make_data(dims: int, n: int = 6, seed: int = 0) -> torch.Tensor:
    """Images whose intensity offset and scale differ, so pooled and per-batch statistics
    differ (as between patients or probe settings)."""
    g = torch.Generator().manual_seed(seed)
    size = (16, 20) if dims == 2 else (8, 8, 12)
    x = torch.randn(n, 1, *size, generator=g)
    offsets = torch.linspace(-2.0, 3.0, n).view(n, *[1] * (dims + 1))
    scales = torch.linspace(0.5, 2.5, n).view(n, *[1] * (dims + 1))
    return x * scales + offsets


def reference_statistics(model: nn.Module, batches) -> dict[str, tuple[torch.Tensor, ...]]:
    """Per-layer mean and unbiased variance of each batch-norm input, from a separate
    pass (batch norm in train mode, the rest in eval mode) that concatenates the inputs."""
    probe = copy.deepcopy(model).eval()
    inputs: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, bn in batchnorm_layers(probe):
        bn.train()
        inputs[name] = []

        def keep(_, args, name=name):
            inputs[name].append(args[0].detach().double())

        handles.append(bn.register_forward_pre_hook(keep))
    with torch.no_grad():
        for batch in batches:
            probe(batch)
    for handle in handles:
        handle.remove()
    stats = {}
    for name, chunks in inputs.items():
        x = torch.cat(chunks).transpose(0, 1).reshape(chunks[0].shape[1], -1)
        stats[name] = (x.mean(1), x.var(1, correction=1), torch.tensor(len(chunks)))
    return stats


def prepare(model: nn.Module) -> dict[str, object]:
    """Give the layers odd momenta and the model mixed modes; return what must come back."""
    for i, (_, bn) in enumerate(batchnorm_layers(model)):
        bn.momentum = None if i == 0 else 0.05 + 0.01 * i
    model.train()
    first_block = next(m for m in model.modules() if isinstance(m, nn.Sequential | nn.ModuleList))
    first_block.eval()
    return {
        "momentum": [bn.momentum for _, bn in batchnorm_layers(model)],
        "modes": [m.training for m in model.modules()],
    }


MODELS = {
    "unet2d": lambda: UNet(2, 1, 2, channels=(4, 8, 16), dropout=0.3),
    "ag_res_unet3d": lambda: AgResUNet(3, 1, 2, channels=(4, 8, 16)),
}


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("batch_size", [1, 2])
def test_statistics_are_exact_and_state_is_restored(model_name, batch_size):
    torch.manual_seed(0)
    model = MODELS[model_name]()
    dims = 2 if model_name.endswith("2d") else 3
    data = make_data(dims)
    batches = list(data.split(batch_size))
    expected = prepare(model)
    reference = reference_statistics(model, batches)

    used = recalibrate_batchnorm(model, batches)

    assert used == len(batches)
    layers = batchnorm_layers(model)
    assert len(layers) == len(reference) > 3
    for name, bn in layers:
        mean, var, calls = reference[name]
        torch.testing.assert_close(bn.running_mean.double(), mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bn.running_var.double(), var, rtol=1e-5, atol=1e-5)
        assert int(bn.num_batches_tracked) == int(calls)
    assert [bn.momentum for _, bn in layers] == expected["momentum"]
    assert [m.training for m in model.modules()] == expected["modes"]


def test_pooled_statistics_differ_from_a_plain_cumulative_average():
    """The reference above has teeth: PyTorch's momentum=None average of per-batch
    variances is far from the pooled variance when batch means differ."""
    model = UNet(2, 1, 1, channels=(4, 8))
    batches = list(make_data(2).split(1))
    name, bn = batchnorm_layers(model)[0]
    reference = reference_statistics(model, batches)[name]
    naive = copy.deepcopy(model).train()
    for _, layer in batchnorm_layers(naive):
        layer.reset_running_stats()
        layer.momentum = None
    with torch.no_grad():
        for batch in batches:
            naive(batch)
    naive_var = batchnorm_layers(naive)[0][1].running_var.double()
    assert (naive_var - reference[1]).abs().max() > 0.1
    recalibrate_batchnorm(model, batches)
    torch.testing.assert_close(bn.running_var.double(), reference[1], rtol=1e-5, atol=1e-5)


def test_dropout_is_off_during_the_pass():
    torch.manual_seed(1)
    model = UNet(2, 1, 1, channels=(4, 8, 16), dropout=0.5)
    batches = list(make_data(2).split(2))
    recalibrate_batchnorm(model, batches)
    first = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(99)  # another dropout mask would change the statistics if dropout ran
    recalibrate_batchnorm(model, batches)
    for key, value in model.state_dict().items():
        assert torch.equal(value, first[key]), key


def test_eval_outputs_recover_from_momentum_lagged_statistics():
    """The small-batch pitfall: statistics that follow the last image make eval-mode
    predictions drift from train-mode ones; recalibration brings them back."""
    torch.manual_seed(2)
    model = UNet(2, 1, 1, channels=(4, 8, 16))
    data = make_data(2, n=8, seed=3)
    for _, bn in batchnorm_layers(model):  # corrupt, then lag: batches of one, momentum 0.9
        bn.running_mean.uniform_(-5, 5)
        bn.running_var.uniform_(0.1, 10)
        bn.momentum = 0.9
    model.train()
    with torch.no_grad():
        for image in data.split(1):
            model(image)
        train_output = copy.deepcopy(model).train()(data)  # batch statistics of all data

    def eval_error() -> float:
        with torch.no_grad():
            return float((model.eval()(data) - train_output).abs().mean())

    before = eval_error()
    assert recalibrate_batchnorm(model, data.split(2)) == 4
    after_pairs = eval_error()
    recalibrate_batchnorm(model, [data])
    after_whole = eval_error()
    assert after_pairs < 0.2 * before  # measured: about 0.1
    assert after_whole < 0.01 * before  # measured: about 0.003 (biased vs unbiased variance)
    assert all(bn.momentum == 0.9 for _, bn in batchnorm_layers(model))


# ------------------------------------------------------------------------- batch formats
def test_tuples_dicts_num_batches_device_and_forward():
    model = UNet(2, 1, 1, channels=(4, 8))
    data = make_data(2)
    reference = reference_statistics(model, list(data.split(2)))
    name, bn = batchnorm_layers(model)[0]

    def check():
        torch.testing.assert_close(bn.running_mean.double(), reference[name][0], atol=1e-5, rtol=0)

    pairs = [(x, torch.zeros(len(x))) for x in data.split(2)]
    assert recalibrate_batchnorm(model, pairs, device="cpu") == 3
    check()
    dicts = iter([{"image": x, "label": 0} for x in data.split(2)] + [{"image": data * 100}])
    assert recalibrate_batchnorm(model, dicts, num_batches=3) == 3
    check()
    assert next(dicts)["image"].abs().max() > 50  # the 4th batch was never taken

    calls = []

    def run(m, batch):
        calls.append(batch["x"].shape[0])
        m(batch["x"])

    assert recalibrate_batchnorm(model, [{"x": x} for x in data.split(2)], forward=run) == 3
    assert calls == [2, 2, 2]
    check()

    with pytest.raises(ValueError, match="'image'"):
        recalibrate_batchnorm(model, [{"x": data}])
    with pytest.raises(ValueError, match="num_batches"):
        recalibrate_batchnorm(model, [data], num_batches=0)


def test_batchnorm1d_and_syncbatchnorm():
    torch.manual_seed(4)
    mlp = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    data = torch.randn(12, 3) * 3 + 1
    reference = reference_statistics(mlp, list(data.split(4)))
    recalibrate_batchnorm(mlp, data.split(4))
    torch.testing.assert_close(mlp[1].running_var.double(), reference["1"][1], rtol=1e-5, atol=1e-5)

    model = nn.SyncBatchNorm.convert_sync_batchnorm(UNet(2, 1, 1, channels=(4, 8)))
    assert any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    batches = list(make_data(2).split(3))
    reference = reference_statistics(model, batches)
    recalibrate_batchnorm(model, batches)
    for name, bn in batchnorm_layers(model):
        torch.testing.assert_close(
            bn.running_mean.double(), reference[name][0], rtol=1e-5, atol=1e-5
        )


# ------------------------------------------------------------------------------ edge cases
def test_model_without_batch_norm_warns_and_returns_zero():
    model = UNet(2, 1, 1, channels=(4, 8), norm="instance")
    with pytest.warns(UserWarning, match="no batch-norm layer"):
        assert recalibrate_batchnorm(model, [torch.randn(1, 1, 8, 8)]) == 0


def test_empty_batches_and_errors_leave_the_model_untouched():
    model = UNet(2, 1, 1, channels=(4, 8))
    data = make_data(2)
    with torch.no_grad():
        model.train()(data)
    expected = prepare(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def unchanged():
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key]), key
        assert [bn.momentum for _, bn in batchnorm_layers(model)] == expected["momentum"]
        assert [m.training for m in model.modules()] == expected["modes"]

    with pytest.raises(ValueError, match="no batches"):
        recalibrate_batchnorm(model, [])
    unchanged()
    bad = [data[:2], torch.randn(2, 3, 16, 20)]  # the second has the wrong channel count
    with pytest.raises(ValueError, match="input channel"):
        recalibrate_batchnorm(model, bad)
    unchanged()


class WithSpareNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.spare = nn.BatchNorm2d(2)  # never called in forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def test_unreached_layers_keep_their_statistics():
    model = WithSpareNorm()
    model.spare.running_mean.fill_(7.0)
    with pytest.warns(UserWarning, match=r"1 batch-norm layer\(s\) got no input.*spare"):
        assert recalibrate_batchnorm(model, [torch.randn(2, 1, 6, 6)]) == 1
    assert torch.equal(model.spare.running_mean, torch.full((2,), 7.0))
    assert int(model.spare.num_batches_tracked) == 0
    assert int(model.bn.num_batches_tracked) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_with_cpu_batches():
    model = UNet(2, 1, 1, channels=(4, 8))
    batches = list(make_data(2).split(2))
    reference = reference_statistics(model, batches)
    model.cuda()
    assert recalibrate_batchnorm(model, batches) == len(batches)  # moved to the model's device
    for name, bn in batchnorm_layers(model):  # loose: cuDNN may run convolutions in TF32
        assert bn.running_mean.is_cuda
        torch.testing.assert_close(
            bn.running_var.double().cpu(), reference[name][1], rtol=1e-2, atol=1e-3
        )
