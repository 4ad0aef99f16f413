"""Matplotlib reports built without pyplot's global state.

``figure(result)`` returns a Figure that renders itself inline in Jupyter;
``save_figure`` writes it in any matplotlib format. All text is plain text:
a "$" in a class, layer or model name is drawn as typed, never as mathtext.
"""
from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Applied while figures are built: every Text made then keeps parse_math=False.
PLAIN_TEXT = {"text.parse_math": False}


class ReportFigure(Figure):
    """A Figure with its own Agg canvas, shown inline by Jupyter without pyplot."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        FigureCanvasAgg(self)

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
    """(C, H, W) in [0, 1] -> an array imshow takes, and the colormap for grayscale."""
    array = image.detach().cpu().clamp(0, 1).numpy()
    if array.shape[0] == 1:
        return array[0], "gray"
    return np.transpose(array, (1, 2, 0)), None


@rc_context(PLAIN_TEXT)
def draw_tiles(fig: Figure, images: torch.Tensor, titles: Sequence[str], columns: int | None = None,
               suptitle: str | None = None, fontsize: float = 10) -> None:
    """Tiles of images, nearest-neighbour upscaled, each with its title. One intensity scale for all
    tiles: pixel values 0..1 map to black..white (grayscale: vmin=0, vmax=1; RGB: drawn as they are),
    never stretched per tile, so a dim image looks dim next to a bright one."""
    count = len(images)
    columns = columns or min(count, 5)
    rows = math.ceil(count / columns)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, title in zip(axes.flat, images, titles):
        array, cmap = to_display(image)
        ax.imshow(array, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=fontsize)
    if suptitle:
        fig.suptitle(wrap(suptitle, fig.get_figwidth() if hasattr(fig, "get_figwidth") else 8, 12), fontsize=12)


@rc_context(PLAIN_TEXT)
def draw_evolution(fig: Figure, snapshots: dict[int, torch.Tensor], final: torch.Tensor, final_step: int,
                   column_labels: Sequence[str]) -> None:
    """One row per snapshot step, ending with the final images; one column per image."""
    steps = sorted(snapshots)
    frames = [snapshots[s] for s in steps] + [final]
    row_labels = [f"step {s}" for s in steps] + [f"final ({final_step})"]
    axes = fig.subplots(len(frames), len(column_labels), squeeze=False)
    for row, (frame, label) in enumerate(zip(frames, row_labels)):
        for col, name in enumerate(column_labels):
            ax = axes[row, col]
            array, cmap = to_display(frame[col])
            ax.imshow(array, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
            if col == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.suptitle("evolution during optimization", fontsize=11)


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


@rc_context(PLAIN_TEXT)
def render_figure(result, columns: int | None = None, title: str = "") -> ReportFigure:
    """A RenderResult as plain tiles, each titled with its objective value; the objective and the parts
    that made the images under the title."""
    count = len(result.images)
    columns = columns or min(count, 5)
    rows = math.ceil(count / columns)
    width = max(6.0, 2.2 * columns)
    fig = ReportFigure(figsize=(width, 2.2 * rows + 1.4), layout="constrained")
    draw_tiles(fig, result.images, [f"{i}: {float(v):.3g}" for i, v in enumerate(result.values)], columns,
               (title + "\n" if title else "") + render_settings(result), fontsize=9)
    return fig


def render_settings(result) -> str:
    """What made a RenderResult, in one plain-text line."""
    parts = [f"objective {result.objective or '?'}", f"{result.steps_done} steps", f"param {result.param or '?'}",
             f"transforms {', '.join(result.transforms) or 'none'}"]
    if result.interrupted_at is not None:
        parts.append(f"INTERRUPTED at step {result.interrupted_at}")
    return "; ".join(parts)


@rc_context(PLAIN_TEXT)
def classes_figure(result, columns: int | None = None) -> ReportFigure:
    """The report figure of a ClassesResult: tiles titled with class, logit, probability and the runner-up
    class, all on one intensity scale; the settings under the title; the evolution if snapshotted."""
    snapshots = result.render.snapshots
    count = len(result.images)
    columns = columns or min(count, 5)
    rows = math.ceil(count / columns)
    width = max(6.0, 2.2 * columns, 1.0 * count if snapshots else 0)
    titles = [fit(t, 0.95 * width / columns, 9) for t in result.titles]
    title_lines = max(t.count("\n") + 1 for t in titles)
    tile_height = (2.0 + 0.16 * title_lines) * rows + 1.4
    evo_height = min(width / count, 1.6) * (len(snapshots) + 1) + 0.8 if snapshots else 0
    fig = ReportFigure(figsize=(width, tile_height + evo_height), layout="constrained")
    title = _classes_title(result) + "\n" + result.settings
    if snapshots:
        top, bottom = fig.subfigures(2, 1, height_ratios=[tile_height, evo_height])
        draw_tiles(top, result.images, titles, columns, title, fontsize=9)
        draw_evolution(bottom, snapshots, result.images, result.render.steps_done, result.class_names)
    else:
        draw_tiles(fig, result.images, titles, columns, title, fontsize=9)
    return fig


def _classes_title(result) -> str:
    objective = {"confidence": "logit + 10 x log-probability", "logit": "logit"}.get(result.objective,
                                                                                     "blog loss (log-softmax)")
    title = f"{result.model_name}: the input each class likes most ({objective}, {result.render.steps_done} steps)"
    if result.render.interrupted_at is not None:
        title += f" — INTERRUPTED at step {result.render.interrupted_at}"
    return title


def save_figure(fig: Figure, path: str | Path) -> None:
    fig.savefig(Path(path), dpi=100)


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


#: Reports split into pages no taller than this (pixels at the saved 100 dpi).
MAX_PAGE_PX = 4000
DPI = 100


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
    """``text`` wrapped at spaces (and, in long names, after dots or colons) so no line is wider than
    ``width_inches`` at ``fontsize``, as measured; a single piece wider than that is cut into pieces."""
    lines = []
    for paragraph in text.split("\n"):
        pieces = re.findall(r"[^\s.:]+[.:]?|\s+|[.:]", paragraph)
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


def _channel_label(result, n: int, channel: int, examples, unit_names: Sequence[str] | None) -> tuple[str, str]:
    """The text under a channel's tile, and its colour."""
    name = f"{result.layer}:{channel}"
    if unit_names is not None and channel < len(unit_names):
        name += f" ({unit_names[channel]})"
    if examples is not None and bool(result.dead[n]):
        return f"{name} DEAD: no real image activates it (optimized reached {result.best[n]:.2g})", "red"
    if examples is not None and bool(result.rare[n]):
        return f"{name} RARELY ACTIVE: {float(examples.active_fraction[channel]):.2%} of images (no ratio)", "purple"
    if bool(result.not_reached[n]):
        return f"{name} NOT REACHED: optimized {result.best[n]:.2g}", "0.45"
    if examples is not None:
        ratio = float(result.ratio[n])
        return f"{name} ratio {ratio:.2f} (optimized {result.best[n]:.3g})", "black" if ratio >= 1 else "darkorange"
    return f"{name} optimized {result.best[n]:.3g}", "black"


