"""The one optimization loop, built from parts: param -> transforms -> model (hooked) -> objective -> optimizer.

``render`` takes any image parametrization (an nn.Module returning images), any transforms
(callables, the model's normalization being one), any optimizer factory and any objective
(regularizers are objectives too); it needs no spec. ``RenderConfig`` turns a spec and its
settings into those parts in one place (``RenderConfig.parts``) and enters the speed switches
(channels-last layout, redirected ReLU, bfloat16 autocast) around the model. No I/O and no
printing: progress goes through a callback. The caller's model is left exactly as it was (mode,
requires_grad flags, hooks), and randomness comes from per-image generators, never from torch's
global RNG.
"""
from __future__ import annotations

import contextlib
import json
import math
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from .errors import Message
from .hooks import HookRegistry, frozen, redirected_relus
from .layers import DRY_BATCH, rng_kept
from .models.spec import ModelSpec
from .objectives import INPUT, Objective, blur, ink, l2, total_variation, toward
from . import devices, settings
from .params import ImageConfig, image_for, prior_map
from .settings import setting
from .transforms import Normalize, RandomAffine, TransformConfig

Optimizer = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
ProgressCallback = Callable[[int, int, torch.Tensor], None]
Transform = Callable[[torch.Tensor], torch.Tensor]


