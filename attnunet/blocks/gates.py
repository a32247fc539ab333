"""Attention gates.

Every gate takes the skip (encoder) feature ``x`` and a gating feature ``g`` and returns
the gated skip ``alpha * x``. Coefficients are available in three ways, none of which
stores a tensor on the module (that would break TorchScript and leak memory):

* ``gate.attend(x, g)`` returns ``(gated, alpha)``;
* the identity submodule ``gate.coefficients`` sees ``alpha`` on every call, so a forward
  hook on it captures the map without touching the model's code;
* the U-Net models' ``forward_with_attention`` returns every gate's map.
"""

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import torch
from torch import nn

from attnunet.blocks.conv import ConvNormAct, check_channels
from attnunet.layers import (
    ActSpec,
    NormSpec,
    check_spatial_dims,
    conv_type,
    get_act,
    parse_spec,
    per_axis,
    unknown_choice,
)
from attnunet.layers.shape import interp_mode, resize

__all__ = [
    "GATES",
    "GATINGS",
    "SkipGate",
    "AdditiveAttentionGate",
    "ConvMappedAttentionGate",
    "GridAttentionGate",
    "GridGatingSignal",
    "MultiAttentionGate",
    "SelfAttentionSkip",
    "build_gate",
    "build_skip_gate",
]


GateSpec = Any
"""A gate spec: ``None``, a name from :data:`GATES`, a ``(name, kwargs)`` pair or a callable."""


GATINGS = ("coarse", "upsampled", "none")
"""Values of a gate's ``gating`` attribute: which feature a U-Net feeds it as ``g``."""


