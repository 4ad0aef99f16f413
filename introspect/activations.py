"""What each layer sees for one image, and which pixels drove the decision.

``load_image`` converts any picture to the model's input and says how;
``inspect_image`` records every requested layer's output in one forward pass
and computes the saliency of the predicted class's logit.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .engine import on_device
from .errors import UserError
from .hooks import Probe
from .objectives import ACTIVATION_FUNCTIONS, reduce_channels
from .models.spec import ModelSpec

if TYPE_CHECKING:
    from PIL import Image


@dataclass
class ImageInput:
    """An image in the model's pixel space (C, H, W) in [0, 1], and how it got there."""

    pixels: torch.Tensor
    source: str
    conversion: list[str] = field(default_factory=list)
    label: int | None = None


HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # Pillow modes read as numbers, not bytes


def load_image(path: str | Path, spec: ModelSpec, invert: str = "auto", frame: int | None = None) -> ImageInput:
    """Read any image file and convert it to ``spec.input_shape``: orientation, mode, size, (grayscale) inversion.

    ``invert``: "auto" inverts a grayscale image whose border is mostly light (a dark
    digit on paper) for a model that expects light strokes on dark; "yes" or "no" force it.
    ``frame``: which frame of an animated or multi-page image to use; such images are refused without it.
    16-bit, 32-bit integer and float images are converted and resized in float, never through 8 bits.
    """
    import numpy as np
    from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"image '{path}' does not exist (or is not a file)")
    channels, height, width = spec.input_shape
    if channels not in (1, 3):
        raise UserError(f"the model takes {channels}-channel input; only grayscale or RGB images can be converted")
    if invert not in ("auto", "yes", "no"):
        raise UserError(f"{{invert}} must be auto, yes or no, got '{invert}'")
    try:
        with Image.open(path) as opened:
            # A phone's MPO JPEG holds its photo as frame 0 and previews or depth maps after it.
            frames = 1 if opened.format == "MPO" else getattr(opened, "n_frames", 1)
            if frame is None and frames > 1:
                raise UserError(f"'{path}' has {frames} frames (animated or multi-page); "
                                f"choose one with {{frame}} N (0-{frames - 1})")
            if frame is not None:
                if not 0 <= frame < frames:
                    raise UserError(f"{{frame}} {frame} is out of range: '{path}' has {frames} frame(s), 0-{frames - 1}")
                opened.seek(frame)
            opened.load()
            notes = [f"read {opened.width}×{opened.height} {opened.mode}"]
            if frame is not None:
                notes.append(f"frame {frame} of {frames}")
            orientation = opened.getexif().get(ExifTags.Base.Orientation, 1)
            image = ImageOps.exif_transpose(opened)
    except UserError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"'{path}' is not an image that can be read (PNG, JPEG, BMP, ...): {exc}") from None
    if 2 <= orientation <= 8:
        notes.append(f"turned upright (EXIF orientation {orientation})")
    high_bit = image.mode in HIGH_BIT_MODES
    if high_bit:
        image = _unit_float(image, notes)
    else:
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image.convert("RGBA"))
            notes.append("transparency composited onto white")
        target_mode = "L" if channels == 1 else "RGB"
        if image.mode != target_mode:
            notes.append("converted to grayscale (luma)" if target_mode == "L" else "converted to RGB")
            image = image.convert(target_mode)
    if image.size != (width, height):
        kept = image.width * height == image.height * width
        notes.append(f"resized {image.width}×{image.height} → {width}×{height} (bilinear"
                     + ("" if kept else "; aspect ratio not kept") + ")")
        image = image.resize((width, height), Image.BILINEAR)
    array = np.array(image, dtype=np.float32)
    if not high_bit:
        array = array / 255.0
    elif channels == 3:
        notes.append("grayscale replicated to 3 channels")
    pixels = torch.from_numpy(array)
    pixels = pixels.permute(2, 0, 1) if pixels.ndim == 3 else pixels.unsqueeze(0).expand(channels, -1, -1)
    pixels = pixels.contiguous()
    border = torch.cat([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]], dim=1).mean()
    if invert == "yes" or (invert == "auto" and channels == 1 and border > 0.5):
        pixels = 1 - pixels
        notes.append("inverted (light background → dark, as in the training data)" if invert == "auto" else "inverted")
    return ImageInput(pixels=pixels, source=str(path), conversion=notes)


