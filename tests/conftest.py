"""Shared test configuration: markers, the tiny-model table and shared fixtures.

``-m export`` (TorchScript, torch.export and ONNX), ``-m compile`` (torch.compile),
``-m cuda`` (tests that need a CUDA device; skipped without one) and ``-m slow`` (declared
in pyproject.toml) can be combined, e.g. ``python -m pytest -m "not slow and not export"``
for a quick local run. The default run selects everything.

``TINY_KWARGS`` holds, for every registered model, the keywords that build it small; the
model zoo tester (``tests/test_zoo.py``) runs every registered model through it, so a model
registered without an entry here fails there with a message saying to add one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from _reference import TINY_CHANNELS

_BY_FILE = {
    "test_export.py": "export",
    "test_onnx.py": "export",
    "test_compile.py": "compile",
}

DATA = Path(__file__).parent / "data"

_SMALL_UNET = {"channels": TINY_CHANNELS}
_SMALL_RAUNET = {"encoder": "resnet18"}  # no weights: pretrained is False by default
# registry name -> keywords that make the model small (the tests add spatial_dims and,
# where they need them, in_channels and num_classes); presets are listed too, since each
# preset fixes other choices of its class
TINY_KWARGS: dict[str, dict[str, Any]] = {
    "ag_res_unet": _SMALL_UNET,
    "ag_res_unet_krd": _SMALL_UNET,
    "ag_unet": _SMALL_UNET,
    "ag_unet_krd": _SMALL_UNET,
    "attention_unet": _SMALL_UNET,
    "attention_unet_oktay": _SMALL_UNET,
    "attention_unet_oktay_1024": _SMALL_UNET,
    "attention_unet_oktay_conv_mapped": _SMALL_UNET,
    "attention_unet_oktay_single": _SMALL_UNET,
    "attention_unet_plus_plus": _SMALL_UNET,
    "raunet": _SMALL_RAUNET,
    "raunet_ni": _SMALL_RAUNET,
    "res_unet": _SMALL_UNET,
    "res_unet_krd": _SMALL_UNET,
    "unet": _SMALL_UNET,
    "unet_krd": _SMALL_UNET,
    "unet_plus_plus": _SMALL_UNET,
}


def tiny_model_kwargs(name: str, spatial_dims: int, **overrides: Any) -> dict[str, Any]:
    """Keywords of ``create_model`` that build the registered model ``name`` small.

    Args:
        name: a registry name.
        spatial_dims: the dimensionality to build.
        **overrides: further keywords (they win over the table's).

    Returns:
        ``{"spatial_dims": spatial_dims, **TINY_KWARGS[name], **overrides}``.

    Raises:
        pytest.fail.Exception: ``name`` has no entry in ``TINY_KWARGS`` (the message says
            where to add it); a missing model fails, it is never skipped.
    """
    if name not in TINY_KWARGS:
        pytest.fail(
            f"the registered model {name!r} has no entry in TINY_KWARGS (tests/conftest.py): "
            f"add one with the keywords that build it small, e.g. "
            f"{name!r}: {{'channels': (4, 8, 16)}}, so that the model zoo tester "
            f"(tests/test_zoo.py) can run it",
            pytrace=False,
        )
    return {"spatial_dims": spatial_dims, **TINY_KWARGS[name], **overrides}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "export: TorchScript, torch.export and ONNX export")
    config.addinivalue_line("markers", "compile: torch.compile")
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped without one)")


def _needs_cuda(item: pytest.Item) -> bool:
    for mark in item.iter_markers("skipif"):
        if "cuda" in str(mark.kwargs.get("reason", "")).lower():
            return True
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    return any(str(value) == "cuda" for value in callspec.params.values())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = _BY_FILE.get(item.path.name)
        if group is not None:
            item.add_marker(getattr(pytest.mark, group))
        if _needs_cuda(item):
            item.add_marker(pytest.mark.cuda)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def tiny_kwargs() -> Callable[..., dict[str, Any]]:
    """:func:`tiny_model_kwargs`: ``tiny_kwargs(name, spatial_dims, **overrides)``."""
    return tiny_model_kwargs


@pytest.fixture
def tiny_table() -> dict[str, dict[str, Any]]:
    """A copy of ``TINY_KWARGS`` (registry name -> keywords that build the model small)."""
    return {name: dict(kwargs) for name, kwargs in TINY_KWARGS.items()}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of the tests' stored data (golden outputs, key snapshots)."""
    return DATA


@pytest.fixture(scope="session")
def state_dict_keys() -> dict[str, list[str]]:
    """The stored state-dict keys of every model family (``data/state_dict_keys.json``):
    state-dict keys are public API, changed only with a CHANGELOG entry."""
    return json.loads((DATA / "state_dict_keys.json").read_text(encoding="utf-8"))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for the test: results do not depend on the machine's core count,
    and tiny models do not slow down tenfold when another process keeps a core busy."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