class Adam:
    """Adam with torch.optim.Adam's defaults, each tensor stepped by torch's fused Adam kernel (the arithmetic of
    ``torch.optim.Adam(fused=True)``: one op a step where the formula written out takes seven, which on the small
    tensors of a parametrization cost more than the arithmetic), without torch.optim: building a torch.optim
    optimizer imports torch._dynamo, which takes about as long as importing torch itself. The step count lives on
    the parameter's device, so a step never waits for it. A device without the fused kernel gets the same
    formula written out (torch.optim.Adam's single-tensor path)."""

    def __init__(self, parameters: Iterable[nn.Parameter], lr: float = 0.05, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = list(parameters)
        self.lr, self.betas, self.eps = float(lr), betas, eps
        # per parameter: (first moment, second moment, its step count as a tensor on its device), and that count
        self.state: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = [None] * len(self.params)
        self.steps = [0] * len(self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if self.state[i] is None:
                self.state[i] = (torch.zeros_like(p, memory_format=torch.preserve_format),
                                 torch.zeros_like(p, memory_format=torch.preserve_format),
                                 torch.zeros((), dtype=torch.float32, device=p.device))
            average, squares, count = self.state[i]
            count.add_(1)
            self.steps[i] += 1  # the same count on the host, for the formula written out
            kind = (p.device.type, p.dtype)
            if FUSED_ADAM.get(kind, True):
                try:
                    _fused_adam([p], [p.grad], [average], [squares], [], [count], lr=self.lr, beta1=beta1,
                                beta2=beta2, weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
                    continue
                except (NotImplementedError, TypeError):  # no fused kernel for this device (or in this torch)
                    FUSED_ADAM[kind] = False
                except torch.OutOfMemoryError:
                    raise
                except RuntimeError:  # not for this dtype or layout, say: this step written out
                    pass
            step = float(self.steps[i])
            average.lerp_(p.grad, 1 - beta1)
            squares.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            correction = (1 - beta2 ** step) ** 0.5
            p.addcdiv_(average, (squares.sqrt() / correction).add_(self.eps), value=-self.lr / (1 - beta1 ** step))


#: (device type, dtype) -> whether torch's fused Adam kernel runs there, as found at the first step (``Adam``).
FUSED_ADAM: dict[tuple[str, torch.dtype], bool] = {}


def _fused_adam(*args, **kwargs) -> None:
    """torch's fused Adam kernel, what ``torch.optim.Adam(fused=True)`` calls (a TypeError where a torch lacks it)."""
    kernel = getattr(torch, "_fused_adam_", None)
    if kernel is None:
        raise TypeError("this torch has no fused Adam kernel")
    kernel(*args, **kwargs)


def adam(lr: float = 0.05) -> Optimizer:
    """The default optimizer: Adam at ``lr`` (``Adam``), its state kept across all steps."""
    return lambda parameters: Adam(parameters, lr=lr)


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
    failed_at: dict[int, int] = field(default_factory=dict)  # stopped image -> first step its objective was NaN/inf
    failed_terms: tuple[str, ...] = ()  # the objective's terms that are NaN/inf for the stopped images, when known
    notes: list[str] = field(default_factory=list)
    objective: str = ""  # the objective's name, regularizers included
    param: str = ""  # the parametrization: its ``name`` ("fft", "pixel", "basis"), else its class
    transforms: tuple[str, ...] = ()  # in the order applied
    regularizers: tuple[str, ...] = ()  # the objective's terms that read only the images

    @property
    def failed(self) -> bool:
        """Whether the objective became NaN/inf for every image: the run produced nothing."""
        return bool(self.stopped) and len(self.stopped) == len(self.values)

    def failure(self, before: str = "", after: str = "") -> Message | None:
        """What went wrong, in one line, when any image's objective became NaN/inf (None otherwise); ``before``
        and ``after``: text around it."""
        if not self.stopped:
            return None
        first = min(self.failed_at.values()) if self.failed_at else self.steps_done
        which = "every image" if self.failed else f"{len(self.stopped)} of {len(self.values)} images"
        term = f" in {', '.join(self.failed_terms)}" if self.failed_terms else ""
        if first == 1 and self.failed_terms and set(self.failed_terms) <= set(self.regularizers):
            return Message("{before}the objective is NaN/inf{term} for {which} from the start, before any update: "
                           "that term reads only the images, not the model, so its own function is not finite on "
                           "the starting image{after}", term=term, which=which, before=before, after=after)
        if first == 1:  # before any update: no learning rate or penalty weight can help
            return Message("{before}the objective is NaN/inf{term} for {which} from the start, before any update: "
                           "the model's output on the starting image is not finite (a log or sqrt in its forward of "
                           "values that reach 0 or below?){after}", term=term, which=which, before=before, after=after)
        return Message("{before}the objective became NaN/inf{term} for {which} from step {step}; lower {lr} or {tv}, "
                       "or check the model's output for NaN{after}", settings=("lr", "tv"), term=term, which=which,
                       step=first, before=before, after=after)


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


def part_name(part: object) -> str:
    """How a result names one of render's parts: its ``name``, else its ``__name__``, else its class."""
    name = getattr(part, "name", None) or getattr(part, "__name__", None)
    return str(name) if isinstance(name, str) else type(part).__name__


@contextlib.contextmanager
def channels_last(model: nn.Module) -> Iterator[bool]:
    """Conv weights, and the model's image input, in channels-last layout for the duration (faster
    convolutions on CPU and GPU); the caller's parameter tensors are put back and the input hook
    removed afterwards. Yields whether it applies (only to models with nn.Conv2d layers)."""
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        yield False
        return
    originals = [(p, p.data) for p in model.parameters() if p.ndim == 4]

    def to_channels_last(_module, inputs):
        first, *rest = inputs
        if isinstance(first, torch.Tensor) and first.ndim == 4:
            return (first.contiguous(memory_format=torch.channels_last), *rest)
        return None

    handle = model.register_forward_pre_hook(to_channels_last)
    try:
        for p, data in originals:
            p.data = data.contiguous(memory_format=torch.channels_last)
        yield True
    finally:
        handle.remove()
        for p, data in originals:
            p.data = data


#: Whether a model's forward runs in channels-last layout, by model, then (input shape, device) (``runs_channels_last``).
_RUNS_CHANNELS_LAST: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, bool]]" = weakref.WeakKeyDictionary()


def runs_channels_last(model: nn.Module, input_shape: Sequence[int], device: torch.device | str) -> bool:
    """Whether ``model``'s forward runs on DRY_BATCH zero images of ``input_shape`` under ``channels_last``: one that
    ``.view``s a conv's output (``x.view(x.size(0), -1)``, common in hand-written nets) cannot, as that layout's
    strides do not flatten. One frozen no-grad forward per model, shape and device, remembered."""
    device = torch.device(device)
    key = (tuple(input_shape), str(device))
    try:
        known = _RUNS_CHANNELS_LAST.setdefault(model, {})
    except TypeError:  # a module that cannot be a key (a dataclass's __eq__ without __hash__): asked every time
        known = {}
    if key not in known:
        try:
            with torch.no_grad(), frozen(model), channels_last(model), rng_kept(device):
                model(torch.zeros(DRY_BATCH, *input_shape, device=device))
            known[key] = True
        except torch.OutOfMemoryError:  # the device was full then, not the layout wrong: asked again next time
            return False
        except Exception:  # noqa: BLE001 - the user's model; whatever fails here runs in its own layout
            known[key] = False
    return known[key]


def _as_sequence(transforms: Transform | Sequence[Transform]) -> tuple[Transform, ...]:
    return (transforms,) if callable(transforms) else tuple(transforms)


def _ambient_autocast(device: torch.device) -> tuple[bool, torch.dtype]:
    """Whether the caller entered torch.autocast for ``device``'s type, and its dtype."""
    kind = device.type
    return torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind)


