"""Transforms between the image and the model: shape-keeping random affine resamples sized to
the input (jitter, small scale and rotation in one grid_sample, values kept in [0, 1]; optional Gaussian noise
after it), and the model's normalization, applied last."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .normalize import Normalize  # noqa: F401 - one of the transforms
from .params import TRANSFORMS, image_generators, offspring


@dataclass(frozen=True)
class TransformConfig:
    """Random jitter (pixels; None: 1/14 of the side, 2 px at 28, 16 px at 224), scale (±fraction), rotation (±degrees),
    then Gaussian noise of standard deviation ``noise`` (pixel values, images in [0, 1]; 0: none) added to what the model
    sees. One-row or one-column inputs (1-D signals) get jitter along their length only: no rotation (which samples
    off the line) and no scale (which changes a signal's frequencies, its pitch: what it is)."""

    jitter: int | None = None
    scale: float = 0.1
    rotate: float = 10.0
    noise: float = 0.0

    def jitter_pixels(self, size: int) -> int:
        return max(1, round(size / 14)) if self.jitter is None else self.jitter

    @property
    def enabled(self) -> bool:
        return self.jitter != 0 or self.scale > 0 or self.rotate > 0 or self.noise > 0


def random_affine_params(generators: Sequence[torch.Generator]) -> torch.Tensor:
    """(B, 4) uniform draws in [-1, 1), one row per image from its own generator."""
    return torch.stack([torch.rand(4, generator=g) for g in generators]) * 2 - 1


def is_signal(images: torch.Tensor) -> bool:
    """Whether images (N, C, H, W) are one row or one column each (a 1-D signal): the random affine shifts them
    along it only (``along_axis``), with no zoom or rotation."""
    return 1 in images.shape[2:]


def apply_affine(images: torch.Tensor, draws: torch.Tensor, config: TransformConfig) -> torch.Tensor:
    """Shift, scale and rotate each image by its row of ``draws`` (B, 4) in [-1, 1); zeros fill the border."""
    _, _, height, width = images.shape
    draws = draws.to(images)
    if is_signal(images):
        return along_axis(images, draws, config)
    return sample(images, affine_theta(draws, config, height, width))


def affine_theta(draws: torch.Tensor, config: TransformConfig, height: int, width: int) -> torch.Tensor:
    """The affine matrices (..., 2, 3) of draws (..., 4) in [-1, 1) for images of ``height`` x ``width``: a rotation,
    zoom and whole-pixel shift (pictures: a 1-D signal is shifted by ``along_axis``)."""
    jitter = config.jitter_pixels(min(height, width))
    angle = draws[..., 0] * math.radians(config.rotate)
    zoom = 1 + draws[..., 1] * config.scale
    shift_x = torch.round(draws[..., 2] * jitter) * 2 / width
    shift_y = torch.round(draws[..., 3] * jitter) * 2 / height
    return _theta(angle, zoom, shift_x, shift_y)


def along_axis(images: torch.Tensor, draws: torch.Tensor, config: TransformConfig) -> torch.Tensor:
    """Shift one-row (B, C, 1, L) or one-column (B, C, L, 1) images along their one real axis by whole samples
    (no rotation, which would sample off the line; no scale, which would shift the signal's frequencies),
    wrapping around: a fill would add a step the signal does not have."""
    line = images.flatten(2)  # (B, C, L)
    length = line.shape[-1]
    shifts = torch.round(draws[:, 2] * config.jitter_pixels(length)).long()  # on the device: no host sync
    source = (torch.arange(length, device=images.device) - shifts[:, None]) % length  # sample i from i - shift
    shifted = line.gather(2, source[:, None].expand(-1, line.shape[1], -1))
    return shifted.view(images.shape)


def _theta(angle: torch.Tensor, zoom: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor) -> torch.Tensor:
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    return torch.stack([torch.stack([cos, -sin, shift_x], -1), torch.stack([sin, cos, shift_y], -1)], -2)


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The sampling grids (N, H, W, 2) of affine matrices ``theta`` (N, 2, 3): ``F.affine_grid``'s (corners not
    aligned), each point (a x + b y) + c. ``F.affine_grid`` multiplies every grid point (x, y, 1) by a 3 x 2 matrix
    in one batched matmul, which on the CPU costs more than these elementwise ops (``python benchmarks/floor.py
    parts``: the random affine of a class step 114-142 µs before, about 101 µs after). The sums are taken in the
    order of its CPU kernel: the same bytes there."""
    base = F.affine_grid(torch.eye(2, 3, dtype=theta.dtype, device=theta.device)[None], [1, 1, height, width],
                         align_corners=False)  # the points (x, y) torch places
    xs, ys = base[0, 0, :, 0].view(1, 1, width, 1), base[0, :, 0, 1].view(1, height, 1, 1)
    rows = theta.transpose(1, 2)[:, None, None]  # (N, 1, 1, 3, 2): what x, y and 1 add to the point
    return (rows[..., 0, :] * xs + rows[..., 1, :] * ys) + rows[..., 2, :]


def sample(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Each image resampled (bilinear) through its affine matrix of ``theta`` (B, 2, 3); zeros fill the border."""
    grid = affine_grid(theta.to(images), *images.shape[2:])
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def affine(images: torch.Tensor, angle: torch.Tensor, zoom: torch.Tensor, shift_x: torch.Tensor,
           shift_y: torch.Tensor) -> torch.Tensor:
    """Rotate by ``angle`` (radians), zoom and shift (in [-1, 1] grid units) each image; zeros fill the border."""
    return sample(images, _theta(angle, zoom, shift_x, shift_y))


