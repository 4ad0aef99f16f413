"""Matplotlib reports built without pyplot's global state.

``figure(result)`` returns a Figure that renders itself inline in Jupyter;
``save_figure`` writes it in any matplotlib format. All text is plain text:
a "$" in a class, layer or model name is drawn as typed, never as mathtext.
"""
from __future__ import annotations

import contextlib
import functools
import io
import math
import re
import struct
from collections.abc import Callable, Sequence
from typing import NamedTuple
from pathlib import Path

import numpy as np
import torch
import matplotlib
from matplotlib import ft2font, rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag
from matplotlib.figure import Figure
from matplotlib.image import BboxImage

from .encoding import png_bytes, shown_channels


#: Applied while figures are built: every Text made then keeps parse_math=False.
PLAIN_TEXT = {"text.parse_math": False}


@functools.lru_cache(maxsize=8192)
def _glyph(font, size: float, dpi: float, index: int, x: int, y: int, flags) -> tuple[np.ndarray, int, int]:
    """One glyph as Agg renders it upright with its origin at (``x``, ``y``) 64ths of a pixel (0..63): the coverage
    bitmap, its left and top. A whole-pixel shift moves the bitmap and nothing else, so this serves every place
    with the same fraction."""
    font.set_size(size, dpi)
    font._set_transform(np.array([[0x10000, 0], [0, 0x10000]]), [x, y])
    bitmap = font._render_glyph(index, flags, ft2font.RenderMode.NORMAL)
    return bitmap.buffer, bitmap.left, bitmap.top


@functools.lru_cache(maxsize=8192)
def _glyph_box(font, size: float, dpi: float, index: int, flags) -> tuple[tuple[int, int, int, int], int]:
    """A glyph's control box at the origin and its advance, in 64ths of a pixel, as ``FT2Font.set_text`` loads it."""
    font.set_size(size, dpi)
    glyph = font.load_glyph(index, flags)
    return tuple(glyph.bbox), glyph.horiAdvance


class _Placed(NamedTuple):
    """A glyph of a line where ``_layout`` places it (FT2Font._layout's LayoutItem, as drawing reads it)."""

    ft_object: object
    glyph_index: int
    x: float
    y: float


#: Fonts whose lines ``_layout`` places itself, as FT2Font._layout does (each glyph's hinted advance plus the pair's
#: kerning; checked on matplotlib's default DejaVu Sans, regular and bold, over thousands of lines in the tests).
OWN_LAYOUT = ("DejaVu Sans",)
#: What FreeType's layout may join into one glyph (DejaVu's ligatures): such lines go through it.
_LIGATURES = re.compile("f[fil]")


@functools.lru_cache(maxsize=65536)
def _kerning(font, size: float, dpi: float, left: int, right: int) -> int:
    font.set_size(size, dpi)
    return font.get_kerning(left, right, ft2font.Kerning.UNFITTED)


def _layout(font, size: float, dpi: float, text: str, flags) -> list:
    """The glyphs of one line and their positions, as ``font._layout`` gives them: computed here from advances and
    kerning kept between lines for a font of OWN_LAYOUT and a line of its own characters without ligatures
    (FreeType's layout loads every glyph of every line afresh: about 50 µs a character); else FreeType's."""
    if font.family_name in OWN_LAYOUT and text.isprintable() and not _LIGATURES.search(text):
        indices = [font.get_char_index(ord(char)) for char in text]
        if indices and 0 not in indices:
            placed, x, previous = [], 0, None
            for index in indices:
                if previous is not None:
                    x += _glyph_box(font, size, dpi, previous, flags)[1] + _kerning(font, size, dpi, previous, index)
                placed.append(_Placed(font, index, x / 64, 0.0))
                previous = index
            return placed
    font.set_size(size, dpi)
    return font._layout(text, flags=flags)


@functools.lru_cache(maxsize=4096)
def _shaped(font, size: float, dpi: float, text: str, flags) -> tuple[list, tuple[float, float, float]]:
    """One line of text as Agg lays it out and measures it: its glyphs' positions, and its width, height and
    descent in pixels. Kept, since FreeType's layout costs more than drawing the glyphs and pages repeat lines.
    The measure is ``set_text``'s (which lays the line out again, loading every glyph): the union of the glyphs'
    boxes placed where the layout puts them and of the pen's path."""
    items = _layout(font, size, dpi, text, flags)
    if not items:
        font.set_size(size, dpi)
        font.set_text(text, 0.0, flags=flags)
        width, height = font.get_width_height()
        return items, (width / 64, height / 64, font.get_descent() / 64)
    low_x = low_y = high_x = high_y = 0
    for item in items:
        (x0, y0, x1, y1), advance = _glyph_box(item.ft_object, size, dpi, item.glyph_index, flags)
        x, y = round(item.x * 64), round(item.y * 64)
        low_x, low_y, high_x, high_y = min(low_x, x + x0), min(low_y, y + y0), max(high_x, x + x1), max(high_y, y + y1)
    high_x = max(high_x, round(items[-1].x * 64) + advance)  # the pen's end: a trailing space counts
    return items, ((high_x - low_x) / 64, (high_y - low_y) / 64, -low_y / 64)


#: The matplotlib whose private glyph-by-glyph text drawing ``_Renderer`` repeats (3.11): any other version, or one
#: without those calls, draws text as stock Agg does rather than risk other pixels or a failed report.
MATPLOTLIB_3_11 = tuple(int(part) for part in matplotlib.__version__.split(".")[:2]) == (3, 11)
GLYPH_BY_GLYPH = (MATPLOTLIB_3_11
                  and hasattr(ft2font.FT2Font, "_render_glyph") and hasattr(ft2font.FT2Font, "_layout")
                  and hasattr(ft2font, "Kerning"))


class _Renderer(RendererAgg):
    """Agg drawing plain upright text from glyphs laid out and rendered once (``_shaped``, ``_glyph``): the same
    pixels, and a 512-channel report's thousand captions render a few hundred glyphs instead of tens of thousands.
    Other text (mathtext, rotated, not antialiased, with font features or a language), and any matplotlib without
    the glyph-by-glyph drawing of 3.11, is drawn as Agg draws it."""

    def _plain(self, ismath, mtext=None) -> bool:
        return (not ismath and GLYPH_BY_GLYPH
                and (mtext is None or not (mtext.get_fontfeatures() or mtext.get_language())))

    def _prepare_font(self, font_prop):
        """As RendererAgg's, the font looked up once per font properties in this renderer (a page's thousand captions
        share a few; matplotlib looks it up for each text it measures or draws)."""
        fonts = self.__dict__.setdefault("_fonts", {})
        font = fonts.get(font_prop)
        if font is None:
            font = fonts[font_prop.copy()] = super()._prepare_font(font_prop)
            return font
        font.clear()
        font.set_size(font_prop.get_size_in_points(), self.dpi)
        return font

    def _shape(self, s: str, prop):
        return _shaped(self._prepare_font(prop), prop.get_size_in_points(), self.dpi, s, get_hinting_flag())

    def _get_font_height_metrics(self, prop):
        """The font's ascent, descent and line gap in pixels, as ``Text._get_layout`` computes them from its tables
        when the renderer has no such method (3.11), here once per font properties instead of once per text. At the
        renderer's dpi, as the PDF backend's method: a text measured at another dpi than it is drawn at
        (``get_window_extent(dpi=...)``, which reports never call) would get this dpi's heights."""
        if not MATPLOTLIB_3_11:  # the formula is 3.11's; another version lays text out as it does itself
            return None, None, None
        heights = self.__dict__.setdefault("_heights", {})
        found = heights.get(prop)
        if found is None:
            found = heights[prop.copy()] = _font_height_metrics(prop, self.dpi)
        return found

    def get_text_width_height_descent(self, s, prop, ismath):
        if not self._plain(ismath):
            return super().get_text_width_height_descent(s, prop, ismath)
        return self._shape(s, prop)[1]

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if angle or not gc.get_antialiased() or not self._plain(ismath, mtext):
            return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
        size, height, flags = prop.get_size_in_points(), int(self.height), get_hinting_flag()
        for item in self._shape(s, prop)[0]:  # FreeType's y is upwards; as RendererAgg._draw_text_glyphs_and_boxes
            gx, gy = round(0x40 * (x + item.x)), round(0x40 * (self.height - y + item.y))
            bitmap, left, top = _glyph(item.ft_object, size, self.dpi, item.glyph_index, gx & 63, gy & 63, flags)
            self._renderer.draw_text_image(bitmap, left + (gx >> 6), height - top - (gy >> 6) + bitmap.shape[0], 0, gc)


def _font_height_metrics(prop, dpi: float) -> tuple[float | None, float | None, float | None]:
    """Ascent, descent and line gap of ``prop``'s font in pixels at ``dpi``, from its OS/2 table or else its hhea
    table, scaled as matplotlib 3.11's ``Text._get_layout`` scales them (None when the font has neither)."""
    from matplotlib.font_manager import fontManager, get_font

    font = get_font(fontManager._find_fonts_by_props(prop))
    for table_name, gap_key, ascent_key, descent_key in (("OS/2", "sTypoLineGap", "sTypoAscender", "sTypoDescender"),
                                                          ("hhea", "lineGap", "ascent", "descent")):
        table = font.get_sfnt_table(table_name)
        if table is not None:
            scale = 1 / font.get_sfnt_table("head")["unitsPerEm"] * prop.get_size_in_points() * dpi / 72
            return table[ascent_key] * scale, -table[descent_key] * scale, table[gap_key] * scale
    return None, None, None


