"""Classes: the input each class of a classifier likes most, all classes in one batch."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .engine import ProgressCallback, RenderConfig, RenderResult, on_device
from .errors import UserError
from .hooks import record
from .models.spec import ModelSpec
from .objectives import blog_loss, class_confidence, class_logits

OBJECTIVES = {"confidence": class_confidence, "logit": class_logits, "blog": blog_loss}
#: Defaults of class visualizations, chosen on the whole conformance zoo (benchmarks/quality.py).
CLASSES_DEFAULTS = RenderConfig(lr=0.1, tv=0.5, redirect_relu=True)


@dataclass
class ClassesResult:
    """One optimized image per class with the model's verdict on it."""

    images: torch.Tensor  # (N, C, H, W) in [0, 1]
    labels: list[int]
    class_names: list[str]
    logits: torch.Tensor  # (N,) the target class's logit on the final image
    probabilities: torch.Tensor  # (N,) softmax probability of the target class
    render: RenderResult
    config: RenderConfig
    objective: str
    model_name: str = ""

    @property
    def titles(self) -> list[str]:
        return [f"{name}\np={p:.3f}" for name, p in zip(self.class_names, self.probabilities.tolist())]


def resolve_classes(spec: ModelSpec, classes: Sequence[int | str] | None) -> list[int]:
    """Class indices from indices or names (case-insensitive); all classes when None."""
    if classes is None:
        return list(range(spec.num_classes))
    lookup = {name.lower(): i for i, name in enumerate(spec.class_names)}
    indices = []
    for item in classes:
        text = str(item).strip()
        if not text:
            raise UserError("empty item in the class list; write e.g. 0,3,7 or sneaker,bag")
        if text.lower() in lookup:
            indices.append(lookup[text.lower()])
            continue
        try:
            index = int(text)
        except ValueError:
            raise UserError(f"unknown class '{text}'; classes are: {', '.join(spec.class_names)}") from None
        if not 0 <= index < spec.num_classes:
            raise UserError(f"class index {index} is out of range: this model has classes 0-{spec.num_classes - 1}")
        indices.append(index)
    if not indices:
        raise UserError("no classes given")
    return list(dict.fromkeys(indices))


def logits_of(spec: ModelSpec) -> str:
    """Where the spec's logits are (see ``ModelSpec.logits``); a UserError when it does not say."""
    if spec.logits is None:
        raise UserError(f"{spec.name}'s logits are unknown (its output is not one (batch, classes) tensor): name the "
                        "layer that computes them with {logits_layer}, or the part of the output with {logits_output}")
    return spec.logits


def class_scores(model: nn.Module, spec: ModelSpec, images: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """Logits (N, classes) of the spec's logits for pixel-space images (N, C, H, W) in [0, 1]."""
    where = logits_of(spec)
    return record(model, spec, images, [where], device)[where].flatten(1).float().cpu()


def visualize_classes(model: nn.Module, spec: ModelSpec, classes: Sequence[int | str] | None = None,
                      config: RenderConfig = CLASSES_DEFAULTS, objective: str = "confidence",
                      callback: ProgressCallback | None = None) -> ClassesResult:
    """The input each class likes most: all classes optimized together in one batch.

    ``objective`` is "confidence" (default: the class's logit plus 10 x its log-probability, from
    where ``spec.logits`` says), "logit" (the logit alone) or "blog" (the original -10*logsoftmax[target] + sum(logsoftmax) loss, for comparison).
    The caller's model stays where it is (a copy runs on ``config.device`` if needed).
    """
    if objective not in OBJECTIVES:
        raise UserError(f"unknown objective '{objective}'; choose {' or '.join(OBJECTIVES)}")
    labels = resolve_classes(spec, classes)
    with on_device(model, config.device) as model:
        result = config.render(model, OBJECTIVES[objective](logits_of(spec), labels), spec, labels, callback)
        logits = class_scores(model, spec, result.images, config.device)
    picked = torch.tensor(labels).view(-1, 1)
    return ClassesResult(
        images=result.images, labels=labels, class_names=[spec.class_names[i] for i in labels],
        logits=logits.gather(1, picked).squeeze(1), probabilities=torch.softmax(logits, 1).gather(1, picked).squeeze(1),
        render=result, config=config, objective=objective, model_name=spec.name,
    )