class RandomAffine:
    """The default transform of ``render``: each image shifted, scaled and rotated at random every
    step, its draws coming from its own generator (so batching does not change them)."""

    name = "random_affine"
    random = True  # left out when render measures the final images

    #: Steps whose draws are taken at once: one generator call per image per block, not per step (the same numbers:
    #: a generator's block of draws is its per-step draws in order), and the block's affine matrices in one go.
    BLOCK = 64
    #: The sampling grids of GRID_STEPS steps (fewer where they would take more than GRID_BYTES) are made in one
    #: ``affine_grid`` call: the same bytes as one call per step, without a call's fixed cost per step, and few
    #: grids made for steps a run does not reach (the grids' cost grows with their number).
    GRID_STEPS = 16
    GRID_BYTES = 16 * 2 ** 20
    #: The noise (``TransformConfig.noise``) of as many steps as fit in NOISE_BYTES is drawn and moved at once.
    NOISE_BYTES = 16 * 2 ** 20

    def __init__(self, config: TransformConfig, generators: Sequence[torch.Generator]) -> None:
        self.config = config
        self.generators = list(generators)
        #: With noise, each image's noise comes from a generator of its own, seeded from its generator's seed (which
        #: draws nothing from it: the affine draws stay those of a run without noise).
        self.noise_generators = [offspring(g) for g in self.generators] if config.noise > 0 else []
        self._drawn: torch.Tensor | None = None  # (BLOCK, B, 4) draws in [-1, 1)
        # (device, dtype, H, W) -> the block's (BLOCK, B, 2, 3); a 1-D signal's: its draws (BLOCK, B, 4)
        self._thetas: dict[tuple, torch.Tensor] = {}
        self._grids: dict[tuple, tuple[int, torch.Tensor]] = {}  # the same key -> (first step, (steps, B, H, W, 2))
        self._next = 0
        self._noise_block: torch.Tensor | None = None  # (steps, B, C, H, W) on the images' device
        self._noise_next = 0

    @classmethod
    def for_keys(cls, config: TransformConfig, seed: int, keys: Sequence[int]) -> "RandomAffine":
        """Draws from (seed, key) of each image, on a stream of their own."""
        return cls(config, image_generators(seed, keys, TRANSFORMS))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not self.config.enabled:
            return images
        moved = self._affine(images)
        if not self.noise_generators:
            return moved
        return moved + self.config.noise * self._noise(moved)

    def _noise(self, like: torch.Tensor) -> torch.Tensor:
        """This step's noise (B, C, H, W), each image's from its own generator, one draw per step as ever; the
        draws of up to NOISE_BYTES worth of steps are made and copied to ``like``'s device at once (on a GPU
        each copy from the host waits for the device)."""
        if self._noise_block is None or self._noise_next == len(self._noise_block):
            per_step = like.numel() * like.element_size()
            steps = max(1, min(self.BLOCK, self.NOISE_BYTES // per_step))
            drawn = [torch.stack([torch.randn(like.shape[1:], generator=g) for g in self.noise_generators])
                     for _ in range(steps)]
            self._noise_block, self._noise_next = torch.stack(drawn).to(like), 0
        self._noise_next += 1
        return self._noise_block[self._noise_next - 1]

    def _affine(self, images: torch.Tensor) -> torch.Tensor:
        if self._drawn is None or self._next == len(self._drawn):
            self._drawn = torch.stack([torch.rand(self.BLOCK, 4, generator=g) for g in self.generators], 1) * 2 - 1
            self._thetas, self._grids, self._next = {}, {}, 0
        _, _, height, width = images.shape
        step = self._next
        self._next += 1
        key = (images.device, images.dtype, height, width)
        if is_signal(images):  # shifted along it, no matrices
            if key not in self._thetas:  # one host-to-device copy per block
                self._thetas[key] = self._drawn.to(images)
            return along_axis(images, self._thetas[key][step], self.config)
        if key not in self._thetas:  # one host-to-device copy per block
            self._thetas[key] = affine_theta(self._drawn.to(images), self.config, height, width)
        first, grids = self._grids.get(key, (0, None))
        if grids is None or not first <= step < first + len(grids):
            thetas = self._thetas[key][step:step + self._grid_steps(images)]
            grids = affine_grid(thetas.flatten(0, 1), height, width).view(*thetas.shape[:2], height, width, 2)
            first = step
            self._grids[key] = first, grids
        return F.grid_sample(images, grids[step - first], mode="bilinear", padding_mode="zeros", align_corners=False)

    def _grid_steps(self, images: torch.Tensor) -> int:
        """GRID_STEPS, or as many steps' grids as fit in GRID_BYTES (at least one)."""
        batch, _, height, width = images.shape
        return max(1, min(self.GRID_STEPS, self.GRID_BYTES // (batch * height * width * 2 * images.element_size())))
