"""The ``attnunet`` command: compare, train, evaluate, predict, models, nnunet-plans.

Run ``attnunet --help`` (or ``python -m attnunet --help``) for the commands, and
``attnunet COMMAND --help`` for each one's options. ``attnunet compare`` with no argument
runs the variant study on the bundled 2D nuclei sample.

Every command refuses to overwrite existing results unless ``--overwrite`` is given,
and then replaces only the files it writes. Problems with the input (a missing or
unreadable file, an image without a mask, sizes that differ) end the command with a
one-line message naming the file and exit status 2; other failures exit with 1 (set
``ATTNUNET_DEBUG=1`` for the traceback).

Each command is one module of this package (:mod:`attnunet.cli.compare`, ``train``,
``evaluate``, ``predict``, ``models``, ``nnunet_plans``) with ``add_parser(subparsers)``
for its options and ``run(args)`` for the work; what several of them share is in
``attnunet.cli._common``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Protocol

import torch

from attnunet.cli import compare, evaluate, models, nnunet_plans, predict, train
from attnunet.cli._common import EXIT_FAILURE, EXIT_USAGE, UsageError, _Subparsers

__all__ = ["main"]


class Command(Protocol):
    """What a command module provides (checked by mypy on the modules of ``COMMANDS``)."""

    def add_parser(self, subparsers: _Subparsers) -> None:
        """Add the command and its options to ``subparsers``."""

    def run(self, args: argparse.Namespace) -> int:
        """Do the command's work; return the exit status."""


# the commands, in the order of ``attnunet --help``
COMMANDS: dict[str, Command] = {
    "compare": compare,
    "train": train,
    "evaluate": evaluate,
    "predict": predict,
    "models": models,
    "nnunet-plans": nnunet_plans,
}


def _parser() -> argparse.ArgumentParser:
    """The ``attnunet`` parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="attnunet",
        description=(
            "Attention and residual U-Nets for medical image segmentation: compare the zoo "
            "on bundled or own data, train, evaluate and predict, in 2D and 3D."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Args:
        argv: the arguments after the program name.

    Returns:
        0 on success; 2 (with the help) when no command is given, and for problems with
        the input or the options, each with a one-line message on stderr; 130 when
        interrupted; 1 for any other failure (``ATTNUNET_DEBUG=1`` raises it instead).

    Examples:
        >>> main(["models", "ag_res_unet_krd", "--no-parameters"])  # doctest: +ELLIPSIS
        name ... description
        ag_res_unet_krd ... AgResUNet preset ...
        0
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from attnunet.data import DataError

    try:
        return COMMANDS[args.command].run(args)
    except BrokenPipeError:  # the output went to a pipe that closed (| head): not a failure
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        hint = " (continue with --resume)" if args.command == "train" else ""
        print(f"attnunet {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    except (UsageError, DataError, FileExistsError, FileNotFoundError) as error:
        print(f"attnunet {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # one clear line instead of a traceback
        if os.environ.get("ATTNUNET_DEBUG"):
            raise
        print(f"attnunet {args.command}: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
