"""Save a model to a folder and load it back, offline.

:func:`save_pretrained` writes two files into a folder:

``config.json``
    what is needed to rebuild the architecture: the registry name of the model, its
    constructor keywords (``model.config``, which names the model again; files written
    before it did still load), the attnunet and torch versions that wrote
    it, and any JSON-serialisable ``metadata`` of yours.
``model.safetensors``
    the state dict (parameters and buffers, e.g. batch-norm running statistics) in the
    `safetensors` format, which holds only tensors and so cannot run code when read.

:func:`from_pretrained` rebuilds the model with :func:`~attnunet.create_model`, loads
the weights and returns it in eval mode. Nothing here touches the network: a folder is
all there is (no hub downloads), and encoders that could fetch pretrained weights (such as
:class:`~attnunet.RAUNet`'s) are always rebuilt with ``pretrained=False``, since the saved
weights replace them anyway.

Examples:
    >>> import tempfile, torch
    >>> from attnunet import UNet
    >>> model = UNet(2, 1, 2, channels=(4, 8)).eval()
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = save_pretrained(model, folder, metadata={"epoch": 12})
    ...     loaded = from_pretrained(folder)
    >>> x = torch.randn(1, 1, 16, 16)
    >>> bool(torch.equal(loaded(x), model(x)))
    True
"""

from __future__ import annotations

import difflib
import json
import os
import tempfile
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnunet.models._factory import create_model
from attnunet.models._registry import list_models, model_info, registered_name