def _unit_float(image: Image.Image, notes: list[str]) -> Image.Image:
    """A 16-bit, 32-bit integer or float image as a float ("F") image in [0, 1].

    Integers are scaled by 1/65535; floats are taken as [0, 1] when their maximum is <= 1, else as [0, 255].
    """
    import numpy as np
    from PIL import Image

    array = np.asarray(image, dtype=np.float32)
    if image.mode == "F":
        scale = 1.0 if array.max() <= 1 else 255.0
        notes.append(f"float values taken as [0, {scale:g}]")
    else:
        scale = 65535.0
        notes.append("16-bit values scaled by 1/65535")
    array = array / scale
    if array.min() < 0 or array.max() > 1:
        notes.append("values outside [0, 1] clipped")
    return Image.fromarray(np.clip(array, 0, 1))


@dataclass
class ActivationsResult:
    """One image's journey through the model."""

    input: ImageInput
    outputs: dict[str, torch.Tensor]  # layer -> output (without the batch dimension), as recorded by the hook
    activations: dict[str, str]  # layer -> activation applied for display ("relu" or "identity")
    probabilities: torch.Tensor  # (classes,); empty when the model's logits are unknown
    predicted: int | None  # None when the model's logits are unknown
    saliency: torch.Tensor  # (C, H, W): d logit[predicted] / d pixel in pixel space [0, 1] (unknown logits: of the last layer's strongest unit)
    class_names: Sequence[str]

    @property
    def grad_times_input(self) -> torch.Tensor:
        return self.saliency * self.input.pixels

    def shown(self, layer: str) -> torch.Tensor:
        """The layer's output after the activation the model applies (what the next layer sees)."""
        shown = ACTIVATION_FUNCTIONS[self.activations[layer]](self.outputs[layer])
        return shown.mean(0) if shown.ndim == 2 else shown  # tokens (N, D): each unit's mean over the tokens


def inspect_image(model: nn.Module, spec: ModelSpec, image: ImageInput, layers: Sequence[str],
                  device: str = "cpu") -> ActivationsResult:
    """Record ``layers``' outputs for ``image`` and the saliency of the predicted class's logit.

    The saliency is the gradient of that logit with respect to the input in pixel
    space [0, 1] (through the normalization); the model is left as it was.
    """
    pixels = image.pixels.unsqueeze(0).to(device).requires_grad_(True)
    wanted = list(dict.fromkeys([*layers, *([spec.logits] if spec.logits is not None else [])]))
    with on_device(model, device) as model, Probe(model, spec, wanted, device, early_exit=False) as probe:
        outputs = probe(pixels)
        if spec.logits is not None:
            logits = outputs[spec.logits].flatten(1)[0]
            predicted = int(logits.argmax())
            target, probabilities = logits[predicted], torch.softmax(logits.detach().float(), 0).cpu()
        else:
            units = reduce_channels(outputs[layers[-1]])[0]
            predicted, target, probabilities = None, units.max(), torch.zeros(0)
        (saliency,) = torch.autograd.grad(target, pixels)
    activations = {layer: spec.activation(layer) for layer in layers}
    return ActivationsResult(
        input=image,
        outputs={layer: outputs[layer][0].detach().cpu() for layer in layers},
        activations=activations,
        probabilities=probabilities,
        predicted=predicted,
        saliency=saliency[0].detach().cpu(),
        class_names=spec.class_names,
    )
