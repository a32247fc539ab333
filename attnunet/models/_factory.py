"""Building a registered model by name, with its keywords checked first."""

from __future__ import annotations

import copy
import difflib
import inspect
from typing import Any

from torch import nn

from attnunet.models._config import MODEL_KEY
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


def create_model(name: str | None = None, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name``.

    For a preset, ``kwargs`` override the preset's values. The name may come from a config
    instead, as its ``model`` key: ``create_model(**model.config)`` (or
    ``create_model(name, **model.config)``) rebuilds any model of the zoo with the same
    architecture, and so does ``create_model(**hparams)`` with the hyper-parameters that
    Lightning saved from a config.

    Args:
        name: a registry name (:func:`~attnunet.list_models`); may be left out when
            ``kwargs`` hold it as ``model``.
        **kwargs: constructor keywords of the model; ``model``, if given, must name
            ``name`` or a model of the same class (``create_model("unet_krd",
            **model.config)`` works: the config names the class ``"unet"`` and gives every
            keyword).

    Raises:
        ValueError: unknown name (close matches are suggested), no name at all, ``name``
            and ``model`` naming two models, or invalid values.
        TypeError: unknown keyword (the closest valid keyword is suggested).

    Examples:
        >>> model = create_model("ag_res_unet", spatial_dims=3, channels=(4, 8, 16))
        >>> type(model).__name__
        'AgResUNet'
        >>> type(create_model(**model.config)).__name__
        'AgResUNet'
    """
    info = model_info(_model_name(name, kwargs.pop(MODEL_KEY, None)))
    _check_kwargs(info, kwargs)
    return info.builder(**kwargs)


def _model_name(name: str | None, from_config: object) -> str:
    """The name to build: ``name``, or the config's ``model`` entry when ``name`` is None;
    both must agree when both are given."""
    if name is None:
        if from_config is None:
            raise ValueError(
                "create_model needs a model name: create_model('unet', ...), or "
                "create_model(**config) with a config that holds 'model' (as model.config "
                "does); attnunet.list_models() lists the names"
            )
        if not isinstance(from_config, str):
            raise ValueError(f"model must be a registry name (a string), got {from_config!r}")
        return from_config
    if from_config is not None and from_config != name and not _same_class(name, from_config):
        raise ValueError(
            f"create_model got the name {name!r} and a config naming the model "
            f"{from_config!r} (its 'model' entry): they must agree. create_model(**config) "
            f"builds {from_config!r}; to build {name!r} from it, drop the config's 'model' entry"
        )
    return name


def _same_class(name: str, other: object) -> bool:
    """Whether the registry names ``name`` and ``other`` build one class (a preset such as
    ``"unet_krd"`` and its class's name ``"unet"``: a config of the class, with every
    keyword written out, overrides all of the preset's defaults)."""
    try:
        return isinstance(other, str) and (
            model_info(name).model_class is model_info(other).model_class
        )
    except ValueError:
        return False


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
