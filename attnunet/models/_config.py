"""``model.config`` in JSON types, with the registry name, and the ``model=`` keyword.

A model's config is the dict of its constructor keywords. Written by Lightning's
``save_hyperparameters`` into ``hparams.yaml``, by :func:`json.dump`, or by
:func:`~attnunet.models.save_pretrained`, it must hold only what JSON and ``yaml.safe_load``
read back: so :func:`json_config` turns every tuple into a list (the spec parsers accept
``[name, kwargs]`` as well as ``(name, kwargs)``), and puts first, under ``"model"``, the
name the model's class is registered under. ``create_model(**model.config)`` then builds
the same model from the config alone, and every registered class accepts that ``model=``
keyword too (:func:`accept_model_name`), so ``type(model)(**model.config)`` keeps working.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable
from typing import Any

from attnunet.models._registry import registered_name

__all__ = ["MODEL_KEY", "accept_model_name", "check_model_name", "json_config", "json_types"]

MODEL_KEY = "model"
"""The config key that holds the registry name."""

_TAKES_MODEL_NAME = "_attnunet_takes_model_name"


def json_types(value: Any) -> Any:
    """``value`` with every tuple turned into a list, inside lists and dict values too.

    Strings, numbers, booleans, ``None`` and dict keys are unchanged, and so is anything
    JSON cannot hold (a callable spec, say): such a config still rebuilds the model in
    Python, and :func:`~attnunet.models.save_pretrained` names the value it cannot write.

    Examples:
        >>> json_types({"norm": ("group", {"num_groups": 8}), "channels": (4, 8), "x": None})
        {'norm': ['group', {'num_groups': 8}], 'channels': [4, 8], 'x': None}
    """
    if isinstance(value, (list, tuple)):
        return [json_types(item) for item in value]
    if isinstance(value, dict):
        return {key: json_types(item) for key, item in value.items()}
    return value


def json_config(cls: type, config: dict[str, Any]) -> dict[str, Any]:
    """The ``config`` of a ``cls`` model: a deep copy in JSON types (:func:`json_types`),
    led by ``"model"``, the registry name of exactly ``cls`` (left out when ``cls`` is not
    registered itself, as for :class:`~attnunet.UNetSkeleton` or a subclass of yours).

    Examples:
        >>> from attnunet import UNet
        >>> json_config(UNet, {"channels": (4, 8)})
        {'model': 'unet', 'channels': [4, 8]}
    """
    body: dict[str, Any] = json_types(copy.deepcopy(config))
    name = registered_name(cls)
    return body if name is None else {MODEL_KEY: name, **body}


def check_model_name(cls: type, model: object) -> None:
    """Accept ``model`` only when it is the registry name of exactly ``cls``.

    Raises:
        ValueError: ``model`` names another model (or ``cls`` is not registered): the
            message names both and says that ``attnunet.create_model(**config)`` builds
            the model the config names.

    Examples:
        >>> from attnunet import UNet
        >>> check_model_name(UNet, "unet")
        >>> check_model_name(UNet, "ag_unet")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: building UNet (registered as 'unet'), but the config names ... 'ag_unet'...
    """
    name = registered_name(cls)
    if model == name:
        return
    registered = f"registered as {name!r}" if name else "not in the model registry"
    raise ValueError(
        f"building {cls.__name__} ({registered}), but the config names the model {model!r}: "
        f"build it with attnunet.create_model(**config), which picks the class from that "
        f"name, or leave out {MODEL_KEY}="
    )


def accept_model_name(cls: type) -> None:
    """Let the constructor that ``cls`` defines itself take the ``model=`` key of a config.

    The constructor is wrapped (:func:`functools.wraps`, so :func:`inspect.signature` and
    the config capture still see its own parameters): a ``model`` keyword is checked with
    :func:`check_model_name` against the class being built and dropped. A class without
    its own ``__init__`` inherits a wrapped one; nested ``super().__init__`` calls never
    see the keyword. A constructor with a parameter named ``model`` of its own is left
    as it is.
    """
    init: Callable[..., None] | None = cls.__dict__.get("__init__")
    if init is None or getattr(init, _TAKES_MODEL_NAME, False):
        return
    if MODEL_KEY in inspect.signature(init).parameters:
        return  # a class of yours with a parameter of that name keeps its meaning

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if MODEL_KEY in kwargs:
            check_model_name(type(self), kwargs.pop(MODEL_KEY))
        init(self, *args, **kwargs)

    setattr(__init__, _TAKES_MODEL_NAME, True)
    setattr(cls, "__init__", __init__)  # noqa: B010 (mypy refuses assigning a method)
