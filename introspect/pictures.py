"""Picture files read and converted to a model's input: ``load_image`` says how it converted each one.
Below ``activations`` and ``data``, which both read pictures."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import UserError
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
    digit on paper) for a model that expects light strokes on dark; "yes" or "no" force it. Inputs that
    are not pictures (1-D signals, one-row or one-column inputs) are never inverted.
    ``frame``: which frame of an animated or multi-page image to use; such images are refused without it.
    16-bit, 32-bit integer and float images are converted and resized in float, never through 8 bits.
    """
    import numpy as np
    from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError("image '{path}' does not exist (or is not a file)", path=path)
    channels, height, width = spec.image_shape
    if channels not in (1, 3):
        raise UserError("the model takes {channels}-channel input; only grayscale or RGB images can be converted",
                        channels=channels)
    if invert not in ("auto", "yes", "no"):
        raise UserError("{invert} must be auto, yes or no, got '{given}'", settings=("invert",), given=invert)
    try:
        with Image.open(path) as opened:
            # A phone's MPO JPEG holds its photo as frame 0 and previews or depth maps after it.
            frames = 1 if opened.format == "MPO" else getattr(opened, "n_frames", 1)
            if frame is None and frames > 1:
                raise UserError("'{path}' has {frames} frames (animated or multi-page); choose one with {frame} N "
                                "(0-{last})", settings=("frame",), path=path, frames=frames, last=frames - 1)
            if frame is not None:
                if not 0 <= frame < frames:
                    raise UserError("{frame} {given} is out of range: '{path}' has {frames} frame(s), 0-{last}",
                                    settings=("frame",), given=frame, path=path, frames=frames, last=frames - 1)
                opened.seek(frame)
            opened.load()
            notes = [f"read {opened.width}×{opened.height} {opened.mode}"]
            if frame is not None:
                notes.append(f"frame {frame} of {frames}")
            orientation = opened.getexif().get(ExifTags.Base.Orientation, 1)
            image = ImageOps.exif_transpose(opened)
    except UserError:
        raise
    except Image.DecompressionBombError:
        raise UserError("'{path}' has more pixels than introspect reads ({limit} at most: a guard against decompression "
                        "bombs); scale it down first", path=path, limit=f"{2 * Image.MAX_IMAGE_PIXELS:,}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError("'{path}' is not an image that can be read (PNG, JPEG, BMP, ...): {exc}", path=path, exc=exc) from None
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
    # Inversion is for pictures of strokes on paper: never for a one-row or 1-D signal input.
    if spec.is_image and (invert == "yes" or (invert == "auto" and channels == 1 and border > 0.5)):
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
