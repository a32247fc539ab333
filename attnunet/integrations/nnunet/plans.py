"""Rewrite an nnU-Net v2 plans file so that its configurations build an attnunet network.

Only ``architecture.network_class_name`` changes (and ``plans_name``, the name nnU-Net
uses for the results folder); the ``arch_kwargs`` stay PlainConvUNet's and the
preprocessed data (``data_identifier``) are shared with the original plans, so nothing has
to be preprocessed again. The original file is never modified.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from attnunet.integrations.nnunet.arch import PlansError, plans_to_kwargs

__all__ = ["FAMILIES", "PLAIN_CONV_UNET", "network_class_name", "rewrite_plans", "write_plans"]

FAMILIES: dict[str, str] = {
    "unet": "UNet",
    "ag_unet": "AgUNet",
    "res_unet": "ResUNet",
    "ag_res_unet": "AgResUNet",
    "attention_unet": "AttentionUNet",
    "unet_plus_plus": "UNetPlusPlus",
    "attention_unet_plus_plus": "AttentionUNetPlusPlus",
}
"""attnunet's registry name of each family -> the class of :mod:`attnunet.integrations.nnunet`."""

PLAIN_CONV_UNET = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
"""The network class that nnU-Net's default planner writes into plans."""

_MODULE = "attnunet.integrations.nnunet"
_RESIDUAL = ("res_unet", "ag_res_unet")


def network_class_name(family: str) -> str:
    """The ``network_class_name`` that makes nnU-Net build ``family``.

    Args:
        family: a key of :data:`FAMILIES`, e.g. ``"ag_res_unet"``.

    Returns:
        The dotted class name, e.g. ``"attnunet.integrations.nnunet.AgResUNet"``.

    Raises:
        ValueError: an unknown family (the message lists the known ones).

    Examples:
        >>> network_class_name("ag_res_unet")
        'attnunet.integrations.nnunet.AgResUNet'
    """
    if family not in FAMILIES:
        raise ValueError(
            f"unknown family {family!r}: choose one of {', '.join(FAMILIES)} (attnunet's "
            f"registry names)"
        )
    return f"{_MODULE}.{FAMILIES[family]}"


