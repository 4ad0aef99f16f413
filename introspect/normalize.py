"""The model's normalization as a transform: pixel space [0, 1] -> what the model takes. A module of its own,
so that a spec can build it (``ModelSpec.normalize``) without importing the random transforms."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from .devices import Constant

if TYPE_CHECKING:
    from .models.spec import ModelSpec


class Normalize:
    """Pixel space [0, 1] -> the model's input: (x - mean) / std per channel (on the images' device), then
    the images (B, C, H, W) reshaped to (B, *shape) when the model takes another shape (a 1-D signal
    (C, L) or (L,), held as one row (C, 1, L)): the model boundary."""

    name = "normalize"

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu",
                 shape: Sequence[int] | None = None) -> None:
        self.mean = Constant(torch.tensor(list(mean), device=device).view(1, -1, 1, 1))
        self.std = Constant(torch.tensor(list(std), device=device).view(1, -1, 1, 1))
        self.shape = None if shape is None or len(shape) == 3 else tuple(shape)

    @classmethod
    def of(cls, spec: "ModelSpec", device: torch.device | str = "cpu") -> "Normalize":
        return cls(spec.mean, spec.std, device, spec.input_shape)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        normalized = (pixels - self.mean.like(pixels)) / self.std.like(pixels)
        if self.shape is None or normalized.ndim != 4:
            return normalized
        return normalized.reshape(len(normalized), *self.shape)
