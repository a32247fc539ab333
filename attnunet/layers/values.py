"""Reading values back from the caller's arguments and tensors, the same way everywhere.

:func:`int_value` reads an integer option (a class count, a label value) given as a Python,
NumPy or torch integer scalar; :func:`min_max` reads the range of several tensors back to
the host in one synchronisation. The losses and the metrics both check their inputs with
them, each with its own messages. This module depends on torch only.
"""

from __future__ import annotations

import functools
import numbers

import torch

__all__ = ["int_value", "min_max"]


def int_value(value: object) -> int | None:
    """``value`` as a Python ``int`` when it is an integer scalar, else ``None``.

    Integer scalars are Python ints, NumPy integer scalars (``np.int64(3)``), 0-dim NumPy
    integer arrays (``np.array(3)``) and 0-dim torch integer tensors (``torch.tensor(3)``,
    on any device: reading one back is a host synchronisation). Booleans are not integers
    here, whether Python, NumPy or torch ones, and neither are floats (even ``2.0``),
    strings, sequences and tensors or arrays of other shapes: all give ``None``, so the
    caller raises the error its option calls for. NumPy is never imported.

    Args:
        value: any object.

    Returns:
        The integer, or ``None`` when ``value`` is not an integer scalar.

    Examples:
        >>> import numpy as np, torch
        >>> int_value(255), int_value(np.int64(-100)), int_value(torch.tensor(3))
        (255, -100, 3)
        >>> int_value(np.array(2, dtype=np.uint8))  # a 0-dim array
        2
        >>> [int_value(v) for v in (True, torch.tensor(True), 2.0, "3", torch.tensor([3]))]
        [None, None, None, None, None]
    """
    if isinstance(value, torch.Tensor):
        integer = not (value.is_floating_point() or value.is_complex())
        if value.dim() != 0 or not integer or value.dtype == torch.bool:
            return None
        return int(value.item())
    dtype = getattr(value, "dtype", None)
    if getattr(value, "ndim", None) == 0 and getattr(dtype, "kind", None) in ("i", "u"):
        value = value.item()  # type: ignore[attr-defined]  # a NumPy integer scalar or 0-dim array
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return None


def min_max(*tensors: torch.Tensor) -> list[tuple[int, int] | tuple[float, float] | None]:
    """The minimum and maximum of each tensor, all read back in one host synchronisation.

    Integer and bool tensors give ints (bools as 0 and 1), floating-point tensors floats
    (NaN when the tensor holds a NaN). Tensors of different dtypes are read in their
    promoted dtype (:func:`torch.promote_types`, integers as ``int64``), so mixing integer
    and floating-point tensors in one call reads the integers as floats. An empty tensor
    gives ``None`` and costs nothing; with no non-empty tensor nothing is read back. The
    tensors must be on one device.

    Args:
        *tensors: real tensors of any shape.

    Returns:
        One ``(min, max)`` pair (or ``None``) per tensor, in order.

    Examples:
        >>> import torch
        >>> labels = torch.tensor([[0, 2], [7, 1]])
        >>> min_max(labels, torch.tensor([True, True]), torch.zeros(0))
        [(0, 7), (1, 1), None]
        >>> min_max(torch.tensor([0.25, -1.5, 3.0]))
        [(-1.5, 3.0)]
    """
    pairs = [
        torch.stack(torch.aminmax(x.long() if x.dtype == torch.bool else x))
        for x in tensors
        if x.numel()
    ]
    pairs = [p.long() if not p.is_floating_point() else p for p in pairs]
    if not pairs:
        return [None] * len(tensors)
    dtype = functools.reduce(torch.promote_types, (p.dtype for p in pairs))
    values = iter(torch.cat([p.to(dtype) for p in pairs]).tolist())
    return [(next(values), next(values)) if x.numel() else None for x in tensors]