#: _PixelImage leaves an image to matplotlib when an output pixel's centre falls this close (in source pixels) to
#: the edge between two source pixels: there Agg's fixed-point arithmetic (1/256 of a pixel) decides which one it takes.
_NEAR_EDGE = 1 / 64


def _nearest(count: int, offset: float, scale: float, size: int) -> np.ndarray | None:
    """The source pixel (0..size-1) under each of ``count`` output pixels' centres, the first ``offset`` output pixels
    past the image's edge, ``scale`` output pixels per source pixel; None when a centre is _NEAR_EDGE of a boundary."""
    centres = (np.arange(count) + 0.5 + offset) / scale
    if np.abs(centres - np.round(centres)).min() < _NEAR_EDGE:
        return None
    return np.floor(centres).astype(np.intp).clip(0, size - 1)


class _PixelImage(BboxImage):
    """A report's image (grey or RGB float32/64, nearest pixels, drawn at least its own size): on a report canvas
    (``_Renderer``) resampled by indexing its colour-mapped pixels, the pixels matplotlib 3.11's resampling gives (a
    page's hundreds of tiles spent most of their time there); on any other renderer or matplotlib, shrunk, past the
    canvas, or with a pixel centre on a boundary between two source pixels, as BboxImage draws it."""

    def make_image(self, renderer, magnification=1.0, unsampled=False):
        data = self._A
        if (not MATPLOTLIB_3_11 or type(renderer) is not _Renderer or unsampled or magnification != 1.0
                or data is None or data.size == 0 or data.dtype.kind != "f" or data.dtype.itemsize < 4
                or data.shape[2:] not in ((), (3,)) or (data.ndim == 3 and np.ma.is_masked(data))
                or self.origin != "upper" or self.get_alpha() is not None):
            return super().make_image(renderer, magnification, unsampled)
        width, height = renderer.get_canvas_width_height()
        box = self.get_window_extent(renderer)
        rows, cols = data.shape[:2]
        scale_x, scale_y = box.width / cols, box.height / rows
        if min(scale_x, scale_y) < 1 - 1e-6 or box.x0 < 0 or box.y0 < 0 or box.x1 > width or box.y1 > height:
            return super().make_image(renderer, magnification, unsampled)
        # The box rounded to whole pixels as _ImageBase._make_image rounds it; output row 0 is at the bottom, the
        # source's row 0 at the top (origin "upper").
        x0, y0 = np.floor(box.x0 + 0.5), np.ceil(box.y0 - 0.5 - 1e-8)
        x1, y1 = np.floor(box.x1 + 0.5 + 1e-8), np.ceil(box.y1 - 0.5)
        if x1 <= x0 or y1 <= y0:
            return None, 0, 0, None
        across = _nearest(int(x1 - x0), x0 - box.x0, scale_x, cols)
        up = _nearest(int(y1 - y0), y0 - box.y0, scale_y, rows)
        if across is None or up is None:
            return super().make_image(renderer, magnification, unsampled)
        return self.to_rgba(data, bytes=True).take(rows - 1 - up, 0).take(across, 1), x0, y0, None


class _Canvas(FigureCanvasAgg):
    """An Agg canvas drawing with ``_Renderer``."""

    def get_renderer(self):
        key = (*self.get_width_height(physical=True), self.figure.dpi)
        if self._lastKey != key:
            self.renderer, self._lastKey = _Renderer(*key), key
        return self.renderer


class ReportFigure(Figure):
    """A Figure with its own Agg canvas, shown inline by Jupyter without pyplot."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _Canvas(self)

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        return buffer.getvalue()


def wrap(text: str, width_inches: float, fontsize: float) -> str:
    """Wrap each line of a title to fit a figure ``width_inches`` wide at ``fontsize`` points."""
    import textwrap

    chars = max(20, int(width_inches * 72 / (fontsize * 0.6)))
    return "\n".join(textwrap.fill(line, chars) if line else line for line in text.split("\n"))


def to_display(image: torch.Tensor) -> tuple[np.ndarray, str | None]:
    """(C, H, W) in [0, 1] -> an array imshow takes, and the colormap for grayscale: the channels as drawn
    (``encoding.shown_channels``), a 1-D signal's (one row) all of them, a line each (``Page.signal``)."""
    array = image.detach().cpu().clamp(0, 1).numpy()
    if not (array.ndim == 3 and array.shape[1] == 1 and array.shape[2] > 1):
        array = shown_channels(array)
    if array.shape[0] == 1:
        return array[0], "gray"
    return np.transpose(array, (1, 2, 0)), None


#: What ``figure`` and ``save_run`` take, in words (their TypeError says it).
RESULT_TYPES = "a ClassesResult, ChannelsResult, ActivationsResult or RenderResult"


def figure(result, **options) -> ReportFigure:
    """The report figure of a classes, channels, activations or render result; a TypeError for anything else."""
    from .activations import ActivationsResult
    from .channels import ChannelsResult
    from .classes import ClassesResult
    from .engine import RenderResult

    if isinstance(result, ChannelsResult):
        return channels_figure(result, **options)
    if isinstance(result, ActivationsResult):
        return activations_figure(result, **options)
    if isinstance(result, ClassesResult):
        return classes_figure(result, **options)
    if isinstance(result, RenderResult):
        return render_figure(result, **options)
    raise TypeError(f"figure takes {RESULT_TYPES}, not {type(result).__name__}")


def render_settings(result) -> str:
    """What made a RenderResult, in one plain-text line."""
    parts = [f"objective {result.objective or '?'}", f"{result.steps_done} steps", f"param {result.param or '?'}",
             f"transforms {', '.join(result.transforms) or 'none'}"]
    if result.interrupted_at is not None:
        parts.append(f"INTERRUPTED at step {result.interrupted_at}")
    return "; ".join(parts)


def _classes_title(result) -> str:
    objective = {"confidence": "logit + 10 x log-probability", "logit": "logit"}.get(result.objective,
                                                                                     "blog loss (log-softmax)")
    title = f"{result.model_name}: the input each class likes most ({objective}, {result.render.steps_done} steps)"
    if result.render.interrupted_at is not None:
        title += f" — INTERRUPTED at step {result.render.interrupted_at}"
    return title


def _mosaic(images: Sequence[np.ndarray], gap: int = 2, fill: float = 1.0) -> np.ndarray:
    """Side-by-side images (H, W) or (H, W, 3) in [0, 1] with a light gap between them."""
    parts = []
    for i, image in enumerate(images):
        if i:
            gap_shape = (image.shape[0], gap) + image.shape[2:]
            parts.append(np.full(gap_shape, fill, dtype=np.float32))
        parts.append(image.astype(np.float32))
    return np.concatenate(parts, axis=1)


def _as_unit(image: torch.Tensor) -> torch.Tensor:
    return image.float() / 255 if image.dtype == torch.uint8 else image


def _activation_label(result) -> str:
    what = ("centre position" if result.neuron else "mean over the map") if result.spatial else "the unit's value"
    measured = getattr(result, "measured_at", "")
    if measured and "→" in measured:
        return f"measured at {measured} ({what}): what the next layer reads"
    if measured:
        return f"measured at {measured}, {what}: no activation or BatchNorm traced after it"
    if result.activation == "identity":
        return f"activation shown: {result.layer} output, {what}"
    return (f"activation shown: {result.activation}({result.layer}), {what} — the {result.activation} the model "
            f"applies after {result.layer}, i.e. what the next layer sees")


def text_size(text: str, fontsize: float) -> tuple[float, float]:
    """Width and height in inches of ``text`` (one or more lines) drawn at ``fontsize`` points: the sum of
    its characters' measured widths, 3% more for kerning."""
    widths = [sum(_char_width(c, fontsize) for c in line) * 1.03 for line in text.split("\n")]
    return max(widths) / DPI, fontsize * 1.2 / 72 * len(widths)