def _channels_header(result, model_name: str, examples, k: int) -> str:
    header = f"{model_name}: layer {result.layer}, {len(result.channels)} channels"
    if examples is not None:
        summary = result.summary()
        median = "n/a" if summary.median_ratio is None else f"{summary.median_ratio:.2f}"
        header += (f" — {summary.live} live, {summary.dead} dead, {summary.rare} rarely active, "
                   f"{summary.not_reached} not reached; median ratio {median} (the others)\n"
                   f"each tile: the optimized image (blue label), then the {k} {examples.dataset} ({examples.split}) "
                   f"images that excite it most, with their activations; ratio = optimized / best real image "
                   f"(orange: below 1; red: dead, no real image activates it; purple: rarely active, on under 1% "
                   f"of images; grey: not reached)")
    else:
        header += "\nno dataset available: real examples and ratios omitted"
    header += "\n" + _activation_label(result)
    if result.interrupted_at is not None:
        header += f"\nINTERRUPTED at step {result.interrupted_at}: partial results"
    return header


IMAGE_INCHES, PAD, LABEL_SIZE, VALUE_SIZE, HEADER_SIZE, MAX_WIDTH = 0.62, 0.15, 7, 6, 9, 20.0


@rc_context(PLAIN_TEXT)
def channels_figures(result, dataset_images: torch.Tensor | None = None, model_name: str = "",
                     max_height_px: float = MAX_PAGE_PX, unit_names: Sequence[str] | None = None) -> list[ReportFigure]:
    """The channel report as pages no taller than ``max_height_px``: one tile per channel (its
    optimized image(s), then the top-k real images with their activations) and a label under each,
    wrapped to the tile's measured width so no two texts touch. ``unit_names`` name the channels
    (class names for the logits layer)."""
    examples = result.examples if dataset_images is not None else None
    k = examples.top_indices.shape[1] if examples is not None else 0
    images_per_tile = result.diverse + k
    tile_w = max(IMAGE_INCHES * images_per_tile, 1.1)
    columns = max(1, min(len(result.channels), int((MAX_WIDTH - 2 * PAD) // (tile_w + PAD))))
    fig_w = max(8.0, columns * (tile_w + PAD) + PAD)
    labels = [_channel_label(result, n, c, examples, unit_names) for n, c in enumerate(result.channels)]
    wrapped = [(fit(text, tile_w, LABEL_SIZE), color) for text, color in labels]
    label_h = max(text_size(text, LABEL_SIZE)[1] for text, _ in wrapped)
    value_h = text_size("0", VALUE_SIZE)[1]
    tile_h = value_h + IMAGE_INCHES + label_h + PAD
    header = fit(_channels_header(result, model_name, examples, k), fig_w - 2 * PAD, HEADER_SIZE)
    header_h = text_size(header, HEADER_SIZE)[1] + PAD
    rows = math.ceil(len(result.channels) / columns)
    rows_per_page = min(rows, max(1, (max_height_px / DPI - header_h - 2 * PAD) // tile_h))
    per_page = int(rows_per_page) * columns
    pages = math.ceil(len(result.channels) / per_page)
    figures = []
    for page in range(pages):
        start = page * per_page
        count = min(per_page, len(result.channels) - start)
        rows = math.ceil(count / columns)
        fig_h = header_h + rows * tile_h + 2 * PAD
        fig = ReportFigure(figsize=(fig_w, fig_h))
        title = header if pages == 1 else f"{header}\npage {page + 1} of {pages}"
        if pages > 1:
            fig.set_figheight(fig_h + text_size("page", HEADER_SIZE)[1])
            fig_h = fig.get_figheight()
        fig.text(PAD / fig_w, 1 - PAD / fig_h, title, ha="left", va="top", fontsize=HEADER_SIZE)
        top = fig_h - PAD - (header_h + (text_size("page", HEADER_SIZE)[1] if pages > 1 else 0))
        for i in range(count):
            n = start + i
            row, col = divmod(i, columns)
            _draw_tile(fig, result, n, examples, dataset_images, wrapped[n],
                       x=PAD + col * (tile_w + PAD), y_top=top - row * tile_h, fig_w=fig_w, fig_h=fig_h,
                       value_h=value_h)
        figures.append(fig)
    return figures


def _draw_tile(fig, result, n: int, examples, dataset_images, label: tuple[str, str], x: float, y_top: float,
               fig_w: float, fig_h: float, value_h: float) -> None:
    channel = result.channels[n]
    viz = [to_display(img)[0] for img in result.images[n * result.diverse:(n + 1) * result.diverse]]
    shown = list(viz)
    is_dead = examples is not None and bool(result.dead[n])
    if examples is not None:
        # A dead channel's "top" examples are arbitrary images scoring 0: shown as empty slots.
        shown += [np.full_like(viz[0], np.nan) if is_dead else to_display(_as_unit(dataset_images[int(i)]))[0]
                  for i in examples.top_indices[channel]]
    mosaic = _mosaic(shown)
    width = IMAGE_INCHES * len(shown)
    y_image = y_top - value_h - IMAGE_INCHES
    ax = fig.add_axes((x / fig_w, y_image / fig_h, width / fig_w, IMAGE_INCHES / fig_h))
    ax.imshow(mosaic, cmap="gray" if mosaic.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest",
              aspect="auto")
    ax.set_axis_off()
    centre = lambda j: (x + IMAGE_INCHES * (j + 0.5)) / fig_w
    fig.text((x + IMAGE_INCHES * result.diverse / 2) / fig_w, (y_image + 0.02) / fig_h, "optimized", ha="center",
             va="bottom", fontsize=VALUE_SIZE, color="tab:blue")
    if examples is not None and not is_dead:
        for j, value in enumerate(examples.top_values[channel].tolist()):
            fig.text(centre(result.diverse + j), (y_image + 0.02) / fig_h, f"{value:.3g}", ha="center", va="bottom",
                     fontsize=VALUE_SIZE, color="0.25")
    text, color = label
    fig.text(x / fig_w, (y_image - 0.03) / fig_h, text, ha="left", va="top", fontsize=LABEL_SIZE, color=color)


def channels_figure(result, dataset_images: torch.Tensor | None = None, model_name: str = "",
                    unit_names: Sequence[str] | None = None) -> ReportFigure:
    """The channel report of one layer on one page, however tall (``channels_figures`` splits it)."""
    return channels_figures(result, dataset_images, model_name, max_height_px=math.inf, unit_names=unit_names)[0]


def index_figures(results: Sequence, model_name: str = "", max_height_px: float = MAX_PAGE_PX) -> list[ReportFigure]:
    """The overview split into pages no taller than ``max_height_px`` (at 100 dpi): as many layers per page as fit."""
    per_page = max(1, int((max_height_px / 100 - 0.6) // 1.5))
    return [index_figure(results[start:start + per_page], model_name) for start in range(0, len(results), per_page)]


@rc_context(PLAIN_TEXT)
def index_figure(results: Sequence, model_name: str = "", strongest: int = 8) -> ReportFigure:
    """One row per layer: name, channel count, live/dead counts, median ratio, and its strongest channels."""
    fig = ReportFigure(figsize=(10, 1.5 * len(results) + 0.6), layout="constrained")
    axes = fig.subplots(len(results), 1, squeeze=False)[:, 0]
    for ax, result in zip(axes, results):
        ax.set_axis_off()
        ratios = result.ratio
        order = torch.argsort(torch.nan_to_num(ratios, nan=-1.0) if result.examples is not None else result.best,
                              descending=True)[:strongest]
        tiles = [to_display(result.images[int(i) * result.diverse])[0] for i in order]
        strip = _mosaic(tiles)
        ax.imshow(strip, cmap="gray" if strip.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        width = tiles[0].shape[1] + 2
        for position, i in enumerate(order):
            ax.text(position * width + width / 2 - 1, tiles[0].shape[0] + 0.5, f"#{result.channels[int(i)]}",
                    ha="center", va="top", fontsize=7)
        if result.examples is not None:
            summary = result.summary()
            median = "n/a" if summary.median_ratio is None else f"{summary.median_ratio:.2f}"
            text = (f"{result.layer}: {summary.channels} channels, {summary.live} live, {summary.dead} dead, "
                    f"{summary.rare} rarely active, {summary.not_reached} not reached, median ratio {median}")
        else:
            text = f"{result.layer}: {len(result.channels)} channels (no dataset: live/dead unknown)"
        ax.set_title(text + " — strongest channels:", fontsize=9, loc="left")
    fig.suptitle(f"{model_name}: channel report index", fontsize=11)
    return fig


def _feature_grid(maps: torch.Tensor, columns: int, gap: int = 1) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(N, H, W) maps -> one mosaic with NaN gaps, and each map's top-left corner."""
    n, h, w = maps.shape
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), np.nan, dtype=np.float32)
    corners = []
    for i in range(n):
        r, c = divmod(i, columns)
        y, x = r * (h + gap), c * (w + gap)
        grid[y:y + h, x:x + w] = maps[i].numpy()
        corners.append((y, x))
    return grid, corners


@rc_context(PLAIN_TEXT)
def _activation_header(section, result, model_name: str, layers: Sequence[str]) -> None:
    """The first section of the activations report: input, prediction with top-5, saliency and gradient × input."""
    top = section.subplots(1, 4, width_ratios=[1, 1.4, 1, 1])
    image, cmap = to_display(result.input.pixels)
    top[0].imshow(image, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    top[0].set_title("input as the model sees it", fontsize=9)
    top[0].set_axis_off()
    order = torch.argsort(result.probabilities, descending=True)[:5].tolist()
    names = [str(result.class_names[i]) for i in order]
    top[1].barh(range(len(order))[::-1], [float(result.probabilities[i]) for i in order],
                color=["tab:red" if i == result.predicted else "tab:gray" for i in order])
    top[1].set_yticks(range(len(order))[::-1], names, fontsize=8)
    for row, i in zip(range(len(order))[::-1], order):
        top[1].text(0.98, row, f"{float(result.probabilities[i]):.3f}", ha="right", va="center", fontsize=8)
    top[1].set_xlim(0, 1)
    if result.predicted is None:
        top[1].set_title("no prediction: the model's logits are unknown", fontsize=9)
        top[1].set_yticks([])
    else:
        top[1].set_title(f"prediction: {result.class_names[result.predicted]} "
                         f"(p={float(result.probabilities[result.predicted]):.3f}); top-5", fontsize=9)
    what = "logit" if result.predicted is not None else f"(strongest unit of {layers[-1]})"
    for ax, data, title in ((top[2], result.saliency, f"saliency: d {what} / d pixel"),
                            (top[3], result.grad_times_input, "gradient × input")):
        values = data.abs().amax(0) if data.shape[0] == 3 else data[0]
        limit = float(values.abs().max()) or 1.0
        shown = ax.imshow(values.numpy(), cmap="RdBu_r" if data.shape[0] == 1 else "magma",
                          vmin=-limit if data.shape[0] == 1 else 0, vmax=limit, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
        section.colorbar(shown, ax=ax, shrink=0.8)
    note = "; ".join(result.input.conversion)
    section.suptitle(wrap(f"{model_name}: {result.input.source}" + (f"\n{note}" if note else ""), 11, 9), fontsize=9)


def _activation_heights(result, layers: Sequence[str], visualizations) -> list[float]:
    return [(3.8 if result.outputs[l].ndim == 3 else 2.0) + (1.3 if visualizations and l in visualizations else 0)
            for l in layers]


def activations_figures(result, visualizations: dict[str, tuple[list[int], torch.Tensor]] | None = None,
                        model_name: str = "", highlight: int = 3, logits_layer: str | None = None,
                        max_height_px: float = MAX_PAGE_PX) -> list[ReportFigure]:
    """The activations report split into pages no taller than ``max_height_px``: the input, prediction and
    saliency on the first, then as many layers per page as fit."""
    pages, page, height = [], [], 2.8 + 0.6
    for layer, layer_height in zip(result.outputs, _activation_heights(result, list(result.outputs), visualizations)):
        if page and (height + layer_height) * 100 > max_height_px:
            pages.append(page)
            page, height = [], 0.6
        page.append(layer)
        height += layer_height
    pages.append(page)
    return [activations_figure(result, visualizations, model_name, highlight, logits_layer, layers=layers,
                               header=number == 0) for number, layers in enumerate(pages)]


@rc_context(PLAIN_TEXT)
def activations_figure(result, visualizations: dict[str, tuple[list[int], torch.Tensor]] | None = None,
                       model_name: str = "", highlight: int = 3, logits_layer: str | None = None,
                       layers: Sequence[str] | None = None, header: bool = True) -> ReportFigure:
    """Input with prediction and top-5, saliency (``header``), then per layer its feature maps (conv) or
    unit bars (Linear) — of ``layers`` (default: all recorded)."""
    from matplotlib.patches import Rectangle

    layers = list(result.outputs) if layers is None else list(layers)
    heights = ([2.8] if header else []) + _activation_heights(result, layers, visualizations)
    fig = ReportFigure(figsize=(11, sum(heights) + 0.6), layout="constrained")
    sections = list(fig.subfigures(len(heights), 1, height_ratios=heights, squeeze=False)[:, 0])
    if header:
        _activation_header(sections.pop(0), result, model_name, list(result.outputs))

    for section, layer in zip(sections, layers):
        shown = result.shown(layer)
        activation = result.activations[layer]
        label = f"{activation}({layer})" if activation != "identity" else layer
        extra = visualizations.get(layer) if visualizations else None
        if shown.ndim == 3:
            means = shown.mean((1, 2))
            order = torch.argsort(means, descending=True)
            maps = shown[order]
            columns = min(len(order), 16)
            grid, corners = _feature_grid(maps, columns)
            axes = section.subplots(2 if extra else 1, 1, squeeze=False, height_ratios=[3.8, 1.3] if extra else None)[:, 0]
            ax = axes[0]
            vmin = 0.0 if activation == "relu" else float(np.nanmin(grid))
            im = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=float(np.nanmax(grid)) or 1.0, interpolation="nearest")
            h, w = maps.shape[1:]
            for rank in range(min(highlight, len(order))):
                y, x = corners[rank]
                ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="red", linewidth=1.5))
            for rank, (y, x) in enumerate(corners):  # every tile's channel number in its top-left corner
                ax.text(x, y - 0.5, str(int(order[rank])), color="red" if rank < highlight else "white", fontsize=5,
                        va="top", ha="left", bbox={"facecolor": "black", "alpha": 0.5, "pad": 0.5, "linewidth": 0})
            ax.set_axis_off()
            section.colorbar(im, ax=ax, shrink=0.8, label="activation")
            ax.set_title(f"{label}: {len(order)} channels, strongest first by mean activation, each numbered (top "
                         f"{highlight} in red); one colour scale", fontsize=9)
        else:
            axes = section.subplots(2 if extra else 1, 1, squeeze=False, height_ratios=[2.0, 1.3] if extra else None)[:, 0]
            ax = axes[0]
            values = shown.flatten()
            strongest = [i for i in torch.argsort(values, descending=True)[:highlight].tolist() if values[i] > 0]
            colors = ["tab:red" if i in strongest else "tab:blue" for i in range(len(values))]
            ax.bar(range(len(values)), values.numpy(), color=colors, width=0.8 if len(values) <= 32 else 1.0)
            ax.set_xlim(-0.5, len(values) - 0.5)
            ax.axhline(0, color="0.5", linewidth=0.5)
            if layer == logits_layer and len(values) <= 32:
                ax.set_xticks(range(len(values)), [str(n) for n in result.class_names], fontsize=7)
            title = f"{label}: {len(values)} units" + (" (the logits)" if layer == logits_layer else "")
            ax.set_title(title + (f"; strongest in red: {', '.join(map(str, strongest))}" if strongest else ""), fontsize=9)
            ax.tick_params(labelsize=7)
        if extra:
            channels, images = extra
            tiles = [to_display(img)[0] for img in images]
            strip = _mosaic(tiles)
            axes[1].imshow(strip, cmap="gray" if strip.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            axes[1].set_axis_off()
            width = tiles[0].shape[1] + 2
            for position, channel in enumerate(channels):
                axes[1].text(position * width + width / 2 - 1, tiles[0].shape[0] + 0.5, f"#{channel}", ha="center",
                             va="top", fontsize=7)
            axes[1].set_title(f"what the {len(channels)} strongest respond to (optimized images)", fontsize=8)
    return fig