__all__ = [
    "CONFIG_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "from_pretrained",
    "save_pretrained",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "attnunet"
FORMAT_VERSION = 1

# keys of the safetensors header metadata (strings only)
_SAVE_ID = "attnunet_save_id"
_ALIASES = "attnunet_aliases"


def _safetensors_torch() -> Any:
    try:
        import safetensors.torch
    except ImportError as error:  # pragma: no cover - timm depends on safetensors
        raise ImportError(
            "saving and loading attnunet models needs the safetensors package: "
            "pip install safetensors"
        ) from error
    return safetensors.torch


# --------------------------------------------------------------------------------- saving
def _registry_name(model: nn.Module) -> str:
    """The registry name of exactly ``type(model)`` (see
    :func:`~attnunet.models._registry.registered_name`: the name ``model.config`` holds)."""
    cls = type(model)
    name = registered_name(cls)
    if name is None:
        presets = [n for n in list_models() if model_info(n).model_class is cls]
        found = f" (only as the preset(s) {', '.join(map(repr, presets))})" if presets else ""
        raise ValueError(
            f"{cls.__module__}.{cls.__qualname__} is not in the model registry{found}, so "
            f"from_pretrained could not rebuild it. Register the class first, e.g. "
            f"@attnunet.register_model('my_model') above its definition, in a module "
            f"that is imported before saving and before loading."
        )
    return name


def _find_unserialisable(value: Any, where: str) -> str | None:
    """The path of the first value in ``value`` that JSON cannot hold, or None."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _find_unserialisable(item, f"{where}[{i}]")
            if found is not None:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} (key {key!r} is not a string)"
            found = _find_unserialisable(item, f"{where}[{key!r}]")
            if found is not None:
                return found
        return None
    return f"{where} = {value!r} ({type(value).__name__})"


def _check_json(value: dict[str, Any], name: str, hint: str) -> None:
    for key, item in value.items():
        found = _find_unserialisable(item, f"{name}[{key!r}]")
        if found is not None:
            raise TypeError(f"{found} cannot be written to {CONFIG_NAME}: {hint}")


def _shareable_state(
    model: nn.Module,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A CPU state dict safetensors accepts, and the names that alias another entry.

    Entries that are the very same tensor (tied weights) are stored once and listed as
    aliases; any other entry sharing memory with another, covering only part of its
    storage, or non-contiguous is copied into its own contiguous tensor.
    """
    state = model.state_dict()
    seen: dict[tuple[Any, ...], str] = {}
    storages: dict[tuple[Any, ...], int] = {}
    for tensor in state.values():
        if tensor.numel():
            key = (tensor.device, tensor.untyped_storage().data_ptr())
            storages[key] = storages.get(key, 0) + 1
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name, tensor in state.items():
        tensor = tensor.detach()
        if tensor.numel():
            identity = (
                tensor.device,
                tensor.data_ptr(),
                tensor.dtype,
                tuple(tensor.shape),
                tuple(tensor.stride()),
            )
            if identity in seen:
                aliases[name] = seen[identity]
                continue
            seen[identity] = name
            storage = tensor.untyped_storage()
            shared = storages[(tensor.device, storage.data_ptr())] > 1
            complete = (
                tensor.data_ptr() == storage.data_ptr()
                and tensor.numel() * tensor.element_size() == storage.nbytes()
            )
            if shared or not complete or not tensor.is_contiguous():
                tensor = tensor.clone(memory_format=torch.contiguous_format)
        tensors[name] = tensor.to("cpu").contiguous()
    return tensors, aliases


def _atomic_write(target: Path, write: Callable[[Path], object]) -> Path:
    """Write into a hidden temporary file next to ``target``; return its path."""
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    temp = Path(name)
    try:
        write(temp)
        with open(temp, "rb") as file:
            os.fsync(file.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def save_pretrained(
    model: nn.Module,
    directory: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` for ``model`` into ``directory``.

    The folder is created if missing. Each file is written to a temporary name and
    renamed into place, so an interrupted save never leaves a half-written file under
    the final name (and the two files carry a common save id, so a pair mixed from two
    saves is refused on loading).

    Args:
        model: a registered attnunet model (any :class:`~attnunet.SegmentationModel`
            whose class is in the registry).
        directory: the folder to write.
        overwrite: replace an existing ``config.json``/``model.safetensors`` (other
            files in the folder are never touched).
        metadata: JSON-serialisable notes kept under ``"metadata"`` in ``config.json``
            (epoch, metrics, data set...).

    Returns:
        The folder, as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: the folder already holds one of the two files and ``overwrite``
            is False.
        ValueError: the model's class is not registered (register it first).
        TypeError: the model has no ``config``, or a config or metadata value cannot be
            written as JSON (the message names it, e.g. a class passed as ``norm``).
    """
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise TypeError(
            f"save_pretrained needs an attnunet model with a `config` dict (a "
            f"SegmentationModel), got {type(model).__name__}"
        )
    name = _registry_name(model)
    _check_json(
        config,
        "config",
        "pass norm, act, block and gate specs as names or (name, kwargs) pairs, "
        "not classes or functions, to save the model",
    )
    extra = dict(metadata or {})
    _check_json(extra, "metadata", "metadata must hold JSON values only")

    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{str(folder)!r} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not overwrite:
        for path in (config_path, weights_path):
            if path.exists():
                raise FileExistsError(
                    f"{str(path)!r} already exists; pass overwrite=True to replace it, or "
                    f"save to another folder"
                )

    import attnunet

    cls = type(model)
    save_id = uuid.uuid4().hex
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": name,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "config": config,
        "attnunet_version": attnunet.__version__,
        "torch_version": torch.__version__,
        "save_id": save_id,
        "metadata": extra,
    }
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    tensors, aliases = _shareable_state(model)
    header = {"format": "pt", _SAVE_ID: save_id, _ALIASES: json.dumps(aliases)}
    st = _safetensors_torch()

    temps: list[Path] = []
    try:
        temps.append(
            _atomic_write(weights_path, lambda p: st.save_file(tensors, str(p), metadata=header))
        )
        temps.append(_atomic_write(config_path, lambda p: p.write_text(text, encoding="utf-8")))
        for temp, final in zip(temps, (weights_path, config_path), strict=True):
            os.replace(temp, final)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    return folder


# -------------------------------------------------------------------------------- loading
def _read_config(folder: Path) -> dict[str, Any]:
    """The checked ``config.json`` document of a folder written by :func:`save_pretrained`."""
    path = folder / CONFIG_NAME
    _check_folder(folder, path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not valid JSON ({error})") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(
            f'{str(path)!r} is not an attnunet config (expected "format": "{FORMAT}"); '
            f"it may belong to another library"
        )
    _check_format_version(document, path)
    if not isinstance(document.get("model"), str):
        raise ValueError(f'{str(path)!r} names no model (its "model" entry is missing)')
    if not isinstance(document.get("config"), dict):
        raise ValueError(f'{str(path)!r} has no "config" mapping of constructor keywords')
    return document


def _check_folder(folder: Path, path: Path) -> None:
    """Refuse a missing folder, a file in its place, or a folder without ``path``."""
    if not folder.exists():
        raise FileNotFoundError(
            f"no folder {str(folder)!r}: pass the folder written by save_pretrained "
            f"(from_pretrained never downloads)"
        )
    if not folder.is_dir():
        raise NotADirectoryError(
            f"{str(folder)!r} is a file: pass the folder written by save_pretrained, which "
            f"holds {CONFIG_NAME} and {WEIGHTS_NAME}"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist: {str(folder)!r} is not a folder written by "
            f"save_pretrained"
        )


def _check_format_version(document: dict[str, Any], path: Path) -> None:
    """Require an integer ``format_version`` from 1 to :data:`FORMAT_VERSION`."""
    version = document.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{str(path)!r} has no valid format_version (got {version!r})")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has format_version {version}, written by a newer attnunet "
            f"({document.get('attnunet_version', '?')}); this attnunet reads version "
            f"{FORMAT_VERSION} and older: upgrade attnunet"
        )
    if version < 1:
        raise ValueError(f"{str(path)!r} has an invalid format_version {version}")


def _read_weights(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist: the folder has a {CONFIG_NAME} but no weights"
        )
    if path.stat().st_size == 0:
        raise ValueError(f"weights file {str(path)!r} is empty")
    st = _safetensors_torch()
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            header = file.metadata() or {}
        tensors: dict[str, torch.Tensor] = st.load_file(str(path), device="cpu")
    except Exception as error:
        raise ValueError(
            f"cannot read weights file {str(path)!r} ({type(error).__name__}: {error}); "
            f"the file is corrupt or truncated: save the model again"
        ) from error
    return tensors, header


def _near(names: list[str], pool: list[str]) -> str:
    """``names[:3]`` with close matches from ``pool`` for the first one."""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    close = difflib.get_close_matches(names[0], pool, n=1) if names else []
    return shown + (f" (closest: {close[0]})" if close else "")


def _mismatch_report(
    model: nn.Module, state: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    shapes = [
        f"{k}: saved {tuple(state[k].shape)}, model {tuple(target[k].shape)}"
        for k in target
        if k in state and state[k].shape != target[k].shape
    ]
    return missing, unexpected, shapes


def from_pretrained(
    directory: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    strict: bool = True,
    expected_class: type[nn.Module] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Rebuild a model saved by :func:`save_pretrained` and load its weights.

    The model is built with ``create_model(name, **{**config, **overrides})`` on the CPU,
    takes the dtype of the saved floating-point weights, gets the weights, moves to
    ``map_location`` and is returned in eval mode. A ``pretrained`` keyword in the config
    is always ``False``, so no encoder weights are ever fetched (the saved ones replace
    them anyway).

    Args:
        directory: the folder written by :func:`save_pretrained`.
        map_location: the device to put the model on.
        strict: require the saved keys to match the model's exactly. With False,
            missing and unexpected keys are reported in a warning; a shape mismatch is
            always an error.
        expected_class: if given, the saved model must be an instance of this class
            (:meth:`SegmentationModel.from_pretrained` passes the class it is called on).
        **overrides: constructor keywords to change, for those that do not alter any
            weight shape (``size_policy``, ``deep_supervision``, ...). Anything else shows
            up as a state-dict mismatch. ``deep_supervision=False`` on a model saved with
            its deep-supervision heads keeps them (``ds_heads=True``) and switches them
            off, as ``from_pretrained(directory).set_deep_supervision(False)`` does.

    Raises:
        FileNotFoundError: the folder, ``config.json`` or ``model.safetensors`` is
            missing.
        ValueError: a corrupt or foreign ``config.json``, a newer format version, an
            unknown model name (close matches are listed), a config whose ``model`` entry
            names another model than the file's, an empty or corrupt weights
            file, files from two different saves, or weights that do not fit.
        TypeError: the model is not an ``expected_class``.
    """
    folder = Path(directory)
    document = _read_config(folder)
    name: str = document["model"]
    _check_registered(name, folder / CONFIG_NAME)
    _check_config_name(document, folder / CONFIG_NAME)
    if expected_class is not None:
        _check_saved_class(folder, name, document.get("class", "?"), expected_class)
    kwargs = _constructor_kwargs(document["config"], overrides)
    state = _saved_state(folder, document)

    model = create_model(name, **kwargs)
    if expected_class is not None and not isinstance(model, expected_class):
        raise TypeError(
            f"{str(folder)!r} builds a {type(model).__name__}, not an instance of "
            f"{expected_class.__name__}"
        )
    floating = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(floating) == 1:
        model.to(dtype=floating.pop())
    _check_fit(model, state, folder, name, overrides, strict)
    model.load_state_dict(state, strict=False)
    return model.to(map_location).eval()


def _check_registered(name: str, config_path: Path) -> None:
    """Refuse a model name that is not in the registry, listing close matches."""
    if name not in list_models():
        close = difflib.get_close_matches(name, list_models(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"{str(config_path)!r} names the model {name!r}, which is not registered.{hint} "
            f"If it is your own model, import the module that registers it before loading."
        )


def _check_config_name(document: dict[str, Any], config_path: Path) -> None:
    """Refuse a config whose ``model`` entry names another model than the document's
    (configs written before attnunet put the name in ``model.config`` have none)."""
    name, named = document["model"], document["config"].get("model", document["model"])
    if named != name:
        raise ValueError(
            f'{str(config_path)!r} names the model {name!r}, but its "config" names '
            f'{named!r}: the file was edited by hand; make the two "model" entries agree'
        )


def _check_saved_class(
    folder: Path, name: str, saved_class: str, expected_class: type[nn.Module]
) -> None:
    """Refuse a registered model ``name`` whose class is not an ``expected_class``."""
    info = model_info(name)
    if not issubclass(info.model_class, expected_class):
        raise TypeError(
            f"{str(folder)!r} holds a {info.model_class.__name__} (model {name!r}, class "
            f"{saved_class}), not an instance of {expected_class.__name__}: call "
            f"{info.model_class.__name__}.from_pretrained, SegmentationModel.from_pretrained "
            f"or attnunet.models.from_pretrained"
        )


def _had_heads(config: dict[str, Any]) -> bool:
    """Whether a saved config built deep-supervision heads (``ds_heads``, or ``None`` and
    the flags that imply them)."""
    if "ds_heads" not in config:
        return False
    if config["ds_heads"] is not None:
        return bool(config["ds_heads"])
    return bool(config.get("deep_supervision") or config.get("ds_fusion"))


def _constructor_kwargs(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The saved config with ``overrides`` applied, and ``pretrained`` always False."""
    kwargs = {**config, **overrides}
    if "deep_supervision" in overrides and "ds_heads" not in overrides and _had_heads(config):
        kwargs["ds_heads"] = True  # the saved heads stay: the override is the switch
    if "pretrained" in kwargs:
        if overrides.get("pretrained", False) is not False:
            raise ValueError(
                "from_pretrained loads the saved weights and never fetches encoder "
                "weights: leave out pretrained= (it is always False here)"
            )
        kwargs["pretrained"] = False
    return kwargs


def _saved_state(folder: Path, document: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The saved state dict, tied entries restored, from a weights file of the same save."""
    state, header = _read_weights(folder)
    saved_id, file_id = document.get("save_id"), header.get(_SAVE_ID)
    if saved_id is not None and file_id is not None and saved_id != file_id:
        raise ValueError(
            f"{CONFIG_NAME} and {WEIGHTS_NAME} in {str(folder)!r} come from two different "
            f"saves (an interrupted save with overwrite=True, or files copied together by "
            f"hand): save the model again"
        )
    try:
        aliases = json.loads(header.get(_ALIASES, "{}"))
    except json.JSONDecodeError as error:
        raise ValueError(f"weights file in {str(folder)!r} has corrupt metadata") from error
    for alias, source in aliases.items():
        if source in state:
            state[alias] = state[source]
    return state


def _check_fit(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    folder: Path,
    name: str,
    overrides: Mapping[str, Any],
    strict: bool,
) -> None:
    """Refuse weights that do not fit ``model``; with ``strict=False``, warn about missing
    and unexpected keys instead (the warning points at :func:`from_pretrained`'s caller)."""
    missing, unexpected, shapes = _mismatch_report(model, state)
    if shapes or (strict and (missing or unexpected)):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_near(missing, list(state))}")
        if unexpected:
            parts.append(
                f"{len(unexpected)} unexpected key(s): "
                f"{_near(unexpected, list(model.state_dict()))}"
            )
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es): {'; '.join(shapes[:3])}")
        changed = f" (overrides: {sorted(overrides)})" if overrides else ""
        raise ValueError(
            f"the weights in {str(folder)!r} do not fit the rebuilt {name!r} model"
            f"{changed}: {'; '.join(parts)}. Overrides may only change keywords that keep "
            f"every weight shape; strict=False tolerates missing/unexpected keys."
        )
    if missing or unexpected:
        warnings.warn(
            f"from_pretrained(strict=False): {len(missing)} key(s) missing from the file "
            f"(left as initialised) {missing[:3]}, {len(unexpected)} unexpected key(s) "
            f"ignored {unexpected[:3]}",
            stacklevel=3,
        )
