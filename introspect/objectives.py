"""Objectives: named, composable functions of recorded layer outputs returning (B,) values, higher is better.

``0.5 * channel("conv2", 3) + channel("conv2", 7)`` is an objective too. Each
objective knows which layers it needs, so only those get hooks.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from . import gradients
from .devices import Constant
from .outputs import SIGMOID_KINDS, as_logits, class_values, log_probability

Activations = dict[str, torch.Tensor]

#: The key under which an objective finds the images being optimized, in pixel space [0, 1]
#: before any transform (for regularizers such as ``total_variation``).
INPUT = "<input>"

class _ActivationTable(dict):
    """Name -> function; a name may carry its parameter after a colon: "leaky_relu:0.2" (negative slope),
    "elu:0.5" (alpha), "gelu:tanh" (the tanh approximation), "softplus:2" (beta)."""

    _PARAMETRIC = {"leaky_relu": lambda p: lambda x: F.leaky_relu(x, float(p)),
                   "elu": lambda p: lambda x: F.elu(x, float(p)),
                   "gelu": lambda p: lambda x: F.gelu(x, approximate=p),
                   "softplus": lambda p: lambda x: F.softplus(x, float(p))}

    def __missing__(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        base, colon, parameter = str(name).partition(":")
        if colon and base in self._PARAMETRIC:
            try:
                function = self._PARAMETRIC[base](parameter)
                function(torch.zeros(1))
                return function
            except (TypeError, ValueError, RuntimeError):
                pass
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        try:
            self[name]
        except KeyError:
            return False
        return True


#: Activation functions a model may apply to a layer's output (ModelSpec.activations names them). Each one's
#: output is above 0 exactly where its input is (but sigmoid's, above 0 everywhere): a unit is "active" where the
#: function's output is above 0, which for ReLU, ReLU6, Hardswish, SiLU, GELU and Mish is their value at -inf, and
#: for LeakyReLU, ELU and tanh (which go on below 0) where their input changes sign.
ACTIVATION_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = _ActivationTable({
    "relu": torch.relu,
    "relu6": F.relu6,
    "hardswish": F.hardswish,
    "gelu": F.gelu,
    "silu": F.silu,
    "mish": F.mish,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "hardsigmoid": F.hardsigmoid,
    "hardtanh": F.hardtanh,
    "selu": F.selu,
    "identity": lambda x: x,
})

#: Activations whose gradient never vanishes below 0: a channel objective needs no pre-activation term with them.
LEAKY_ACTIVATIONS = ("identity", "leaky_relu")
#: Activations after which a channel is not judged dead or rarely active by the sign of its output: the output as it
#: is, LeakyReLU, ELU and tanh pass values below 0 on (never positive says nothing: a PReLU, hooked itself, is the
#: output as it is), Hardtanh and SELU too, and sigmoid and softplus are never 0. (Hardsigmoid's 0, below -3, is closed.)
UNJUDGED_ACTIVATIONS = ("identity", "leaky_relu", "elu", "tanh", "sigmoid", "softplus", "hardtanh", "selu")


def needs_leak(activation: str) -> bool:
    """Whether a channel objective adds the pre-activation term (the activation can close: its gradient vanishes)."""
    return activation.partition(":")[0] not in LEAKY_ACTIVATIONS


class Objective:
    """A function of layer outputs -> (B,) values to maximize, one per image in the batch."""

    def __init__(self, fn: Callable[[Activations], torch.Tensor], layers: Sequence[str], name: str,
                 terms: Sequence["Objective"] | None = None) -> None:
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.name = name
        #: The summands of a sum (itself otherwise): what a result names as the objective's parts.
        self.terms: tuple[Objective, ...] = tuple(terms) if terms is not None else (self,)

    @property
    def regularizers(self) -> tuple[str, ...]:
        """The names of the terms that read only the images (no layer): the regularizers."""
        return tuple(term.name for term in self.terms if not term.layers)

    def __call__(self, activations: Activations) -> torch.Tensor:
        return self.fn(activations)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    def __add__(self, other: "Objective | float") -> "Objective":
        if not isinstance(other, Objective):
            return Objective(lambda a: self(a) + other, self.layers, f"{self.name} + {other}")
        return Objective(lambda a: self(a) + other(a), self.layers + other.layers, f"{self.name} + {other.name}",
                         self.terms + other.terms)

    __radd__ = __add__

    def __neg__(self) -> "Objective":
        return Objective(lambda a: -self(a), self.layers, f"-({self.name})")

    def __sub__(self, other: "Objective | float") -> "Objective":
        return self + (-other)

    def __rsub__(self, other: float) -> "Objective":
        return (-self) + other

    def __mul__(self, factor: float) -> "Objective":
        if isinstance(factor, Objective):
            raise TypeError("objectives can be scaled by numbers, not multiplied together")
        return Objective(lambda a: factor * self(a), self.layers, f"{factor:g}*{self.name}")

    __rmul__ = __mul__


def _per_image(values: torch.Tensor, batch: int | None) -> torch.Tensor:
    """Apply a scalar objective to one image of the batch (others get 0), or to all."""
    if batch is None:
        return values
    mask = torch.zeros_like(values)
    mask[batch] = 1
    return values * mask


def _scores(output: torch.Tensor, kind: str | None, position: str | None) -> torch.Tensor:
    """(B, classes) on the logit scale from the tensor at the logits (``outputs.class_values``, ``as_logits``)."""
    return as_logits(class_values(output, position), kind)


def class_logits(layer: str, classes: Sequence[int], *, kind: str | None = None,
                 position: str | None = None) -> Objective:
    """Image i maximizes logit ``classes[i]`` of ``layer`` (one class per image, all in one batch). ``kind`` and
    ``position``: what the values are and how a spatial map is reduced (``introspect.outputs``)."""
    index = Constant(torch.as_tensor(list(classes), dtype=torch.long))

    def fn(a: Activations) -> torch.Tensor:
        logits = _scores(a[layer], kind, position)
        return logits.gather(1, index.on(logits.device).view(-1, 1)).squeeze(1)

    return Objective(fn, [layer], f"class_logits({layer})")


def class_logit(layer: str, cls: int, batch: int | None = None) -> Objective:
    """Logit ``cls`` of ``layer``, for every image or only image ``batch``."""
    return Objective(lambda a: _per_image(a[layer].flatten(1)[:, cls], batch), [layer], f"class_logit({layer}, {cls})")


def class_confidence(layer: str, classes: Sequence[int], weight: float = 10.0, *, kind: str | None = None,
                     position: str | None = None) -> Objective:
    """Logit plus ``weight`` x log-probability of each image's class.

    The logit alone rises without end, and images keep growing strokes and texture long after the
    class is clear; the log-probability saturates once the class wins, so the image stays nearer
    its data-like start. The logit term keeps a gradient that raises the class itself rather than
    only pushing the others down (measured on the zoo: benchmarks/quality.py). For sigmoid outputs
    (``kind``) the log-probability is the class's own log-sigmoid.
    """
    index = Constant(torch.as_tensor(list(classes), dtype=torch.long))

    def fn(a: Activations) -> torch.Tensor:
        logits = _scores(a[layer], kind, position)
        picked = index.on(logits.device).view(-1, 1)
        if kind not in SIGMOID_KINDS:  # another class's non-finite logit counts as absent, not poison
            return gradients.confidence(logits, picked, weight)
        return (logits.gather(1, picked) + weight * log_probability(logits, picked, kind)).squeeze(1)

    return Objective(fn, [layer], f"class_confidence({layer})")


def blog_loss(layer: str, classes: Sequence[int], *, kind: str | None = None, position: str | None = None) -> Objective:
    """The original blog objective, negated: 10*logsoftmax[target] - sum(logsoftmax).

    Kept for comparison only: raising a log-probability can be done by pushing
    the other classes down, which is why the default uses logits.
    """
    index = Constant(torch.as_tensor(list(classes), dtype=torch.long))

    def fn(a: Activations) -> torch.Tensor:
        scores = _scores(a[layer], kind, position)
        log_probs = F.logsigmoid(scores) if kind in SIGMOID_KINDS else F.log_softmax(scores, dim=1)
        target = log_probs.gather(1, index.on(log_probs.device).view(-1, 1)).squeeze(1)
        return 10 * target - log_probs.sum(1)

    return Objective(fn, [layer], f"blog({layer})")


def reduce_channels(output: torch.Tensor, neuron: bool = False) -> torch.Tensor:
    """A layer's output -> (B, C) channel values: conv maps (B, C, H, W) by spatial mean (the centre
    position with ``neuron``); token sequences (B, N, D) by the mean over tokens (the first, class,
    token with ``neuron``), a channel being unit d; vectors (B, C) stay."""
    if output.ndim == 2:
        return output
    if output.ndim == 3:
        return output[:, 0] if neuron else output.mean(dim=1)
    if output.ndim != 4:
        raise ValueError(f"expected a (B, C), (B, N, D) or (B, C, H, W) output, got shape {tuple(output.shape)}")
    if neuron:
        return output[:, :, output.shape[2] // 2, output.shape[3] // 2]
    return output.mean(dim=(2, 3))


def channel_axis(output: torch.Tensor) -> int:
    """The axis that indexes channels: the last for token sequences (B, N, D), else 1."""
    return 2 if output.ndim == 3 else 1


#: Weight of the pre-activation term of a channel objective with an activation: it lets the gradient
#: through where a ReLU is closed, so channels that start (or are) dead still move.
PRE_ACTIVATION_WEIGHT = 0.01


def _channel_of_each_image(output: torch.Tensor, picked: torch.Tensor, activation: str, neuron: bool) -> torch.Tensor:
    """(B,) image i's value of channel ``picked[i]`` after ``activation`` (+ the pre-activation term)."""
    # Take each image's own channel first: the activation and the reduction then touch one map
    # per image instead of all of them (64x less work on conv2's output).
    rows = torch.arange(len(output), device=output.device)
    if output.ndim == 3:  # tokens (B, N, D): unit d of every token
        own = output[rows, :, picked].unsqueeze(2)
    else:
        own = output[rows, picked].unsqueeze(1)
    post = reduce_channels(ACTIVATION_FUNCTIONS[activation](own), neuron).squeeze(1)
    if not needs_leak(activation):
        return post
    return post + PRE_ACTIVATION_WEIGHT * reduce_channels(own, neuron).squeeze(1)


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATION_FUNCTIONS:
        raise ValueError(f"unknown activation '{activation}'; choose {', '.join(ACTIVATION_FUNCTIONS)} "
                         "(leaky_relu:SLOPE, elu:ALPHA, gelu:tanh)")


