"""Image parametrizations: nn.Modules whose forward returns a (B, C, H, W) batch in [0, 1].

Each image's starting values come from its own generator (see ``image_generators``),
so an image does not change when it is optimized in a different batch.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .models.spec import ModelSpec


WORD = 0xFFFFFFFF
#: Random streams of one image: its starting values, and its random transforms.
START, TRANSFORMS = 0, 1


def seed_entropy(seed: int, key: int, stream: int = START) -> list[int]:
    """The SeedSequence entropy of one image's ``stream``, for any Python int ``seed``.

    Seeds 0..2**32-1 keep the original words [seed + stream mod 2**32, key], so earlier runs
    repeat exactly. Other seeds give [key, tag, |seed|]: the tag (1-4) encodes sign and stream,
    and |seed| > 0 puts a non-zero word after the first two, so the result never equals the
    zero-padded [seed, key, 0, 0] of an in-range seed, nor another out-of-range seed's.
    """
    seed, key = int(seed), int(key) & WORD
    if 0 <= seed <= WORD:
        return [(seed + stream) & WORD, key]
    return [key, 1 + 2 * stream + (seed < 0), abs(seed)]


def image_generators(seed: int, keys: Sequence[int], stream: int = START) -> list[torch.Generator]:
    """One generator per image, seeded from (seed, key, stream): results do not depend on batching."""
    generators = []
    for key in keys:
        state = np.random.SeedSequence(seed_entropy(seed, key, stream)).generate_state(2, np.uint32)
        generators.append(torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1])))
    return generators


def _stack_normal(generators: Sequence[torch.Generator], shape: Sequence[int]) -> torch.Tensor:
    return torch.stack([torch.randn(*shape, generator=g) for g in generators])


class PixelImage(nn.Module):
    """Free pixels through a sigmoid: image = sigmoid(logits + bias)."""

    def __init__(self, shape: Sequence[int], generators: Sequence[torch.Generator], std: float = 0.01,
                 bias: float = 0.0) -> None:
        super().__init__()
        self.logits = nn.Parameter(_stack_normal(generators, shape) * std)
        self.bias = bias

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.logits + self.bias)


def frequency_scale(height: int, width: int, decay: float) -> torch.Tensor:
    """1 / |f|^decay over the rfft2 grid (H, W//2+1), with the lowest frequency capped."""
    fy = torch.fft.fftfreq(height).view(-1, 1)
    fx = torch.fft.rfftfreq(width).view(1, -1)
    radius = torch.sqrt(fx**2 + fy**2).clamp(min=1.0 / max(height, width))
    return radius.pow(-decay)


#: Square root of the colour correlation of natural (ImageNet) images, as in lucid: optimizing
#: decorrelated colours and mixing them with this matrix avoids saturated rainbow noise.
COLOR_CORRELATION_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


def color_mixing() -> torch.Tensor:
    """COLOR_CORRELATION_SQRT scaled so its largest column norm is 1."""
    return COLOR_CORRELATION_SQRT / COLOR_CORRELATION_SQRT.norm(dim=0).max()


class FFTImage(nn.Module):
    """An image parametrized by its Fourier coefficients, each scaled by ``magnitude``.

    ``magnitude`` (H, W//2+1) sets how strongly each frequency may move: 1/|f|^decay
    by default, or the mean spectrum of real images (MaCo-style), so the
    optimization favours the frequencies natural images have.
    image = sigmoid(irfft2(coefficients * magnitude) + bias). With ``decorrelate`` (3
    channels only) the channels are decorrelated colours, mixed into RGB before the sigmoid.
    """

    def __init__(self, shape: Sequence[int], generators: Sequence[torch.Generator], magnitude: torch.Tensor,
                 std: float = 0.01, bias: float = 0.0, decorrelate: bool = False) -> None:
        super().__init__()
        channels, height, width = shape
        if decorrelate and channels != 3:
            raise ValueError(f"colour decorrelation needs 3 channels, not {channels}")
        self.register_buffer("mixing", color_mixing() if decorrelate else None)
        if tuple(magnitude.shape) != (height, width // 2 + 1):
            raise ValueError(f"magnitude must have shape {(height, width // 2 + 1)}, got {tuple(magnitude.shape)}")
        self.size = (height, width)
        self.register_buffer("magnitude", magnitude / magnitude.mean())
        self.coefficients = nn.Parameter(_stack_normal(generators, (channels, height, width // 2 + 1, 2)) * std)
        self.bias = bias

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.coefficients) * self.magnitude
        image = torch.fft.irfft2(spectrum, s=self.size, norm="ortho")
        if self.mixing is not None:
            image = torch.einsum("ij,bjhw->bihw", self.mixing, image)
        return torch.sigmoid(image + self.bias)


def mean_spectrum(pixels: torch.Tensor) -> torch.Tensor:
    """Mean rfft2 magnitude (H, W//2+1) of real images (N, C, H, W) in [0, 1], centred per image."""
    centred = pixels - pixels.mean(dim=(-2, -1), keepdim=True)
    return torch.fft.rfft2(centred, norm="ortho").abs().mean(dim=(0, 1))


@dataclass(frozen=True)
class ImageConfig:
    """How the image being optimized is parametrized and where it starts."""

    parametrization: str = "fft"  # "fft" or "pixel"
    decay: float = 1.0  # frequency decay of the FFT scale when the spec has no spectrum
    use_spectrum: bool = True  # shape the FFT by the spec's real-image spectrum when it has one
    free_brightness: bool = False  # with a spectrum: let the mean brightness move too
    init_std: float = 0.01
    init_bias: float | None = None  # sigmoid bias; None: -5 (dark, like MNIST) when the data's mean is dark, else 0
    decorrelate: bool = True  # decorrelated colour for 3-channel FFT images


DARK_DATA_MEAN = 0.25
STARTS = {"auto": None, "dark": -5.0, "grey": 0.0}  # sigmoid biases of the starting image


def start_bias(config: ImageConfig, spec: ModelSpec) -> float:
    """The sigmoid bias of the starting image. Dark (-5) only for models whose spec carries a
    real-image spectrum and whose data is dark (the built-in MNIST models, tuned on digits);
    grey (0) otherwise: a dark start can leave a model's first ReLUs closed, and nothing moves."""
    if config.init_bias is not None:
        return config.init_bias
    dark = spec.spectrum is not None and sum(spec.mean) / len(spec.mean) < DARK_DATA_MEAN
    return STARTS["dark"] if dark else STARTS["grey"]


def image_for(spec: ModelSpec, config: ImageConfig, keys: Sequence[int], seed: int) -> nn.Module:
    """The parametrization ``config`` names for len(keys) images of ``spec``'s input, each image's
    starting values drawn from (seed, key)."""
    generators = image_generators(seed, keys)
    bias = start_bias(config, spec)
    if config.parametrization == "pixel":
        return PixelImage(spec.input_shape, generators, std=config.init_std, bias=bias)
    if config.parametrization == "fft":
        _, height, width = spec.input_shape
        if spec.spectrum is not None and config.use_spectrum:
            magnitude = torch.tensor(spec.spectrum).float().clone()
            # The spectrum is of mean-centred images, so its DC term is ~0 and the mean brightness stays
            # near the start (dark for classes); free_brightness lets it move like the strongest frequency.
            if config.free_brightness:
                magnitude[0, 0] = magnitude.max()
        else:
            magnitude = frequency_scale(height, width, config.decay)
        return FFTImage(spec.input_shape, generators, magnitude, std=config.init_std, bias=bias,
                        decorrelate=config.decorrelate and spec.input_shape[0] == 3)
    raise ValueError(f"unknown parametrization '{config.parametrization}' (fft or pixel)")
