"""``forward_with_attention`` and its options, shared by every model that returns maps.

:class:`AttentionMaps` gives the U-Net skeleton, UNet++ and RAUNet one
``forward_with_attention(x, order, upsample, as_dict)``; each model implements only
:meth:`AttentionMaps._attention_run`, its output and its maps in its native order. The
helpers are TorchScript-compatible: the method is exported when a model is scripted.
"""

from typing import Literal, Union, overload

import torch
from torch import nn

from attnunet.layers.shape import interp_mode, resize

__all__ = [
    "ATTENTION_ORDERS",
    "AttentionMaps",
    "arrange_attention",
    "attention_dict",
    "finest_first",
    "upsample_maps",
]

Output = Union[torch.Tensor, list[torch.Tensor]]  # noqa: UP007 (TorchScript needs Union)
AttentionOutput = Union[tuple[Output, list[torch.Tensor]], dict[str, Output]]  # noqa: UP007

ATTENTION_ORDERS = ("coarse", "fine")
"""Values of ``forward_with_attention``'s ``order``."""


def _voxels(t: torch.Tensor) -> int:
    """The number of spatial positions of ``t`` (``B, C, *S``)."""
    n = 1
    for s in t.shape[2:]:
        n *= s
    return n


def finest_first(maps: list[torch.Tensor]) -> list[torch.Tensor]:
    """``maps`` reversed, then stably sorted by decreasing spatial size.

    For a list ordered coarsest first (the U-Net family, RAUNet) this is the reversed
    list; for UNet++'s column order it lists level 0 first, each level's maps last
    computed first.

    Examples:
        >>> import torch
        >>> maps = [torch.zeros(1, 1, n) for n in (4, 2, 4, 8)]
        >>> [m.shape[-1] for m in finest_first(maps)]
        [8, 4, 4, 2]
        >>> finest_first(maps)[1] is maps[2]
        True
    """
    out: list[torch.Tensor] = []
    sizes: list[int] = []
    for i in range(len(maps) - 1, -1, -1):
        n = _voxels(maps[i])
        pos = len(out)
        while pos > 0 and sizes[pos - 1] < n:
            pos -= 1
        out.insert(pos, maps[i])
        sizes.insert(pos, n)
    return out


def upsample_maps(maps: list[torch.Tensor], size: list[int]) -> list[torch.Tensor]:
    """Every map resized to ``size`` with (bi/tri)linear interpolation,
    ``align_corners=False``; values stay within each map's range (``[0, 1]`` for
    sigmoid gates). Maps already of that size are returned as they are.

    Examples:
        >>> import torch
        >>> up = upsample_maps([torch.tensor([[[0.0, 1.0]]])], [4])
        >>> up[0].tolist()
        [[[0.0, 0.25, 0.75, 1.0]]]
    """
    out: list[torch.Tensor] = []
    for m in maps:
        if list(m.shape[2:]) == size:
            out.append(m)
        else:
            out.append(resize(m, size, interp_mode(len(size)), False))
    return out


def attention_dict(output: Output, maps: list[torch.Tensor]) -> dict[str, Output]:
    """``{"logits": output, "attention_0": maps[0], "attention_1": maps[1], ...}``.

    Examples:
        >>> import torch
        >>> sorted(attention_dict(torch.zeros(1), [torch.ones(1), torch.ones(1)]))
        ['attention_0', 'attention_1', 'logits']
    """
    out: dict[str, Output] = {"logits": output}
    for i, m in enumerate(maps):
        out["attention_" + str(i)] = m
    return out


def arrange_attention(
    output: Output,
    maps: list[torch.Tensor],
    size: list[int],
    order: str = "coarse",
    upsample: bool = False,
    as_dict: bool = False,
) -> AttentionOutput:
    """Apply ``forward_with_attention``'s options to ``(output, maps)``.

    Args:
        output: the model's output.
        maps: the maps in the model's native order.
        size: the input's spatial size (the target of ``upsample``).
        order: ``"coarse"`` (native) or ``"fine"`` (:func:`finest_first`).
        upsample: resize every map to ``size`` (:func:`upsample_maps`).
        as_dict: return :func:`attention_dict` instead of ``(output, maps)``.

    Returns:
        ``(output, maps)`` or the dictionary.

    Raises:
        ValueError: an unknown ``order``.
    """
    if order == "fine":
        maps = finest_first(maps)
    elif order != "coarse":
        raise ValueError("order must be 'coarse' or 'fine', got '" + order + "'")
    if upsample:
        maps = upsample_maps(maps, size)
    if as_dict:
        return attention_dict(output, maps)
    return output, maps


