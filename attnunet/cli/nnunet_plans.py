"""``attnunet nnunet-plans``: write nnU-Net v2 plans that build an attnunet family."""

from __future__ import annotations

import argparse

from attnunet.cli._common import UsageError, _Subparsers

__all__ = ["add_parser", "run"]

_FAMILIES = (
    "unet",
    "ag_unet",
    "res_unet",
    "ag_res_unet",
    "attention_unet",
    "unet_plus_plus",
    "attention_unet_plus_plus",
)


def add_parser(subparsers: _Subparsers) -> None:
    """Add the ``nnunet-plans`` command and its options to ``subparsers``."""
    p = subparsers.add_parser(
        "nnunet-plans",
        help="write nnU-Net v2 plans that train an attnunet family",
        description=(
            "Write a copy of nnU-Net v2 plans, next to the original, whose configurations "
            "build an attnunet network (attnunet.integrations.nnunet) from the same "
            "PlainConvUNet arch_kwargs and the same preprocessed data; print the "
            "nnUNetv2_train and nnUNetv2_predict commands that use it."
        ),
    )
    p.add_argument(
        "plans",
        metavar="PLANS_JSON_OR_PREPROCESSED_DATASET_DIR",
        help="nnUNetPlans.json, or the folder $nnUNet_preprocessed/DatasetXXX_Name holding it",
    )
    p.add_argument("--family", required=True, choices=_FAMILIES, help="the attnunet family")
    p.add_argument(
        "--configurations",
        nargs="+",
        metavar="NAME",
        help="configurations to rewrite, e.g. 2d 3d_fullres (default: all)",
    )
    p.add_argument(
        "--plans-name",
        help="name of the new plans (default: <plans name>_<Class>, e.g. nnUNetPlans_AgResUNet)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing plans file of that name"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``attnunet nnunet-plans`` with the parsed ``args``; return the exit status.

    Args:
        args: the options of :func:`add_parser`.

    Returns:
        0 after writing the plans and printing how to use them.

    Raises:
        UsageError: plans attnunet cannot rewrite (the message says why), or a new plans
            file that exists (without ``--overwrite``) or would be the source plans.
        FileNotFoundError: no plans at the given path.
    """
    import json

    from attnunet.integrations.nnunet import write_plans

    try:
        path = write_plans(
            args.plans,
            args.family,
            configurations=args.configurations,
            plans_name=args.plans_name,
            overwrite=args.overwrite,
        )
    except ValueError as error:  # PlansError included
        raise UsageError(str(error)) from None
    except FileExistsError as error:
        raise UsageError(_exists_message(error)) from None
    plans = json.loads(path.read_text(encoding="utf-8"))
    name, dataset = plans["plans_name"], plans.get("dataset_name", "DATASET")
    configs = args.configurations or list(plans["configurations"])
    print(f"wrote {path}")
    print(f"train and predict with -p {name}, e.g.:")
    for config in configs:
        print(f"  nnUNetv2_train {dataset} {config} FOLD -p {name}")
        print(f"  nnUNetv2_predict -i INPUT -o OUTPUT -d {dataset} -c {config} -p {name}")
    return 0


def _exists_message(error: FileExistsError) -> str:
    """The message of ``write_plans``'s FileExistsError in this command's flags."""
    if error.filename2:  # the new plans would replace the source plans
        return (
            f"{error.filename} is the source plans: choose another --plans-name, which keeps "
            f"the original plans usable"
        )
    if error.filename:
        return f"{error.filename} exists: choose another --plans-name, or pass --overwrite"
    return str(error)
