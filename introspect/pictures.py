"""Picture files read and converted to a model's input: ``load_image`` says how it converted each one; a .npy
array or a .wav file gives a signal (or any input) as it is. Below ``activations`` and ``data``, which both read
pictures."""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
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
    upscaled: float = 1.0  # how many times larger the picture was made (1: not enlarged)
    file: str | None = None  # a picture taken from a folder: its path within the folder

    @property
    def uniform(self) -> bool:
        """Every value the same, to 8 bits: nothing in the input for the model to read (a drawing lost to its
        background, a blank picture)."""
        return float(self.pixels.max() - self.pixels.min()) < 1 / 255


HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # Pillow modes read as numbers, not bytes


def load_image(path: str | Path, spec: ModelSpec, invert: str = "auto", frame: int | None = None) -> ImageInput:
    """Read any image file and convert it to ``spec.input_shape``: orientation, mode, size, (grayscale) inversion.

    ``invert``: "auto" inverts a grayscale image whose border is mostly light (a dark
    digit on paper) for a model that expects light strokes on dark; "yes" or "no" force it. Inputs that
    are not pictures (1-D signals, one-row or one-column inputs) are never inverted.
    ``frame``: which frame of an animated or multi-page image to use; such images are refused without it.
    16-bit, 32-bit integer and float images are converted and resized in float, never through 8 bits.
    A .npy file is taken as it is (``load_array``), a .wav file as a signal (``load_wav``).
    """
    import numpy as np
    from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError("image '{path}' does not exist (or is not a file)", path=path)
    if invert == "yes" and not spec.is_image:
        raise UserError("{invert} yes applies to pictures; the model's input {shape} is a signal: leave {invert} out",
                        settings=("invert",), shape=tuple(spec.input_shape))
    if path.suffix.lower() in (".npy", ".wav"):
        if frame is not None:
            raise UserError("{frame} goes with animated or multi-page pictures, not '{path}'", settings=("frame",),
                            path=path)
        return load_array(path, spec) if path.suffix.lower() == ".npy" else load_wav(path, spec)
    if len(spec.input_shape) < 3:
        raise UserError("the model takes a signal {shape}, not a picture: give a .npy array of that shape (values in "
                        "[0, 1]) or a .wav file instead of '{path}'", shape=tuple(spec.input_shape), path=path)
    channels, height, width = spec.image_shape
    if channels not in (1, 3):
        raise UserError("the model takes {channels}-channel input; only grayscale or RGB images can be converted",
                        channels=channels)
    if invert not in ("auto", "yes", "no"):
        raise UserError("{invert} must be auto, yes or no, got '{given}'", settings=("invert",), given=invert)
    try:
        # PIL warns of a picture past its decompression-bomb size (up to twice that it refuses, below): a big photo
        # is read all the same, and the conversion notes give its size, so no stray warning reaches the terminal.
        with _ignoring(Image.DecompressionBombWarning), Image.open(path) as opened:
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
            image = image.convert("RGBA")
            # onto the colour the drawing stands out from: white under dark strokes, black under light ones (a white
            # stroke on transparency composited onto white was a blank picture)
            colour = 0 if _light_drawing(image) else 255
            background = Image.new("RGBA", image.size, (colour, colour, colour, 255))
            image = Image.alpha_composite(background, image)
            notes.append(f"transparency composited onto {'black' if colour == 0 else 'white'}")
        target_mode = "L" if channels == 1 else "RGB"
        if image.mode != target_mode:
            notes.append("converted to grayscale (luma)" if target_mode == "L" else "converted to RGB")
            image = image.convert(target_mode)
    upscaled = max(1.0, min(width / image.width, height / image.height))
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
    loaded = ImageInput(pixels=pixels, source=str(path), conversion=notes, upscaled=upscaled)
    if loaded.uniform:
        notes.append(f"uniform after conversion (every value {float(pixels.mean()):.3f}): nothing in it to read")
    return loaded


def _light_drawing(image) -> bool:
    """Whether an RGBA picture's visible part is light (mean luma above one half, weighted by opacity)."""
    import numpy as np

    rgba = np.asarray(image, dtype=np.float32) / 255.0
    alpha = rgba[..., 3]
    if float(alpha.sum()) == 0:
        return False
    luma = rgba[..., 0] * 0.299 + rgba[..., 1] * 0.587 + rgba[..., 2] * 0.114
    return float((luma * alpha).sum() / alpha.sum()) > 0.5