class SkipGate(nn.Module):
    """The interface every skip gate implements, built in or a user's own.

    A gate has a ``gating`` attribute, fixed when it is built, saying which decoder
    feature a U-Net feeds it as ``g``: ``"coarse"`` (the coarser decoder feature before
    up-sampling, or Oktay's gating signal at the deepest level), ``"upsampled"`` (that
    feature after the model's up-sampler, on the skip's grid; the model then builds the
    gate for the up-sampled feature's channels) or ``"none"`` (``g`` is ignored). Its
    :meth:`attend` returns the gated skip and the coefficients; ``forward`` returns the
    gated skip alone.

    Args:
        gating: one of :data:`GATINGS`; by default the value the subclass declares in its
            class body (``gating = "upsampled"``), else ``"coarse"``.

    Raises:
        ValueError: any other ``gating``, or one that contradicts the class body's.

    Examples:
        >>> class HalfGate(SkipGate):
        ...     def __init__(self, spatial_dims, in_channels, gating_channels):
        ...         super().__init__(gating="none")
        ...     def attend(self, x, g):
        ...         alpha = torch.full_like(x[:, :1], 0.5)
        ...         return alpha * x, alpha
        >>> gate = build_gate(HalfGate, 2, 4, 8)
        >>> gate(torch.ones(1, 4, 3, 3), torch.ones(1, 8, 2, 2)).max().item()
        0.5
    """

    gating: str

    def __init__(self, gating: str | None = None) -> None:
        super().__init__()
        declared = type(self).__dict__.get("gating")  # a subclass may declare it in its body
        if gating is None:
            gating = "coarse" if declared is None else declared
        elif declared is not None and declared != gating:
            raise ValueError(
                f"{type(self).__name__} declares gating={declared!r} in its class body but "
                f"passes gating={gating!r} to SkipGate.__init__: keep one of them"
            )
        if gating not in GATINGS:
            raise ValueError(
                f"gating must be one of {', '.join(map(repr, GATINGS))}, got {gating!r}"
            )
        self.gating = gating

    def attend(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(gated skip, coefficients)`` for the skip ``x`` and gating feature ``g``."""
        raise NotImplementedError(f"{type(self).__name__} must implement attend(x, g)")

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The gated skip: ``attend(x, g)[0]``."""
        return self.attend(x, g)[0]


def _output_transform(spatial_dims: int, channels: int, enabled: bool, norm: NormSpec) -> nn.Module:
    """Oktay's ``W``: a biased 1x1 conv then a norm (``output.conv``, ``output.norm``)."""
    if not enabled:
        return nn.Identity()
    return ConvNormAct(spatial_dims, channels, channels, 1, 1, norm, None, bias=True)


class GridAttentionGate(SkipGate):
    """Additive attention gate with a coarse gating grid (Oktay et al., 2018).

    With ``theta`` a strided convolution on the skip ``x``, ``phi`` and ``psi`` 1x1
    convolutions::

        q     = act(theta(x) + resize(phi(g), grid of theta(x)))
        alpha = sigmoid(psi(q))          # or a softmax of psi(q) over all positions
        alpha = resize(alpha, size of x)                 # (bi/tri)linear
        y     = W(alpha * x)                             # W: 1x1 conv + norm, or identity

    Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018
    (arXiv:1804.03999). The reference code's modes map to arguments: ``"concatenation"``
    is the default, ``"concatenation_debug"`` is ``act="softplus"``, and
    ``"concatenation_residual"`` is ``normalization="softmax"``. The gate of the
    knee-ultrasound study (agv-unet) is the same computation with ``F_int = C_x``, a bias
    on ``theta``, ``align_corners=True`` and no output transform. ``build_gate("grid_krd")``
    builds that one, and ``build_gate("grid_oktay")`` builds Oktay's CT models' gate
    (``F_int = C_x`` and the output transform on).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: ``C_x``, channels of the skip feature (and of the output).
        gating_channels: ``C_g``, channels of the gating feature.
        inter_channels: ``F_int``; default ``max(1, C_x // 2)``.
        subsample: kernel and stride of ``theta`` (the ratio between the skip grid and the
            gating grid), an int or one per axis (``(1, 2, 2)`` below a stage that keeps
            its first axis); 1 gives a same-resolution gate.
        theta_bias: bias on ``theta`` (off in Oktay's code, on in agv-unet).
        act: nonlinearity applied to the sum (``"relu"``, or ``"softplus"``).
        normalization: ``"sigmoid"`` (coefficients in (0, 1) independently) or
            ``"softmax"`` (over all positions of each image, so they sum to 1).
        output_transform: apply ``W = Conv1 -> norm`` to the gated skip (the reference code
            has it, the paper's equation does not).
        norm: norm spec of ``W``.
        align_corners: of the two interpolations.
        gating: which feature a U-Net feeds as ``g``: ``"coarse"`` (the coarser decoder
            feature before up-sampling, the default) or ``"upsampled"``.

    Shape:
        ``x``: ``(B, C_x, *S)``; ``g``: ``(B, C_g, *S_g)`` with any ``S_g`` (usually
        ``S // subsample``); output ``(B, C_x, *S)``; ``alpha``: ``(B, 1, *S)``.

    Examples:
        >>> gate = GridAttentionGate(2, in_channels=8, gating_channels=16)
        >>> x, g = torch.randn(1, 8, 21, 30), torch.randn(1, 16, 10, 15)
        >>> y, alpha = gate.attend(x, g)
        >>> y.shape, alpha.shape
        (torch.Size([1, 8, 21, 30]), torch.Size([1, 1, 21, 30]))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        gating_channels: int,
        inter_channels: int | None = None,
        subsample: int | Sequence[int] = 2,
        theta_bias: bool = False,
        act: ActSpec = "relu",
        normalization: Literal["sigmoid", "softmax"] = "sigmoid",
        output_transform: bool = False,
        norm: NormSpec = "batch",
        align_corners: bool = False,
        gating: Literal["coarse", "upsampled"] = "coarse",
    ) -> None:
        check_spatial_dims(spatial_dims)
        inter = max(1, in_channels // 2) if inter_channels is None else inter_channels
        check_channels(
            in_channels=in_channels, gating_channels=gating_channels, inter_channels=inter
        )
        if isinstance(subsample, int):
            check_channels(subsample=subsample)
        else:
            subsample = per_axis(subsample, spatial_dims, "subsample")
        if normalization not in ("sigmoid", "softmax"):
            raise ValueError(f"normalization must be 'sigmoid' or 'softmax', got {normalization!r}")
        if gating not in ("coarse", "upsampled"):
            raise ValueError(f"gating must be 'coarse' or 'upsampled', got {gating!r}")
        super().__init__(gating)
        conv = conv_type(spatial_dims)
        self.in_channels = in_channels
        self.gating_channels = gating_channels
        self.inter_channels = inter
        self.theta = conv(in_channels, inter, subsample, stride=subsample, bias=theta_bias)
        self.phi = conv(gating_channels, inter, 1, bias=True)
        self.psi = conv(inter, 1, 1, bias=True)
        self.act = get_act(act) or nn.Identity()
        self.coefficients = nn.Identity()
        self.output = _output_transform(spatial_dims, in_channels, output_transform, norm)
        self.mode: Final[str] = interp_mode(spatial_dims)
        self.align_corners: Final[bool] = align_corners
        self.softmax: Final[bool] = normalization == "softmax"

    def combine(self, theta_x: torch.Tensor, phi_g: torch.Tensor) -> torch.Tensor:
        """How the two projections meet: ``act(theta_x + phi_g)``."""
        return self.act(theta_x + phi_g)

    def attend(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(gated skip, alpha)``; ``alpha`` has shape ``(B, 1, *x.shape[2:])``."""
        theta_x = self.theta(x)
        phi_g = self.phi(g)
        if phi_g.shape[2:] != theta_x.shape[2:]:
            phi_g = resize(phi_g, list(theta_x.shape[2:]), self.mode, self.align_corners)
        logit = self.psi(self.combine(theta_x, phi_g))
        if self.softmax:
            alpha = torch.softmax(logit.flatten(2), dim=2).view(logit.shape)
        else:
            alpha = torch.sigmoid(logit)
        if alpha.shape[2:] != x.shape[2:]:
            alpha = resize(alpha, list(x.shape[2:]), self.mode, self.align_corners)
        alpha = self.coefficients(alpha)
        return self.output(alpha * x), alpha


class ConvMappedAttentionGate(GridAttentionGate):
    """Grid attention gate whose projections are concatenated and mapped by a 1x1 conv.

    Identical to :class:`GridAttentionGate` (same ``theta``, ``phi``, ``psi``, resizing,
    normalisation and output transform) except for how ``theta(x)`` and ``phi(g)`` meet::

        q = act(M([pre(theta(x)); pre(phi(g))]))     # M: 1x1 conv, 2 F_int -> F_int, bias

    instead of ``q = act(theta(x) + phi(g))``. With ``pre`` the identity (the default),
    ``M`` is linear, so the block computes ``act(A theta(x) + B phi(g) + c)`` with
    ``M = [A | B]``: a linear re-parametrisation of the additive gate (``A = B = I``,
    ``c = 0`` gives it back exactly). It adds ``2 F_int**2 + F_int`` parameters and lets
    the two projections mix their channels. Pass ``pre_act`` (e.g. ``"relu"``) to put a
    nonlinearity before the mapping, which makes it a different, genuinely nonlinear gate
    (not a superset of the additive one at the same ``F_int``).

    This gate is the seed study's "conv-mapped" variant; no public implementation exists.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: ``C_x``.
        gating_channels: ``C_g``.
        pre_act: activation spec applied to each projection before the mapping (``None``).
        **kwargs: any other argument of :class:`GridAttentionGate`.

    Shape:
        as :class:`GridAttentionGate`.

    Examples:
        >>> gate = ConvMappedAttentionGate(3, in_channels=4, gating_channels=8)
        >>> y, alpha = gate.attend(torch.randn(1, 4, 6, 8, 10), torch.randn(1, 8, 3, 4, 5))
        >>> gate.mapping.in_channels, gate.mapping.out_channels, tuple(alpha.shape)
        (4, 2, (1, 1, 6, 8, 10))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        gating_channels: int,
        pre_act: ActSpec = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(spatial_dims, in_channels, gating_channels, **kwargs)
        inter = self.inter_channels
        self.mapping = conv_type(spatial_dims)(2 * inter, inter, 1, bias=True)
        self.pre_act = get_act(pre_act) or nn.Identity()

    def combine(self, theta_x: torch.Tensor, phi_g: torch.Tensor) -> torch.Tensor:
        """``act(M([pre(theta_x); pre(phi_g)]))``."""
        stacked = torch.cat([self.pre_act(theta_x), self.pre_act(phi_g)], dim=1)
        return self.act(self.mapping(stacked))


class AdditiveAttentionGate(SkipGate):
    """Same-resolution additive attention gate (the gate most "Attention U-Net" code uses).

    ``g`` is the decoder feature *after* up-sampling, on the skip's grid::

        alpha = sigmoid(norm(psi(act(norm(W_g g) + norm(W_x x)))))
        y     = alpha * x

    with ``W_g``, ``W_x`` and ``psi`` 1x1 convolutions (``psi`` maps to one channel). This
    is what MONAI's ``AttentionUnet`` and many public repositories implement under the name
    "attention gate"; unlike :class:`GridAttentionGate` it has no stride and no resizing.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: ``C_x``, skip channels.
        gating_channels: ``C_g``, channels of the up-sampled decoder feature.
        inter_channels: ``F_int``; default ``max(1, C_x // 2)``.
        norm: norm spec after each projection (``None`` to drop them).
        act: activation spec of the sum.
        bias: bias of the three convolutions.

    Shape:
        ``x``: ``(B, C_x, *S)``; ``g``: ``(B, C_g, *S)``; output ``(B, C_x, *S)``;
        ``alpha``: ``(B, 1, *S)``.

    Examples:
        >>> gate = AdditiveAttentionGate(2, in_channels=8, gating_channels=8)
        >>> y, alpha = gate.attend(torch.randn(2, 8, 9, 11), torch.randn(2, 8, 9, 11))
        >>> tuple(alpha.shape)
        (2, 1, 9, 11)
    """

    gating = "upsampled"

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        gating_channels: int,
        inter_channels: int | None = None,
        norm: NormSpec = "batch",
        act: ActSpec = "relu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        inter = max(1, in_channels // 2) if inter_channels is None else inter_channels
        check_channels(
            in_channels=in_channels, gating_channels=gating_channels, inter_channels=inter
        )

        def project(cin: int, cout: int) -> ConvNormAct:
            return ConvNormAct(spatial_dims, cin, cout, 1, 1, norm, None, bias=bias)

        self.in_channels = in_channels
        self.gating_channels = gating_channels
        self.inter_channels = inter
        self.w_g = project(gating_channels, inter)
        self.w_x = project(in_channels, inter)
        self.psi = project(inter, 1)
        self.act = get_act(act) or nn.Identity()
        self.coefficients = nn.Identity()
        self.mode: Final[str] = interp_mode(spatial_dims)

    def attend(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(gated skip, alpha)``; ``alpha`` has shape ``(B, 1, *x.shape[2:])``."""
        g1 = self.w_g(g)
        if g1.shape[2:] != x.shape[2:]:
            g1 = resize(g1, list(x.shape[2:]), self.mode, False)
        alpha = self.coefficients(torch.sigmoid(self.psi(self.act(g1 + self.w_x(x)))))
        return alpha * x, alpha


class SelfAttentionSkip(SkipGate):
    """Attention-based forward passing: a skip gated by itself (no gating signal).

    ``alpha = sigmoid(conv(x))`` (or ``tanh``) with ``conv`` a biased 1x1 convolution to one
    channel; ``y = alpha * x``. Used on every skip of Attention UNet++ in the
    electron-microscopy study. ``g`` is accepted and ignored, so the gate plugs into any
    U-Net skeleton.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: ``C_x``.
        gating_channels: ignored (kept for the common gate signature).
        act: ``"sigmoid"`` (default) or ``"tanh"``.

    Shape:
        ``x``: ``(B, C_x, *S)``; output ``(B, C_x, *S)``; ``alpha``: ``(B, 1, *S)``.

    Examples:
        >>> gate = SelfAttentionSkip(3, in_channels=4)
        >>> y, alpha = gate.attend(torch.randn(1, 4, 5, 6, 7), torch.empty(0))
        >>> tuple(alpha.shape)
        (1, 1, 5, 6, 7)
    """

    gating = "none"

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        gating_channels: int | None = None,
        act: Literal["sigmoid", "tanh"] = "sigmoid",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_channels(in_channels=in_channels)
        if act not in ("sigmoid", "tanh"):
            raise ValueError(f"act must be 'sigmoid' or 'tanh', got {act!r}")
        self.in_channels = in_channels
        self.conv = conv_type(spatial_dims)(in_channels, 1, 1, bias=True)
        self.tanh: Final[bool] = act == "tanh"
        self.coefficients = nn.Identity()

    def attend(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(gated skip, alpha)``; ``g`` is ignored."""
        logit = self.conv(x)
        alpha = torch.tanh(logit) if self.tanh else torch.sigmoid(logit)
        alpha = self.coefficients(alpha)
        return alpha * x, alpha

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        return self.attend(x, x)[0]


class MultiAttentionGate(SkipGate):
    """Several independent gates on one skip, merged by ``Conv1 -> norm -> act``.

    Oktay's CT models run two grid gates per skip (``num_gates=2``, the "multi" form),
    concatenate their gated outputs and merge them back to ``C_x`` channels with a 1x1
    convolution (bias), a norm and an activation. ``num_gates=1`` is the "single" form: one
    gate followed by the same ``C_x -> C_x`` merge.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: ``C_x``.
        gating_channels: ``C_g``.
        gate: spec of each gate (default ``"grid_oktay"``).
        num_gates: how many gates.
        norm: norm spec of the merge (and the default of named inner gates).
        act: activation spec of the merge.
        subsample: passed to named inner gates with a grid (see :func:`build_gate`).

    Shape:
        ``x``: ``(B, C_x, *S)``; output ``(B, C_x, *S)``; ``alpha``: ``(B, num_gates, *S)``,
        channel ``k`` from gate ``k``.

    Examples:
        >>> gate = MultiAttentionGate(3, in_channels=4, gating_channels=8)
        >>> y, alpha = gate.attend(torch.randn(1, 4, 6, 8, 10), torch.randn(1, 8, 3, 4, 5))
        >>> tuple(y.shape), tuple(alpha.shape)
        ((1, 4, 6, 8, 10), (1, 2, 6, 8, 10))
    """

    if TYPE_CHECKING:  # what the nn.ModuleList holds; TorchScript never sees this
        gates: Sequence[SkipGate]

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        gating_channels: int,
        gate: GateSpec = "grid_oktay",
        num_gates: int = 2,
        norm: NormSpec = "batch",
        act: ActSpec = "relu",
        subsample: int | Sequence[int] | None = None,
    ) -> None:
        check_channels(num_gates=num_gates)
        gates: list[SkipGate] = []
        for _ in range(num_gates):
            built = build_gate(
                gate, spatial_dims, in_channels, gating_channels, norm, subsample=subsample
            )
            if built is None:
                raise ValueError("MultiAttentionGate needs a gate spec, got None")
            gates.append(built)
        super().__init__(gates[0].gating)
        self.add_module("gates", nn.ModuleList(gates))  # typed as Sequence[SkipGate] above
        self.merge = ConvNormAct(
            spatial_dims, num_gates * in_channels, in_channels, 1, 1, norm, act, bias=True
        )
        self.coefficients = nn.Identity()

    def attend(self, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(merged gated skip, alphas)``, ``alphas`` with one channel per gate."""
        outputs: list[torch.Tensor] = []
        alphas: list[torch.Tensor] = []
        for gate in self.gates:
            y, alpha = gate.attend(x, g)
            outputs.append(y)
            alphas.append(alpha)
        alpha = self.coefficients(torch.cat(alphas, dim=1))
        return self.merge(torch.cat(outputs, dim=1)), alpha


class GridGatingSignal(ConvNormAct):
    """Oktay's gating signal: ``Conv1 (bias) -> norm -> act`` on the bottleneck feature.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: bottleneck channels.
        out_channels: gating channels (Oktay: equal to ``in_channels``).
        norm: norm spec.
        act: activation spec.

    Shape:
        ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``.

    Examples:
        >>> GridGatingSignal(3, 16, 16)(torch.randn(1, 16, 2, 3, 4)).shape
        torch.Size([1, 16, 2, 3, 4])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        norm: NormSpec = "batch",
        act: ActSpec = "relu",
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_channels, 1, 1, norm, act, bias=True)


def _grid(spatial_dims: int, in_channels: int, gating_channels: int, **kw: Any) -> SkipGate:
    return GridAttentionGate(spatial_dims, in_channels, gating_channels, **kw)


def _grid_krd(spatial_dims: int, in_channels: int, gating_channels: int, **kw: Any) -> SkipGate:
    opts: dict[str, Any] = {
        "inter_channels": in_channels,
        "theta_bias": True,
        "align_corners": True,
    }
    return GridAttentionGate(spatial_dims, in_channels, gating_channels, **{**opts, **kw})


def _grid_oktay(spatial_dims: int, in_channels: int, gating_channels: int, **kw: Any) -> SkipGate:
    opts: dict[str, Any] = {"inter_channels": in_channels, "output_transform": True}
    return GridAttentionGate(spatial_dims, in_channels, gating_channels, **{**opts, **kw})


def _conv_mapped(spatial_dims: int, in_channels: int, gating_channels: int, **kw: Any) -> SkipGate:
    return ConvMappedAttentionGate(spatial_dims, in_channels, gating_channels, **kw)


def _conv_mapped_oktay(
    spatial_dims: int, in_channels: int, gating_channels: int, **kw: Any
) -> SkipGate:
    opts: dict[str, Any] = {"inter_channels": in_channels, "output_transform": True}
    return ConvMappedAttentionGate(spatial_dims, in_channels, gating_channels, **{**opts, **kw})


GATES: dict[str, Callable[..., SkipGate]] = {
    "grid": _grid,
    "grid_krd": _grid_krd,
    "grid_oktay": _grid_oktay,
    "conv_mapped": _conv_mapped,
    "conv_mapped_oktay": _conv_mapped_oktay,
    "additive": AdditiveAttentionGate,
    "self": SelfAttentionSkip,
    "multi": MultiAttentionGate,
}
"""Gate names accepted by the ``gate`` argument of the U-Net models:

``"grid"`` (:class:`GridAttentionGate`, paper defaults), ``"grid_krd"`` (the
knee-ultrasound study's gate), ``"grid_oktay"`` (Oktay's CT models: ``F_int = C_x``, output
transform), ``"conv_mapped"`` and ``"conv_mapped_oktay"`` (:class:`ConvMappedAttentionGate`
with those defaults), ``"additive"`` (:class:`AdditiveAttentionGate`), ``"self"``
(:class:`SelfAttentionSkip`) and ``"multi"`` (:class:`MultiAttentionGate`)."""


_TAKES_NORM = frozenset(
    {"grid", "grid_krd", "grid_oktay", "conv_mapped", "conv_mapped_oktay", "additive", "multi"}
)
_TAKES_SUBSAMPLE = frozenset(
    {"grid", "grid_krd", "grid_oktay", "conv_mapped", "conv_mapped_oktay", "multi"}
)


def build_gate(
    spec: GateSpec,
    spatial_dims: int,
    in_channels: int,
    gating_channels: int,
    norm: NormSpec | None = None,
    subsample: int | Sequence[int] | None = None,
) -> SkipGate | None:
    """Build a gate from a spec.

    Args:
        spec: ``None`` (no gate); a name from :data:`GATES`; a ``(name, kwargs)`` pair
            whose kwargs go to the gate (e.g. ``("multi", {"gate": "grid_oktay",
            "num_gates": 2})``); or a callable ``f(spatial_dims, in_channels,
            gating_channels)`` returning a :class:`SkipGate`. A gate whose ``gating`` is
            ``"upsampled"`` is rebuilt by the U-Net models with the up-sampled feature's
            channels and fed that feature.
        spatial_dims: 1, 2 or 3.
        in_channels: skip channels ``C_x``.
        gating_channels: gating channels ``C_g``.
        norm: a default norm spec for named gates that have norms (every named gate but
            ``"self"``), used unless the spec's kwargs set ``norm``; the U-Net models pass
            their own ``norm`` here, so ``norm="instance"`` reaches the gates too.
        subsample: a default ``subsample`` for named gates with a coarse grid (``"grid*"``,
            ``"conv_mapped*"``, and the gates of ``"multi"``), used unless the spec's
            kwargs set it; the U-Net models pass the stride between the skip's stage and
            the next, so a gate below an anisotropic stage (stride ``(1, 2, 2)``) samples
            its grid the same way. Callables and other gates do not receive it.

    Raises:
        ValueError: unknown gate name (close matches are suggested).
        TypeError: a callable that does not return a :class:`SkipGate`.

    Examples:
        >>> gate = build_gate(("grid", {"inter_channels": 4}), 3, 8, 16)
        >>> type(gate).__name__, gate.inter_channels
        ('GridAttentionGate', 4)
    """
    if callable(spec) and not isinstance(spec, str):
        return _checked_gate(spec, spec(spatial_dims, in_channels, gating_channels))
    name, kwargs = parse_spec(spec, "gate")
    if name is None:
        return None
    if name not in GATES:
        raise unknown_choice("gate", name, tuple(GATES))
    if norm is not None and name in _TAKES_NORM:
        kwargs.setdefault("norm", norm)
    if subsample is not None and name in _TAKES_SUBSAMPLE:
        kwargs.setdefault("subsample", subsample)
    return _checked_gate(name, GATES[name](spatial_dims, in_channels, gating_channels, **kwargs))


def _checked_gate(spec: object, gate: object) -> SkipGate:
    if not isinstance(gate, SkipGate):
        raise TypeError(
            f"the gate spec {spec!r} built a {type(gate).__name__}, which is not a "
            f"SkipGate: subclass attnunet.blocks.SkipGate (call super().__init__(gating=...) "
            f"with 'coarse', 'upsampled' or 'none', and implement attend(x, g) -> "
            f"(gated, alpha))"
        )
    return gate


def build_skip_gate(
    spec: GateSpec,
    spatial_dims: int,
    skip_channels: int,
    coarse_channels: int,
    upsampled_channels: int,
    norm: NormSpec | None = None,
    subsample: int | Sequence[int] | None = None,
) -> SkipGate | None:
    """Build the gate of one U-Net skip: for the coarse gating feature, or rebuilt for the
    up-sampled feature's channels when the gate declares ``gating = "upsampled"``.

    Args:
        spec: gate spec (see :func:`build_gate`).
        spatial_dims: 1, 2 or 3.
        skip_channels: ``C_x``.
        coarse_channels: channels of the coarse decoder feature (or gating signal).
        upsampled_channels: channels of that feature after the model's up-sampler.
        norm: the model's norm spec, passed on as in :func:`build_gate`.
        subsample: the stride from the skip's stage to the coarse one, passed on as in
            :func:`build_gate`.

    Examples:
        >>> build_skip_gate("additive", 2, 8, 16, 16).gating_channels
        16
    """
    gate = build_gate(spec, spatial_dims, skip_channels, coarse_channels, norm, subsample)
    if gate is not None and gate.gating == "upsampled":
        gate = build_gate(spec, spatial_dims, skip_channels, upsampled_channels, norm, subsample)
    return gate
