"""Image parametrizations: nn.Modules whose forward returns a (B, C, H, W) batch in [0, 1].

Each image's starting values come from its own generator (see ``image_generators``),
so an image does not change when it is optimized in a different batch.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import Message, UserError
from .settings import setting
from .models.spec import PRIOR_FIELDS, ModelSpec

if TYPE_CHECKING:
    from .data import ImageDataset


WORD = 0xFFFFFFFF
#: Random streams of one image: its starting values, its random transforms, and the transforms its candidates
#: are judged under when one is kept (``classes.robust_margins``).
START, TRANSFORMS, CHOICE = 0, 1, 2
OFFSPRING = 0x6E6F  # mixed into a seed for ``offspring``


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


def offspring(generator: torch.Generator) -> torch.Generator:
    """A generator of its own seeded from ``generator``'s seed, drawing nothing from it."""
    state = np.random.SeedSequence([generator.initial_seed(), OFFSPRING]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _stack_normal(generators: Sequence[torch.Generator], shape: Sequence[int]) -> torch.Tensor:
    return torch.stack([torch.randn(*shape, generator=g) for g in generators])


Bias = float | torch.Tensor


class Prior(nn.Module):
    """What every parametrization ends with: the sigmoid bias (a number, or one per pixel (C, H, W)) and
    an optional per-pixel ceiling ``support`` (C, H, W) in [0, 1] the image is multiplied by."""

    def __init__(self, bias: Bias, support: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32))
        self.register_buffer("support", support)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        image = torch.sigmoid(raw + self.bias)
        return image if self.support is None else image * self.support


class BasisImage(nn.Module):
    """An image in the principal directions of the data: image = sigmoid(mean_logit + z @ basis) [x support].

    ``basis`` (k, C*H*W) holds the top principal directions of real inputs' logits, each scaled by
    its standard deviation (see ``estimate_basis``), so the optimization moves along the ways real
    inputs differ from each other, the common ones fastest: the data's own decorrelation, of which
    lucid's 1/f Fourier scaling is the translation-invariant special case.
    """

    name = "basis"

    def __init__(self, shape: Sequence[int], generators: Sequence[torch.Generator], basis: torch.Tensor,
                 std: float = 0.01, bias: Bias = 0.0, support: torch.Tensor | None = None) -> None:
        super().__init__()
        if basis.ndim != 2 or basis.shape[1] != math.prod(shape):
            raise ValueError(f"basis must be (components, {math.prod(shape)}), got {tuple(basis.shape)}")
        self.shape = tuple(shape)
        self.register_buffer("basis", basis)
        self.coefficients = nn.Parameter(_stack_normal(generators, (len(basis),)) * std)
        self.prior = Prior(bias, support)

    def forward(self) -> torch.Tensor:
        return self.prior((self.coefficients @ self.basis).view(-1, *self.shape))


