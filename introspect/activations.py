"""What each layer sees for one image, and which pixels drove the decision.

``load_image`` (from ``pictures``) converts any picture to the model's input and says how;
``inspect_image`` records every requested layer's output in one forward pass
and computes the saliency of the predicted class's logit.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .engine import on_device
from .hooks import Probe
from .models.spec import ModelSpec
from .objectives import ACTIVATION_FUNCTIONS, reduce_channels
from .outputs import as_logits, class_values
from .outputs import probabilities as kind_probabilities
from .pictures import ImageInput, load_image  # noqa: F401 - activations' public names


@dataclass
class ActivationsResult:
    """One image's journey through the model."""

    input: ImageInput
    outputs: dict[str, torch.Tensor]  # layer -> output (without the batch dimension), as recorded by the hook
    activations: dict[str, str]  # layer -> activation applied for display ("relu" or "identity")
    probabilities: torch.Tensor  # (classes,) softmax, or a sigmoid per unit for sigmoid heads; empty when logits are unknown
    predicted: int | None  # None when the model's logits are unknown, or NaN/inf (``failure``)
    saliency: torch.Tensor  # (C, H, W): d logit[predicted] / d pixel in pixel space [0, 1] (unknown logits: of the last layer's strongest unit)
    class_names: Sequence[str]
    measured_at: dict[str, str] = field(default_factory=dict)  # layer -> where it is measured, "conv1 → bn1 → relu"
    non_finite: list[str] = field(default_factory=list)  # the layers whose output holds NaN/inf
    scores: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # (classes,) on the logit scale: the ranking

    def top(self, k: int = 5) -> list[int]:
        """The k classes the model ranks highest, by their scores: probabilities of a thousand near-equal logits tie
        in float32, and a sort of them put the predicted class (the scores' argmax) out of its own top 5."""
        if self.predicted is None:
            return []
        return torch.argsort(self.scores, descending=True, stable=True)[:k].tolist()
    scores_finite: bool = True  # the class scores (unknown logits: the last layer's units) are all finite

    def failure(self) -> str | None:
        """Why there is no answer to show, in one line, when the model's scores for this input are NaN/inf (the
        prediction and the saliency are then meaningless); None when they are finite."""
        if self.scores_finite:
            return None
        where = ""
        if self.non_finite:
            shown = ", ".join(self.non_finite[:3]) + (f" and {len(self.non_finite) - 3} more" if len(self.non_finite) > 3 else "")
            where = f" (NaN/inf in the output of {shown})"
        return (f"the model's output on this input is NaN/inf{where}: there is no prediction or saliency to read "
                "(a log or sqrt in the forward of values that reach 0 or below?)")

    def label(self, layer: str) -> str:
        """What the layer's shown values are: its measuring chain ("conv1 → bn1 → relu"), else "relu(fc1)"."""
        chain = self.measured_at.get(layer, "")
        if "→" in chain:
            return chain
        activation = self.activations[layer]
        return f"{activation}({layer})" if activation != "identity" else layer

    @property
    def grad_times_input(self) -> torch.Tensor:
        return self.saliency * self.input.pixels

    def shown(self, layer: str) -> torch.Tensor:
        """The layer's output after the activation the model applies (what the next layer sees)."""
        shown = ACTIVATION_FUNCTIONS[self.activations[layer]](self.outputs[layer])
        return shown.mean(0) if shown.ndim == 2 else shown  # tokens (N, D): each unit's mean over the tokens


@dataclass(frozen=True)
class Visualized:
    """A layer's optimized images of its strongest channels (``strongest_channels``) for one image, shown below its
    maps in the activations report: ``images`` (N, C, H, W) in [0, 1] of ``channels``, after ``steps_done`` of
    ``steps``; ``interrupted_at`` the step where a signal stopped them (None: they ran every step)."""

    channels: list[int]
    images: torch.Tensor
    steps_done: int
    steps: int
    interrupted_at: int | None = None


def strongest_channels(result: "ActivationsResult", layer: str, top: int) -> list[int]:
    """The ``top`` channels (units) of ``layer`` with the highest mean activation as shown, strongest first; only
    those above 0 (a closed unit has nothing to visualize)."""
    shown = result.shown(layer)
    strength = shown.mean((1, 2)) if shown.ndim == 3 else shown
    return [i for i in torch.argsort(strength, descending=True)[:top].tolist() if strength[i] > 0]


def _answerable(scores: torch.Tensor) -> bool:
    """Whether scores give an answer: no NaN or +inf, and not all -inf (a -inf score is a class masked out on purpose:
    probability 0, as ``outputs.log_probability`` reads it)."""
    return not bool(scores.isnan().any() or scores.isposinf().any()) and not bool(scores.isneginf().all())


def inspect_image(model: nn.Module, spec: ModelSpec, image: ImageInput, layers: Sequence[str],
                  device: str = "cpu") -> ActivationsResult:
    """Record ``layers``' outputs for ``image`` and the saliency of the predicted class's logit.

    The saliency is the gradient of that logit with respect to the input in pixel
    space [0, 1] (through the normalization); the model is left as it was.
    """
    pixels = image.pixels.unsqueeze(0).to(device).requires_grad_(True)
    judged = spec.logits if spec.logits is not None else layers[-1]  # what the saliency is the gradient of
    with on_device(model, device) as model:
        with torch.no_grad(), Probe(model, spec, layers, device, early_exit=False) as probe:
            # only shown: a layer no gradient leads back from (Swin V2's cpb_mlp table) is shown as it is
            outputs = probe(pixels)
        with Probe(model, spec, [judged], device) as probe:
            outputs = {**outputs, judged: probe(pixels)[judged]}
        if spec.logits is not None:
            logits = as_logits(class_values(outputs[spec.logits], spec.logits_position), spec.output_kind)
            predicted = int(logits[0].argmax())
            target = logits[0, predicted]
            probabilities = (torch.softmax(logits[0].detach().float(), 0) if spec.output_kind in (None, "logits")
                             else kind_probabilities(logits.detach(), spec.output_kind)[0]).cpu()
        else:
            units = reduce_channels(outputs[layers[-1]])[0]
            predicted, target, probabilities = None, units.max(), torch.zeros(0)
        scores_finite = _answerable(logits[0] if spec.logits is not None else units)
        (saliency,) = torch.autograd.grad(target, pixels)
    if not scores_finite:  # an argmax of NaN names no class, and a gradient of it no pixels
        predicted, probabilities, saliency = None, torch.zeros(0), torch.zeros_like(saliency)
    activations = {layer: spec.activation(layer) for layer in layers}
    non_finite = [layer for layer in layers if not bool(torch.isfinite(outputs[layer]).all())]
    return ActivationsResult(
        input=image,
        outputs={layer: outputs[layer][0].detach().cpu() for layer in layers},
        activations=activations,
        probabilities=probabilities,
        predicted=predicted,
        saliency=saliency[0].detach().cpu(),
        class_names=spec.class_names,
        measured_at={layer: spec.measured_at(layer) for layer in layers},
        non_finite=non_finite,
        scores_finite=scores_finite,
        scores=logits[0].detach().float().cpu() if spec.logits is not None and scores_finite else torch.zeros(0),
    )
