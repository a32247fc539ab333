"""Training patches: random, foreground-biased and augmented, from one generator."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from attnunet.training.settings import Volume

__all__ = ["PatchSampler"]


class PatchSampler:
    """Random training patches from a list of volumes, drawn from one generator.

    A volume is chosen in proportion to its number of voxels; with probability
    ``foreground_fraction`` the patch is centred on a random foreground voxel, otherwise
    anywhere. Volumes smaller than the patch are zero-padded (label 0). ``transform``
    (an augmentation from :mod:`attnunet.data.transforms`) is applied to every patch.

    Args:
        volumes: the training volumes; each needs a mask.
        patch_size: one size per spatial axis.
        batch_size: patches per batch.
        foreground_fraction: probability that a patch is centred on foreground.
        transform: called as ``transform(image, mask, generator=generator)`` on each patch.

    Raises:
        ValueError: no volumes, or a volume without a mask.
    """

    def __init__(
        self,
        volumes: Sequence[Volume],
        patch_size: Sequence[int],
        batch_size: int,
        foreground_fraction: float = 0.5,
        transform: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None = None,
    ) -> None:
        if not volumes:
            raise ValueError("no training volumes")
        self.patch = tuple(int(p) for p in patch_size)
        self.batch_size = batch_size
        self.foreground_fraction = foreground_fraction
        self.transform = transform
        self.images: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self.foreground: list[np.ndarray] = []
        for v in volumes:
            if v.mask is None:
                raise ValueError(f"{v.name}: training needs a mask")
            pad = [max(0, p - s) for p, s in zip(self.patch, v.mask.shape, strict=True)]
            image = np.pad(v.image, [(0, 0)] + [(0, p) for p in pad])
            mask = np.pad(v.mask, [(0, p) for p in pad])
            self.images.append(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)))
            self.masks.append(torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)))
            self.foreground.append(np.flatnonzero(mask > 0))
        sizes = torch.tensor([float(m.numel()) for m in self.masks])
        self.weights = sizes / sizes.sum()

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: images ``(B, C, *patch)`` and label maps ``(B, *patch)``.

        Args:
            generator: the source of every random draw (volume, centre, augmentation).

        Returns:
            The images (``float32``) and label maps (``int64``) of the batch.
        """
        images, masks = [], []
        for _ in range(self.batch_size):
            index = int(torch.multinomial(self.weights, 1, generator=generator))
            image, mask, fg = self.images[index], self.masks[index], self.foreground[index]
            shape = mask.shape
            if fg.size and float(torch.rand((), generator=generator)) < self.foreground_fraction:
                flat = int(fg[int(torch.randint(fg.size, (), generator=generator))])
                centre = np.unravel_index(flat, shape)
                start = [
                    min(max(0, int(c) - p // 2), s - p)
                    for c, p, s in zip(centre, self.patch, shape, strict=True)
                ]
            else:
                start = [
                    int(torch.randint(s - p + 1, (), generator=generator))
                    for p, s in zip(self.patch, shape, strict=True)
                ]
            window = tuple(slice(a, a + p) for a, p in zip(start, self.patch, strict=True))
            channels_and_window = (slice(None), *window)
            x, y = image[channels_and_window], mask[window]
            if self.transform is not None:
                x, transformed = self.transform(x, y, generator=generator)
                y = y if transformed is None else transformed
            images.append(x)
            masks.append(y)
        return torch.stack(images), torch.stack(masks)
