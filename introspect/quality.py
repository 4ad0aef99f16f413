"""Image statistics that tell a plausible visualization from adversarial texture.

Compared with real images of the dataset: total variation (edge energy, high
for noise) and the share of bright pixels (high for saturated blobs). ``is_flat``:
the one test of an optimized image with (almost) no contrast; ``saturates``: the one
verdict that a channel prefers a uniform input, for the PNG reports and the site alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


#: An optimized image flatter than this (pixel standard deviation, or max - min, of values in [0, 1])
#: "saturates": the channel prefers a uniform input.
FLAT_STD, FLAT_RANGE = 0.02, 0.05


def is_flat(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> (N,) bool: (almost) no contrast: std < FLAT_STD or max - min < FLAT_RANGE."""
    flat = images.detach().float().flatten(1)
    return (flat.std(1, unbiased=False) < FLAT_STD) | ((flat.amax(1) - flat.amin(1)) < FLAT_RANGE)


def saved_levels(images: torch.Tensor) -> torch.Tensor:
    """Pixel-space floats in [0, 1] -> the uint8 levels they are saved as (rounding to nearest)."""
    return (images.detach().clamp(0, 1) * 255).round().to(torch.uint8)


def saturates(images: torch.Tensor, reached: torch.Tensor) -> torch.Tensor:
    """(N, D, ...) each channel's D optimized images in [0, 1] (or the uint8 levels they are saved as) and (N,) bool
    whether it was reached -> (N,) bool: the channel saturates (prefers a uniform input): every image of it is flat
    and it was reached (one never opened keeps its flat start, which says nothing of what it prefers). Judged on the
    images as saved (rounded to 8 bits), so that the report, from the result, and the site, from the saved bytes,
    agree."""
    saved = (images if images.dtype == torch.uint8 else saved_levels(images)).float() / 255
    return is_flat(saved.flatten(0, 1)).view(images.shape[:2]).all(1) & reached.to(device=images.device, dtype=torch.bool)


def neighbour_differences(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's differences between horizontal neighbours and between vertical ones (``total_variation``'s)."""
    return images[..., :, 1:] - images[..., :, :-1], images[..., 1:, :] - images[..., :-1, :]


def total_variation(images: torch.Tensor, reduction: str = "sum",
                    differences: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Per-image absolute differences between neighbouring pixels, (N,): their sum, or with
    ``reduction="mean"`` the mean vertical plus the mean horizontal difference. ``differences``: the images'
    ``neighbour_differences``, where the caller has them already."""
    across, down = differences if differences is not None else neighbour_differences(images)
    # Reduced over all the per-image axes at once (the same sums as flattening first, with fewer ops: this runs
    # every step). Only real axes count: a one-row image (a 1-D signal) has no vertical neighbours, and the mean
    # over none would be NaN.
    axes = tuple(range(1, images.ndim))
    parts = [d.abs().mean(axes) if reduction == "mean" else d.abs().sum(axes) for d in (across, down)
             if d.shape[1:].numel()]
    return sum(parts[1:], parts[0]) if parts else images.new_zeros(len(images))


#: Pixel sums below this count as this (``ink_level``): a black image has ink level 0, not NaN.
INK_FLOOR = 1e-12


def ink_sums(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image sum(x^2) and sum(x), (N,) each: what ``ink_level`` divides."""
    flat = images.flatten(1)
    return flat.pow(2).sum(1), flat.sum(1)


def ink_level(images: torch.Tensor) -> torch.Tensor:
    """Per-image brightness of the bright part, sum(x^2) / sum(x), (N,): v for ink at brightness v on
    black, 0 for a black image (in the images' dtype)."""
    squares, total = ink_sums(images)
    return squares / total.clamp(min=INK_FLOOR)


def bright_share(images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-image share of pixels above ``threshold`` (images in [0, 1]), (N,)."""
    return (images > threshold).float().flatten(1).mean(1)


@dataclass(frozen=True)
class Realism:
    """Ratios of a batch's mean statistics to real images' (1.0 = like real data)."""

    tv_ratio: float
    bright_ratio: float
    mean_ratio: float

    def as_dict(self) -> dict[str, float]:
        return {"tv_ratio": self.tv_ratio, "bright_ratio": self.bright_ratio, "mean_ratio": self.mean_ratio}


def realism(images: torch.Tensor, real: torch.Tensor) -> Realism:
    """Compare ``images`` with ``real`` (both (N, C, H, W) in [0, 1])."""
    return Realism(
        tv_ratio=float(total_variation(images).mean() / total_variation(real).mean()),
        bright_ratio=float(bright_share(images).mean() / bright_share(real).mean()),
        mean_ratio=float(images.mean() / real.mean()),
    )


def frame_brightness(images: torch.Tensor, width: int = 3) -> torch.Tensor:
    """Per-image mean brightness of the ``width``-pixel frame, (N,): real MNIST digits ~0.003."""
    frame = torch.ones(images.shape[-2:], dtype=torch.bool, device=images.device)
    frame[width:-width, width:-width] = False
    return images[..., frame].flatten(1).mean(1)


@dataclass(frozen=True)
class Manifold:
    """The top principal components of real images: what lies outside them is far from the data."""

    mean: torch.Tensor  # (D,)
    basis: torch.Tensor  # (D, k), orthonormal columns

    @classmethod
    def fit(cls, real: torch.Tensor, components: int = 50, seed: int = 0) -> "Manifold":
        flat = real.flatten(1).double()
        mean = flat.mean(0)
        torch.manual_seed(seed)  # pca_lowrank's random projections
        _, _, v = torch.pca_lowrank(flat - mean, q=min(components + 10, *flat.shape), center=False, niter=4)
        return cls(mean.float(), v[:, :components].float())

    def residual(self, images: torch.Tensor) -> torch.Tensor:
        """Per-image energy outside the components, (N,): the squared distance from the data's subspace."""
        centred = images.flatten(1).float() - self.mean
        return (centred - centred @ self.basis @ self.basis.T).pow(2).sum(1)
