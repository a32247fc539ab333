"""Shared test configuration: markers that select groups of tests across files.

``-m export`` (TorchScript, torch.export and ONNX), ``-m compile`` (torch.compile),
``-m cuda`` (tests that need a CUDA device; skipped without one) and ``-m slow`` (declared
in pyproject.toml) can be combined, e.g. ``python -m pytest -m "not slow and not export"``
for a quick local run. The default run selects everything.
"""

from __future__ import annotations

import pytest

_BY_FILE = {
    "test_export.py": "export",
    "test_onnx.py": "export",
    "test_compile.py": "compile",
}


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
