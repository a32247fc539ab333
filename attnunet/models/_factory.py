"""Building a registered model by name, with its keywords checked first."""

from __future__ import annotations

import copy
import difflib
import inspect
from typing import Any

from torch import nn

from attnunet.models._registry import ModelInfo, model_info

__all__ = ["accepted_kwargs", "build_preset", "create_model"]


def accepted_kwargs(cls: type) -> list[str] | None:
    """Keywords a model class accepts, following ``**kwargs`` up its base classes.

    Returns ``None`` when some constructor takes ``**kwargs`` that no base class names.
    Keywords a family member fixes (its ``_fixed`` mapping) are left out.
    """
    names: list[str] = []
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names += [n for n, p in params.items() if n != "self" and p.kind not in skip]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            fixed = getattr(cls, "_fixed", {})
            return [n for n in dict.fromkeys(names) if n not in fixed]
    return None


def _check_kwargs(info: ModelInfo, kwargs: dict[str, Any]) -> None:
    accepted = accepted_kwargs(info.model_class)
    if accepted is None:
        return
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise TypeError(
                f"{info.name} got an unexpected argument {key!r}.{hint} "
                f"Accepted: {', '.join(accepted)}."
            )


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name``.

    For a preset, ``kwargs`` override the preset's values. ``create_model(name,
    **model.config)`` rebuilds any model of the zoo with the same architecture.

    Raises:
        ValueError: unknown name (close matches are suggested) or invalid values.
        TypeError: unknown keyword (the closest valid keyword is suggested).

    Examples:
        >>> model = create_model("ag_res_unet", spatial_dims=3, channels=(4, 8, 16))
        >>> type(model).__name__
        'AgResUNet'
    """
    info = model_info(name)
    _check_kwargs(info, kwargs)
    return info.builder(**kwargs)


def build_preset(name: str, overrides: dict[str, Any]) -> Any:
    """Build the preset registered as ``name``: its model class with the registered
    defaults, which ``overrides`` replace. A preset's builder function is this call, so
    its values are written once, where it is registered.

    Examples:
        >>> build_preset("unet_krd", {"in_channels": 1}).config["in_channels"]
        1
    """
    info = model_info(name)
    # a copy, so no list of the registered defaults is shared with the model built
    return info.model_class(**{**copy.deepcopy(info.defaults), **overrides})
