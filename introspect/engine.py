"""The one optimization loop, built from parts: param -> transforms -> normalize -> model (hooked) -> objective -> optimizer.

``render`` takes any image parametrization (an nn.Module returning images), any
transform (a callable), any optimizer factory and any objective (regularizers are
objectives too); ``RenderConfig`` names the default parts for the visualize_*
functions and the CLI. No I/O and no printing: progress goes through a callback.
The caller's model is left exactly as it was (mode, requires_grad flags, hooks),
and randomness comes from per-image generators, never from torch's global RNG.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .hooks import HookRegistry, frozen, redirected_relus
from .models.spec import ModelSpec
from .objectives import INPUT, Objective, blur, ink, l2, total_variation, toward
from .params import ImageConfig, image_for, prior_map
from .transforms import Normalize, RandomAffine, TransformConfig

Optimizer = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
ProgressCallback = Callable[[int, int, torch.Tensor], None]


def adam(lr: float = 0.05) -> Optimizer:
    """The default optimizer: Adam at ``lr``, its state kept across all steps."""
    return lambda parameters: torch.optim.Adam(parameters, lr=lr)


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


def render(model: nn.Module, objective: Objective, *, spec: ModelSpec, keys: Sequence[int],
           param: nn.Module | None = None, transforms: Callable[[torch.Tensor], torch.Tensor] | None = None,
           optimizer: Optimizer | None = None, steps: int = 128, seed: int = 0, snapshots: Sequence[int] = (),
           device: torch.device | str = "cpu", amp: bool = False, channels_last_layout: bool | None = None,
           redirect_relu: bool = False, on_step: ProgressCallback | None = None) -> RenderResult:
    """Optimize one batch of len(keys) images so that ``objective`` (B,) rises.

    ``param`` returns the images (B, C, H, W) in [0, 1] (default: ``image_for(spec, ImageConfig(), keys, seed)``);
    ``transforms`` maps them to what the model sees each step (default: ``RandomAffine``); ``optimizer``
    builds the optimizer from the parameters (default: ``adam(0.05)``); the spec's normalization comes last.
    ``keys`` identify the images (class or channel indices): the default parts draw each image's
    randomness from (seed, key). ``on_step(step, steps, values)`` runs after each step. A
    KeyboardInterrupt (Ctrl-C, or raised by ``on_step``) stops the loop and returns the images so far
    with ``interrupted_at`` = the steps done. The model runs on ``device`` as it is: move it there first.
    ``redirect_relu`` lets an image whose gradient dies in an nn.ReLU open closed units (see
    ``hooks.redirected_relus``).
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    device = torch.device(device)
    notes = [n for n in [train_mode_note(model)] if n]
    param = (param if param is not None else image_for(spec, ImageConfig(), keys, seed)).to(device)
    transforms = transforms if transforms is not None else RandomAffine.for_keys(TransformConfig(), seed, keys)
    optimizer = (optimizer or adam())(param.parameters())
    normalize = Normalize.of(spec, device)
    batch = len(keys)
    alive = torch.ones(batch, dtype=torch.bool, device=device)
    history: list[torch.Tensor] = []
    kept: dict[int, torch.Tensor] = {}
    interrupted_at = None
    steps_done = 0
    use_layout = channels_last_layout if channels_last_layout is not None else spec.input_shape[0] >= 3
    layout = channels_last(model) if use_layout else contextlib.nullcontext(False)
    redirect = redirected_relus(model) if redirect_relu else contextlib.nullcontext(0)
    with frozen(model), layout as layout_applies, redirect, HookRegistry(model, objective.layers) as hooks:
        def forward(images: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
            inputs = normalize(seen)
            if layout_applies:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                return objective({**hooks.run(inputs), INPUT: images}).float()

        try:
            for step in range(1, steps + 1):
                images = param()
                values = forward(images, transforms(images))
                alive &= torch.isfinite(values)
                gain = torch.where(alive, values, torch.zeros_like(values))
                optimizer.zero_grad(set_to_none=True)
                (-gain.sum()).backward()
                if not bool(alive.all()):
                    _freeze_rows(param, ~alive)
                optimizer.step()
                history.append(values.detach().cpu())
                if step in snapshots:
                    kept[step] = images.detach().cpu()
                steps_done = step
                if on_step is not None:
                    on_step(step, steps, values.detach())
        except KeyboardInterrupt:  # from Ctrl-C, or raised by on_step to stop after a finished step
            interrupted_at = steps_done
        with torch.no_grad():
            final = param()
            values = forward(final, final)
    return RenderResult(
        images=final.detach().cpu(), values=values.detach().cpu(),
        history=torch.stack(history) if history else torch.zeros(0, batch),
        snapshots=kept, steps_done=steps_done, interrupted_at=interrupted_at,
        stopped=(~alive).nonzero().flatten().tolist(), notes=notes,
    )


def _freeze_rows(param: nn.Module, rows: torch.Tensor) -> None:
    """Zero the gradient of images whose objective went non-finite, so the others go on."""
    for p in param.parameters():
        if p.grad is not None:
            p.grad[rows] = 0
            p.grad.nan_to_num_(0.0)


@dataclass(frozen=True)
class RenderConfig:
    """The settings of a visualization run — which parts ``render`` gets, and how long it runs.
    The CLI's defaults and help come from here."""

    steps: int = 128
    lr: float = 0.05
    seed: int = 0
    image: ImageConfig = field(default_factory=ImageConfig)
    transforms: TransformConfig = field(default_factory=TransformConfig)
    tv: float = 0.0  # total-variation regularizer weight
    l2: float = 0.0  # mean squared pixel value regularizer weight
    blur: float = 0.0  # difference-to-a-blurred-copy regularizer weight
    snapshots: tuple[int, ...] = ()
    device: str = "cpu"
    amp: bool = False  # bfloat16 autocast for the model's forward (CUDA, or a CPU with bf16 support)
    channels_last: bool | None = None  # channels-last conv layout; None: for 3-channel inputs, where it was faster
    redirect_relu: bool = False  # let images whose gradient dies in a closed nn.ReLU still move
    pull: float = 0.0  # weight of the squared distance to the data's mean input (specs with a prior only)
    ink: float = 0.0  # weight of the shortfall below the data's ink level (specs with a prior only)

    def replace(self, **changes) -> "RenderConfig":
        return replace(self, **changes)

    def prior_terms(self, spec: ModelSpec | None) -> dict[str, float]:
        """The data-prior regularizers that apply to ``spec`` (name -> weight): ``pull`` needs its mean
        input, ``ink`` its ink level, both a non-zero weight and ``image.use_prior``."""
        if spec is None or not self.image.use_prior:
            return {}
        available = {"pull": spec.image_mean is not None, "ink": spec.ink_level is not None}
        return {name: getattr(self, name) for name, ok in available.items() if ok and getattr(self, name)}

    def regularized(self, objective: Objective, spec: ModelSpec | None = None) -> Objective:
        """``objective`` plus the regularizers with a non-zero weight (``pull`` and ``ink`` need the spec's prior)."""
        for weight, regularizer in ((self.tv, total_variation), (self.l2, l2), (self.blur, blur)):
            if weight:
                objective = objective + regularizer(weight)
        terms = self.prior_terms(spec)
        if "pull" in terms:
            objective = objective + toward(prior_map(spec.image_mean, spec.input_shape), terms["pull"])
        if "ink" in terms:
            objective = objective + ink(spec.ink_level, terms["ink"])
        return objective

    def render(self, model: nn.Module, objective: Objective, spec: ModelSpec, keys: Sequence[int],
               on_step: ProgressCallback | None = None) -> RenderResult:
        """``render`` with the parts these settings name."""
        return render(model, self.regularized(objective, spec), spec=spec, keys=keys,
                      param=image_for(spec, self.image, keys, self.seed),
                      transforms=RandomAffine.for_keys(self.transforms, self.seed, keys), optimizer=adam(self.lr),
                      steps=self.steps, seed=self.seed, snapshots=self.snapshots, device=self.device, amp=self.amp,
                      channels_last_layout=self.channels_last, redirect_relu=self.redirect_relu, on_step=on_step)


@contextlib.contextmanager
def on_device(model: nn.Module, device: torch.device | str) -> Iterator[nn.Module]:
    """The model on ``device`` without moving the caller's: itself when already there, else a copy."""
    device = torch.device(device)
    current = next((p.device for p in model.parameters()), device)
    if current.type == device.type and (device.index is None or current.index == device.index):
        yield model
        return
    import copy

    yield copy.deepcopy(model).to(device)