class PixelImage(nn.Module):
    """Free pixels through a sigmoid: image = sigmoid(logits + bias) [x support]."""

    name = "pixel"

    def __init__(self, shape: Sequence[int], generators: Sequence[torch.Generator], std: float = 0.01,
                 bias: Bias = 0.0, support: torch.Tensor | None = None) -> None:
        super().__init__()
        self.logits = nn.Parameter(_stack_normal(generators, shape) * std)
        self.prior = Prior(bias, support)

    def forward(self) -> torch.Tensor:
        return self.prior(self.logits)


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
    image = sigmoid(irfft2(coefficients * magnitude) + bias) [x support]. With ``decorrelate`` (3
    channels only) the channels are decorrelated colours, mixed into RGB before the sigmoid.
    """

    name = "fft"

    def __init__(self, shape: Sequence[int], generators: Sequence[torch.Generator], magnitude: torch.Tensor,
                 std: float = 0.01, bias: Bias = 0.0, support: torch.Tensor | None = None,
                 decorrelate: bool = False) -> None:
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
        self.prior = Prior(bias, support)

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.coefficients) * self.magnitude
        image = torch.fft.irfft2(spectrum, s=self.size, norm="ortho")
        if self.mixing is not None:
            image = torch.einsum("ij,bjhw->bihw", self.mixing, image)
        return self.prior(image)


def mean_spectrum(pixels: torch.Tensor) -> torch.Tensor:
    """Mean rfft2 magnitude (H, W//2+1) of real images (N, C, H, W) in [0, 1], centred per image."""
    centred = pixels - pixels.mean(dim=(-2, -1), keepdim=True)
    return torch.fft.rfft2(centred, norm="ortho").abs().mean(dim=(0, 1))


#: Largest side of the stored mean image and support (resized to the input when used).
PRIOR_SIZE = 32
#: Share of the real inputs a pixel's support value stays above (its 95th percentile).
SUPPORT_QUANTILE = 0.95


#: At most this many pixel values (images x C x H x W) go into an estimate: 10,000 MNIST digits,
#: about 330 images at 224 x 224 RGB (the float copies stay near 200 MB).
PRIOR_BUDGET = 50_000_000


#: The data basis keeps the principal directions that explain this share of the variance of real
#: inputs' logits (chosen on MNIST and Fashion-MNIST with benchmarks/quality.py) ...
BASIS_VARIANCE = 0.91
#: ... and at most this many; inputs of at most BASIS_VALUES values (C x H x W) get a basis.
BASIS_COMPONENTS = 256
BASIS_VALUES = 3 * PRIOR_SIZE * PRIOR_SIZE


def estimate_basis(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The principal directions of real inputs (N, C, H, W) in [0, 1], in logit space (pixels clamped
    to START_MARGIN from 0 and 1): (basis (k, C*H*W), mean logit (C*H*W,)). Each direction is scaled
    by its standard deviation relative to the mean over all directions (as ``FFTImage`` scales its
    frequencies); k is the fewest that explain BASIS_VARIANCE of the variance, at most
    BASIS_COMPONENTS. None when the images do not vary."""
    logits = torch.logit(pixels.flatten(1).double().clamp(START_MARGIN, 1 - START_MARGIN))
    mean = logits.mean(0)
    centred = logits - mean
    variances, directions = torch.linalg.eigh(centred.T @ centred / len(logits))
    variances, directions = variances.flip(0).clamp(min=0), directions.flip(1)
    if variances.sum() <= 1e-9:
        return None  # one image, or all alike: no direction to move in
    explained = variances.cumsum(0) / variances.sum()
    count = min(int((explained < BASIS_VARIANCE).sum()) + 1, BASIS_COMPONENTS, len(variances))
    spread = variances.sqrt()
    scale = spread[:count] / spread.mean().clamp(min=1e-12)
    return (directions[:, :count].T * scale[:, None]).float(), mean.float()


def ink_level(pixels: torch.Tensor) -> float | None:
    """How bright real inputs' bright parts are: the mean over images of sum(x^2) / sum(x), which is v
    for an image of ink at brightness v on black (about 0.85 for MNIST, 0.68 for Fashion-MNIST).
    None when every image is black."""
    from .quality import ink_level as per_image

    level = float(per_image(pixels.double()).mean())
    return level if level > 0 else None


def estimate_prior(pixels: torch.Tensor, limit: int = 10_000) -> dict:
    """The image prior of real inputs (N, C, H, W) — floats in [0, 1], or uint8 — as ModelSpec fields:
    ``spectrum`` (mean Fourier magnitude), ``image_mean`` (the mean input), ``image_support`` (per
    pixel, the 95th percentile of brightness, scaled so the brightest pixel is 1: where real inputs
    have content), ``ink_level`` and, for inputs of at most BASIS_VALUES values, the data basis
    (``image_basis``, ``basis_mean``: see ``estimate_basis``). At most ``limit`` images (fewer for
    large inputs, see PRIOR_BUDGET), evenly spaced, are used; mean and support are stored at most
    PRIOR_SIZE pixels a side. Images that are each one flat colour (all black, say) give no prior:
    a UserError, since a spectrum of zeros would hold every image still."""
    if pixels.ndim != 4 or not len(pixels):
        raise ValueError(f"estimate_prior needs real images (N, C, H, W), got shape {tuple(pixels.shape)}")
    limit = max(1, min(limit, PRIOR_BUDGET // pixels[0].numel()))
    if len(pixels) > limit:
        pixels = pixels[torch.linspace(0, len(pixels) - 1, limit).long()]
    pixels = pixels.float() / 255 if pixels.dtype == torch.uint8 else pixels.float()
    height, width = pixels.shape[-2:]
    scale = min(1.0, PRIOR_SIZE / max(height, width))
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    small = F.interpolate(pixels, size=size, mode="area") if size != (height, width) else pixels
    support = torch.quantile(small.flatten(2).permute(1, 2, 0), SUPPORT_QUANTILE, dim=2).view(-1, *size)
    support = support / support.flatten(1).amax(1).clamp(min=1e-6).view(-1, 1, 1)
    as_lists = lambda t: tuple(map(tuple, t.tolist())) if t.ndim == 2 else tuple(as_lists(p) for p in t)  # noqa: E731
    spectrum = mean_spectrum(pixels)
    if not bool(spectrum.gt(1e-6).any()):
        raise UserError("no prior can be estimated from data that does not vary: every image is one flat colour (all "
                        "black, say); use pictures with content")
    prior = {"spectrum": as_lists(spectrum), "image_mean": as_lists(small.mean(0).clamp(0, 1)),
             "image_support": as_lists(support.clamp(0, 1)), "ink_level": ink_level(pixels),
             "image_basis": None, "basis_mean": None}
    basis = estimate_basis(pixels) if pixels[0].numel() <= BASIS_VALUES else None
    if basis is not None:
        prior.update(image_basis=as_lists(basis[0]), basis_mean=tuple(basis[1].tolist()))
    return prior


def stored_values(values: Sequence) -> torch.Tensor:
    """A spec's stored prior values (nested tuples of floats) as a new float32 tensor. Through numpy: it reads
    a basis's tens of thousands of floats about 3x faster than ``torch.tensor``, and every run reads them."""
    return torch.from_numpy(np.asarray(values, dtype=np.float32))


def prior_map(values: Sequence, shape: Sequence[int]) -> torch.Tensor:
    """A stored C x h x w prior map resized (bilinear) to the input's (C, H, W)."""
    planes = stored_values(values)
    if tuple(planes.shape[-2:]) != tuple(shape[1:]):
        planes = F.interpolate(planes[None], size=tuple(shape[1:]), mode="bilinear", align_corners=False)[0]
    return planes.clamp(0, 1)


STARTS = {"auto": None, "dark": -5.0, "grey": 0.0}  # sigmoid biases of uniform starting images


@dataclass(frozen=True)
class ImageConfig:
    """How the image being optimized is parametrized and where it starts."""

    parametrization: str = setting("fft", "param", "image parametrization: basis (the principal directions of the "
                                   "model's data, for inputs of up to 3,072 values with a data prior; else fft), fft "
                                   "or pixel", "choice", choices={"basis": "basis", "fft": "fft", "pixel": "pixel"})
    #: Frequency decay of the FFT scale when the spec has no spectrum; None: 1 (the 1/f of natural images)
    #: for pictures, 0 (flat) along a 1-D signal, whose content is often its frequencies (a pitch, a
    #: vibration): a 1/f scale would pull every signal toward its lowest ones.
    decay: float | None = None
    use_prior: bool = True  # use the spec's data prior when it has one: spectrum, mean-image start, support
    use_support: bool = True  # with the prior: keep the image within where real inputs have content
    free_brightness: bool = False  # with a spectrum: let the mean brightness move too
    init_std: float = 0.01
    init_bias: float | None = setting(None, "start", "starting image: dark, grey, or auto (the data's mean image when "
                                      "the model carries a prior estimated from its data; for class images without "
                                      "data, the normalization mean when mean and std can be pixel statistics; else "
                                      "grey)", "choice",
                                      choices=STARTS)  # a uniform start's sigmoid bias
    decorrelate: bool = True  # decorrelated colour for 3-channel FFT images
    style: str = setting("auto", "style", "channel images: data (each starts at the channel's top real example and "
                         "is pushed until the channel beats the best real image, staying near the data's principal "
                         "components; needs a dataset), texture (optimized from a grey start: the strongest, least "
                         "data-like images), or auto (data where the run has real examples, else texture)", "choice",
                         choices={"auto": "auto", "data": "data", "texture": "texture"}, only="channels")


#: The mean-image start is clamped to this margin from 0 and 1, so every pixel can still move.
START_MARGIN = 0.01


def parametrization_of(config: ImageConfig, spec: ModelSpec) -> str:
    """The parametrization ``image_for`` builds: "basis" falls back to "fft" without a data basis."""
    if config.parametrization == "basis" and not (spec.image_basis is not None and config.use_prior):
        return "fft"
    return config.parametrization


def start_bias(config: ImageConfig, spec: ModelSpec) -> float | torch.Tensor:
    """The sigmoid bias of the starting image: ``init_bias`` when set; else, in the data basis, the
    data's mean logit; else the logit of the data's mean input (C, H, W) when the spec carries one (a
    dark frame and a blurred average object for MNIST, a grey field for natural images); else grey (0):
    a dark start can leave a model's first ReLUs closed."""
    if config.init_bias is not None:
        return config.init_bias
    if parametrization_of(config, spec) == "basis":
        return stored_values(spec.basis_mean).view(spec.image_shape)
    if spec.image_mean is not None and config.use_prior:
        return torch.logit(prior_map(spec.image_mean, spec.image_shape).clamp(START_MARGIN, 1 - START_MARGIN))
    return STARTS["grey"]


def support_of(config: ImageConfig, spec: ModelSpec) -> torch.Tensor | None:
    """Per-pixel ceiling of the image (C, H, W), from where the data has content; None without a prior."""
    if spec.image_support is None or not (config.use_prior and config.use_support):
        return None
    return prior_map(spec.image_support, spec.image_shape)


def example_image_for(spec: ModelSpec, starts: torch.Tensor, keys: Sequence[int], seed: int) -> nn.Module:
    """The parametrization of the data style (``ImageConfig.style``): free pixels, each image starting at a real
    image ``starts`` (B, C, H, W) in [0, 1] (the data basis held them below the best real images:
    benchmarks/channel_quality.py)."""
    bias = torch.logit(starts.float().clamp(START_MARGIN, 1 - START_MARGIN))
    return PixelImage(spec.image_shape, image_generators(seed, keys), std=0.0, bias=bias)


def image_for(spec: ModelSpec, config: ImageConfig, keys: Sequence[int], seed: int) -> nn.Module:
    """The parametrization ``config`` names for len(keys) images of ``spec``'s input, each image's
    starting values drawn from (seed, key)."""
    generators = image_generators(seed, keys)
    bias, support = start_bias(config, spec), support_of(config, spec)
    parametrization = parametrization_of(config, spec)
    if parametrization == "pixel":
        return PixelImage(spec.image_shape, generators, std=config.init_std, bias=bias, support=support)
    if parametrization == "basis":
        basis = stored_values(spec.image_basis)
        return BasisImage(spec.image_shape, generators, basis, std=config.init_std, bias=bias, support=support)
    if parametrization == "fft":
        _, height, width = spec.image_shape
        if spec.spectrum is not None and config.use_prior:
            magnitude = stored_values(spec.spectrum)
            # The spectrum is of mean-centred images, so its DC term is ~0 and the mean brightness stays
            # near the start; free_brightness lets it move like the strongest frequency.
            if config.free_brightness:
                magnitude[0, 0] = magnitude.max()
        else:
            decay = config.decay if config.decay is not None else 1.0 if spec.is_image else 0.0
            magnitude = frequency_scale(height, width, decay)
        return FFTImage(spec.image_shape, generators, magnitude, std=config.init_std, bias=bias, support=support,
                        decorrelate=config.decorrelate and spec.image_shape[0] == 3 and spec.is_image)
    raise ValueError(f"unknown parametrization '{config.parametrization}' (fft, pixel or basis)")


def without_prior(spec: ModelSpec) -> ModelSpec:
    """``spec`` with no image prior (grey start, 1/f spectrum)."""
    return spec.replace(**dict.fromkeys(PRIOR_FIELDS))


def with_prior(spec: ModelSpec, pixels: torch.Tensor) -> ModelSpec:
    """``spec`` carrying the image prior of real inputs ``pixels`` (N, C, H, W), floats in [0, 1] or
    uint8 (``estimate_prior``)."""
    if tuple(pixels.shape[1:]) != tuple(spec.image_shape):
        raise ValueError(f"the images are {tuple(pixels.shape[1:])}, the model takes {tuple(spec.image_shape)}")
    return spec.replace(**estimate_prior(pixels))


def model_prior(spec: ModelSpec) -> ModelSpec | None:
    """``spec`` with the image prior its normalization implies, for class images without data; None when
    ``mean``/``std`` cannot be the statistics of pixels in [0, 1] (the defaults 0 and 1, say).

    Per channel, real pixels in [0, 1] with mean m and standard deviation s (``--mean``/``--std``, computed
    on the training data) have E[x^2] = s^2 + m^2 <= m, so s^2 <= m(1 - m): then ``image_mean`` is m
    everywhere (images start at the input the model normalizes to 0) and ``ink_level`` is E[x^2] / E[x]
    = (s^2 + m^2) / m (channels averaged): the brightness of ink on a background of 0 with those statistics
    (0.86 for MNIST's 0.1307 / 0.3081, 0.56 for ImageNet's). No spectrum, support or basis: a prior
    without a spectrum is one derived from the model (``from_model``).
    """
    mean = torch.tensor(spec.mean, dtype=torch.float64)
    std = torch.tensor(spec.std, dtype=torch.float64)
    if not bool(((mean > 0) & (mean < 1) & (std.pow(2) <= mean * (1 - mean))).all()):
        return None
    level = float(((std.pow(2) + mean.pow(2)) / mean).mean().clamp(max=1.0))
    return without_prior(spec).replace(image_mean=tuple(((float(m),),) for m in mean), ink_level=level)


def from_model(spec: ModelSpec) -> bool:
    """Whether the spec's prior is the one ``model_prior`` derives from its normalization (no spectrum)."""
    return spec.image_mean is not None and spec.spectrum is None


def needs_data_prior(spec: ModelSpec) -> bool:
    """Whether class images want a prior estimated from the model's own data: the spec names its dataset
    and carries no complete prior (none, or one stored before the ink level and the data basis existed)."""
    return spec.ink_level is None and spec.dataset is not None


def prior_for(spec: ModelSpec, data: "ImageDataset | torch.Tensor | None",
              derive: bool = False) -> tuple[ModelSpec, str]:
    """The spec the images start from, and where its image prior came from, in one line.

    With ``data`` (an ImageDataset, or real images (N, C, H, W) in [0, 1] or uint8) the prior is estimated
    from it (``with_prior``), replacing the spec's own; else the spec's own prior; else, with ``derive``
    (class images), the prior its normalization implies (``model_prior``); else none (a grey start with a
    1/f spectrum). The one policy of ``visualize_classes``, ``visualize_channels`` and the CLI.
    """
    if data is not None:
        pixels = data if isinstance(data, torch.Tensor) else data.images  # uint8: only the sample used is made float
        source = "" if isinstance(data, torch.Tensor) else f" ({data.source})"
        return with_prior(spec, pixels), f"estimated from {len(pixels):,} images{source}"
    derived = model_prior(spec) if derive and spec.image_mean is None else None
    if derived is not None:
        return derived, Message("from the model itself: images start at its normalization mean with a 1/f "
                                "spectrum, ink level {ink} from its mean and std, zoomed ±50% and rotated ±20° while "
                                "optimized (pass {data} for data-like images)", settings=("data",),
                                ink=format(derived.ink_level, ".2f"))
    if from_model(spec):
        return spec, Message("from the model itself: its normalization mean and std (pass {data} for data-like "
                             "images)", settings=("data",))
    if spec.image_mean is not None:
        return spec, "stored with the model"
    return spec, Message("none: images start grey with a 1/f spectrum (pass {data} for data-like images)",
                         settings=("data",))
