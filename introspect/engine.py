"""The one optimization loop: param -> transforms -> normalize -> model (hooked) -> objective -> Adam.

No I/O and no printing: progress goes through a callback. The caller's model
is left exactly as it was (mode, requires_grad flags, hooks), and randomness
comes from per-image generators, never from torch's global RNG.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from .hooks import HookRegistry
from .objectives import Objective
from .params import TRANSFORMS, FFTImage, PixelImage, frequency_scale, image_generators
from .transforms import TransformConfig, apply_affine, random_affine_params


@dataclass(frozen=True)
class RenderConfig:
    """Every setting of a visualization run; the CLI's defaults come from here."""

    steps: int = 128
    lr: float = 0.05
    seed: int = 0
    parametrization: str = "fft"  # "fft" or "pixel"
    decay: float = 1.0  # frequency decay of the FFT scale when the spec has no spectrum
    use_spectrum: bool = True  # shape the FFT by the spec's real-image spectrum when it has one
    free_brightness: bool = False  # with a spectrum: let the mean brightness move too
    init_std: float = 0.01
    init_bias: float | None = None  # sigmoid bias; None: -5 (dark, like MNIST) when the data's mean is dark, else 0
    decorrelate: bool = True  # decorrelated colour for 3-channel FFT images
    transforms: TransformConfig = field(default_factory=TransformConfig)
    tv: float = 0.0  # total-variation penalty weight
    l2: float = 0.0  # penalty on mean squared pixel value
    blur: float = 0.0  # penalty on the difference to a 3x3-blurred copy
    snapshots: tuple[int, ...] = ()
    device: str = "cpu"
    amp: bool = False  # bfloat16 autocast for the model's forward (CUDA, or a CPU with bf16 support)
    channels_last: bool | None = None  # channels-last conv layout; None: for 3-channel inputs, where it was faster

    def replace(self, **changes) -> "RenderConfig":
        return replace(self, **changes)


@dataclass
class RenderResult:
    """Optimized images (B, C, H, W) in [0, 1] on the CPU, their objective values and history."""

    images: torch.Tensor
    values: torch.Tensor  # (B,) objective of the final images, untransformed
    history: torch.Tensor  # (steps_done, B) objective during optimization (transformed inputs)
    snapshots: dict[int, torch.Tensor]
    steps_done: int
    interrupted_at: int | None = None
    stopped: list[int] = field(default_factory=list)  # images whose objective turned non-finite
    notes: list[str] = field(default_factory=list)


def train_mode_note(model: nn.Module) -> str | None:
    """Say so when a model handed over in train mode has layers that behave differently in eval."""
    if not model.training:
        return None
    kinds = sorted({type(m).__name__ for m in model.modules()
                    if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.modules.dropout._DropoutNd))})
    if not kinds:
        return None
    return (f"the model was in train mode; introspect ran it in eval mode ({', '.join(kinds)} use their "
            "inference behaviour) and left it in train mode afterwards")


ProgressCallback = Callable[[int, int, torch.Tensor], None]


@contextlib.contextmanager
def channels_last(model: nn.Module) -> Iterator[bool]:
    """Conv weights in channels-last layout for the duration (faster convolutions on CPU and GPU);
    the caller's parameter tensors are put back afterwards, untouched. Yields whether it applies."""
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        yield False
        return
    originals = [(p, p.data) for p in model.parameters() if p.ndim == 4]
    try:
        for p, data in originals:
            p.data = data.contiguous(memory_format=torch.channels_last)
        yield True
    finally:
        for p, data in originals:
            p.data = data


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no weight gradients for the duration; the caller's flags restored afterwards."""
    modes = {m: m.training for m in model.modules()}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes.items():
            m.training = mode


DARK_DATA_MEAN = 0.25


def start_bias(config: RenderConfig, mean: Sequence[float]) -> float:
    """The sigmoid bias of the starting image: dark for dark data (MNIST's mean pixel is 0.13)."""
    if config.init_bias is not None:
        return config.init_bias
    return -5.0 if sum(mean) / len(mean) < DARK_DATA_MEAN else 0.0


def make_param(config: RenderConfig, input_shape: Sequence[int], keys: Sequence[int],
               spectrum: torch.Tensor | None = None, bias: float = 0.0) -> nn.Module:
    """The image parametrization named by ``config`` for len(keys) images."""
    generators = image_generators(config.seed, keys)
    if config.parametrization == "pixel":
        return PixelImage(input_shape, generators, std=config.init_std, bias=bias)
    if config.parametrization == "fft":
        _, height, width = input_shape
        if spectrum is not None and config.use_spectrum:
            magnitude = spectrum.float().clone()
            # The spectrum is of mean-centred images, so its DC term is ~0 and the mean brightness stays
            # near the start (dark for classes); free_brightness lets it move like the strongest frequency.
            if config.free_brightness:
                magnitude[0, 0] = magnitude.max()
        else:
            magnitude = frequency_scale(height, width, config.decay)
        return FFTImage(input_shape, generators, magnitude, std=config.init_std, bias=bias,
                        decorrelate=config.decorrelate and input_shape[0] == 3)
    raise ValueError(f"unknown parametrization '{config.parametrization}' (fft or pixel)")


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute difference between neighbouring pixels, (B,)."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(1)
    return dx + dy