def _as_input(values: torch.Tensor, spec: ModelSpec, path: Path, notes: list[str]) -> ImageInput:
    """``values`` of the model's input shape (or with a batch of one) as an ImageInput (C, H, W) in [0, 1];
    one-line UserErrors for another shape, non-finite values or values outside [0, 1]."""
    shapes = {tuple(spec.input_shape), tuple(spec.image_shape), (1, *spec.input_shape)}
    if tuple(values.shape) not in shapes:
        raise UserError("'{path}' holds an array of shape {shape}; the model takes {input_shape}: save one input of "
                        "that shape", path=path, shape=tuple(values.shape), input_shape=tuple(spec.input_shape))
    if not bool(torch.isfinite(values).all()):
        raise UserError("'{path}' holds NaN or infinite values; every value must be a finite number in [0, 1]", path=path)
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 1:
        raise UserError("'{path}' holds values from {low} to {high}; inputs are in [0, 1], the model's pixel "
                        "space before {mean}/{std}: rescale them (a waveform w in [-1, 1] as (w + 1) / 2)",
                        settings=("mean", "std"), path=path, low=f"{low:.4g}", high=f"{high:.4g}")
    return ImageInput(pixels=values.reshape(spec.image_shape).contiguous(), source=str(path), conversion=notes)


def load_array(path: str | Path, spec: ModelSpec) -> ImageInput:
    """A .npy array of the model's input shape (``spec.input_shape``, its (C, H, W) form, or with a batch of one),
    values in [0, 1], taken as it is: for signals and any input a picture file cannot give."""
    import numpy as np

    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise UserError("'{path}' is not a .npy array that can be read: {exc}", path=path, exc=exc) from None
    if array.dtype.kind not in "biuf":
        raise UserError("'{path}' holds {dtype} values; save numbers (floats in [0, 1])", path=path,
                        dtype=array.dtype)
    notes = [f"read a {array.dtype} array of shape {tuple(array.shape)}"]
    return _as_input(torch.from_numpy(np.asarray(array, dtype=np.float32)), spec, path, notes)


def load_wav(path: str | Path, spec: ModelSpec) -> ImageInput:
    """A PCM .wav file (stdlib ``wave``) as a signal of the model's (C, L) or (L,) input: samples mapped from
    [-1, 1] to [0, 1] ((w + 1) / 2), channels mixed to one when the model takes one, the first L samples (a
    shorter file padded with silence, 0.5)."""
    import wave

    import numpy as np

    path = Path(path)
    if spec.is_image:
        raise UserError("'{path}' is a sound; the model takes pictures {shape}", path=path, shape=tuple(spec.input_shape))
    try:
        with wave.open(str(path), "rb") as sound:
            rate, width, count = sound.getframerate(), sound.getsampwidth(), sound.getnchannels()
            data = sound.readframes(sound.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise UserError("'{path}' is not a PCM .wav file that can be read: {exc}", path=path, exc=exc) from None
    if width not in (1, 2, 4):
        raise UserError("'{path}' has {bits}-bit samples; 8, 16 or 32-bit PCM .wav files can be read", path=path,
                        bits=8 * width)
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    samples = np.frombuffer(data, dtype=dtype).astype(np.float64)
    samples = (samples - 128) / 128 if width == 1 else samples / float(2 ** (8 * width - 1))
    samples = samples[: len(samples) // count * count].reshape(-1, count).T  # (channels, frames)
    channels, _, length = spec.image_shape
    notes = [f"read {samples.shape[1]:,} samples x {count} channel(s) at {rate:,} Hz, {8 * width}-bit"]
    if count != channels:
        if channels != 1:
            raise UserError("'{path}' has {count} channel(s); the model takes {channels}", path=path, count=count,
                            channels=channels)
        samples = samples.mean(0, keepdims=True)
        notes.append(f"{count} channels mixed to one")
    if samples.shape[1] > length:
        notes.append(f"first {length:,} samples kept")
        samples = samples[:, :length]
    elif samples.shape[1] < length:
        notes.append(f"padded with silence to {length:,} samples")
        samples = np.pad(samples, ((0, 0), (0, length - samples.shape[1])))
    notes.append("samples mapped from [-1, 1] to [0, 1]")
    pixels = torch.from_numpy(((samples + 1) / 2).clip(0, 1).astype(np.float32)).view(spec.image_shape)
    return _as_input(pixels, spec, path, notes)


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


@contextlib.contextmanager
def _ignoring(category: type[Warning]) -> Iterator[None]:
    """Warnings of ``category`` not shown for the duration (``warnings.catch_warnings(action=...)`` is Python 3.11's)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category)
        yield
