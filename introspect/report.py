"""Matplotlib reports built without pyplot's global state.

``figure(result)`` returns a Figure that renders itself inline in Jupyter;
``save_figure`` writes it in any matplotlib format.
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


class ReportFigure(Figure):
    """A Figure with its own Agg canvas, shown inline by Jupyter without pyplot."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        FigureCanvasAgg(self)

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        return buffer.getvalue()


def to_display(image: torch.Tensor) -> tuple[np.ndarray, str | None]:
    """(C, H, W) in [0, 1] -> an array imshow takes, and the colormap for grayscale."""
    array = image.detach().cpu().clamp(0, 1).numpy()
    if array.shape[0] == 1:
        return array[0], "gray"
    return np.transpose(array, (1, 2, 0)), None


def draw_tiles(fig: Figure, images: torch.Tensor, titles: Sequence[str], columns: int | None = None,
               suptitle: str | None = None) -> None:
    """Tiles of images, nearest-neighbour upscaled, each with its title."""
    count = len(images)
    columns = columns or min(count, 5)
    rows = math.ceil(count / columns)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, title in zip(axes.flat, images, titles):
        array, cmap = to_display(image)
        ax.imshow(array, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=10)
    if suptitle:
        fig.suptitle(suptitle, fontsize=12)


def draw_evolution(fig: Figure, snapshots: dict[int, torch.Tensor], final: torch.Tensor, final_step: int,
                   row_labels: Sequence[str]) -> None:
    """One row per image, one column per snapshot step, ending with the final image."""
    steps = sorted(snapshots)
    frames = [snapshots[s] for s in steps] + [final]
    labels = [f"step {s}" for s in steps] + [f"final ({final_step})"]
    axes = fig.subplots(len(row_labels), len(frames), squeeze=False)
    for col, (frame, label) in enumerate(zip(frames, labels)):
        for row in range(len(row_labels)):
            ax = axes[row, col]
            array, cmap = to_display(frame[row])
            ax.imshow(array, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(label, fontsize=9)
            if col == 0:
                ax.set_ylabel(row_labels[row], fontsize=9)
    fig.suptitle("evolution", fontsize=11)


def figure(result, columns: int | None = None) -> ReportFigure:
    """The report figure of a ClassesResult: tiles titled with class and probability, plus evolution if snapshotted."""
    snapshots = result.render.snapshots
    count = len(result.images)
    columns = columns or min(count, 5)
    rows = math.ceil(count / columns)
    tile_height = 2.3 * rows + 0.8
    evo_height = 1.0 * count + 0.8 if snapshots else 0
    fig = ReportFigure(figsize=(2.2 * columns if not snapshots else max(2.2 * columns, 1.2 * (len(snapshots) + 1)),
                                tile_height + evo_height), layout="constrained")
    title = _classes_title(result)
    if snapshots:
        top, bottom = fig.subfigures(2, 1, height_ratios=[tile_height, evo_height])
        draw_tiles(top, result.images, result.titles, columns, title)
        draw_evolution(bottom, snapshots, result.images, result.render.steps_done, result.class_names)
    else:
        draw_tiles(fig, result.images, result.titles, columns, title)
    return fig


def _classes_title(result) -> str:
    objective = "logit" if result.objective == "logit" else "blog loss (log-softmax)"
    title = f"{result.model_name}: the input each class likes most ({objective}, {result.render.steps_done} steps)"
    if result.render.interrupted_at is not None:
        title += f" — INTERRUPTED at step {result.render.interrupted_at}"
    return title


def save_figure(fig: Figure, path: str | Path) -> None:
    fig.savefig(Path(path), dpi=100)


def save_gif(frames: Sequence[torch.Tensor], path: str | Path, scale: int = 4, duration_ms: int = 400) -> None:
    """Each frame (N, C, H, W) becomes one GIF frame: the N images side by side, upscaled."""
    from PIL import Image

    pictures = []
    for frame in frames:
        tiles = [np.pad(to_uint8(img), ((0, 0), (1, 1), (1, 1)), constant_values=128) for img in frame]
        strip = np.concatenate(tiles, axis=2)
        strip = strip[0] if strip.shape[0] == 1 else np.transpose(strip, (1, 2, 0))
        picture = Image.fromarray(strip)
        pictures.append(picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST))
    pictures[0].save(Path(path), save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Pixel-space floats in [0, 1] -> uint8, rounding to nearest."""
    return (images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
