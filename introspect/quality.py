"""Image statistics that tell a plausible visualization from adversarial texture.

Compared with real images of the dataset: total variation (edge energy, high
for noise) and the share of bright pixels (high for saturated blobs).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def total_variation(images: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Per-image absolute differences between neighbouring pixels, (N,): their sum, or with
    ``reduction="mean"`` the mean vertical plus the mean horizontal difference."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1)
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1)
    if reduction == "mean":
        return dx.mean(1) + dy.mean(1)
    return dx.sum(1) + dy.sum(1)


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
