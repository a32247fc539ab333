"""Random data augmentation for (image, mask) pairs, in any number of spatial dimensions.

Every transform takes one sample, an image ``(C, *spatial)`` (floating point) and an
optional mask ``(*spatial)`` (integer label map, or bool), and returns the pair
``(image, mask)``. Geometric transforms (:class:`RandomFlip`, :class:`RandomRot90`) move
image and mask identically; intensity transforms (:class:`RandomIntensityNoise`,
:class:`RandomGaussianBlur`, :class:`RandomIntensityScaleShift`) change the image only
and hand the mask back untouched. Dtype and device are kept.

Randomness comes from the ``generator`` passed to each call (a ``torch.Generator``;
``None`` uses torch's global generator), so seeding a generator reproduces a pipeline
exactly. Every call takes the same amount of random numbers from ``generator`` whether
or not it applies, so one transform's decision never shifts the draws of the next. The
decisions and parameters are drawn on the generator's device; bulk noise is generated on
the image's device from a seed taken from ``generator`` (so it is reproducible per device
type, and never copied between devices).

Examples:
    >>> import torch
    >>> augment = default_augmentation(spatial_dims=2)
    >>> image, mask = torch.rand(1, 32, 32), torch.randint(0, 3, (32, 32))
    >>> out, out_mask = augment(image, mask, generator=torch.Generator().manual_seed(0))
    >>> out.shape, out_mask.shape, out_mask.dtype
    (torch.Size([1, 32, 32]), torch.Size([32, 32]), torch.int64)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "Compose",
    "RandomFlip",
    "RandomGaussianBlur",
    "RandomIntensityNoise",
    "RandomIntensityScaleShift",
    "RandomRot90",
    "default_augmentation",
    "gaussian_blur",
]

Sample = tuple[torch.Tensor, torch.Tensor | None]


# ---------------------------------------------------------------------------- helpers
def _check_sample(image: object, mask: object) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor (C, *spatial), got {type(image).__name__}")
    if image.dim() < 2:
        raise ValueError(
            f"image must be (C, *spatial) with a channel axis and at least one spatial axis, "
            f"got shape {list(image.shape)}; add a channel axis with image[None]"
        )
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.shape != image.shape[1:]:
        hint = (
            "; drop the mask's channel axis with mask[0]"
            if mask.dim() == image.dim() and mask.shape[1:] == image.shape[1:]
            else ""
        )
        raise ValueError(
            f"mask must have the image's spatial shape {list(image.shape[1:])} (no channel "
            f"axis), got {list(mask.shape)}{hint}"
        )


def _check_float_image(image: torch.Tensor, name: str) -> None:
    if not image.is_floating_point():
        raise TypeError(
            f"{name} needs a floating-point image, got {image.dtype}; convert it with "
            f"image.float() first"
        )


def _check_probability(p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    return float(p)


def _check_axes(axes: object) -> tuple[int, ...] | None:
    if axes is None:
        return None
    if isinstance(axes, int) and not isinstance(axes, bool):
        axes = (axes,)
    if not isinstance(axes, Sequence) or not all(
        isinstance(a, int) and not isinstance(a, bool) for a in axes
    ):
        raise ValueError(f"axes must be None, an int or a sequence of ints, got {axes!r}")
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes must not repeat an axis, got {axes!r}")
    return tuple(axes)


def _spatial_axes(axes: tuple[int, ...] | None, spatial_dims: int) -> list[int]:
    """Resolve spatial axis indices (negative ones count from the end) for a sample."""
    if axes is None:
        return list(range(spatial_dims))
    resolved = []
    for a in axes:
        if not -spatial_dims <= a < spatial_dims:
            raise ValueError(
                f"axis {a} is out of range for an image with {spatial_dims} spatial axes: "
                f"axes index spatial axes only (0 to {spatial_dims - 1}, the channel axis "
                f"excluded)"
            )
        resolved.append(a % spatial_dims)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"axes {axes} name the same spatial axis twice")
    return resolved


def _uniform(n: int, generator: torch.Generator | None) -> list[float]:
    """``n`` uniform numbers in [0, 1) from ``generator`` (global RNG when None)."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(n, generator=generator, device=device, dtype=torch.float64).tolist()


def _seed(generator: torch.Generator | None) -> int:
    """A seed for a generator of bulk random numbers, drawn from ``generator``."""
    device = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())


def _gaussian_kernel(sigma: float, truncate: float) -> torch.Tensor:
    """Normalised 1D Gaussian of radius ``int(truncate * sigma + 0.5)`` (as SciPy)."""
    radius = int(truncate * sigma + 0.5)
    pos = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (pos / sigma) ** 2)
    return kernel / kernel.sum()