def _blur3(images: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([1.0, 2.0, 1.0], device=images.device, dtype=images.dtype)
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(images.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=images.shape[1])


def penalties(images: torch.Tensor, config: RenderConfig) -> torch.Tensor:
    """Per-image regularization (B,), subtracted from the objective."""
    total = torch.zeros(images.shape[0], device=images.device, dtype=images.dtype)
    if config.tv:
        total = total + config.tv * total_variation(images)
    if config.l2:
        total = total + config.l2 * images.pow(2).flatten(1).mean(1)
    if config.blur:
        total = total + config.blur * (images - _blur3(images)).pow(2).flatten(1).mean(1)
    return total


def normalizer(mean: Sequence[float], std: Sequence[float], device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    m = torch.tensor(list(mean), device=device).view(1, -1, 1, 1)
    s = torch.tensor(list(std), device=device).view(1, -1, 1, 1)
    return lambda x: (x - m) / s


def render(model: nn.Module, objective: Objective, *, input_shape: Sequence[int], mean: Sequence[float],
           std: Sequence[float], keys: Sequence[int], config: RenderConfig = RenderConfig(),
           spectrum: torch.Tensor | None = None, callback: ProgressCallback | None = None) -> RenderResult:
    """Optimize one batch of len(keys) images so that ``objective`` (B,) rises.

    ``keys`` identify the images (class or channel indices): each image's
    initial values and transforms are drawn from (config.seed, key). A
    KeyboardInterrupt (Ctrl-C, or raised by ``callback`` after a step) stops the
    loop and returns the images so far with ``interrupted_at`` = the steps done.
    """
    if config.steps < 1:
        raise ValueError("steps must be at least 1")
    device = torch.device(config.device)
    notes = [n for n in [train_mode_note(model)] if n]
    param = make_param(config, input_shape, keys, spectrum, start_bias(config, mean)).to(device)
    optimizer = torch.optim.Adam(param.parameters(), lr=config.lr)
    generators = image_generators(config.seed, keys, TRANSFORMS)
    normalize = normalizer(mean, std, device)
    batch = len(keys)
    alive = torch.ones(batch, dtype=torch.bool, device=device)
    history: list[torch.Tensor] = []
    snapshots: dict[int, torch.Tensor] = {}
    interrupted_at = None
    steps_done = 0
    layout = contextlib.nullcontext(False)
    use_layout = config.channels_last if config.channels_last is not None else input_shape[0] >= 3
    if use_layout and len(input_shape) == 3:
        layout = channels_last(model)
    with frozen(model), layout as use_channels_last, HookRegistry(model, objective.layers) as hooks:
        def forward(images: torch.Tensor) -> torch.Tensor:
            inputs = normalize(images)
            if use_channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp):
                return objective(hooks.run(inputs)).float()

        try:
            for step in range(1, config.steps + 1):
                images = param()
                seen = apply_affine(images, random_affine_params(generators), config.transforms) \
                    if config.transforms.enabled else images
                values = forward(seen)
                finite = torch.isfinite(values)
                alive &= finite
                gain = torch.where(alive, values - penalties(images, config), torch.zeros_like(values))
                optimizer.zero_grad(set_to_none=True)
                (-gain.sum()).backward()
                if not bool(alive.all()):
                    _freeze_rows(param, ~alive)
                optimizer.step()
                history.append(values.detach().cpu())
                if step in config.snapshots:
                    snapshots[step] = images.detach().cpu()
                steps_done = step
                if callback is not None:
                    callback(step, config.steps, values.detach())
        except KeyboardInterrupt:  # from Ctrl-C, or raised by the callback to stop after a finished step
            interrupted_at = steps_done
        with torch.no_grad():
            final = param()
            values = forward(final)
    stopped = (~alive).nonzero().flatten().tolist()
    return RenderResult(
        images=final.detach().cpu(), values=values.detach().cpu(),
        history=torch.stack(history) if history else torch.zeros(0, batch),
        snapshots=snapshots, steps_done=steps_done, interrupted_at=interrupted_at, stopped=stopped, notes=notes,
    )


def _freeze_rows(param: nn.Module, rows: torch.Tensor) -> None:
    """Zero the gradient of images whose objective went non-finite, so the others go on."""
    for p in param.parameters():
        if p.grad is not None:
            p.grad[rows] = 0
            p.grad.nan_to_num_(0.0)
