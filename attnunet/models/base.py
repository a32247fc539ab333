"""The base class every attnunet model shares."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

__all__ = ["SegmentationModel"]


class SegmentationModel(nn.Module):
    """Base class: a model that remembers the keyword arguments that built it.

    ``model.config`` is a dict of constructor keywords (JSON-serialisable whenever the
    norm, activation, block and gate specs are strings or ``(name, kwargs)`` pairs), so
    ``type(model)(**model.config)`` and ``create_model(name, **model.config)`` rebuild
    the same architecture.
    """

    __jit_ignored_attributes__ = ("_config",)
    __jit_unused_properties__ = ("config",)

    def __init__(self) -> None:
        super().__init__()
        self._config: dict[str, Any] = {}

    @property
    def config(self) -> dict[str, Any]:
        """A copy of the constructor keywords of this model."""
        return copy.deepcopy(self._config)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of (trainable) parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