def channel(layer: str, index: int, batch: int | None = None, *, activation: str = "identity",
            neuron: bool = False) -> Objective:
    """Channel (or unit) ``index`` of ``layer`` after ``activation``, reduced as ``reduce_channels`` does (the
    spatial mean; the centre position with ``neuron``), for every image or only image ``batch``.

    With an activation that can close (not "identity" or "leaky_relu"; ``spec.activation(layer)``),
    PRE_ACTIVATION_WEIGHT x the value before it is added so the gradient also flows where a ReLU is closed:
    exactly what ``visualize_channels`` maximizes. ``layer`` is the module whose output is hooked: pass
    ``spec.tap(layer)`` to measure where the next layer reads (after a BatchNorm that follows the layer).
    """
    _check_activation(activation)

    def fn(a: Activations) -> torch.Tensor:
        output = a[layer]
        picked = torch.full((len(output),), index, dtype=torch.long, device=output.device)
        return _per_image(_channel_of_each_image(output, picked, activation, neuron), batch)

    suffix = "" if activation == "identity" else f", {activation}"
    return Objective(fn, [layer], f"channel({layer}, {index}{suffix})")


def channels(layer: str, indices: Sequence[int], *, activation: str = "identity", neuron: bool = False,
             group: int = 1) -> Objective:
    """Image i maximizes ``channel(layer, indices[i // group], activation=..., neuron=...)``: one channel per
    image (or per group of ``group`` consecutive images), all in one batch."""
    _check_activation(activation)
    index = Constant(torch.as_tensor([c for c in indices for _ in range(group)], dtype=torch.long))

    def fn(a: Activations) -> torch.Tensor:
        output = a[layer]
        return _channel_of_each_image(output, index.on(output.device), activation, neuron)

    return Objective(fn, [layer], f"channels({layer}, {activation})")


