"""Shape-keeping random transforms sized to the input: one affine resample per step.

Jitter, small scale and small rotation are combined into one grid_sample, so
the batch keeps its (B, C, H, W) shape and values stay in [0, 1].
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TransformConfig:
    """Random jitter (pixels; None: 1/14 of the side, 2 px at 28, 16 px at 224), scale (±fraction), rotation (±degrees)."""

    jitter: int | None = None
    scale: float = 0.1
    rotate: float = 10.0

    def jitter_pixels(self, size: int) -> int:
        return max(1, round(size / 14)) if self.jitter is None else self.jitter

    @property
    def enabled(self) -> bool:
        return self.jitter != 0 or self.scale > 0 or self.rotate > 0


def random_affine_params(generators: Sequence[torch.Generator]) -> torch.Tensor:
    """(B, 4) uniform draws in [-1, 1), one row per image from its own generator."""
    return torch.stack([torch.rand(4, generator=g) for g in generators]) * 2 - 1


def apply_affine(images: torch.Tensor, draws: torch.Tensor, config: TransformConfig) -> torch.Tensor:
    """Shift, scale and rotate each image by its row of ``draws`` (B, 4) in [-1, 1); zeros fill the border."""
    _, _, height, width = images.shape
    jitter = config.jitter_pixels(min(height, width))
    draws = draws.to(images)
    angle = draws[:, 0] * math.radians(config.rotate)
    zoom = 1 + draws[:, 1] * config.scale
    shift_x = torch.round(draws[:, 2] * jitter) * 2 / width
    shift_y = torch.round(draws[:, 3] * jitter) * 2 / height
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
