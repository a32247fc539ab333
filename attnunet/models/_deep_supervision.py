"""Deep supervision as a run-time switch, shared by the U-Net skeleton and UNet++.

A model built with its deep-supervision heads (``deep_supervision=True``, or
``ds_heads=True``) holds them whatever the switch says, so one state dict serves
training (a list of logits) and inference (a tensor): ``model.deep_supervision = False``
or ``model.set_deep_supervision(False)`` changes only what ``forward`` returns. nnU-Net's
trainer flips the switch the same way between training and its final validation.
"""

from typing import TypeVar

from torch import nn

__all__ = ["DeepSupervisionSwitch", "ds_heads_config"]

_Model = TypeVar("_Model", bound="DeepSupervisionSwitch")


def ds_heads_config(heads: bool, deep_supervision: bool, ds_fusion: bool = False) -> bool | None:
    """The ``ds_heads`` a config records: ``None`` where the other flags imply the heads
    (so an override of ``deep_supervision`` rebuilds them), else the bool.

    Examples:
        >>> ds_heads_config(True, True), ds_heads_config(True, False), ds_heads_config(False, False)
        (None, True, None)
    """
    return None if heads == bool(deep_supervision or ds_fusion) else heads


class DeepSupervisionSwitch(nn.Module):
    """``deep_supervision`` (a settable property) and :meth:`set_deep_supervision`.

    Subclasses set ``_deep_supervision`` and ``_ds_heads`` in ``__init__`` and may
    override :meth:`_deep_supervision_changed` to update what depends on the switch.
    The property is not compiled by TorchScript (the base class lists it among its
    unused properties); a scripted model keeps the setting it had when it was scripted.
    """

    _deep_supervision: bool
    _ds_heads: bool

    @property
    def deep_supervision(self) -> bool:
        """Whether ``forward`` returns the deep-supervision list (settable)."""
        return self._deep_supervision

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        self.set_deep_supervision(enabled)

    @property
    def ds_heads(self) -> bool:
        """Whether the deep-supervision heads exist (fixed when the model is built)."""
        return self._ds_heads

    def set_deep_supervision(self: _Model, enabled: bool = True) -> _Model:
        """Switch deep supervision on (or off) and return the model itself.

        Only the return type of ``forward`` changes (the list of logits, full resolution
        first, or the tensor alone); parameters and the state dict stay as they are, and
        ``model.config["deep_supervision"]`` follows the switch, so a saved model comes
        back with it.

        Raises:
            TypeError: ``enabled`` is not ``True`` or ``False``.
            ValueError: switching on a model built without its heads.

        Examples:
            >>> import torch
            >>> from attnunet import UNet
            >>> model = UNet(2, 1, 2, channels=(4, 8, 16), deep_supervision=True)
            >>> keys = list(model.state_dict())
            >>> model.set_deep_supervision(False)(torch.randn(1, 1, 16, 16)).shape
            torch.Size([1, 2, 16, 16])
            >>> list(model.state_dict()) == keys
            True
        """
        if not isinstance(enabled, bool):
            raise TypeError(f"deep_supervision must be True or False, got {enabled!r}")
        flag = enabled
        if flag and not self._ds_heads:
            raise ValueError(
                f"this {type(self).__name__} was built without deep-supervision heads, so "
                f"deep supervision cannot be switched on: build it with "
                f"deep_supervision=True (or ds_heads=True) to train with it, or with "
                f"ds_heads=True to switch it on and off at run time"
            )
        self._deep_supervision = flag
        config = getattr(self, "_config", None)
        if isinstance(config, dict) and "deep_supervision" in config:
            config["deep_supervision"] = flag
            fusion = bool(getattr(self, "ds_fusion", False))
            config["ds_heads"] = ds_heads_config(self._ds_heads, flag, fusion)
        self._deep_supervision_changed()
        return self

    def _deep_supervision_changed(self) -> None:
        """Hook: called after the switch changed (nothing by default)."""