class AttentionMaps(nn.Module):
    """Mixin: ``forward_with_attention`` with its options on top of
    :meth:`_attention_run` (the output and the maps in the model's native order)."""

    def _attention_run(self, x: torch.Tensor) -> tuple[Output, list[torch.Tensor]]:
        raise NotImplementedError

    @overload
    def forward_with_attention(
        self,
        x: torch.Tensor,
        order: str = ...,
        upsample: bool = ...,
        as_dict: Literal[False] = ...,
    ) -> tuple[Output, list[torch.Tensor]]: ...

    @overload
    def forward_with_attention(
        self, x: torch.Tensor, order: str = ..., upsample: bool = ..., *, as_dict: Literal[True]
    ) -> dict[str, Output]: ...

    @torch.jit.export
    def forward_with_attention(
        self, x: torch.Tensor, order: str = "coarse", upsample: bool = False, as_dict: bool = False
    ) -> AttentionOutput:
        """Return ``(output, maps)``: ``forward``'s output and every gate's coefficients.

        The native order (``order="coarse"``, the default) is the order of execution:
        for the U-Net family one map per gated decoder level, coarsest first, of shape
        ``(B, k, *s)`` (``s`` the skip's spatial size, ``k`` the gates on that skip: 1, or
        ``num_gates``); for UNet++ by column ``j``, row ``i``, source skip ``k`` (see
        :class:`~attnunet.models.unetpp.UNetPlusPlus`), each ``(B, 1, *s_i)``; for
        RAUNet the AAMs' channel weights ``(B, C, 1, ...)``, coarsest first. Maps lie in
        ``[0, 1]`` (``[-1, 1]`` for a ``tanh`` self gate); models without gates return
        an empty list.

        Args:
            x: the input ``(B, C, *S)``.
            order: ``"coarse"`` (native, above) or ``"fine"``: finest first (the native
                list reversed for the U-Net family and RAUNet; for UNet++ level 0
                first, see :func:`finest_first`).
            upsample: resize every map to the input's spatial size ``S``
                ((bi/tri)linear, ``align_corners=False``; values stay in the map's
                range), as ``monai.visualize.blend_images`` needs.
            as_dict: return ``{"logits": output, "attention_0": maps[0], ...}``, the
                ``attention_<i>`` numbered in the chosen order; with ``order="fine",
                upsample=True`` it is a predictor for MONAI's
                ``sliding_window_inference``, which stitches every entry.

        Returns:
            ``(output, maps)``, or the dictionary with ``as_dict=True``. ``output`` is
            ``forward``'s (the deep-supervision list where ``forward`` returns one).

        Raises:
            ValueError: an unknown ``order``, or the input errors of ``forward``.

        Examples:
            >>> import torch
            >>> from attnunet import AgUNet
            >>> model = AgUNet(2, 1, 1, channels=(4, 8, 16)).eval()
            >>> x = torch.randn(1, 1, 16, 12)
            >>> [tuple(m.shape[2:]) for m in model.forward_with_attention(x)[1]]
            [(8, 6), (16, 12)]
            >>> [tuple(m.shape[2:]) for m in model.forward_with_attention(x, "fine")[1]]
            [(16, 12), (8, 6)]
            >>> out = model.forward_with_attention(x, "fine", upsample=True, as_dict=True)
            >>> {k: tuple(v.shape[2:]) for k, v in out.items()}
            {'logits': (16, 12), 'attention_0': (16, 12), 'attention_1': (16, 12)}
        """
        output, maps = self._attention_run(x)
        return arrange_attention(output, maps, list(x.shape[2:]), order, upsample, as_dict)
