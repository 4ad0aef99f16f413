"""What each layer sees for one image, and which pixels drove the decision.

``load_image`` converts any picture to the model's input and says how;
``inspect_image`` records every requested layer's output in one forward pass
and computes the saliency of the predicted class's logit.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .engine import frozen, normalizer
from .errors import UserError
from .hooks import HookRegistry
from .models.spec import ModelSpec


@dataclass
class ImageInput:
    """An image in the model's pixel space (C, H, W) in [0, 1], and how it got there."""

    pixels: torch.Tensor
    source: str
    conversion: list[str] = field(default_factory=list)
    label: int | None = None


def load_image(path: str | Path, spec: ModelSpec, invert: str = "auto") -> ImageInput:
    """Read any image file and convert it to ``spec.input_shape``: mode, size, and (grayscale) inversion.

    ``invert``: "auto" inverts a grayscale image whose border is mostly light (a dark
    digit on paper) for a model that expects light strokes on dark; "yes" or "no" force it.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"image '{path}' does not exist (or is not a file)")
    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened.copy()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"'{path}' is not an image that can be read (PNG, JPEG, BMP, ...): {exc}") from None
    channels, height, width = spec.input_shape
    notes = [f"read {image.width}×{image.height} {image.mode}"]
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
        notes.append("transparency composited onto white")
    target_mode = "L" if channels == 1 else "RGB"
    if channels not in (1, 3):
        raise UserError(f"the model takes {channels}-channel input; only grayscale or RGB images can be converted")
    if image.mode != target_mode:
        notes.append("converted to grayscale (luma)" if target_mode == "L" else "converted to RGB")
        image = image.convert(target_mode)
    if image.size != (width, height):
        kept = image.width * height == image.height * width
        notes.append(f"resized {image.width}×{image.height} → {width}×{height} (bilinear"
                     + ("" if kept else "; aspect ratio not kept") + ")")
        image = image.resize((width, height), Image.BILINEAR)
    import numpy as np

    array = np.asarray(image, dtype=np.float32) / 255.0
    pixels = torch.from_numpy(array).unsqueeze(0) if channels == 1 else torch.from_numpy(array).permute(2, 0, 1)
    pixels = pixels.contiguous()
    if invert not in ("auto", "yes", "no"):
        raise UserError(f"--invert must be auto, yes or no, got '{invert}'")
    border = torch.cat([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]], dim=1).mean()
    if invert == "yes" or (invert == "auto" and channels == 1 and border > 0.5):
        pixels = 1 - pixels
        notes.append("inverted (light background → dark, as in the training data)" if invert == "auto" else "inverted")
    return ImageInput(pixels=pixels, source=str(path), conversion=notes)


@dataclass
class ActivationsResult:
    """One image's journey through the model."""

    input: ImageInput
    outputs: dict[str, torch.Tensor]  # layer -> output (without the batch dimension), as recorded by the hook
    activations: dict[str, str]  # layer -> activation applied for display ("relu" or "identity")
    probabilities: torch.Tensor  # (classes,)
    predicted: int
    saliency: torch.Tensor  # (C, H, W): d logit[predicted] / d pixel, in pixel space [0, 1]
    class_names: Sequence[str]

    @property
    def grad_times_input(self) -> torch.Tensor:
        return self.saliency * self.input.pixels

    def shown(self, layer: str) -> torch.Tensor:
        """The layer's output after the activation the model applies (what the next layer sees)."""
        output = self.outputs[layer]
        return torch.relu(output) if self.activations[layer] == "relu" else output


def inspect_image(model: nn.Module, spec: ModelSpec, image: ImageInput, layers: Sequence[str],
                  device: str = "cpu") -> ActivationsResult:
    """Record ``layers``' outputs for ``image`` and the saliency of the predicted class's logit.

    The saliency is the gradient of that logit with respect to the input in pixel
    space [0, 1] (through the normalization); the model is left as it was.
    """
    pixels = image.pixels.unsqueeze(0).to(device).requires_grad_(True)
    normalize = normalizer(spec.mean, spec.std, torch.device(device))
    wanted = list(dict.fromkeys([*layers, spec.logits_layer]))
    with frozen(model), HookRegistry(model, wanted, early_exit=False) as hooks:
        outputs = hooks.run(normalize(pixels))
        logits = outputs[spec.logits_layer].flatten(1)[0]
        predicted = int(logits.argmax())
        (saliency,) = torch.autograd.grad(logits[predicted], pixels)
    activations = {layer: (spec.activations or {}).get(layer, "identity") for layer in layers}
    return ActivationsResult(
        input=image,
        outputs={layer: outputs[layer][0].detach().cpu() for layer in layers},
        activations=activations,
        probabilities=torch.softmax(logits.detach().float(), 0).cpu(),
        predicted=predicted,
        saliency=saliency[0].detach().cpu(),
        class_names=spec.class_names,
    )