def _reflect_index(length: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices extending ``0..length-1`` by ``radius`` on both sides, mirrored about the
    edges with the edge voxel repeated (``d c b a | a b c d | d c b a``), at any radius."""
    pos = torch.arange(-radius, length + radius, device=device)
    pos = pos.remainder(2 * length)
    return torch.where(pos >= length, 2 * length - 1 - pos, pos)


def gaussian_blur(
    image: torch.Tensor, sigma: float | Sequence[float], truncate: float = 4.0
) -> torch.Tensor:
    """Blur every channel of ``image`` with a separable Gaussian, on the image's device.

    Each spatial axis is convolved with a normalised 1D Gaussian of radius
    ``int(truncate * sigma + 0.5)``; borders are extended by mirroring with the edge voxel
    repeated (``d c b a | a b c d``). Both choices are those of
    ``scipy.ndimage.gaussian_filter`` with its default ``mode="reflect"``, so the result
    matches it (per channel, with ``sigma=0`` on the channel axis). A constant image stays
    constant.

    Args:
        image: a ``(C, *spatial)`` floating-point tensor; every axis after the first is
            blurred (reshape a batch to ``(B * C, *spatial)`` first).
        sigma: standard deviation in voxels, one number for all spatial axes or one per
            axis; 0 leaves an axis unblurred.
        truncate: kernel radius in standard deviations.

    Returns:
        The blurred image, same shape, dtype and device (half-precision images are
        blurred in ``float32``).

    Raises:
        TypeError: ``image`` is not a floating-point tensor.
        ValueError: a negative sigma, wrong number of sigmas, or a non-positive truncate.

    Examples:
        >>> impulse = torch.zeros(1, 5)
        >>> impulse[0, 2] = 1.0
        >>> gaussian_blur(impulse, sigma=1.0, truncate=1.0)  # radius 1: exp(-1/2), 1, ...
        tensor([[0.0000, 0.2741, 0.4519, 0.2741, 0.0000]])
    """
    _check_sample(image, None)
    _check_float_image(image, "gaussian_blur")
    spatial_dims = image.dim() - 1
    if isinstance(sigma, Sequence):
        sigmas = [float(s) for s in sigma]
        if len(sigmas) != spatial_dims:
            raise ValueError(
                f"got {len(sigmas)} sigmas for an image with {spatial_dims} spatial axes: "
                f"give one sigma or one per spatial axis"
            )
    else:
        sigmas = [float(sigma)] * spatial_dims
    if not all(0 <= s < math.inf for s in sigmas):
        raise ValueError(f"sigma must be non-negative and finite, got {sigma!r}")
    if not truncate > 0:
        raise ValueError(f"truncate must be positive, got {truncate!r}")
    work = image if image.dtype in (torch.float32, torch.float64) else image.float()
    for axis, s in enumerate(sigmas):
        if s == 0:
            continue
        kernel = _gaussian_kernel(s, truncate).to(device=work.device, dtype=work.dtype)
        radius = (kernel.numel() - 1) // 2
        moved = work.movedim(axis + 1, -1)
        length = moved.shape[-1]
        rows = moved.reshape(-1, 1, length)
        rows = rows.index_select(2, _reflect_index(length, radius, work.device))
        rows = F.conv1d(rows, kernel.view(1, 1, -1))
        work = rows.reshape(moved.shape).movedim(-1, axis + 1)
    return work.to(image.dtype).contiguous()


# ---------------------------------------------------------------------------- transforms
class RandomFlip:
    """Flip each spatial axis independently with probability ``p`` (image and mask).

    Args:
        p: probability of flipping each axis.
        axes: spatial axes that may flip (0 is the first spatial axis, the channel axis
            is never counted; negative values count from the end), or ``None`` for all.

    Raises:
        ValueError: ``p`` outside ``[0, 1]`` or malformed ``axes`` (at call time: an axis
            the sample does not have).

    Examples:
        >>> image = torch.arange(6.0).reshape(1, 2, 3)
        >>> flipped, _ = RandomFlip(p=1.0, axes=[1])(image)  # mirror axis 1 (width)
        >>> flipped
        tensor([[[2., 1., 0.],
                 [5., 4., 3.]]])
    """

    def __init__(self, p: float = 0.5, axes: int | Sequence[int] | None = None) -> None:
        self.p = _check_probability(p)
        self.axes = _check_axes(axes)

    def __call__(
        self,
        image: torch.Tensor,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Sample:
        _check_sample(image, mask)
        axes = _spatial_axes(self.axes, image.dim() - 1)
        draws = _uniform(len(axes), generator)
        chosen = [a for a, u in zip(axes, draws, strict=True) if u < self.p]
        if not chosen:
            return image, mask
        image = image.flip([a + 1 for a in chosen])
        if mask is not None:
            mask = mask.flip(chosen)
        return image, mask

    def __repr__(self) -> str:
        return f"RandomFlip(p={self.p}, axes={self.axes})"


class RandomRot90:
    """With probability ``p``, rotate by 90, 180 or 270 degrees in a random plane.

    The plane is drawn uniformly among the pairs of ``axes``; the angle uniformly among
    the three non-zero multiples of 90 degrees. The mask rotates with the image.

    With ``keep_shape=True`` (default) only planes whose two axes have the same size are
    used, so the output has the input's shape and samples still batch together; a sample
    with no such plane (e.g. a non-square 2D image) is returned unchanged. With
    ``keep_shape=False`` every plane is used and a 90 or 270 degree rotation swaps the
    two sizes.

    Args:
        p: probability of rotating.
        axes: spatial axes whose planes may rotate (at least two), or ``None`` for all.
        keep_shape: only rotate planes with two equal sizes.

    Raises:
        ValueError: ``p`` outside ``[0, 1]``, fewer than two ``axes``, or (at call time)
            an axis the sample does not have.

    Examples:
        >>> image = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
        >>> rotated, mask = RandomRot90(p=1.0)(image, image[0].long(),
        ...                                    torch.Generator().manual_seed(0))
        >>> bool((rotated[0] == mask).all())  # the mask moved with the image
        True
    """

    def __init__(
        self, p: float = 0.5, axes: Sequence[int] | None = None, keep_shape: bool = True
    ) -> None:
        self.p = _check_probability(p)
        self.axes = _check_axes(axes)
        if self.axes is not None and len(self.axes) < 2:
            raise ValueError(f"a rotation plane needs two axes; got axes={axes!r}")
        self.keep_shape = bool(keep_shape)

    def __call__(
        self,
        image: torch.Tensor,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Sample:
        _check_sample(image, mask)
        spatial = image.shape[1:]
        axes = _spatial_axes(self.axes, len(spatial))
        planes = [
            (a, b)
            for a, b in itertools.combinations(axes, 2)
            if not self.keep_shape or spatial[a] == spatial[b]
        ]
        apply, plane_draw, k_draw = _uniform(3, generator)
        if apply >= self.p or not planes:
            return image, mask
        a, b = planes[min(int(plane_draw * len(planes)), len(planes) - 1)]
        k = 1 + min(int(k_draw * 3), 2)
        image = torch.rot90(image, k, (a + 1, b + 1))
        if mask is not None:
            mask = torch.rot90(mask, k, (a, b))
        return image, mask

    def __repr__(self) -> str:
        return f"RandomRot90(p={self.p}, axes={self.axes}, keep_shape={self.keep_shape})"


class RandomIntensityNoise:
    """With probability ``p``, add Gaussian noise of standard deviation ``std`` to the image.

    The mask is returned untouched. The noise is drawn directly on the image's device (in
    ``float32``, or ``float64`` for ``float64`` images) by a generator seeded from
    ``generator``: the same seed gives the same noise on the same kind of device.

    Args:
        std: standard deviation of the noise, in image intensity units (``>= 0``).
        p: probability of adding noise.

    Raises:
        ValueError: negative ``std`` or ``p`` outside ``[0, 1]``.
        TypeError: (at call time) an integer image.

    Examples:
        >>> image = torch.zeros(1, 100, 100)
        >>> noisy, _ = RandomIntensityNoise(std=0.1, p=1.0)(image, None,
        ...                                                 torch.Generator().manual_seed(0))
        >>> round(noisy.std().item(), 2)
        0.1
    """

    def __init__(self, std: float = 0.05, p: float = 0.5) -> None:
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not 0 <= std < math.inf:
            raise ValueError(f"std must be a non-negative number, got {std!r}")
        self.std = float(std)
        self.p = _check_probability(p)

    def __call__(
        self,
        image: torch.Tensor,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Sample:
        _check_sample(image, mask)
        _check_float_image(image, "RandomIntensityNoise")
        (apply,) = _uniform(1, generator)
        seed = _seed(generator)
        if apply >= self.p:
            return image, mask
        noise_rng = torch.Generator(device=image.device).manual_seed(seed)
        dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
        noise = torch.randn(image.shape, generator=noise_rng, device=image.device, dtype=dtype)
        return image + (self.std * noise).to(image.dtype), mask

    def __repr__(self) -> str:
        return f"RandomIntensityNoise(std={self.std}, p={self.p})"


class RandomGaussianBlur:
    """With probability ``p``, blur the image with an isotropic Gaussian (mask untouched).

    The standard deviation is drawn uniformly from ``sigma = (low, high)`` (or fixed when
    a single number) and used on every spatial axis; the blur is :func:`gaussian_blur`
    (separable convolutions on the image's device, SciPy's ``"reflect"`` border mode).

    Args:
        sigma: ``(low, high)`` range of the standard deviation in voxels, or one number.
        p: probability of blurring.

    Raises:
        ValueError: a negative or reversed ``sigma`` range, or ``p`` outside ``[0, 1]``.
        TypeError: (at call time) an integer image.

    Examples:
        >>> image = torch.ones(2, 8, 8, 8)
        >>> blurred, _ = RandomGaussianBlur(sigma=(0.5, 1.0), p=1.0)(image)
        >>> bool(torch.allclose(blurred, image))  # a constant image stays constant
        True
    """

    def __init__(self, sigma: float | tuple[float, float] = (0.5, 1.0), p: float = 0.2) -> None:
        if isinstance(sigma, (int, float)):
            low, high = sigma, sigma
        elif isinstance(sigma, Sequence) and len(sigma) == 2:
            low, high = sigma
        else:
            raise ValueError(f"sigma must be a number or a (low, high) pair, got {sigma!r}")
        if (
            isinstance(low, bool)
            or isinstance(high, bool)
            or not (
                isinstance(low, (int, float))
                and isinstance(high, (int, float))
                and 0 <= low <= high
            )
            or not math.isfinite(high)
        ):
            raise ValueError(
                f"sigma must be a non-negative number or a (low, high) range with "
                f"0 <= low <= high, got {sigma!r}"
            )
        self.sigma = (float(low), float(high))
        self.p = _check_probability(p)

    def __call__(
        self,
        image: torch.Tensor,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Sample:
        _check_sample(image, mask)
        _check_float_image(image, "RandomGaussianBlur")
        apply, draw = _uniform(2, generator)
        if apply >= self.p:
            return image, mask
        low, high = self.sigma
        return gaussian_blur(image, low + (high - low) * draw), mask

    def __repr__(self) -> str:
        return f"RandomGaussianBlur(sigma={self.sigma}, p={self.p})"


class RandomIntensityScaleShift:
    """With probability ``p``, map the image to ``image * (1 + s) + t`` (mask untouched).

    ``s`` is uniform in ``[-scale, scale]`` and ``t`` uniform in ``[-shift, shift]``, drawn
    once for the whole image or, with ``per_channel=True``, once per channel.

    Args:
        scale: largest relative change of contrast (``0.1``: up to +-10 %).
        shift: largest offset, in image intensity units.
        p: probability of applying.
        per_channel: draw ``s`` and ``t`` separately for every channel.

    Raises:
        ValueError: negative ``scale`` or ``shift``, or ``p`` outside ``[0, 1]``.
        TypeError: (at call time) an integer image.

    Examples:
        >>> t = RandomIntensityScaleShift(scale=0.0, shift=0.5, p=1.0)
        >>> out, _ = t(torch.zeros(1, 4), None, torch.Generator().manual_seed(0))
        >>> bool((out == out[0, 0]).all() and out.abs().max() <= 0.5)
        True
    """

    def __init__(
        self, scale: float = 0.1, shift: float = 0.1, p: float = 0.5, per_channel: bool = False
    ) -> None:
        for name, value in (("scale", scale), ("shift", shift)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value < math.inf
            ):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        self.scale = float(scale)
        self.shift = float(shift)
        self.p = _check_probability(p)
        self.per_channel = bool(per_channel)

    def __call__(
        self,
        image: torch.Tensor,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Sample:
        _check_sample(image, mask)
        _check_float_image(image, "RandomIntensityScaleShift")
        n = image.shape[0] if self.per_channel else 1
        draws = _uniform(1 + 2 * n, generator)
        if draws[0] >= self.p:
            return image, mask
        shape = [n] + [1] * (image.dim() - 1)
        u = torch.tensor(draws[1:], dtype=torch.float64).reshape(2, *shape)
        factor = 1 + self.scale * (2 * u[0] - 1)
        offset = self.shift * (2 * u[1] - 1)
        factor = factor.to(device=image.device, dtype=image.dtype)
        offset = offset.to(device=image.device, dtype=image.dtype)
        return image * factor + offset, mask

    def __repr__(self) -> str:
        return (
            f"RandomIntensityScaleShift(scale={self.scale}, shift={self.shift}, p={self.p}, "
            f"per_channel={self.per_channel})"
        )


Transform = Callable[..., Sample]


class Compose:
    """Apply transforms one after the other, passing the same generator to each.

    Args:
        transforms: callables ``t(image, mask, generator) -> (image, mask)``, e.g. the
            classes of this module.
        spatial_dims: if given, every sample must have this many spatial axes; catches
            e.g. a batch ``(B, C, H, W)`` passed to a 2D pipeline, which would otherwise
            be taken for a 3D sample.

    Raises:
        TypeError: a transform is not callable.
        ValueError: (at call time) a sample with the wrong number of spatial axes.

    Examples:
        >>> pipeline = Compose([RandomFlip(p=1.0), RandomIntensityNoise(std=0.0, p=1.0)])
        >>> pipeline(torch.tensor([[1.0, 2.0, 3.0]]))[0]
        tensor([[3., 2., 1.]])
    """

    def __init__(self, transforms: Sequence[Transform], spatial_dims: int | None = None) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"every transform must be callable, got {t!r}")
        if spatial_dims is not None and (
            isinstance(spatial_dims, bool) or not isinstance(spatial_dims, int) or spatial_dims < 1
        ):
            raise ValueError(f"spatial_dims must be a positive int or None, got {spatial_dims!r}")
        self.spatial_dims = spatial_dims

    def __call__(
        self,
        image: torch.Tensor,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Sample:
        _check_sample(image, mask)
        if self.spatial_dims is not None and image.dim() - 1 != self.spatial_dims:
            raise ValueError(
                f"this pipeline expects one {self.spatial_dims}D sample (C, *spatial) with "
                f"{self.spatial_dims + 1} axes, got image shape {list(image.shape)}; apply it "
                f"to each sample of a batch separately"
            )
        for t in self.transforms:
            image, mask = t(image, mask, generator)
        return image, mask

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n], spatial_dims={self.spatial_dims})"


_STRENGTHS = ("light", "standard")


def default_augmentation(spatial_dims: int, strength: str = "standard") -> Compose:
    """The augmentation recipe of the training command, for one sample.

    Both strengths flip every spatial axis with probability 0.5 and rotate by a multiple
    of 90 degrees (in a plane of equal sizes) with probability 0.5, then:

    - ``"light"``: Gaussian noise (std 0.03, p 0.15) and blur (sigma 0.5-1.0, p 0.1);
    - ``"standard"``: intensity scale/shift (+-10 %, +-0.1, p 0.3), noise (std 0.05,
      p 0.2) and blur (sigma 0.5-1.0, p 0.2).

    Intensities are assumed normalised (roughly zero mean, unit variance or ``[0, 1]``).

    Args:
        spatial_dims: number of spatial axes of the samples (checked at every call).
        strength: ``"light"`` or ``"standard"`` (default).

    Returns:
        A :class:`Compose` pipeline.

    Raises:
        ValueError: ``spatial_dims < 1`` or an unknown ``strength``.

    Examples:
        >>> default_augmentation(3, "light")
        Compose([
            RandomFlip(p=0.5, axes=(0, 1, 2)),
            RandomRot90(p=0.5, axes=(0, 1, 2), keep_shape=True),
            RandomIntensityNoise(std=0.03, p=0.15),
            RandomGaussianBlur(sigma=(0.5, 1.0), p=0.1),
        ], spatial_dims=3)
    """
    if isinstance(spatial_dims, bool) or not isinstance(spatial_dims, int) or spatial_dims < 1:
        raise ValueError(f"spatial_dims must be a positive int, got {spatial_dims!r}")
    if strength not in _STRENGTHS:
        raise ValueError(
            f"strength must be one of {', '.join(map(repr, _STRENGTHS))}, got {strength!r}"
        )
    axes = tuple(range(spatial_dims))
    transforms: list[Transform] = [RandomFlip(p=0.5, axes=axes)]
    if spatial_dims >= 2:
        transforms.append(RandomRot90(p=0.5, axes=axes))
    if strength == "light":
        transforms += [
            RandomIntensityNoise(std=0.03, p=0.15),
            RandomGaussianBlur(sigma=(0.5, 1.0), p=0.1),
        ]
    else:
        transforms += [
            RandomIntensityScaleShift(scale=0.1, shift=0.1, p=0.3),
            RandomIntensityNoise(std=0.05, p=0.2),
            RandomGaussianBlur(sigma=(0.5, 1.0), p=0.2),
        ]
    return Compose(transforms, spatial_dims=spatial_dims)