def diversity(layer: str, group: int) -> Objective:
    """Minus the mean cosine similarity (of Gram matrices for conv maps) between each image's
    ``layer`` output and the other images of its group of ``group`` consecutive images."""

    def fn(a: Activations) -> torch.Tensor:
        output = a[layer]
        if output.ndim == 4:
            flat = output.flatten(2)
            features = torch.bmm(flat, flat.transpose(1, 2)).flatten(1) / flat.shape[-1]
        else:
            features = output.flatten(1)
        features = F.normalize(features, dim=1).view(-1, group, features.shape[1])
        similarity = torch.bmm(features, features.transpose(1, 2))
        others = (similarity.sum(2) - similarity.diagonal(dim1=1, dim2=2)) / max(1, group - 1)
        return -others.flatten()

    return Objective(fn, [layer], f"diversity({layer}, {group})")


def total_variation(weight: float) -> Objective:
    """Minus ``weight`` x the images' total variation (mean neighbour difference): smoother images score higher."""
    return Objective(lambda a: gradients.total_variation(a[INPUT], weight), [], f"total_variation({weight:g})")


def l2(weight: float) -> Objective:
    """Minus ``weight`` x the images' mean squared pixel value: darker images score higher."""
    return Objective(lambda a: -weight * a[INPUT].pow(2).flatten(1).mean(1), [], f"l2({weight:g})")


