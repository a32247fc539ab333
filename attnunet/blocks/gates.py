"""Attention gates.

Every gate takes the skip (encoder) feature ``x`` and a gating feature ``g`` and returns
the gated skip ``alpha * x``. Coefficients are available in three ways, none of which
stores a tensor on the module (that would break TorchScript and leak memory):

* :meth:`GridAttentionGate.attend` returns ``(gated, alpha)``;
* the identity submodule ``gate.coefficients`` sees ``alpha`` on every call, so a forward
  hook on it captures the map without touching the model's code;
* the U-Net models' ``forward_with_attention`` returns every gate's map.
"""

from collections.abc import Callable
from typing import Any, Final

import torch
import torch.nn.functional as F
from torch import nn

from attnunet._shape import interp_mode
from attnunet.blocks.conv import _check_channels
from attnunet.layers import (
    ActSpec,
    NormSpec,
    _unknown,
    check_spatial_dims,
    conv_type,
    get_act,
    get_norm,
    parse_spec,
)

__all__ = ["GATES", "GridAttentionGate", "build_gate"]


class GridAttentionGate(nn.Module):
    """Additive attention gate with a coarse gating grid (Oktay et al., 2018).

    With ``theta`` a strided convolution on the skip ``x``, ``phi`` and ``psi`` 1x1
    convolutions::

        q     = act(theta(x) + resize(phi(g), grid of theta(x)))
        alpha = sigmoid(psi(q))                      # one coefficient per voxel, in (0, 1)
        alpha = resize(alpha, size of x)             # (bi/tri)linear
        y     = W(alpha * x)                         # W: 1x1 conv + norm, or identity

    Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018
    (arXiv:1804.03999), "concatenation" mode of the released code. The gate of the
    knee-ultrasound study (agv-unet) is the same computation with ``F_int = C_x``, a bias
    on ``theta``, ``align_corners=True`` and no output transform: ``build_gate("grid_krd",
    ...)`` builds it.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: ``C_x``, channels of the skip feature (and of the output).
        gating_channels: ``C_g``, channels of the gating feature.
        inter_channels: ``F_int``; default ``max(1, C_x // 2)``.
        subsample: kernel and stride of ``theta`` (the ratio between the skip grid and the
            gating grid); 1 gives a same-resolution gate.
        theta_bias: bias on ``theta`` (off in Oktay's code, on in agv-unet).
        act: nonlinearity applied to the sum (``"relu"``; ``"softplus"`` also appears in
            the reference code).
        output_transform: apply ``W = Conv1 -> norm`` to the gated skip (the reference code
            has it, the paper's equation does not).
        norm: norm spec of ``W``.
        align_corners: of the two interpolations.

    Shape:
        ``x``: ``(B, C_x, *S)``; ``g``: ``(B, C_g, *S_g)`` with any ``S_g`` (usually
        ``S // subsample``); output ``(B, C_x, *S)``; ``alpha``: ``(B, 1, *S)``.

    Example:
        >>> gate = GridAttentionGate(2, in_channels=8, gating_channels=16)
        >>> x, g = torch.randn(1, 8, 21, 30), torch.randn(1, 16, 10, 15)
        >>> y, alpha = gate.attend(x, g)
        >>> y.shape, alpha.shape
        (torch.Size([1, 8, 21, 30]), torch.Size([1, 1, 21, 30]))
    """

    gating: Final[str] = "coarse"

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        gating_channels: int,
        inter_channels: int | None = None,
        subsample: int = 2,
        theta_bias: bool = False,
        act: ActSpec = "relu",
        output_transform: bool = False,
        norm: NormSpec = "batch",
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        inter = max(1, in_channels // 2) if inter_channels is None else inter_channels
        _check_channels(
            in_channels=in_channels, gating_channels=gating_channels, inter_channels=inter
        )
        if isinstance(subsample, bool) or not isinstance(subsample, int) or subsample < 1:
            raise ValueError(f"subsample must be a positive int, got {subsample!r}")
        conv = conv_type(spatial_dims)
        self.in_channels = in_channels
        self.gating_channels = gating_channels
        self.inter_channels = inter
        self.theta = conv(in_channels, inter, subsample, stride=subsample, bias=theta_bias)
        self.phi = conv(gating_channels, inter, 1, bias=True)
        self.psi = conv(inter, 1, 1, bias=True)
        self.act = get_act(act) or nn.Identity()
        self.coefficients = nn.Identity()
        if output_transform:
            layers: list[nn.Module] = [conv(in_channels, in_channels, 1, bias=True)]
            norm_layer = get_norm(norm, spatial_dims, in_channels)
            if norm_layer is not None:
                layers.append(norm_layer)
            self.output: nn.Module = nn.Sequential(*layers)
        else:
            self.output = nn.Identity()
        self.mode: Final[str] = interp_mode(spatial_dims)
        self.align_corners: Final[bool] = align_corners

    def attend(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(gated skip, alpha)``; ``alpha`` has shape ``(B, 1, *x.shape[2:])``."""
        theta_x = self.theta(x)
        phi_g = self.phi(g)
        if phi_g.shape[2:] != theta_x.shape[2:]:
            phi_g = F.interpolate(
                phi_g, size=theta_x.shape[2:], mode=self.mode, align_corners=self.align_corners
            )
        alpha = torch.sigmoid(self.psi(self.act(theta_x + phi_g)))
        if alpha.shape[2:] != x.shape[2:]:
            alpha = F.interpolate(
                alpha, size=x.shape[2:], mode=self.mode, align_corners=self.align_corners
            )
        alpha = self.coefficients(alpha)
        return self.output(alpha * x), alpha

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.attend(x, g)[0]


def _grid(spatial_dims: int, in_channels: int, gating_channels: int, **kw: Any) -> nn.Module:
    return GridAttentionGate(spatial_dims, in_channels, gating_channels, **kw)


def _grid_krd(spatial_dims: int, in_channels: int, gating_channels: int, **kw: Any) -> nn.Module:
    opts: dict[str, Any] = {
        "inter_channels": in_channels,
        "theta_bias": True,
        "align_corners": True,
        "output_transform": False,
    }
    opts.update(kw)
    return GridAttentionGate(spatial_dims, in_channels, gating_channels, **opts)


GATES: dict[str, Callable[..., nn.Module]] = {"grid": _grid, "grid_krd": _grid_krd}
"""Gate names accepted by the ``gate`` argument of the U-Net models."""

GateSpec = Any


def build_gate(
    spec: GateSpec, spatial_dims: int, in_channels: int, gating_channels: int
) -> nn.Module | None:
    """Build a gate from a spec.

    Args:
        spec: ``None`` (no gate); a name from :data:`GATES` (``"grid"``: Oktay's grid
            gate with the paper's defaults; ``"grid_krd"``: the knee-ultrasound study's
            gate); a ``(name, kwargs)`` pair whose kwargs go to the gate; or a callable
            ``f(spatial_dims, in_channels, gating_channels)`` returning a module with an
            ``attend(x, g) -> (gated, alpha)`` method. A gate whose class attribute
            ``gating`` is not ``"coarse"`` is rebuilt by the U-Net models with the
            up-sampled feature's channels and fed that feature instead.
        spatial_dims: 1, 2 or 3.
        in_channels: skip channels ``C_x``.
        gating_channels: gating channels ``C_g``.

    Raises:
        ValueError: unknown gate name (close matches are suggested).
    """
    if callable(spec) and not isinstance(spec, str):
        return spec(spatial_dims, in_channels, gating_channels)
    name, kwargs = parse_spec(spec, "gate")
    if name is None:
        return None
    if name not in GATES:
        raise _unknown("gate", name, tuple(GATES))
    return GATES[name](spatial_dims, in_channels, gating_channels, **kwargs)