def _resolved_architecture(plans: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A configuration's ``architecture``, following ``inherits_from`` as nnU-Net does."""
    configurations = plans["configurations"]
    seen = [name]
    config = configurations[name]
    while "architecture" not in config and "inherits_from" in config:
        parent = config["inherits_from"]
        if parent in seen or parent not in configurations:
            raise PlansError(
                f"nnU-Net plans: configuration {name!r} inherits from {parent!r}, which is "
                f"missing or circular ({' -> '.join([*seen, parent])})"
            )
        seen.append(parent)
        config = configurations[parent]
    if "architecture" not in config:
        raise PlansError(
            f"nnU-Net plans: configuration {name!r} has no architecture block (plans of "
            f"nnU-Net before 2.4?): plan the dataset again with nnU-Net 2.8"
        )
    return copy.deepcopy(config["architecture"])


def _check_architecture(name: str, arch: Mapping[str, Any], family: str) -> None:
    current = arch.get("network_class_name", "")
    if current != PLAIN_CONV_UNET and not current.startswith(_MODULE + "."):
        raise PlansError(
            f"nnU-Net plans: configuration {name!r} builds {current}; attnunet's networks take "
            f"PlainConvUNet's arch_kwargs: rewrite plans of nnU-Net's default planner "
            f"(nnUNetPlans, made by nnUNetv2_plan_and_preprocess without -pl), not those of "
            f"a residual-encoder planner"
        )
    plans_to_kwargs(arch.get("arch_kwargs", {}), residual=family in _RESIDUAL)


def rewrite_plans(
    plans: Mapping[str, Any],
    family: str,
    *,
    configurations: Sequence[str] | None = None,
    plans_name: str | None = None,
) -> dict[str, Any]:
    """A copy of nnU-Net plans whose configurations build an attnunet ``family``.

    Each chosen configuration gets its own ``architecture`` block (its resolved one, also
    when it inherits it) naming the family's class; the ``arch_kwargs`` are checked with
    :func:`~attnunet.integrations.nnunet.plans_to_kwargs` but not changed. ``plans_name``
    becomes the new name. A configuration left out that inherits its architecture from a
    rewritten one (``3d_cascade_fullres`` from ``3d_fullres`` in nnU-Net's default plans)
    builds the family too, since nnU-Net resolves ``inherits_from`` when it reads the
    plans; name both to make that explicit.

    Args:
        plans: the plans (the JSON object of ``nnUNetPlans.json``).
        family: a key of :data:`FAMILIES`.
        configurations: the configurations to rewrite (default all of them).
        plans_name: the new ``plans_name`` (default ``"<plans_name>_<Class>"``, e.g.
            ``nnUNetPlans_AgResUNet``).

    Returns:
        The rewritten plans; ``plans`` is not modified.

    Raises:
        ValueError: an unknown family or configuration.
        PlansError: a configuration whose architecture attnunet cannot build.

    Examples:
        >>> arch = {"network_class_name": PLAIN_CONV_UNET, "arch_kwargs": {
        ...     "n_stages": 2, "features_per_stage": [4, 8], "conv_op": "torch.nn.Conv2d",
        ...     "kernel_sizes": 3, "strides": [1, 2], "n_conv_per_stage": 2,
        ...     "n_conv_per_stage_decoder": 2, "conv_bias": True}}
        >>> plans = {"plans_name": "nnUNetPlans", "configurations": {
        ...     "2d": {"architecture": arch}, "2d_copy": {"inherits_from": "2d"}}}
        >>> new = rewrite_plans(plans, "ag_unet", configurations=["2d_copy"])
        >>> new["plans_name"]
        'nnUNetPlans_AgUNet'
        >>> new["configurations"]["2d_copy"]["architecture"]["network_class_name"]
        'attnunet.integrations.nnunet.AgUNet'
        >>> new["configurations"]["2d"] == plans["configurations"]["2d"]
        True
    """
    class_name = network_class_name(family)
    known = list(plans.get("configurations", {}))
    chosen = known if configurations is None else list(configurations)
    unknown = [c for c in chosen if c not in known]
    if unknown or not chosen:
        raise ValueError(
            f"configuration(s) {', '.join(map(repr, unknown)) or '(none)'} not in the plans: "
            f"choose from {', '.join(known) or '(the plans have none)'}"
        )
    new = copy.deepcopy(dict(plans))
    for name in chosen:
        arch = _resolved_architecture(plans, name)
        _check_architecture(name, arch, family)
        arch["network_class_name"] = class_name
        new["configurations"][name]["architecture"] = arch
    new["plans_name"] = plans_name or f"{plans.get('plans_name', 'nnUNetPlans')}_{FAMILIES[family]}"
    return new


def _source_file(source: Path) -> Path:
    if source.is_dir():
        plans = source / "nnUNetPlans.json"
        if not plans.is_file():
            found = sorted(p.name for p in source.glob("*.json") if p.name != "dataset.json")
            raise FileNotFoundError(
                f"{source} has no nnUNetPlans.json (it has {', '.join(found) or 'no plans'}): "
                f"give the plans file itself, or run nnUNetv2_plan_and_preprocess first"
            )
        return plans
    if not source.is_file():
        raise FileNotFoundError(
            f"{source} is neither a plans file nor a folder of nnU-Net's preprocessed data "
            f"(nnUNet_preprocessed/DatasetXXX_Name)"
        )
    return source


def write_plans(
    source: str | Path,
    family: str,
    *,
    configurations: Sequence[str] | None = None,
    plans_name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a new plans file, next to ``source``, that builds an attnunet ``family``.

    Train and predict with it by its name: ``nnUNetv2_train DATASET CONFIG FOLD -p NAME``
    and ``nnUNetv2_predict ... -p NAME``.

    Args:
        source: a plans file, or a folder of preprocessed data holding
            ``nnUNetPlans.json`` (``$nnUNet_preprocessed/DatasetXXX_Name``).
        family: a key of :data:`FAMILIES`.
        configurations: the configurations to rewrite (default all).
        plans_name: the new plans name and file stem (default ``"<plans_name>_<Class>"``).
        overwrite: replace an existing file of that name (never ``source`` itself).

    Returns:
        The path of the new plans file, ``<folder of source>/<plans_name>.json``.

    Raises:
        FileNotFoundError: no plans at ``source``.
        FileExistsError: the new file exists and ``overwrite`` is false, or it would be
            ``source`` itself; its ``filename`` is the new file (and ``filename2`` the
            source in the second case).
        ValueError: an unknown family or configuration, a bad name or unreadable JSON.
        PlansError: a configuration whose architecture attnunet cannot build.
    """
    path = _source_file(Path(source))
    try:
        plans = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(plans, dict) or "configurations" not in plans:
        raise ValueError(f"{path} is not an nnU-Net plans file (it has no 'configurations')")
    new = rewrite_plans(plans, family, configurations=configurations, plans_name=plans_name)
    name = new["plans_name"]
    if not name or Path(name).name != name or name.endswith(".json"):
        raise ValueError(f"plans name {name!r} must be a plain file stem like nnUNetPlans_UNet")
    target = path.parent / f"{name}.json"
    if target.resolve() == path.resolve():
        raise _exists(
            f"{target} is the source plans: choose another plans_name, which keeps the "
            f"original plans usable",
            target,
            source=path,
        )
    if target.exists() and not overwrite:
        raise _exists(
            f"{target} exists: choose another plans_name, or pass overwrite=True to replace it",
            target,
        )
    target.write_text(json.dumps(new, indent=4) + "\n", encoding="utf-8")
    return target


class _TargetExists(FileExistsError):
    """A :class:`FileExistsError` that prints its message alone (an ``OSError`` with a
    ``filename`` would print ``[Errno None] None: ...``)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _exists(message: str, target: Path, source: Path | None = None) -> FileExistsError:
    """The error of a target that may not be written; ``filename`` is the target and
    ``filename2`` the source plans when they are the same file (so that the command line
    can word it with its own flags)."""
    error = _TargetExists(message)
    error.filename = str(target)
    error.filename2 = None if source is None else str(source)
    return error
