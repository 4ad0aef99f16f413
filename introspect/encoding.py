"""Images as files: floats to uint8, PNGs, animated GIFs, colormapped maps and heat overlays."""
from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .quality import saved_levels


def shown_channels(array: np.ndarray, axis: int = 0) -> np.ndarray:
    """A picture's channels (along ``axis``) as they are drawn: 1 (grey) and 3 (RGB) as they are; 2 as red and
    green (blue 0); 4 or more as their first three, RGB (e.g. RGB-D's colour). images.npz keeps them all."""
    channels = array.shape[axis]
    if channels in (1, 3):
        return array
    if channels == 2:
        return np.concatenate([array, np.zeros_like(np.take(array, [0], axis=axis))], axis=axis)
    return np.take(array, [0, 1, 2], axis=axis)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Pixel-space floats in [0, 1] -> uint8, rounding to nearest (``quality.saved_levels``)."""
    return saved_levels(images.detach().cpu()).numpy()


def save_gif(frames: Sequence[torch.Tensor], path: str | Path, scale: int = 4, duration_ms: int = 400) -> None:
    """Each frame (N, C, H, W) becomes one GIF frame: the N images side by side, upscaled."""
    from PIL import Image

    pictures = []
    for frame in frames:
        tiles = [np.pad(shown_channels(to_uint8(img)), ((0, 0), (1, 1), (1, 1)), constant_values=128) for img in frame]
        strip = np.concatenate(tiles, axis=2)
        strip = strip[0] if strip.shape[0] == 1 else np.transpose(strip, (1, 2, 0))
        picture = Image.fromarray(strip)
        pictures.append(picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST))
    pictures[0].save(Path(path), save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0)


def save_png(path: Path, array: np.ndarray) -> None:
    """A uint8 image, (C, H, W) (``shown_channels``), or (H, W[, 3]), as a PNG (``png_bytes``); fast compression (sites
    hold thousands)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3 and array.shape[-1] not in (3, 4):  # (C, H, W): any number of channels, as drawn
        array = shown_channels(array)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))
    path.write_bytes(png_bytes(np.ascontiguousarray(array), level=1))


def png_bytes(pixels: np.ndarray, dpi: float | None = None, text: dict[str, str] | None = None,
              level: int = 3) -> bytes:
    """A uint8 picture, (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA (laid out in memory any way, read in place: the
    RGB of an RGBA canvas needs no copy), as a PNG file's bytes, with its resolution and text chunks (Latin-1). Every
    row is stored as its difference from the row above (PNG's "Up" filter: a page's white and its tiles' columns
    deflate to almost nothing) and deflated at ``level``. PIL's encoder instead tries five filters on every row, which
    is most of its time; these files are about as small (`python benchmarks/wide_writing.py` times the writing)."""
    if (pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4))
            or min(pixels.shape[:2], default=0) < 1):
        raise ValueError(f"png_bytes takes uint8 (H, W), (H, W, 3) or (H, W, 4) with H, W >= 1, not {pixels.dtype} "
                         f"{pixels.shape}")
    for key, value in (text or {}).items():
        if not 1 <= len(key) <= 79 or not all(32 <= ord(c) <= 126 or 161 <= ord(c) <= 255 for c in key):
            raise ValueError(f"a PNG text keyword is 1-79 printable Latin-1 characters, not {key!r}")
        if any(ord(c) > 255 for c in value):
            raise ValueError(f"a PNG text is Latin-1: {key}={value!r} is not")
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = np.empty((height, 1 + width * channels), np.uint8)  # each row: its filter type, then its bytes
    rows[:, 0] = 2  # Up
    # The rows' bytes as the picture's pixels (a view), filled by torch: it reads a strided picture (a page's RGB
    # inside Agg's RGBA canvas) several times faster than numpy does. torch takes neither a read-only array nor
    # negative strides: those are copied.
    body = torch.from_numpy(rows[:, 1:].reshape(pixels.shape))
    source = torch.from_numpy(pixels if pixels.flags.writeable and min(pixels.strides) >= 0 else np.array(pixels))
    body[:1] = source[:1]  # the first row's "row above" is zeros
    torch.sub(source[1:], source[:-1], out=body[1:])  # uint8: modulo 256, as PNG's filters are

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    color = {1: 0, 3: 2, 4: 6}[channels]
    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0))]
    if dpi is not None:
        per_metre = int(dpi / 0.0254 + 0.5)  # as PIL writes it
        parts.append(chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)))
    for key, value in (text or {}).items():
        parts.append(chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1")))
    parts += [chunk(b"IDAT", zlib.compress(rows, level)), chunk(b"IEND", b"")]
    return b"".join(parts)


def colored(values: np.ndarray, cmap: str = "magma", symmetric: bool = False) -> np.ndarray:
    """(H, W) floats -> (H, W, 3) uint8 through a matplotlib colormap; ``symmetric`` puts 0 at its centre."""
    from matplotlib import colormaps

    values = np.nan_to_num(values.astype(np.float32))
    if symmetric:
        limit = float(np.abs(values).max()) or 1.0
        scaled = (values / limit + 1) / 2
    else:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / ((high - low) or 1.0)
    return (colormaps[cmap](scaled)[..., :3] * 255).astype(np.uint8)


def overlay(image: np.ndarray, activation_map: np.ndarray | None, mark: bool = False) -> np.ndarray:
    """A uint8 (C, H, W) image with a channel's map (h, w) over it as a heat overlay, (H, W, 3) uint8;
    ``mark`` outlines the centre position (a --neuron run's objective)."""
    image = shown_channels(image)
    rgb = np.transpose(np.repeat(image, 3, 0) if image.shape[0] == 1 else image, (1, 2, 0))
    if activation_map is None:
        return np.ascontiguousarray(rgb, dtype=np.uint8)
    rgb = rgb.astype(np.float32)
    height, width = rgb.shape[:2]
    up = torch.nn.functional.interpolate(torch.as_tensor(activation_map, dtype=torch.float32)[None, None],
                                         size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()
    peak = float(up.max())
    strength = np.clip(up / peak, 0, 1)[..., None] if peak > 0 else np.zeros((height, width, 1), np.float32)
    heat = colored(np.clip(up, 0, None), "inferno").astype(np.float32)
    out = rgb * (1 - 0.6 * strength) + heat * 0.6 * strength
    if mark:
        h, w = activation_map.shape
        cy, cx = (h // 2 + 0.5) * height / h, (w // 2 + 0.5) * width / w
        r = max(2, int(round(height / h)))
        y0, y1, x0, x1 = (int(max(0, cy - r)), int(min(height - 1, cy + r)), int(max(0, cx - r)),
                          int(min(width - 1, cx + r)))
        for y, x in [(y0, slice(x0, x1 + 1)), (y1, slice(x0, x1 + 1)), (slice(y0, y1 + 1), x0), (slice(y0, y1 + 1), x1)]:
            out[y, x] = (0, 255, 0)
    return out.clip(0, 255).astype(np.uint8)