def toward(image: torch.Tensor, weight: float) -> Objective:
    """Minus ``weight`` x the mean squared difference to ``image`` (C, H, W), e.g. the data's mean input:
    pixels stay near it unless the objective gains by moving them."""
    image = Constant(image)

    def fn(a: Activations) -> torch.Tensor:
        images = a[INPUT]
        return -weight * (images - image.like(images)).pow(2).flatten(1).mean(1)

    return Objective(fn, [], f"toward({weight:g})")


def ink(level: float, weight: float) -> Objective:
    """Minus ``weight`` x the squared shortfall of the images' ink level (sum(x^2) / sum(x): the
    brightness of their bright part) below ``level``, e.g. the data's (``params.ink_level``). A model
    often names a class from a faint outline; real inputs are drawn in full strength."""
    return Objective(lambda a: gradients.ink_shortfall(a[INPUT], level, weight), [], f"ink({level:.3f}, {weight:g})")


def blur(weight: float) -> Objective:
    """Minus ``weight`` x the mean squared difference to a 3x3-blurred copy: fewer sharp details score higher."""

    taps = Constant(torch.tensor([1.0, 2.0, 1.0]))

    def fn(a: Activations) -> torch.Tensor:
        images = a[INPUT]
        kernel = taps.like(images)
        kernel = (kernel[:, None] * kernel[None, :] / 16).expand(images.shape[1], 1, 3, 3)
        blurred = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=images.shape[1])
        return -weight * (images - blurred).pow(2).flatten(1).mean(1)

    return Objective(fn, [], f"blur({weight:g})")


def accentuate(objective: Objective, targets: torch.Tensor, starts: torch.Tensor, weight: float) -> Objective:
    """Feature accentuation: min(objective, target) / target per image (``targets`` (B,) > 0: nothing is gained
    past it), minus ``weight`` x the mean squared pixel distance to its starting image ``starts`` (B, C, H, W)."""
    targets, starts = Constant(targets), Constant(starts)

    def fn(a: Activations) -> torch.Tensor:
        value = objective(a)
        target = targets.like(value)
        images = a[INPUT]
        return torch.minimum(value, target) / target - weight * (images - starts.like(images)).pow(2).flatten(1).mean(1)

    return Objective(fn, objective.layers, f"accentuate({objective.name}, {weight:g})")


def near_data(objective: Objective, targets: torch.Tensor, mean: torch.Tensor, components: torch.Tensor,
              scale: float, budget: float, weight: float) -> Objective:
    """Accentuation that stays near the data: min(objective, target) / target per image (``targets`` (B,) > 0),
    minus ``weight`` x how far the image's distance from the data goes past ``budget``: its energy outside the
    data's principal subspace (``mean`` (D,), orthonormal ``components`` (D, k), in pixels) over ``scale`` (a
    real image's typical energy there; ``quality.Manifold``)."""
    targets, mean, components = Constant(targets), Constant(mean), Constant(components)

    def fn(a: Activations) -> torch.Tensor:
        value = objective(a)
        target = targets.like(value)
        images = a[INPUT]
        centred = images.flatten(1) - mean.like(images)
        basis = components.like(images)
        outside = (centred - centred @ basis @ basis.T).pow(2).sum(1) / scale
        return torch.minimum(value, target) / target - weight * torch.relu(outside - budget)

    return Objective(fn, objective.layers, f"near_data({objective.name}, {budget:g})")


def spread(targets: torch.Tensor, group: int, weight: float) -> Objective:
    """Minus ``weight`` x, per image, the mean over the other images of its group of ``group`` consecutive images
    of the relative shortfall of their pixel L2 distance below ``targets`` (B,) > 0: a repulsion of constant pull
    that stops once the images are that far apart (a hinge; ``diverse`` copies in the data style)."""
    targets = Constant(targets)

    def fn(a: Activations) -> torch.Tensor:
        images = a[INPUT].flatten(1)
        flat = images.view(-1, group, images.shape[1])
        distance = ((flat.unsqueeze(2) - flat.unsqueeze(1)).pow(2).sum(3) + 1e-12).sqrt()  # (B / group, group, group)
        short = torch.relu(1 - distance / targets.like(images).view(-1, group, 1))
        others = short.sum(2) - short.diagonal(dim1=1, dim2=2)
        return -weight * others.flatten() / max(1, group - 1)

    return Objective(fn, [], f"spread({group}, {weight:g})")