@functools.lru_cache(maxsize=4096)
def _char_width(char: str, fontsize: float) -> float:
    """Pixels at DPI, as Agg measures it."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    return RendererAgg(1, 1, DPI).get_text_width_height_descent(char, FontProperties(size=fontsize), ismath=False)[0]


def fit(text: str, width_inches: float, fontsize: float) -> str:
    """``text`` wrapped at spaces (not no-break spaces; and, in long names, after dots or colons) so no line is
    wider than ``width_inches`` at ``fontsize``, as measured; a single piece wider than that is cut into pieces."""
    lines = []
    for paragraph in text.split("\n"):
        # a dot or colon before a digit stays inside its piece: "3.6", "conv1:0" never break there
        pieces = re.findall(r"(?:[^\s.:]|\u00a0|[.:](?=\d))+[.:]?|[^\S\u00a0]+|[.:]", paragraph)
        line = ""
        for piece in pieces:
            candidate = line + piece
            if not line.strip() or text_size(candidate.rstrip(), fontsize)[0] <= width_inches:
                line = candidate
                continue
            lines.append(line.rstrip())
            line = piece.lstrip()
        lines.append(line.rstrip())
    out = []
    for line in lines:  # one piece still too wide: cut it by characters
        while len(line) > 1 and text_size(line, fontsize)[0] > width_inches:
            cut = len(line) - 1
            while cut > 1 and text_size(line[:cut], fontsize)[0] > width_inches:
                cut -= 1
            out.append(line[:cut])
            line = line[cut:]
        out.append(line)
    return "\n".join(out)


#: Reports split into pages no taller than this (pixels at the saved DPI); figures are at most PAGE_WIDTH
#: inches wide (printable on letter or A4 paper): more tiles make more rows or pages, never a wider figure.
MAX_PAGE_PX = 4000
DPI = 200
PAGE_WIDTH = 7.5
#: Text sizes in points at that width: nothing smaller than TEXT_SIZE.
TEXT_SIZE, HEADER_SIZE = 8, 9
#: Every image tile is drawn at least this many pixels (at DPI) across, by an integer nearest-neighbour
#: factor: 4x for a 28-pixel input; an input already this large is drawn at its own size.
MIN_TILE_PX = 112
PAD, GAP = 0.15, 0.08
ROOM = PAGE_WIDTH - 2 * PAD
#: Text colours, each at least 4.5:1 against the white page.
INK, OPTIMIZED, BELOW_ONE, DEAD, RARE, MUTED, FLAT, STRONG = ("black", "#1a4f8b", "#9a4a00", "#b00000", "#800080",
                                                             "#595959", "#6b4b00", "#b00000")
#: One colour map per quantity, the ones the explorer's site uses (introspect.encoding): activations,
#: saliency (and gradient x input).
ACTIVATION_CMAP, SALIENCY_CMAP = "inferno", "RdBu_r"


def line_height(fontsize: float = TEXT_SIZE) -> float:
    return text_size("0", fontsize)[1]


def shrink_factor(h: int, w: int) -> int:
    """The integer factor a channel report shrinks images ``h`` x ``w`` by: the most that keeps their short side
    at least MIN_TILE_PX (2 for 224 pixels), so a wide layer's pages stay few and quick to write; 1 for small
    images, narrow strips and one-row signals."""
    return max(1, min(h, w) // MIN_TILE_PX)


def shrunk(image: torch.Tensor, factor: int) -> torch.Tensor:
    """(C, H, W) averaged down by ``factor`` (each output pixel the mean of the input pixels it covers)."""
    if factor == 1:
        return image
    size = (math.ceil(image.shape[-2] / factor), math.ceil(image.shape[-1] / factor))
    return torch.nn.functional.interpolate(image[None].float(), size=size, mode="area")[0]


def upscale(pixels: int, room_inches: float | None = None) -> int:
    """The integer factor an image ``pixels`` across is drawn at: the least reaching MIN_TILE_PX, or (with
    ``room_inches``) the most that fits that room, never below that least while the room allows it."""
    pixels = max(int(pixels), 1)
    least = max(1, math.ceil(MIN_TILE_PX / pixels))
    if room_inches is None:
        return least
    most = int(room_inches * DPI // pixels)
    return max(1, most) if most < least else most


def format_value(value: float, width_inches: float | None = None, fontsize: float = TEXT_SIZE) -> str:
    """A number in three significant digits, fewer when that is wider than ``width_inches``; "n/a" for NaN.
    Trailing zeros stay, as the site writes them (12.0 beside 12.6, not 12)."""
    if value != value:
        return "n/a"
    for digits in (3, 2, 1):
        text = f"{value:#.{digits}g}".replace(".e", "e").rstrip(".")
        if width_inches is None or text_size(text, fontsize)[0] <= width_inches:
            return text
    return text


def flat_channels(result) -> torch.Tensor:
    """(N,) bool: the channel saturates (quality.saturates, the site's verdict too)."""
    return result.saturated


class Page:
    """A white figure PAGE_WIDTH wide laid out in inches from its top-left corner."""

    def __init__(self, height: float, width: float = PAGE_WIDTH) -> None:
        self.w, self.h = width, height
        self.fig = ReportFigure(figsize=(width, height), dpi=DPI, facecolor="white")

    def axes(self, x: float, top: float, w: float, h: float):
        return self.fig.add_axes((x / self.w, (self.h - top - h) / self.h, w / self.w, h / self.h))

    def text(self, x: float, top: float, text: str, size: float = TEXT_SIZE, **kwargs):
        kwargs.setdefault("va", "top")
        kwargs.setdefault("color", INK)
        return self.fig.text(x / self.w, 1 - top / self.h, text, fontsize=size, **kwargs)

    def image(self, x: float, top: float, array: np.ndarray, w: float, h: float, cmap: str | None = None,
              bare: bool = False, **kwargs):
        """``array`` drawn into the box (nearest pixels), or a one-row array (a 1-D signal, a Conv1d map) as a
        waveform with axes (``signal``). Pixels (no colormap, or gray, one fixed 0..1 scale), and with ``bare`` a
        colour-mapped array on ``norm``, are drawn straight onto the figure, with no axes: building an axes costs more
        than drawing its image, and a 512-channel page has 512 tiles (a MobileNet's activations, 3,000 maps). Returns
        (the axes, or None when there is none, the image artist or a colour mappable)."""
        if is_signal(array):
            return self.signal(x, top, array, w, h, cmap, **kwargs)
        pixels = cmap in (None, "gray") and "norm" not in kwargs  # one fixed 0..1 scale, never stretched
        if pixels or (bare and set(kwargs) <= {"norm"}):
            from matplotlib.transforms import Bbox, TransformedBbox

            box = Bbox.from_bounds(x / self.w, (self.h - top - h) / self.h, w / self.w, h / self.h)
            colours = (cmap or "gray") if array.ndim == 2 else None
            shown = _PixelImage(TransformedBbox(box, self.fig.transFigure), cmap=colours, norm=kwargs.get("norm"),
                                interpolation="nearest", origin="upper")  # row 0 at the top, whatever rcParams say
            shown.set_data(array)
            if pixels:
                shown.set_clim(kwargs.get("vmin", 0), kwargs.get("vmax", 1))
            self.fig.add_artist(shown)
            return None, shown
        ax = self.axes(x, top, w, h)
        shown = ax.imshow(array, cmap=cmap, interpolation="nearest", aspect="auto", **kwargs)
        ax.set_axis_off()
        return ax, shown


    def frame(self, x: float, top: float, w: float, h: float, color: str, linewidth: float) -> None:
        """A rectangle's outline on the box's edges (centred on them, as an axes' spines)."""
        from matplotlib.patches import Rectangle

        self.fig.add_artist(Rectangle((x / self.w, (self.h - top - h) / self.h), w / self.w, h / self.h, fill=False,
                                      edgecolor=color, linewidth=linewidth, transform=self.fig.transFigure))

    def signal(self, x: float, top: float, array: np.ndarray, w: float, h: float, cmap: str | None = None,
               norm=None, vmin: float | None = None, vmax: float | None = None, **kwargs):
        """A one-row array (1, L) or (1, L, C) as a waveform (a line per channel) over the sample index with
        labelled axes (pixel values on 0..1, others on ``norm``'s or vmin/vmax's scale) and, for L >=
        SPECTROGRAM_SAMPLES where the box is wide enough, its spectrogram beside it. Returns the waveform's axes and a colour mappable."""
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        values = np.asarray(array, dtype=float)
        values = values[0] if values.shape[0] == 1 else values[:, 0]  # (L,) or (L, channels)
        length = values.shape[0]
        pixels = cmap in (None, "gray") and norm is None and vmin is None
        if norm is None:
            low, high = (0.0, 1.0) if pixels else (vmin if vmin is not None else np.nanmin(values),
                                                   vmax if vmax is not None else np.nanmax(values))
            norm = Normalize(low, high if high > low else low + 1.0)
        spectrogram = length >= SPECTROGRAM_SAMPLES and w >= 3.0 and h >= 0.8
        left, bottom = min(0.42, w * 0.25), min(0.3, h * 0.3)
        wave_w = (w - left) * (0.6 if spectrogram else 1.0) - (left if spectrogram else 0.0)
        ax = self.axes(x + left, top, max(wave_w, 0.1), max(h - bottom, 0.1))
        lines = values[:, None] if values.ndim == 1 else values
        colours = SIGNAL_COLOURS.get(lines.shape[1])
        for channel in range(lines.shape[1]):
            colour = colours[channel] if colours else f"C{channel % 10}"  # one line per channel of a signal
            ax.plot(np.arange(length), lines[:, channel], color=colour, linewidth=0.6)
        ax.set_xlim(0, max(length - 1, 1))
        ax.set_ylim(norm.vmin, norm.vmax)
        ax.tick_params(labelsize=TEXT_SIZE, length=2, pad=1)
        plain_numbers(ax.yaxis)
        ax.set_xlabel("sample", fontsize=TEXT_SIZE, labelpad=0)
        ax.locator_params(axis="y", nbins=3)
        ax.locator_params(axis="x", nbins=4)
        if spectrogram:
            spec_x = x + left + wave_w + left
            spec_ax = self.axes(spec_x, top, w - (spec_x - x), max(h - bottom, 0.1))
            mono = values if values.ndim == 1 else values.mean(1)
            window = min(128, 2 ** int(math.log2(max(length // 8, 16))))
            spec_ax.specgram(np.nan_to_num(mono - np.nanmean(mono)), NFFT=window, Fs=1.0, noverlap=window // 2,
                             cmap="magma", scale="dB")
            spec_ax.tick_params(labelsize=TEXT_SIZE, length=2, pad=1)
            spec_ax.set_xlabel("sample", fontsize=TEXT_SIZE, labelpad=0)
            spec_ax.set_ylabel("cycles / sample", fontsize=TEXT_SIZE, labelpad=1)
            spec_ax.locator_params(axis="both", nbins=3)
            spec_ax.set_title("spectrogram", fontsize=TEXT_SIZE, pad=2)
        return ax, ScalarMappable(norm=norm, cmap=cmap if cmap not in (None, "gray") else "gray")


#: A one-row input at least this long is drawn with its spectrogram beside its waveform.
SPECTROGRAM_SAMPLES = 256
#: Height and least width (inches) of a waveform tile.
SIGNAL_HEIGHT, SIGNAL_WIDTH = 1.2, 2.4


@rc_context(PLAIN_TEXT)
def save_signal_png(path: str | Path, values: np.ndarray, dpi: int = 100) -> None:
    """A one-row array (1, L) or (1, L, C) of pixel values in [0, 1] as a waveform picture (with its spectrogram for
    long ones), SIGNAL_PICTURE inches at ``dpi``: what the explorer's pages show for a 1-D input."""
    width, height = SIGNAL_PICTURE
    page = Page(height, width)
    page.signal(0.05, 0.2, values, width - 0.15, height - 0.25)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    page.fig.savefig(Path(path), dpi=dpi, facecolor="white")


#: A waveform's line colours: one channel blue, three red, green and blue (as an RGB row); other counts matplotlib's
#: colour cycle.
SIGNAL_COLOURS = {1: ("tab:blue",), 3: ("tab:red", "tab:green", "tab:blue")}

#: Width and height (inches) of a waveform picture on the explorer's pages.
SIGNAL_PICTURE = (6.0, 1.6)


def is_signal(array: np.ndarray) -> bool:
    """Whether a display array is one row (1, L) or (1, L, C) of L > 1: a 1-D signal, drawn as a waveform."""
    return array.ndim in (2, 3) and array.shape[0] == 1 and array.shape[1] > 1


def _image_inches(array: np.ndarray, scale: int, room: float = ROOM) -> tuple[float, float]:
    """Width and height in inches of ``array`` drawn at ``scale``, shrunk (aspect kept) only past ``room``;
    a one-row array (a signal) gets a waveform's box: SIGNAL_HEIGHT tall, SIGNAL_WIDTH to half the page wide."""
    h, w = array.shape[:2]
    if is_signal(array):
        return min(room, max(SIGNAL_WIDTH, min(w * scale / DPI, ROOM / 2 - GAP))), SIGNAL_HEIGHT
    width, height = w * scale / DPI, h * scale / DPI
    if width > room:
        width, height = room, height * room / width
    return width, height


def _header(text: str) -> tuple[str, float]:
    wrapped = fit(text, ROOM, HEADER_SIZE)
    return wrapped, text_size(wrapped, HEADER_SIZE)[1] + 0.1


def _grid_layout(images: torch.Tensor, titles: Sequence[str], columns: int | None = None):
    """Column width, columns, the image scale and size, and the wrapped titles of a grid of tiles."""
    arrays = [to_display(image) for image in images]
    h, w = arrays[0][0].shape[:2]
    least = _image_inches(arrays[0][0], upscale(max(h, w)))[0]
    widest = max(text_size(line, TEXT_SIZE)[0] for t in titles for line in t.split("\n"))
    col_w = min(ROOM, max(least, min(widest, 1.6)))
    cols = max(1, min(len(arrays), int((ROOM + GAP) // (col_w + GAP))))
    if columns:
        cols = max(1, min(cols, columns))
    col_w = min((ROOM + GAP) / cols - GAP, max(col_w, 1.4))
    scale = upscale(max(h, w), col_w * max(h, w) / w)
    img_w, img_h = _image_inches(arrays[0][0], scale, col_w)
    fitted = [fit(t, col_w, TEXT_SIZE) for t in titles]
    title_h = max(text_size(t, TEXT_SIZE)[1] for t in fitted)
    return arrays, cols, col_w, img_w, img_h, fitted, title_h


def _draw_grid(page: Page, top: float, layout) -> float:
    """Tiles with their titles above the image (never on it); returns the y below the grid."""
    arrays, cols, col_w, img_w, img_h, fitted, title_h = layout
    row_h = title_h + 0.05 + img_h + 0.15
    for i, ((array, cmap), title) in enumerate(zip(arrays, fitted)):
        row, col = divmod(i, cols)
        x, y = PAD + col * (col_w + GAP), top + row * row_h
        page.text(x + col_w / 2, y, title, ha="center", multialignment="center")
        page.image(x + (col_w - img_w) / 2, y + title_h + 0.05, array, img_w, img_h, cmap)
    return top + math.ceil(len(arrays) / cols) * row_h


def _grid_height(layout) -> float:
    arrays, cols, _, _, img_h, _, title_h = layout
    return math.ceil(len(arrays) / cols) * (title_h + 0.05 + img_h + 0.15)


@rc_context(PLAIN_TEXT)
def render_figure(result, columns: int | None = None, title: str = "") -> ReportFigure:
    """A RenderResult as plain tiles, each titled with its objective value; the objective and the parts
    that made the images under the title."""
    header, header_h = _header((title + "\n" if title else "") + render_settings(result))
    layout = _grid_layout(result.images, [f"{i}: {format_value(float(v))}" for i, v in enumerate(result.values)],
                          columns)
    page = Page(PAD + header_h + _grid_height(layout) + PAD)
    page.text(PAD, PAD, header, HEADER_SIZE)
    _draw_grid(page, PAD + header_h, layout)
    return page.fig


def _evolution_layout(snapshots, final_step: int, names: Sequence[str], shape: tuple[int, int]):
    steps = sorted(snapshots)
    row_labels = [f"step {s}" for s in steps] + [f"final ({final_step})"]
    label_w = max(text_size(label, TEXT_SIZE)[0] for label in row_labels) + 0.1
    h, w = shape
    scale = upscale(max(h, w))
    cell_w, cell_h = _image_inches(np.zeros(shape), scale, ROOM - label_w)
    cols = max(1, min(len(names), int((ROOM - label_w + GAP) // (cell_w + GAP))))
    fitted = [fit(str(name), cell_w + GAP, TEXT_SIZE) for name in names]
    name_h = max(text_size(t, TEXT_SIZE)[1] for t in fitted)
    block_h = name_h + 0.05 + len(row_labels) * (cell_h + GAP) + 0.1
    blocks = math.ceil(len(names) / cols)
    return steps, row_labels, label_w, cell_w, cell_h, cols, fitted, block_h, blocks


@rc_context(PLAIN_TEXT)
def classes_figure(result, columns: int | None = None) -> ReportFigure:
    """The report figure of a ClassesResult: tiles titled (above the image) with class, logit, probability
    and the runner-up class, all on one intensity scale; the settings under the title; the evolution if
    snapshotted, in blocks of as many classes as fit the page's width."""
    snapshots = result.render.snapshots
    header, header_h = _header(_classes_title(result) + "\n" + result.settings)
    layout = _grid_layout(result.images, result.titles, columns)
    height = PAD + header_h + _grid_height(layout)
    if snapshots:
        evo = _evolution_layout(snapshots, result.render.steps_done, result.class_names,
                                to_display(result.images[0])[0].shape[:2])
        height += line_height(HEADER_SIZE) + 0.1 + evo[-1] * evo[-2]
    page = Page(height + PAD)
    page.text(PAD, PAD, header, HEADER_SIZE)
    top = _draw_grid(page, PAD + header_h, layout)
    if snapshots:
        page.text(PAD, top, "evolution during optimization", HEADER_SIZE)
        top += line_height(HEADER_SIZE) + 0.1
        steps, row_labels, label_w, cell_w, cell_h, cols, fitted, block_h, blocks = evo
        frames = [snapshots[s] for s in steps] + [result.images]
        for block in range(blocks):
            members = range(block * cols, min(len(fitted), (block + 1) * cols))
            name_h = max(text_size(fitted[c], TEXT_SIZE)[1] for c in members)
            for position, c in enumerate(members):
                x = PAD + label_w + position * (cell_w + GAP)
                page.text(x + cell_w / 2, top, fitted[c], ha="center", multialignment="center")
                for row, frame in enumerate(frames):
                    array, cmap = to_display(frame[c])
                    page.image(x, top + name_h + 0.05 + row * (cell_h + GAP), array, cell_w, cell_h, cmap)
            for row, label in enumerate(row_labels):
                page.text(PAD, top + name_h + 0.05 + row * (cell_h + GAP) + cell_h / 2, label, va="center")
            top += block_h
    return page.fig


#: zlib level of report PNGs (chosen when PIL encoded them: a third less time than the default 6, files about 9%
#: larger; ``png_bytes`` now encodes them at it).
PNG_LEVEL = 3


class _Drawn:
    """Where ``savefig(format="rgba")`` writes: it keeps Agg's own buffer (a memoryview of the canvas) rather than a
    copy of it, which is then encoded in place (a 200 dpi page is 10-30 MB of pixels)."""

    pixels: memoryview | None = None
    writes = 0  # one, or it was not Agg's buffer: save_figure falls back to matplotlib's PNG

    def write(self, data) -> None:
        self.pixels, self.writes = memoryview(data), self.writes + 1

    def seek(self, *_) -> int:  # matplotlib takes an object with seek for a file
        return 0


def save_figure(fig: Figure, path: str | Path) -> None:
    """``fig`` at DPI on white, in the format ``path``'s suffix names. A PNG is encoded here (``png_bytes``) from Agg's
    buffer, without its alpha channel when every pixel is opaque (a page on white always is): matplotlib's pixels,
    with less to encode and store."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        fig.savefig(path, dpi=DPI, facecolor="white")
        return
    drawn = _Drawn()
    fig.savefig(drawn, format="rgba", dpi=DPI, facecolor="white")
    shape = drawn.pixels.shape if drawn.writes == 1 else ()  # Agg's canvas: (height, width, 4)
    if len(shape) != 3 or shape[2] != 4 or min(shape) < 1:  # not Agg's buffer as matplotlib 3.11 writes it
        fig.savefig(path, dpi=DPI, facecolor="white", pil_kwargs={"compress_level": PNG_LEVEL})
        return
    pixels = np.asarray(drawn.pixels, dtype=np.uint8)
    if int(pixels[..., 3].min()) == 255:  # opaque: the RGB bytes alone (png_bytes reads them in place)
        pixels = pixels[..., :3]
    software = f"Matplotlib version{matplotlib.__version__}, https://matplotlib.org/"  # what matplotlib's PNGs say
    path.write_bytes(png_bytes(pixels, dpi=DPI, text={"Software": software}, level=PNG_LEVEL))


#: At most this many processes draw pages at once (a big machine's cores are not all worth a fork).
MAX_PAGE_WORKERS = 8


def _save_page(page: Figure | Callable[[], Figure], path: str | Path) -> None:
    save_figure(page if isinstance(page, Figure) else page(), path)


def save_figures(pages: Sequence[tuple[Figure | Callable[[], Figure], str | Path]],
                 meanwhile: Callable[[], None] | None = None) -> None:
    """Each figure (or a function building it, called where it is saved) saved to its path, the same bytes as
    ``save_figure`` one by one. Drawing and encoding pages is most of a big layer's writing, so on Linux with
    several cores and pages forked workers take pages one at a time from a queue (they inherit the figures: nothing
    is pickled), and so does this process, after ``meanwhile`` (other writing, such as the explorer's site), so all
    finish together however the pages' costs differ; a page that a worker which fails or is killed did not finish
    is saved here afterwards. Workers leave Ctrl-C to this process (which defers it while files are written).
    Without workers, ``meanwhile`` runs after the pages are saved."""
    import os
    import sys

    if sys.platform != "linux":
        workers = 1
    else:
        workers = min(len(pages), len(os.sched_getaffinity(0)), MAX_PAGE_WORKERS)
    queue = _page_queue(len(pages)) if workers >= 2 and len(pages) >= 4 else None
    if queue is None:
        for fig, path in pages:
            _save_page(fig, path)
        if meanwhile is not None:
            meanwhile()
        return
    import mmap

    done = mmap.mmap(-1, len(pages))  # shared with the workers: page i saved when done[i] is 1
    children = []
    finished = False
    try:
        for _ in range(workers if meanwhile is not None else workers - 1):
            pid = os.fork()
            if pid == 0:  # a worker: save pages while there are any, then leave without the parent's exit handlers
                code = 1
                try:
                    _worker_signals()
                    # torch's OpenMP threads are not in a forked child: its first parallel op (a 224 px tile's
                    # clamp) would wait for them forever. One thread per worker, as each has its core.
                    torch.set_num_threads(1)
                    _save_queued(pages, queue, done)
                    code = 0
                finally:
                    os._exit(code)
            children.append(pid)
        if meanwhile is not None:
            meanwhile()
        _save_queued(pages, queue, done)
        finished = True
    finally:
        try:
            if not finished:  # an error or Ctrl-C here: the workers stop after the page each is saving
                while _take(queue) is not None:
                    pass
            for pid in children:
                os.waitpid(pid, 0)
        finally:
            os.close(queue)
    try:
        for i, (fig, path) in enumerate(pages):
            if not done[i]:  # taken by a worker that failed or was killed
                _save_page(fig, path)
    finally:
        done.close()


#: A page's number in save_figures' queue.
_CLAIM = struct.Struct("<I")


def _page_queue(count: int) -> int | None:
    """A pipe's read end holding the numbers 0..count-1, its write end closed (a read gives b"" once all are
    taken; one read of _CLAIM.size bytes takes one whole number); None when the pipe cannot hold them all."""
    import os

    queue, feed = os.pipe()
    numbers = b"".join(_CLAIM.pack(i) for i in range(count))
    try:
        if len(numbers) > 65536:  # past a pipe's usual capacity: ask for more (refused above the system's limit)
            import fcntl

            with contextlib.suppress(OSError):
                fcntl.fcntl(feed, fcntl.F_SETPIPE_SZ, len(numbers))
        os.set_blocking(feed, False)  # numbers it cannot hold are refused, not waited on: nobody reads yet
        written = os.write(feed, numbers)
    except BlockingIOError:
        written = 0
    finally:
        os.close(feed)
    if written != len(numbers):
        os.close(queue)
        return None
    os.set_blocking(queue, False)  # empty is the end, even if another thread's fork holds a copy of the write end
    return queue


def _take(queue: int) -> int | None:
    """The next number from ``_page_queue``'s queue, None once it is empty."""
    import os

    try:
        claim = os.read(queue, _CLAIM.size)
    except BlockingIOError:
        return None
    return _CLAIM.unpack(claim)[0] if len(claim) == _CLAIM.size else None


def _worker_signals() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _save_queued(pages: Sequence, queue: int, done) -> None:
    """Save the pages whose numbers this process takes from ``queue`` (one read, one whole number: the pipe
    hands each to one reader), marking each in ``done`` once saved."""
    while (i := _take(queue)) is not None:
        _save_page(*pages[i])
        done[i] = 1


def _channel_labels(result, examples, unit_names: Sequence[str] | None, flat: Sequence[bool]) -> list[tuple[str, str]]:
    """The text under each channel's tile, and its colour (each at least 4.5:1 on white). Each verdict is read once
    for the layer: a result's property works out its whole vector on every read."""
    dead, rare, not_reached, ratios = (v.tolist() for v in (result.dead, result.rare, result.not_reached, result.ratio))
    shares = examples.active_fraction.tolist() if examples is not None else None
    labels = []
    for n, channel in enumerate(result.channels):
        name = f"{result.layer}:{channel}"
        if unit_names is not None and channel < len(unit_names):
            name += f" ({unit_names[channel]})"
        saturates = "\nsaturates: prefers a uniform input" if flat[n] else ""
        # The optimized activation (the best of the optimized images) is the blue number under them: not given again.
        if examples is not None and dead[n]:
            labels.append((f"{name} · dead: no real image activates it{saturates}", DEAD))
        elif examples is not None and rare[n]:
            labels.append((f"{name} · rarely active: {shares[channel]:.2%} of images · no ratio{saturates}", RARE))
        elif not_reached[n]:
            labels.append((f"{name} · not reached{saturates}", MUTED))
        elif flat[n] or examples is None:
            labels.append((f"{name}{saturates}", FLAT if flat[n] else INK))
        elif ratios[n] != ratios[n]:
            labels.append((f"{name} · no ratio (best real image at or below 0)", MUTED))
        else:
            labels.append((f"{name} · ratio {ratios[n]:.2f}", INK if ratios[n] >= 1 else BELOW_ONE))
    return labels


def _channels_header(result, model_name: str, examples, k: int, flat: int = 0, shrink: int = 1) -> str:
    header = f"{model_name}: layer {result.layer}, {len(result.channels)} channels ({result.style_detail})"
    if examples is not None:
        summary = result.summary()
        median = "n/a" if summary.median_ratio is None else f"{summary.median_ratio:.2f}"
        header += (f" — {summary.live} live, {summary.dead} dead, {summary.rare} rarely active, "
                   f"{summary.not_reached} not reached; median ratio {median} (the others)\n"
                   f"each tile: the optimized image (its activation in blue underneath), then the {k} "
                   f"{examples.dataset} ({examples.split}) images that excite it most, each with its activation; "
                   f"ratio = optimized / best real image (orange: below 1; red: dead, no real image activates it; "
                   f"purple: rarely active, on under 1% of images; grey: not reached)")
    else:
        header += "\nno dataset available: real examples and ratios omitted; under each image its activation"
    header += "\n" + _activation_label(result)
    if flat:
        header += (f"\n{flat} channel{'s' if flat != 1 else ''} saturate{'' if flat != 1 else 's'}: "
                   f"the optimized image is (almost) uniform, the channel prefers a flat input"
                   + ("" if result.neuron else "; try neuron mode, which maximizes one position and shows a "
                                               "localized pattern"))
    if shrink > 1:
        h, w = result.images.shape[-2:]
        header += (f"\nimages shown at 1/{shrink} of their {h}x{w} pixels; the explorer (index.html) and "
                   f"images.npz hold them whole")
    if result.interrupted_at is not None:
        header += f"\nINTERRUPTED at step {result.interrupted_at}: partial results"
    return header


@rc_context(PLAIN_TEXT)
def channels_figures(result, dataset_images: torch.Tensor | None = None, model_name: str = "",
                     max_height_px: float = MAX_PAGE_PX, unit_names: Sequence[str] | None = None) -> list[ReportFigure]:
    """The channel report as pages no taller than ``max_height_px`` and PAGE_WIDTH wide: one tile per
    channel (its optimized image(s), then the top-k real images, each at least MIN_TILE_PX across, their
    activations under them) and a label under each, wrapped to the tile's measured width so no two texts
    touch and none is drawn on the pixels. ``unit_names`` name the channels (class names for the logits layer)."""
    return [build() for build in channels_pages(result, dataset_images, model_name, max_height_px, unit_names)]


def channels_pages(result, dataset_images: torch.Tensor | None = None, model_name: str = "",
                   max_height_px: float = MAX_PAGE_PX,
                   unit_names: Sequence[str] | None = None) -> list[Callable[[], ReportFigure]]:
    """``channels_figures``' pages, each built when called: the layout (labels fitted, pages split) is done here,
    the pages' figures where they are saved (each of ``save_figures``' workers builds the pages it takes)."""
    examples = result.examples if dataset_images is not None else None
    k = examples.top_indices.shape[1] if examples is not None else 0
    images_per_tile = result.diverse + k
    h, w = to_display(result.images[0])[0].shape[:2]
    shrink = shrink_factor(h, w)
    h, w = math.ceil(h / shrink), math.ceil(w / shrink)
    scale = upscale(max(h, w))
    gap_px = 1
    mosaic_w, mosaic_h = _image_inches(np.zeros((h, images_per_tile * (w + gap_px) - gap_px)), scale)
    step = mosaic_w * (w + gap_px) / (images_per_tile * (w + gap_px) - gap_px)  # one image and its gap, in inches
    image_w = step * w / (w + gap_px)
    if h == 1 and w > 1 and images_per_tile > 1:  # waveforms: the page's width shared, each with its own axes
        mosaic_w, step = ROOM, (ROOM + 0.1) / images_per_tile
        image_w = step - 0.1
    tile_w = max(mosaic_w, 1.5)
    tile_gap = 0.2
    columns = max(1, min(len(result.channels), int((ROOM + tile_gap) // (tile_w + tile_gap))))
    tile_w = min(ROOM, max(tile_w, (ROOM + tile_gap) / columns - tile_gap))
    flat = flat_channels(result)
    labels = _channel_labels(result, examples, unit_names, flat.tolist())
    dead = result.dead.tolist()
    wrapped = [(fit(text, tile_w, TEXT_SIZE), color) for text, color in labels]
    label_h = max(text_size(text, TEXT_SIZE)[1] for text, _ in wrapped)
    value_h = line_height()
    tile_h = mosaic_h + 0.03 + value_h + 0.03 + label_h + 0.2
    header, header_h = _header(_channels_header(result, model_name, examples, k, int(flat.sum()), shrink))
    page_line = line_height(HEADER_SIZE)
    rows = math.ceil(len(result.channels) / columns)
    fit_rows = (max_height_px / DPI - header_h - page_line - 2 * PAD) / tile_h
    rows_per_page = rows if math.isinf(fit_rows) else min(rows, max(1, int(fit_rows)))
    per_page = rows_per_page * columns
    pages = math.ceil(len(result.channels) / per_page)
    geometry = (shrink, mosaic_w, mosaic_h, step, image_w, value_h)
    example = None
    if examples is not None:  # one real image is the top example of many channels: shown once per process
        channels_in = dataset_images.shape[1] if dataset_images.ndim == 4 else 1
        example = functools.lru_cache(maxsize=max(64, EXAMPLE_CACHE_BYTES // (4 * channels_in * h * w)))(
            lambda index: to_display(shrunk(_as_unit(dataset_images[index]), shrink))[0])

    def build(number: int) -> ReportFigure:
        start = number * per_page
        count = min(per_page, len(result.channels) - start)
        extra = page_line if pages > 1 else 0.0
        page = Page(PAD + header_h + extra + math.ceil(count / columns) * tile_h + PAD)
        page.text(PAD, PAD, header if pages == 1 else f"{header}\npage {number + 1} of {pages}", HEADER_SIZE)
        top = PAD + header_h + extra
        for i in range(count):
            row, col = divmod(i, columns)
            _draw_tile(page, result, start + i, examples, example, dead[start + i], wrapped[start + i],
                       x=PAD + col * (tile_w + tile_gap), top=top + row * tile_h, geometry=geometry)
        return page.fig
    return [functools.partial(build, number) for number in range(pages)]


#: A channels report keeps the real images it shows, as drawn, up to about this many bytes per process.
EXAMPLE_CACHE_BYTES = 64 * 2 ** 20


def _draw_tile(page: Page, result, n: int, examples, example: Callable[[int], np.ndarray] | None, dead: bool,
               label: tuple[str, str], x: float, top: float, geometry) -> None:
    """A channel's tile: its optimized image(s), then its top real images (``example(index)``: one as drawn), the
    activations under them, its label under those."""
    shrink, mosaic_w, mosaic_h, step, image_w, value_h = geometry
    channel = result.channels[n]
    viz = [to_display(shrunk(img, shrink))[0] for img in result.images[n * result.diverse:(n + 1) * result.diverse]]
    shown = list(viz)
    is_dead = examples is not None and dead
    if examples is not None:
        # A dead channel's "top" examples are arbitrary images scoring 0: shown as empty slots.
        shown += [np.full_like(viz[0], np.nan) if is_dead
                  else example(int(i)) for i in examples.top_indices[channel]]
    if is_signal(shown[0]):  # waveforms side by side, each on its own axes
        for j, wave in enumerate(shown):
            page.image(x + j * step, top, wave, image_w, mosaic_h)
    else:
        page.image(x, top, _mosaic(shown, gap=1), mosaic_w, mosaic_h)
    values = [(float(v), OPTIMIZED) for v in result.activations[n * result.diverse:(n + 1) * result.diverse]]
    if examples is not None and not is_dead:
        values += [(float(v), INK) for v in examples.top_values[channel].tolist()]
    for j, (value, color) in enumerate(values):
        page.text(x + j * step + image_w / 2, top + mosaic_h + 0.03, format_value(value, step - 0.02), ha="center",
                  color=color)
    text, color = label
    page.text(x, top + mosaic_h + 0.03 + value_h + 0.03, text, color=color)


def channels_figure(result, dataset_images: torch.Tensor | None = None, model_name: str = "",
                    unit_names: Sequence[str] | None = None) -> ReportFigure:
    """The channel report of one layer on one page, however tall (``channels_figures`` splits it)."""
    return channels_figures(result, dataset_images, model_name, max_height_px=math.inf, unit_names=unit_names)[0]


def _index_order(result) -> list[int]:
    """Channels strongest first (by ratio with examples, else by optimized activation); flat ones last."""
    key = torch.nan_to_num(result.ratio, nan=-1.0) if result.examples is not None else result.best
    flat = flat_channels(result)
    return sorted(range(len(result.channels)), key=lambda i: (bool(flat[i]), -float(key[i])))


def _index_row(result, strongest: int):
    order = _index_order(result)
    h, w = to_display(result.images[0])[0].shape[:2]
    scale = upscale(max(h, w))
    cell = w * scale / DPI
    fits = max(1, int((ROOM + 2 * scale / DPI) // (cell + 2 * scale / DPI)))
    order = order[:min(strongest, fits)]
    if result.examples is not None:
        summary = result.summary()
        median = "n/a" if summary.median_ratio is None else f"{summary.median_ratio:.2f}"
        text = (f"{result.layer}: {summary.channels} channels, {summary.live} live, {summary.dead} dead, "
                f"{summary.rare} rarely active, {summary.not_reached} not reached, median ratio {median}")
    else:
        text = f"{result.layer}: {len(result.channels)} channels (no dataset: live/dead unknown)"
    flat = int(flat_channels(result).sum())
    text += (f"; {flat} saturate (flat, ranked last)" if flat else "") + " — strongest channels:"
    title = fit(text, ROOM, TEXT_SIZE)
    tiles = [to_display(result.images[i * result.diverse])[0] for i in order]
    strip = _mosaic(tiles)
    strip_w, strip_h = _image_inches(strip, scale)
    height = text_size(title, TEXT_SIZE)[1] + 0.05 + strip_h + 0.03 + line_height() + 0.2
    return order, title, strip, strip_w, strip_h, (w + 2) * strip_w / strip.shape[1], height


def index_figures(results: Sequence, model_name: str = "", max_height_px: float = MAX_PAGE_PX,
                  strongest: int = 8) -> list[ReportFigure]:
    """The overview split into pages no taller than ``max_height_px`` (at DPI): as many layers per page as fit."""
    room = max_height_px / DPI - 2 * PAD - _header(f"{model_name}: channel report index")[1]
    pages = paginate(results, [_index_row(result, strongest)[-1] for result in results], room)
    return [index_figure(group, model_name, strongest) for group in pages]


def paginate(items: Sequence, heights: Sequence[float], room: float, taken: float = 0.0) -> list[list]:
    """``items`` in order, grouped into pages of at most ``room`` inches (an item taller than a page gets one of
    its own); ``taken`` inches of the first page are already used."""
    pages, page, height = [], [], taken
    for item, item_height in zip(items, heights):
        if page and height + item_height > room:
            pages.append(page)
            page, height = [], 0.0
        page.append(item)
        height += item_height
    pages.append(page)
    return pages


@rc_context(PLAIN_TEXT)
def index_figure(results: Sequence, model_name: str = "", strongest: int = 8) -> ReportFigure:
    """One row per layer: name, channel count, live/dead counts, median ratio, and its strongest channels
    (flat ones, which saturate, last), each numbered under its image."""
    header, header_h = _header(f"{model_name}: channel report index")
    rows = [_index_row(result, strongest) for result in results]
    page = Page(PAD + header_h + sum(row[-1] for row in rows) + PAD)
    page.text(PAD, PAD, header, HEADER_SIZE)
    top = PAD + header_h
    for result, (order, title, strip, strip_w, strip_h, step, height) in zip(results, rows):
        page.text(PAD, top, title)
        y = top + text_size(title, TEXT_SIZE)[1] + 0.05
        page.image(PAD, y, strip, strip_w, strip_h)
        cell = step - 2 * strip_w / strip.shape[1]  # one image, without its gap
        for position, i in enumerate(order):
            page.text(PAD + position * step + cell / 2, y + strip_h + 0.03, f"#{result.channels[i]}", ha="center")
        top += height
    return page.fig


def _activation_header_section(result, model_name: str, layers: Sequence[str]):
    """The first section of the activations report: input, prediction with top-5, saliency and gradient × input."""
    from .classes import format_probability

    image, cmap = to_display(result.input.pixels)
    h, w = image.shape[:2]
    scale = upscale(max(h, w), 1.0)
    img_w, img_h = _image_inches(image, scale, 1.3)
    order = result.top(5)
    names = [f"{_short_name(result.class_names[i])} ({format_probability(float(result.probabilities[i]))})"
             for i in order]
    label_w = max([text_size(n, TEXT_SIZE)[0] for n in names] + [0.3]) + 0.08
    cbar_w, cbar_ticks, gap = 0.08, 0.45, 0.2
    bars_w = max(0.6, ROOM - 3 * img_w - 2 * (cbar_w + 0.05 + cbar_ticks) - label_w - 3 * gap)
    what = "logit" if result.predicted is not None else f"(strongest unit of {layers[-1]})"
    panel_titles = ["input as the model sees it",
                    (f"prediction: {result.class_names[result.predicted]} "
                     f"({format_probability(float(result.probabilities[result.predicted]))}); top-5")
                    if result.predicted is not None else "no prediction: the model's output is NaN/inf"
                    if not result.scores_finite else "no prediction: the model's logits are unknown",
                    f"saliency: d {what} / d pixel" if result.scores_finite else "saliency: none (NaN/inf output)",
                    "gradient × input"]
    signal = is_signal(image)
    if signal:  # a waveform is wide: the four panels one under another, each the page's width
        img_w = bars_w = ROOM - label_w
        widths = [ROOM] * 4
    else:
        widths = [img_w, label_w + bars_w, img_w + cbar_w + 0.05 + cbar_ticks, img_w + cbar_w + 0.05 + cbar_ticks]
    panel_titles = [fit(t, width, TEXT_SIZE) for t, width in zip(panel_titles, widths)]
    title_h = max(text_size(t, TEXT_SIZE)[1] for t in panel_titles)
    note = "; ".join(result.input.conversion)
    header, header_h = _header(f"{model_name}: {result.input.source}" + (f"\n{note}" if note else ""))
    bars_h = 0.18 * max(len(order), 1) + 0.3
    body_h = max(img_h, bars_h)
    if signal:
        img_w, img_h = ROOM, SIGNAL_HEIGHT
        rows = [(title_h + 0.05, h) for h in (img_h, bars_h, img_h, img_h)]
        height = header_h + sum(t + h + 0.15 for t, h in rows)
    else:
        height = header_h + title_h + 0.05 + body_h + 0.15

    def draw(page: Page, top: float) -> None:
        page.text(PAD, top, header, HEADER_SIZE)
        y = top + header_h
        x = PAD
        places = []  # (left, top) of each panel's body
        for n, (width, title) in enumerate(zip(widths, panel_titles)):
            page.text(x, y, title)
            places.append((x, y + title_h + 0.05))
            if signal:
                y += title_h + 0.05 + rows[n][1] + 0.15
            else:
                x += width + gap
        page.image(*places[0], image, img_w, img_h, cmap)
        bars = page.axes(places[1][0] + label_w, places[1][1], bars_w, (bars_h if signal else body_h) - 0.3)
        if order:
            bars.barh(range(len(order))[::-1], [float(result.probabilities[i]) for i in order],
                      color=["tab:red" if i == result.predicted else "tab:gray" for i in order])
            bars.set_yticks(range(len(order))[::-1], names)
        else:
            bars.set_yticks([])
        bars.set_xlim(0, 1)
        bars.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
        bars.tick_params(labelsize=TEXT_SIZE)
        for (left, body_top), data in zip(places[2:], (result.saliency, result.grad_times_input)):
            values = data.abs().amax(0) if data.shape[0] > 1 else data[0]
            limit = float(values.abs().max()) or 1.0
            low = -limit if data.shape[0] == 1 else 0.0
            _, shown = page.image(left, body_top, values.numpy(), img_w, img_h, SALIENCY_CMAP, vmin=low, vmax=limit)
            if signal:
                continue  # the waveform's own axis gives the scale
            cax = page.axes(left + img_w + 0.05, body_top, cbar_w, img_h)
            page.fig.colorbar(shown, cax=cax)
            cax.tick_params(labelsize=TEXT_SIZE)
            plain_numbers(cax.yaxis)

    return height, draw


def plain_numbers(axis) -> None:
    """Each tick labelled whole ("5e-10", "2e+07", "0.3"): no offset or multiplier drawn above the axis, where it
    lands on the section's title (untrained deep layers give values near 1e-10)."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))


def _short_name(name, chars: int = 16) -> str:
    name = str(name)
    return name if len(name) <= chars else name[:chars - 1] + "…"


#: At most this many feature maps of one layer are drawn (the strongest); the title says how many of how many.
MAX_MAPS = 128


def _maps_section(result, layer: str, highlight: int):
    from matplotlib.colors import Normalize

    shown_maps = result.shown(layer)
    activation = result.activations[layer]
    label = result.label(layer)
    means = shown_maps.mean((1, 2))
    bad = int((~torch.isfinite(means)).sum())  # a map holding NaN/inf: drawn blank, last, and said so
    order = torch.argsort(means.nan_to_num(float("-inf"), float("-inf"), float("-inf")), descending=True, stable=True)
    drawn = order[:MAX_MAPS]
    n, (h, w) = len(drawn), shown_maps.shape[1:]
    if h == 1:
        return _heat_strip_section(shown_maps, label, order, drawn, highlight, activation)
    colorbar_room = 0.75
    room = ROOM - colorbar_room
    gap = 0.06
    cols = max(1, min(n, 12, int((room + gap) // (w / DPI + gap))))
    cell_w = (room + gap) / cols - gap
    scale = upscale(max(h, w), cell_w * max(h, w) / w)
    map_w, map_h = _image_inches(np.zeros((h, w)), scale, cell_w)
    number_h = line_height()
    row_h = number_h + 0.02 + map_h + 0.06
    rows = math.ceil(n / cols)
    more = f"; the strongest {n} of {len(order)} drawn" if n < len(order) else ""
    nan = f"; {bad} with NaN/inf, drawn blank and last" if bad else ""
    title = fit(f"{label}: {len(order)} channels, strongest first by mean activation, each numbered above its map "
                f"(top {highlight} outlined in red){more}{nan}; one colour scale", ROOM, TEXT_SIZE)
    title_h = text_size(title, TEXT_SIZE)[1] + 0.05
    values = shown_maps[drawn]
    finite = values[torch.isfinite(values)]
    vmin = 0.0 if activation == "relu" else float(finite.min()) if len(finite) else 0.0
    vmax = float(finite.max()) if len(finite) else 1.0
    norm = Normalize(vmin, vmax if vmax > vmin else vmin + 1.0)

    def draw(page: Page, top: float) -> None:
        page.text(PAD, top, title)
        y0 = top + title_h
        image = None
        for rank, channel in enumerate(drawn.tolist()):
            row, col = divmod(rank, cols)
            x, y = PAD + col * (cell_w + gap), y0 + row * row_h
            strong = rank < highlight and bool(torch.isfinite(means[channel]))
            page.text(x + map_w / 2, y, str(channel), ha="center", color=STRONG if strong else INK,
                      fontweight="bold" if strong else "normal")
            _, image = page.image(x, y + number_h + 0.02, values[rank].numpy(), map_w, map_h, ACTIVATION_CMAP,
                                  bare=True, norm=norm)
            if strong:  # a red frame on the map's edges, as an axes' spines would draw it
                page.frame(x, y + number_h + 0.02, map_w, map_h, "red", 2)
        cax = page.axes(PAD + room + 0.1, y0 + number_h + 0.02, 0.1, min(rows * row_h - number_h - 0.08, 2.5))
        page.fig.colorbar(image, cax=cax)
        cax.tick_params(labelsize=TEXT_SIZE)
        plain_numbers(cax.yaxis)
        cax.set_ylabel("activation", fontsize=TEXT_SIZE)

    return title_h + rows * row_h + 0.1, draw


def _heat_strip_section(shown_maps: torch.Tensor, label: str, order: torch.Tensor, drawn: torch.Tensor,
                        highlight: int, activation: str):
    """A 1-D layer's maps (C, 1, L) as one heat strip: a row per channel (strongest on top, its number on the
    axis, the top ``highlight`` in red), position along the signal across, one colour bar."""
    values = shown_maps[drawn, 0].numpy()
    n, length = values.shape
    more = f"; the strongest {n} of {len(order)} drawn" if n < len(order) else ""
    title = fit(f"{label}: {len(order)} channels along {length} positions, a row each, strongest on top by mean "
                f"activation (top {highlight} numbered in red){more}", ROOM, TEXT_SIZE)
    title_h = text_size(title, TEXT_SIZE)[1] + 0.05
    row_h = max(0.1, line_height() * 1.05) if n <= 32 else 2.4 / n
    plot_h = max(0.6, n * row_h)
    axis_left, cbar_room = 0.45, 0.8
    vmin = 0.0 if activation == "relu" else float(values.min())
    vmax = float(values.max())

    def draw(page: Page, top: float) -> None:
        page.text(PAD, top, title)
        ax = page.axes(PAD + axis_left, top + title_h, ROOM - axis_left - cbar_room, plot_h)
        shown = ax.imshow(values, cmap=ACTIVATION_CMAP, aspect="auto", interpolation="nearest",
                          vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1.0, extent=(-0.5, length - 0.5, n - 0.5, -0.5))
        step = 1 if n <= 32 else math.ceil(n / 16)
        ticks = list(range(0, n, step))
        ax.set_yticks(ticks, [str(int(drawn[i])) for i in ticks])
        for i, tick in zip(ticks, ax.get_yticklabels()):
            if i < highlight:
                tick.set_color(STRONG)
                tick.set_fontweight("bold")
        ax.set_ylabel("channel", fontsize=TEXT_SIZE)
        ax.set_xlabel("position", fontsize=TEXT_SIZE, labelpad=0)
        ax.tick_params(labelsize=TEXT_SIZE, length=2, pad=1)
        cax = page.axes(PAD + ROOM - cbar_room + 0.1, top + title_h, 0.1, plot_h)
        page.fig.colorbar(shown, cax=cax)
        cax.tick_params(labelsize=TEXT_SIZE)
        cax.set_ylabel("activation", fontsize=TEXT_SIZE)
        plain_numbers(cax.yaxis)

    return title_h + plot_h + line_height() + 0.3, draw


def _bars_section(result, layer: str, highlight: int, logits_layer: str | None):
    from matplotlib.ticker import MaxNLocator

    label = result.label(layer)
    values = result.shown(layer).flatten()
    bad = int((~torch.isfinite(values)).sum())
    values = values.nan_to_num(0.0, 0.0, 0.0)  # drawn as 0, and said so: a bar of NaN height has no place
    strongest = [i for i in torch.argsort(values, descending=True)[:highlight].tolist() if values[i] > 0]
    is_logits = layer == logits_layer or (logits_layer is None and layer == list(result.outputs)[-1]
                                          and len(values) == len(result.class_names))
    names = [_short_name(n) for n in result.class_names] if is_logits and len(values) == len(result.class_names) else None
    axis_left, axis_w = 0.5, ROOM - 0.5
    if names and sum(text_size(n, TEXT_SIZE)[0] + 0.05 for n in names) > axis_w:
        names = None
    named = (lambda i: str(i) if names[i] == str(i) else f"{i} ({names[i]})") if names else str
    kind = "channels (1×1 maps)" if result.outputs[layer].ndim == 3 else "units"
    after = result.activations.get(layer, "identity") != "identity"  # drawn after the model's activation
    title = fit(f"{label}: {len(values)} {kind}" + ((" (the classes' scores)" if after else " (the logits)") if is_logits else "")
                + (f"; strongest in red: {', '.join(named(i) for i in strongest)}" if strongest else "")
                + (f"; {bad} NaN/inf, drawn as 0" if bad else ""),
                ROOM, TEXT_SIZE)
    title_h = text_size(title, TEXT_SIZE)[1] + 0.05
    plot_h = 1.2
    height = title_h + plot_h + line_height() + 0.25

    def draw(page: Page, top: float) -> None:
        page.text(PAD, top, title)
        ax = page.axes(PAD + axis_left, top + title_h, axis_w, plot_h)
        ax.bar(range(len(values)), values.numpy(), color=["tab:red" if i in strongest else "tab:blue"
                                                           for i in range(len(values))],
               width=0.8 if len(values) <= 32 else 1.0)
        ax.set_xlim(-0.5, len(values) - 0.5)
        ax.axhline(0, color="0.5", linewidth=0.5)
        if names:
            ax.set_xticks(range(len(values)), names)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=TEXT_SIZE)
        plain_numbers(ax.yaxis)

    return height, draw


def _strip_section(channels: Sequence[int], images: torch.Tensor, stopped: str = ""):
    tiles = [to_display(img)[0] for img in images]
    h, w = tiles[0].shape[:2]
    scale = upscale(max(h, w))
    strip = _mosaic(tiles)
    strip_w, strip_h = _image_inches(strip, scale)
    step = strip_w * (w + 2) / strip.shape[1]
    title = fit(f"what the {len(channels)} strongest respond to (optimized images{stopped}), each numbered under it",
                ROOM, TEXT_SIZE)
    title_h = text_size(title, TEXT_SIZE)[1] + 0.05

    def draw(page: Page, top: float) -> None:
        page.text(PAD, top, title)
        page.image(PAD, top + title_h, strip, strip_w, strip_h)
        for position, channel in enumerate(channels):
            page.text(PAD + position * step + w * scale / DPI / 2, top + title_h + strip_h + 0.03, f"#{channel}",
                      ha="center")

    return title_h + strip_h + line_height() + 0.2, draw


def _line_section(text: str):
    """One line of text (wrapped to the page)."""
    line = fit(text, ROOM, TEXT_SIZE)
    height = text_size(line, TEXT_SIZE)[1] + 0.2

    def draw(page: Page, top: float) -> None:
        page.text(PAD, top, line)

    return height, draw


def _layer_sections(result, layer: str, visualizations, highlight: int, logits_layer: str | None,
                    not_visualized: Sequence[str] = ()) -> list:
    output = result.outputs[layer]
    maps = output.ndim == 3 and output.shape[1:].numel() > 1  # (C, 1, 1): one value per channel, drawn as bars
    sections = [_maps_section(result, layer, highlight) if maps
                else _bars_section(result, layer, highlight, logits_layer)]
    shown = visualizations.get(layer) if visualizations else None
    if shown is not None:
        stopped = "" if shown.interrupted_at is None else \
            f"; interrupted: stopped at step {shown.interrupted_at} of {shown.steps}"
        sections.append(_strip_section(shown.channels, shown.images, stopped))
    elif layer in not_visualized:
        sections.append(_line_section("optimized images: none (interrupted before this layer's)"))
    return sections


def activations_figures(result, visualizations: dict | None = None,
                        model_name: str = "", highlight: int = 3, logits_layer: str | None = None,
                        max_height_px: float = MAX_PAGE_PX, not_visualized: Sequence[str] = ()) -> list[ReportFigure]:
    """The activations report split into pages no taller than ``max_height_px``: the input, prediction and
    saliency on the first, then as many layers per page as fit; ``visualizations`` ({layer: ``activations.Visualized``})
    below their layers, and a line below each of ``not_visualized`` (layers a signal left without theirs)."""
    layers = list(result.outputs)
    heights = [sum(h for h, _ in _layer_sections(result, layer, visualizations, highlight, logits_layer,
                                                 not_visualized)) for layer in layers]
    pages = paginate(layers, heights, max_height_px / DPI - 2 * PAD,
                     taken=_activation_header_section(result, model_name, layers)[0])
    return [activations_figure(result, visualizations, model_name, highlight, logits_layer, layers=layers,
                               header=number == 0, not_visualized=not_visualized)
            for number, layers in enumerate(pages)]


@rc_context(PLAIN_TEXT)
def activations_figure(result, visualizations: dict | None = None,
                       model_name: str = "", highlight: int = 3, logits_layer: str | None = None,
                       layers: Sequence[str] | None = None, header: bool = True,
                       not_visualized: Sequence[str] = ()) -> ReportFigure:
    """Input with prediction and top-5, saliency (``header``), then per layer its feature maps (conv) or
    unit bars (Linear) — of ``layers`` (default: all recorded), stacked with no blank bands. The figure's
    ``sections`` lists what it holds ("header", then the layer names)."""
    layers = list(result.outputs) if layers is None else list(layers)
    parts = [("header", *_activation_header_section(result, model_name, list(result.outputs)))] if header else []
    for layer in layers:
        parts += [(layer, *section) for section in _layer_sections(result, layer, visualizations, highlight,
                                                                    logits_layer, not_visualized)]
    page = Page(PAD + sum(h for _, h, _ in parts) + PAD)
    top = PAD
    for _, height, draw in parts:
        draw(page, top)
        top += height
    page.fig.sections = list(dict.fromkeys(name for name, _, _ in parts))
    return page.fig
