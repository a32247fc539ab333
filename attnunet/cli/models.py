"""``attnunet models``: list the model zoo."""

from __future__ import annotations

import argparse

from attnunet.cli._common import UsageError, _Subparsers

__all__ = ["add_parser", "run"]


def add_parser(subparsers: _Subparsers) -> None:
    """Add the ``models`` command and its options to ``subparsers``."""
    m = subparsers.add_parser(
        "models",
        help="list the model zoo",
        description="List the registered models with their paper, dimensions and parameters.",
    )
    m.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. '*unet*'")
    m.add_argument(
        "--no-parameters", action="store_true", help="skip building each model to count parameters"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``attnunet models`` with the parsed ``args``; return the exit status.

    Args:
        args: the options of :func:`add_parser`.

    Returns:
        0 after printing the table.

    Raises:
        UsageError: no registered model matches the pattern.
    """
    from attnunet.models import list_models, model_info

    names = list_models(args.pattern)
    if not names:
        raise UsageError(f"no model matches {args.pattern!r}; try attnunet models")
    rows = []
    for name in names:
        info = model_info(name)
        params = "" if args.no_parameters else _parameters(name)
        dims = "/".join(f"{d}D" for d in info.spatial_dims)
        paper = info.paper.split(",")[0] if info.paper else ""
        rows.append((name, dims, params, paper, info.description))
    header = ("name", "dims", "parameters", "paper", "description")
    widths = [min(48, max(len(str(r[i])) for r in [header, *rows])) for i in range(4)]
    for r in [header, *rows]:
        print(
            "  ".join(str(c)[:w].ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        )
    return 0


def _parameters(name: str) -> str:
    """The parameter count of ``name`` at its defaults, with thousands separators ("?" when
    it cannot be built without arguments); RAUNets are built without pretrained weights."""
    from attnunet.models import create_model

    kwargs = {"pretrained": False} if "raunet" in name else {}
    try:
        model = create_model(name, **kwargs)
    except (TypeError, ValueError):
        return "?"
    return f"{sum(p.numel() for p in model.parameters()):,}"