def render(model: nn.Module, objective: Objective, param: nn.Module, *,
           transforms: Transform | Sequence[Transform] = (), optimizer: Optimizer = adam(), steps: int = 128,
           snapshots: Sequence[int] = (), on_step: ProgressCallback | None = None) -> RenderResult:
    """Optimize the images ``param()`` returns (B, C, H, W) in [0, 1] so that ``objective`` (B,) rises.

    The batch size is the param's (one forward of it), the device that of its parameters: the model
    must be there. ``transforms`` (one callable or a sequence, applied in order) map the images to what
    the model sees each step; the model's normalization is one of them, usually the last
    (``spec.normalize()``). The final ``values`` are the objective of the final images through the
    transforms that are not random (those without a true ``random`` attribute, e.g. the normalization,
    not ``RandomAffine``). ``optimizer`` builds the optimizer from the param's parameters.
    ``on_step(step, steps, values)`` runs after each step. A KeyboardInterrupt (Ctrl-C, or raised by
    ``on_step``) stops the loop and returns the images so far with ``interrupted_at`` = the steps done.

    Speed switches are context managers around the model, entered by the caller: ``channels_last(model)``,
    ``hooks.redirected_relus(model)``, and ``torch.autocast``: under it render runs only the model's forward
    and the objective in the lower precision (param, transforms, backward and the optimizer step stay in
    float32, as torch's AMP guide advises).
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    weights = list(param.parameters())
    if not weights:
        raise ValueError(f"the param ({part_name(param)}) has no parameters to optimize")
    device = weights[0].device
    with torch.no_grad():
        batch = len(param())
    transforms = _as_sequence(transforms)
    steady = tuple(t for t in transforms if not getattr(t, "random", False))
    amp, amp_dtype = _ambient_autocast(device)
    notes = [n for n in [train_mode_note(model)] if n]
    optimizer = optimizer(weights)
    alive = torch.ones(batch, dtype=torch.bool, device=device)
    every_alive = devices.host_reads_free(device)  # the CPU's shorter step: until an image fails (see below)
    descent = torch.full((batch,), -1.0, device=device)  # values are float32 (``forward``)
    history: list[torch.Tensor] = []
    kept: dict[int, torch.Tensor] = {}
    interrupted_at = None
    steps_done = 0
    with torch.autocast(device.type, enabled=False), frozen(model), HookRegistry(model, objective.layers) as hooks:
        def forward(images: torch.Tensor, through: Sequence[Transform]) -> torch.Tensor:
            seen = images
            for transform in through:
                seen = transform(seen)
            with torch.autocast(device.type, dtype=amp_dtype) if amp else contextlib.nullcontext():
                return objective({**hooks.run(seen), INPUT: images}).float()

        try:
            for step in range(1, steps + 1):
                images = param()
                values = forward(images, transforms)
                optimizer.zero_grad(set_to_none=True)
                total = values.sum() if every_alive and values.shape == alive.shape else None
                if total is not None and math.isfinite(total.item()):
                    # On the CPU, while every image is finite: -sum(values), the same gradient (-1 each) as below
                    # in fewer ops. A gradient may still be NaN/inf where the values are not: made finite as below.
                    total.neg().backward()
                    _freeze_rows(weights, None)
                else:
                    # NaN/inf is tracked on the device: no host sync per step. A stopped image's gradient is
                    # zeroed (``_freeze_rows``) and the others go on.
                    every_alive = False
                    alive &= torch.isfinite(values)
                    # -sum(values) over the images still alive, whose gradient is -1 each; a scalar objective counts
                    # once per image, as ever (a backward given a gradient tensor would import sympy, 0.6 s, for its
                    # shapes)
                    (values * (descent * alive)).sum().backward()
                    _freeze_rows(weights, ~alive)
                optimizer.step()
                history.append(values.detach())
                if step in snapshots:  # the image after this step's update: the last one is the final image
                    with torch.no_grad():
                        kept[step] = param().detach().cpu()
                steps_done = step
                if on_step is not None:
                    on_step(step, steps, values.detach())
                if step % CHECK_EVERY == 0 and not bool(alive.any()):
                    break  # every image failed: nothing left to optimize
        except KeyboardInterrupt:  # from Ctrl-C, or raised by on_step to stop after a finished step
            interrupted_at = steps_done
        with torch.no_grad():
            final = param()
            values = forward(final, steady)
            stopped = (~alive).nonzero().flatten().tolist()
            terms = _bad_terms(objective, hooks, final, steady, stopped) if stopped else ()
    history = torch.stack(history).cpu() if history else torch.zeros(0, batch)
    failed_at = {}
    for row in stopped:
        bad = (~torch.isfinite(history[:, row])).nonzero().flatten()
        failed_at[row] = int(bad[0]) + 1 if len(bad) else steps_done
    return RenderResult(
        images=final.detach().cpu(), values=values.detach().cpu(), history=history,
        snapshots=kept, steps_done=steps_done, interrupted_at=interrupted_at,
        stopped=stopped, failed_at=failed_at, failed_terms=terms, notes=notes,
        objective=objective.name, param=part_name(param), transforms=tuple(part_name(t) for t in transforms),
        regularizers=objective.regularizers,
    )


#: How often (in steps) render looks at the device-side NaN/inf flags on the host, to stop a run in which
#: every image failed: the one host sync for them, besides the end.
CHECK_EVERY = 16


def _freeze_rows(weights: Sequence[torch.Tensor], rows: torch.Tensor | None) -> None:
    """Zero the gradient of images whose objective went non-finite (``rows``: a (B,) mask; None: none did) among the
    param's ``weights``, so the others go on, and make NaN/inf gradients finite; no host sync, and the gradients of
    finite images stay exactly as they were."""
    for p in weights:
        if p.grad is not None:
            if rows is not None:
                p.grad.masked_fill_(rows.view(-1, *[1] * (p.grad.ndim - 1)) if p.grad.ndim else rows.any(), 0.0)
            p.grad.nan_to_num_(0.0)


def _bad_terms(objective: Objective, hooks: HookRegistry, images: torch.Tensor, through: Sequence[Transform],
               rows: Sequence[int]) -> tuple[str, ...]:
    """The objective's terms that are NaN/inf for images ``rows`` on ``images`` (one more forward, only
    after a failure); () when none is, or the model itself fails to run."""
    try:
        seen = images
        for transform in through:
            seen = transform(seen)
        activations = {**hooks.run(seen), INPUT: images}
        picked = torch.as_tensor(list(rows), dtype=torch.long)
        return tuple(term.name for term in objective.terms
                     if not bool(torch.isfinite(term(activations).float().cpu()[picked]).all()))
    except Exception:  # noqa: BLE001 - only a diagnosis: the failure is reported anyway
        return ()


@dataclass(frozen=True)
class RenderParts:
    """What ``RenderConfig`` hands ``render`` for a spec and keys."""

    param: nn.Module
    transforms: tuple[Transform, ...]  # the random affine, then the model's normalization
    optimizer: Optimizer
    regularizers: tuple[Objective, ...]  # added to the objective, in this order

    def objective(self, objective: Objective) -> Objective:
        """``objective`` plus the regularizers."""
        for regularizer in self.regularizers:
            objective = objective + regularizer
        return objective


@dataclass(frozen=True)
class RenderConfig:
    """The settings of a visualization run — which parts ``render`` gets, and how long it runs.
    The CLI's defaults and help come from here."""

    steps: int = setting(128, "steps", "optimization steps", "count")
    lr: float = setting(0.05, "lr", "Adam learning rate", "positive")
    seed: int = setting(0, "seed", "random seed", "integer")
    image: ImageConfig = field(default_factory=ImageConfig)
    transforms: TransformConfig = field(default_factory=TransformConfig)
    tv: float = setting(0.0, "tv", "total-variation penalty weight", "weight")
    pull: float = setting(0.0, "pull", "weight of the pull toward the data's mean input, for models with a data prior",
                          "weight")
    ink: float = setting(0.0, "ink", "weight of the penalty on images fainter than the data's ink level, for models "
                         "with a data prior", "weight")
    l2: float = setting(0.0, "l2", "L2 penalty weight", "weight")
    blur: float = setting(0.0, "blur", "blur penalty weight", "weight")
    snapshots: tuple[int, ...] = setting((), "snapshots", "steps after which to keep the images, e.g. 8,32,128: adds "
                                         "an evolution strip and evolution.gif", "steps", metavar="STEPS", only="classes")
    device: str = setting("cpu", "device", "auto, cpu or cuda[:N]", "device")
    amp: bool = setting(False, "amp", "bfloat16 mixed precision for the model: CUDA, or CPUs with bf16 support",
                        "switch")
    channels_last: bool | None = None  # channels-last conv layout; None: for 3-channel inputs, where it was faster
    redirect_relu: bool = False  # let images whose gradient dies in a closed nn.ReLU still move

    def replace(self, **changes) -> "RenderConfig":
        return replace(self, **changes)

    def from_values(self, values: Mapping[str, object]) -> "RenderConfig":
        """These settings with those ``values`` names (by setting name, as the CLI's options give them), checked."""
        return settings.from_values(self, values)

    def to_values(self) -> dict[str, object]:
        """Every user setting by name, as an option gives it (see ``introspect.settings``)."""
        return settings.to_values(self)

    def to_record(self) -> dict:
        """Plain values for run.json (``from_record`` reads them back)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> "RenderConfig":
        """The settings run.json recorded; a setting it lacks (recorded before it existed) takes its base
        default, which is what such a run used."""
        return settings.from_record(cls, record)

    def prior_terms(self, spec: ModelSpec | None) -> dict[str, float]:
        """The data-prior regularizers that apply to ``spec`` (name -> weight): ``pull`` needs its mean
        input, ``ink`` its ink level, both a non-zero weight and ``image.use_prior``."""
        if spec is None or not self.image.use_prior:
            return {}
        available = {"pull": spec.image_mean is not None, "ink": spec.ink_level is not None}
        return {name: getattr(self, name) for name, ok in available.items() if ok and getattr(self, name)}

    def regularizers(self, spec: ModelSpec | None = None) -> tuple[Objective, ...]:
        """The regularizers with a non-zero weight (``pull`` and ``ink`` need the spec's prior)."""
        chosen = [regularizer(weight) for weight, regularizer in
                  ((self.tv, total_variation), (self.l2, l2), (self.blur, blur)) if weight]
        terms = self.prior_terms(spec)
        if "pull" in terms:
            chosen.append(toward(prior_map(spec.image_mean, spec.image_shape), terms["pull"]))
        if "ink" in terms:
            chosen.append(ink(spec.ink_level, terms["ink"]))
        return tuple(chosen)

    def regularized(self, objective: Objective, spec: ModelSpec | None = None) -> Objective:
        """``objective`` plus the regularizers with a non-zero weight."""
        for regularizer in self.regularizers(spec):
            objective = objective + regularizer
        return objective

    def parts(self, spec: ModelSpec, keys: Sequence[int]) -> RenderParts:
        """The parts these settings name for len(keys) images of ``spec``'s input on ``device``: each image's
        randomness drawn from (seed, key) (its start and its transforms), the normalization last."""
        device = torch.device(self.device)
        return RenderParts(
            param=image_for(spec, self.image, keys, self.seed).to(device),
            transforms=(RandomAffine.for_keys(self.transforms, self.seed, keys), Normalize.of(spec, device)),
            optimizer=adam(self.lr), regularizers=self.regularizers(spec))

    @contextlib.contextmanager
    def speedups(self, model: nn.Module, spec: ModelSpec) -> Iterator[list[str]]:
        """The speed switches these settings name, entered around ``model``: channels-last layout (by default
        for 3-channel inputs, where it was faster; not for a model whose forward fails in it), redirected ReLU
        gradients, bfloat16 autocast. Yields notes on a switch asked for that does not apply."""
        layout = self.channels_last if self.channels_last is not None else spec.image_shape[0] >= 3 and spec.is_image
        notes = []
        with contextlib.ExitStack() as stack:
            if layout and runs_channels_last(model, spec.input_shape, self.device):
                applied = stack.enter_context(channels_last(model))
            else:
                applied = False
            if self.channels_last and not applied:
                notes.append("channels_last=True was not applied: the model has no 2-D convolution, or its forward "
                             "fails in that layout (a conv output .view'ed?); it ran in its own layout")
            if self.redirect_relu:
                stack.enter_context(redirected_relus(model))
            if self.amp:
                stack.enter_context(torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16))
            yield notes

    def render(self, model: nn.Module, objective: Objective, spec: ModelSpec, keys: Sequence[int],
               on_step: ProgressCallback | None = None, param: nn.Module | None = None) -> RenderResult:
        """``render`` with the parts and speed switches these settings name, for the images ``keys`` identify
        (class or channel indices); the model already on ``device``. ``param`` replaces the image
        parametrization the settings name (it is moved to ``device``)."""
        parts = self.parts(spec, keys)
        if param is not None:
            parts = replace(parts, param=param.to(torch.device(self.device)))
        with self.speedups(model, spec) as notes:
            result = render(model, parts.objective(objective), parts.param, transforms=parts.transforms,
                            optimizer=parts.optimizer, steps=self.steps, snapshots=self.snapshots, on_step=on_step)
        result.notes.extend(notes)
        return result


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
