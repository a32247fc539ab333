"""The model registry: every model and preset under one snake_case name.

``@register_model`` adds a class or a builder function; :func:`list_models` lists names by
pattern and dimensionality; :func:`model_info` returns what is known about an entry. Building
by name is :mod:`attnunet.models._factory`'s job. The model modules register themselves when
:mod:`attnunet.models` is imported, and importing this module imports that package first, so
a lookup always sees the whole zoo and a user's name that clashes with the zoo's is caught.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

__all__ = [
    "ModelInfo",
    "list_models",
    "model_info",
    "register_model",
    "registered_name",
    "unregister_model",
]

T = TypeVar("T", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one entry.

    Attributes:
        name: registry key.
        builder: the class or function that builds the model.
        model_class: the class the builder returns (its constructor's keywords are the
            keywords :func:`create_model` accepts).
        spatial_dims: dimensionalities the model supports.
        paper: citation of the source study, or ``""``.
        description: one line.
        defaults: keyword values a preset fixes (empty for plain models).
    """

    name: str
    builder: Callable[..., nn.Module]
    model_class: type[nn.Module]
    spatial_dims: tuple[int, ...]
    paper: str = ""
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def is_preset(self) -> bool:
        """True for a named, paper-faithful configuration of another model."""
        return bool(self.defaults)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    model_class: type[nn.Module] | None = None,
    spatial_dims: Iterable[int] = (2, 3),
    paper: str = "",
    description: str = "",
    defaults: dict[str, Any] | None = None,
) -> Callable[[T], T]:
    """Decorator that registers a model class or builder under ``name``.

    Args:
        name: snake_case key, unique.
        model_class: the class a builder function returns (defaults to the decorated
            object when that is a class).
        spatial_dims: supported dimensionalities.
        paper: citation.
        description: one line for listings.
        defaults: for a preset, the keyword values it fixes.

    Raises:
        ValueError: if ``name`` is already registered or is not snake_case.

    Examples:
        >>> from torch import nn
        >>> @register_model("tiny_identity_example", model_class=nn.Identity)
        ... def tiny_identity_example(**kw):
        ...     return nn.Identity()
        >>> "tiny_identity_example" in list_models()
        True
        >>> _ = unregister_model("tiny_identity_example")
    """
    if not name or name != name.lower() or not name.replace("_", "").isalnum():
        raise ValueError(f"model names are snake_case ([a-z0-9_]), got {name!r}")

    def decorator(obj: T) -> T:
        if name in _REGISTRY:
            raise ValueError(
                f"a model named {name!r} is already registered "
                f"(by {_REGISTRY[name].builder.__module__}.{_REGISTRY[name].builder.__qualname__})"
            )
        cls = model_class if model_class is not None else obj
        if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
            raise TypeError(f"register_model({name!r}) needs model_class for a builder function")
        _REGISTRY[name] = ModelInfo(
            name=name,
            builder=obj,
            model_class=cls,
            spatial_dims=tuple(spatial_dims),
            paper=paper,
            description=description,
            defaults=dict(defaults or {}),
        )
        return obj

    return decorator


def unregister_model(name: str) -> ModelInfo:
    """Remove ``name`` from the registry and return its entry (for tests and plugins)."""
    return _REGISTRY.pop(name)


def _unknown_name(name: str) -> ValueError:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"Unknown model {name!r}.{hint} See attnunet.list_models() for all {len(_REGISTRY)} names."
    )


def model_info(name: str) -> ModelInfo:
    """Return the :class:`ModelInfo` of ``name``.

    Raises:
        ValueError: for an unknown name, with close matches.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise _unknown_name(name) from None


def registered_name(cls: type) -> str | None:
    """The registry name of exactly the class ``cls``, or ``None`` when it has none.

    The entry that *is* the class (``@register_model`` above its definition) wins; else the
    first (by name) builder function registered with ``model_class=cls`` that is not a
    preset. Presets, base classes and subclasses do not count: a subclass of a registered
    model that is not registered itself has no name.

    Examples:
        >>> from attnunet import AgResUNet, UNetSkeleton
        >>> registered_name(AgResUNet), registered_name(UNetSkeleton)
        ('ag_res_unet', None)
    """
    plain = sorted(
        key for key, info in _REGISTRY.items() if info.model_class is cls and not info.is_preset
    )
    direct = [key for key in plain if _REGISTRY[key].builder is cls]
    found = direct or plain
    return found[0] if found else None


def list_models(
    pattern: str = "*", spatial_dims: int | None = None, presets: bool = True
) -> list[str]:
    """Sorted registry names matching a shell-style ``pattern``.

    Args:
        pattern: e.g. ``"*unet*"``; matching is case-insensitive.
        spatial_dims: keep only models that support this dimensionality.
        presets: include paper presets (``False`` lists only the configurable models).

    Examples:
        >>> "ag_res_unet" in list_models("ag_*", spatial_dims=3)
        True
    """
    names = []
    for key, info in _REGISTRY.items():
        if not fnmatch.fnmatch(key, pattern.lower()):
            continue
        if spatial_dims is not None and spatial_dims not in info.spatial_dims:
            continue
        if not presets and info.is_preset:
            continue
        names.append(key)
    return sorted(names)
