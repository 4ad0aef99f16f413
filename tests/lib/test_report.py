"""Report text is plain text: "$" in class, layer or model names never goes through mathtext."""
import dataclasses
import io
from collections import OrderedDict

import numpy as np
import pytest
import torch
from matplotlib.text import Text
from torch import nn

from introspect.activations import ImageInput, inspect_image
from introspect.classes import CLASSES_DEFAULTS, visualize_classes
from introspect.channels import CHANNELS_DEFAULTS, visualize_channels
from introspect.engine import RenderConfig
from introspect.models import ModelSpec
from introspect.report import activations_figure, channels_figure, figure, index_figure
from introspect.records import save_run

#: '$x_$' and '$\foo$' are invalid mathtext (matplotlib raises), '$x^2$' would render as a superscript.
NAMES = ("$x^2$", "a$b", "$x_$", "$\\foo$")


@pytest.fixture
def dollar_model():
    """A tiny classifier whose conv layer is named with dollars, and its spec with dollar class names."""
    model = nn.Sequential(OrderedDict([("$c_$", nn.Conv2d(1, 2, 3)), ("flat", nn.Flatten()), ("fc", nn.Linear(2 * 6 * 6, 4))]))
    spec = ModelSpec(name="m$_$", architecture="user", input_shape=(1, 8, 8), mean=(0.5,), std=(0.5,),
                     logits_layer="fc", class_names=NAMES, activations={"$c_$": "relu"})
    return model, spec


def check_plain(fig):
    dollars = [t for t in fig.findobj(Text) if "$" in t.get_text()]
    assert dollars and not any(t.get_parse_math() for t in dollars)
    for fmt in ("png", "pdf", "svg"):
        fig.savefig(io.BytesIO(), format=fmt)


def test_every_figure_draws_dollar_names_as_plain_text(dollar_model):
    model, spec = dollar_model
    classes = visualize_classes(model, spec, config=RenderConfig(steps=2, snapshots=(1,)))
    check_plain(figure(classes))
    channels = visualize_channels(model, spec, "$c_$", config=CHANNELS_DEFAULTS.replace(steps=2))
    check_plain(channels_figure(channels, model_name=spec.name))
    check_plain(index_figure([channels], model_name=spec.name))
    inspected = inspect_image(model, spec, ImageInput(torch.rand(1, 8, 8), "a $x_$ file"), ["$c_$", "fc"])
    check_plain(activations_figure(inspected, model_name=spec.name, logits_layer="fc"))


def test_classes_run_with_dollar_class_names_writes_the_report(tmp_path, shipped_mnist):
    names = NAMES + tuple(str(i) for i in range(4, 10))  # what `introspect classes --class-names FILE` loads
    loaded = dataclasses.replace(shipped_mnist, spec=shipped_mnist.spec.replace(class_names=names))
    result = visualize_classes(loaded.model, loaded.spec, config=CLASSES_DEFAULTS.replace(steps=2, snapshots=(1,)))
    out = save_run(result, tmp_path / "run", loaded=loaded)
    assert (out / "report.png").stat().st_size > 0


def test_every_feature_map_tile_carries_its_channel_number(dollar_model):
    model, spec = dollar_model
    inspected = inspect_image(model, spec, ImageInput(torch.rand(1, 8, 8), "x"), ["$c_$", "fc"])
    fig = activations_figure(inspected, highlight=1, logits_layer="fc")
    texts = [t.get_text() for t in fig.findobj(Text)]
    assert "0" in texts and "1" in texts


def test_classes_figure_says_logit_probability_runner_up_and_settings(shipped_mnist):
    from introspect.classes import visualize_classes

    result = visualize_classes(shipped_mnist.model, shipped_mnist.spec, [1, 7], RenderConfig(steps=2, seed=3),
                               candidates=2)
    texts = [t.get_text() for t in figure(result).findobj(Text)]
    tiles = [t for t in texts if t.startswith(("1\n", "7\n"))]
    assert len(tiles) == 2
    assert all("logit " in t and ("p=" in t or "p>" in t or "p<" in t) and "\nnext: " in t for t in tiles)
    settings = next(t for t in texts if "settings:" in t)
    for part in ("objective confidence", "steps 2", "lr 0.05", "seed 3", "param fft", f"start {result.start}",
                 "candidates 2"):
        assert part in settings.replace("\n", " "), part


@pytest.mark.parametrize("channels", [1, 3])
def test_classes_tiles_share_one_intensity_scale(channels):
    """Pixel values map to the same grey (or colour) in every tile: a dim image is not stretched to full range."""
    from matplotlib.image import BboxImage

    from introspect.classes import visualize_classes

    model = nn.Sequential(nn.Flatten(), nn.Linear(channels * 4 * 4, 3))
    spec = ModelSpec(name="m", architecture="user", input_shape=(channels, 4, 4), mean=(0.5,) * channels,
                     std=(0.5,) * channels, logits_layer="1", class_names=("a", "b", "c"))
    result = visualize_classes(model, spec, config=RenderConfig(steps=1))
    result.images = torch.linspace(0, 1, 3).view(3, 1, 1, 1) * torch.rand(3, channels, 4, 4)  # dark, mid, bright
    result.images[:, :, 0, 0] = 0.2
    images = figure(result).findobj(BboxImage)  # pixels are drawn on the figure, without axes
    assert len(images) == 3
    for image, original in zip(images, result.images):
        if channels == 1:  # grayscale goes through the colormap: one fixed range
            assert image.norm.vmin == 0 and image.norm.vmax == 1
        array = np.asarray(image.get_array())
        expected = original[0] if channels == 1 else original.permute(1, 2, 0)
        assert np.allclose(array, expected.numpy())  # drawn as they are: no per-tile rescaling


def _signal_artists(fig, length: int):
    """Line2D artists of ``length`` points, and the images that are one pixel tall (invisible strips)."""
    from matplotlib.image import AxesImage
    from matplotlib.lines import Line2D

    lines = [a for ax in fig.axes for a in ax.get_children() if isinstance(a, Line2D) and len(a.get_xdata()) == length]
    strips = [a for ax in fig.axes for a in ax.get_children()
              if isinstance(a, AxesImage) and np.asarray(a.get_array()).shape[0] == 1]
    return lines, strips


def test_signal_inputs_are_drawn_as_waveforms_with_spectrograms_not_strips():
    """Issue #21: the tone model's (1, 1024) inputs in the classes, channels and activations reports are line plots
    of 1024 points with labelled axes (and a spectrogram beside), its Conv1d maps one heat strip with a colour
    bar; no one-pixel images anywhere."""
    from helpers import zoo_model

    loaded = zoo_model("tones")
    config = CLASSES_DEFAULTS.replace(steps=2)
    classes = visualize_classes(loaded.model, loaded.spec, classes=[0, 7], config=config)
    channels = visualize_channels(loaded.model, loaded.spec, "features.3", [0, 1], CHANNELS_DEFAULTS.replace(steps=2))
    wave = 0.5 + 0.3 * torch.sin(torch.arange(1024) * 2 * torch.pi * 659.26 / 8000)
    activations = inspect_image(loaded.model, loaded.spec, ImageInput(wave.view(1, 1, 1024), "a tone"),
                                ["features.0", "features.3", "fc"])
    for fig, count in ((figure(classes), 2), (figure(channels), 2), (activations_figure(activations), 3)):
        lines, strips = _signal_artists(fig, 1024)
        assert len(lines) >= count and not strips
        assert all(line.axes.get_xlabel() == "sample" for line in lines)
        assert sum(ax.get_title() == "spectrogram" for ax in fig.axes) >= count
    fig = activations_figure(activations)
    maps = [ax for ax in fig.axes if ax.get_ylabel() == "channel"]  # features.0 and features.3: a row per channel
    assert len(maps) == 2 and {ax.images[0].get_array().shape[0] for ax in maps} == {16, 32}
    assert sum(ax.get_ylabel() == "activation" for ax in fig.axes) >= 2  # their colour bars


@pytest.mark.parametrize("other_work", [False, True])
def test_pages_saved_in_worker_processes_are_the_same_bytes(tmp_path, other_work):
    """save_figures splits pages over forked workers (Linux, several cores): the files are those save_figure
    writes one by one; work handed as ``meanwhile`` runs once, in this process."""
    import os

    from matplotlib.figure import Figure

    from introspect.report import save_figure, save_figures

    figures = []
    for i in range(5):
        fig = Figure(figsize=(2, 1))
        fig.text(0.1, 0.5, f"page {i}")
        fig.add_axes((0.5, 0.1, 0.4, 0.8)).imshow(np.arange(16.0).reshape(4, 4) * i)
        figures.append(fig)
    ran = []
    save_figures([(fig, tmp_path / f"parallel-{i}.png") for i, fig in enumerate(figures)],
                 meanwhile=(lambda: ran.append(os.getpid())) if other_work else None)
    assert ran == ([os.getpid()] if other_work else [])
    for i, fig in enumerate(figures):
        save_figure(fig, tmp_path / f"serial-{i}.png")
        assert (tmp_path / f"parallel-{i}.png").read_bytes() == (tmp_path / f"serial-{i}.png").read_bytes()


def test_pages_are_taken_one_at_a_time_by_workers_and_by_this_process_after_its_other_work(tmp_path, monkeypatch):
    """Workers and this process take pages from one queue, each page built and saved once: a worker busy with a
    costly page (here: held until this process has done its ``meanwhile`` and taken a page) holds up no other."""
    import os
    import select

    from matplotlib.figure import Figure

    from introspect import report

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})  # three workers, on any machine
    parent, (gate, opener) = os.getpid(), os.pipe()
    log = tmp_path / "built.log"

    def page(i):
        def build():
            if os.getpid() == parent:
                os.write(opener, b"x" * 6)  # the workers' pages may go on now (a byte each, however many)
            elif select.select([gate], [], [], 60)[0]:  # a guard: code that never lets this process take a page
                os.read(gate, 1)                          # fails below instead of hanging
            with open(log, "a") as file:
                file.write(f"{i} {os.getpid()}\n")
            return Figure(figsize=(1, 1))
        return build

    done = []
    try:
        report.save_figures([(page(i), tmp_path / f"{i}.png") for i in range(6)], meanwhile=lambda: done.append(1))
    finally:
        os.close(gate)
        os.close(opener)
    built = [line.split() for line in log.read_text().splitlines()]
    assert sorted(int(i) for i, _ in built) == list(range(6)) and done == [1]
    assert any(int(pid) == parent for _, pid in built)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [f"{i}.png" for i in range(6)]


def test_after_ctrl_c_here_the_workers_stop_after_the_page_each_is_saving(tmp_path, monkeypatch):
    """Ctrl-C (or an error) in this process empties the queue: each worker finishes the page it is saving and takes
    no other, so the interrupt is not held up by the rest of a wide layer's pages."""
    import os
    import select

    from matplotlib.figure import Figure

    from introspect import report

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})  # two workers beside this process
    parent, (gate, opener) = os.getpid(), os.pipe()
    real_waitpid = os.waitpid

    def waitpid(pid, options):  # this process has stopped handing out pages: the workers' pages may go on
        os.write(opener, b"x" * 12)
        return real_waitpid(pid, options)

    def page():
        if os.getpid() == parent:
            raise KeyboardInterrupt
        if select.select([gate], [], [], 60)[0]:  # a guard: without it, code that never waits would hang here
            os.read(gate, 1)
        return Figure(figsize=(1, 1))

    monkeypatch.setattr(os, "waitpid", waitpid)
    try:
        with pytest.raises(KeyboardInterrupt):
            report.save_figures([(page, tmp_path / f"{i}.png") for i in range(12)])
    finally:
        os.close(gate)
        os.close(opener)
    assert len(list(tmp_path.glob("*.png"))) <= 2  # at most the page each worker had taken


def test_the_page_queue_hands_out_every_number_once():
    import os

    from introspect.report import _page_queue, _take

    for count in (5, 20_000):  # 20,000 numbers need a pipe larger than the usual 64 KiB: asked for, or refused
        queue = _page_queue(count)
        if queue is None:
            assert count == 20_000
            continue
        numbers = []
        while (number := _take(queue)) is not None:
            numbers.append(number)
        os.close(queue)
        assert numbers == list(range(count))


def test_a_png_has_the_pixels_matplotlib_draws_without_an_alpha_channel_when_opaque(tmp_path):
    """save_figure writes a page on white as RGB (a quarter less to encode and store), any other figure as RGBA:
    decoded, the pixels matplotlib's own PNG of it holds."""
    from matplotlib.figure import Figure
    from PIL import Image

    from introspect import report

    page = report.Page(1.37)
    page.text(0.1, 0.1, "a page, 1.37 inches tall")
    page.image(0.1, 0.5, np.random.default_rng(0).random((7, 9)), 1.2, 0.7)
    clear = Figure(figsize=(2.3, 1.1))
    clear.patch.set_alpha(0.0)
    clear.text(0.1, 0.5, "no background")
    for name, fig, mode in (("page", page.fig, "RGB"), ("clear", clear, "RGBA")):
        report.save_figure(fig, tmp_path / f"{name}.png")
        fig.savefig(tmp_path / f"{name}-matplotlib.png", dpi=report.DPI, facecolor="white")
        with Image.open(tmp_path / f"{name}.png") as ours, Image.open(tmp_path / f"{name}-matplotlib.png") as theirs:
            assert ours.mode == mode and ours.info["dpi"] == theirs.info["dpi"]
            assert np.array_equal(np.asarray(ours.convert("RGBA")), np.asarray(theirs.convert("RGBA")))


def test_pages_of_a_worker_that_dies_are_saved_by_the_parent(tmp_path, monkeypatch):
    import os

    from matplotlib.figure import Figure

    from introspect import report

    parent, real = os.getpid(), report.save_figure

    def dies_in_a_worker(fig, path):
        if os.getpid() != parent:
            os._exit(3)  # killed halfway, as by a signal
        real(fig, path)

    monkeypatch.setattr(report, "save_figure", dies_in_a_worker)
    figures = [Figure(figsize=(1, 1)) for _ in range(4)]
    report.save_figures([(fig, tmp_path / f"{i}.png") for i, fig in enumerate(figures)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.png", "1.png", "2.png", "3.png"]


def test_page_workers_run_torch_s_parallel_ops_without_hanging(tmp_path):
    """A forked worker has none of its parent's OpenMP threads: a 224 px tile's clamp (big enough to run in
    parallel) in a page it built waited for them forever, and a 224 px channels run never finished writing.
    Here in a fresh process with two torch threads and four cores claimed (workers fork on any machine), under a
    hang guard far above the second it takes."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys

    script = f"""
import os, torch
os.sched_getaffinity = lambda pid: {{0, 1, 2, 3}}
torch.set_num_threads(2)
torch.rand(1_000_000).clamp(0, 1)  # the parent's OpenMP threads now exist
from introspect import report

def page():
    torch.rand(1_000_000).clamp(0, 1)
    return report.Page(1.0).fig

report.save_figures([(page, os.path.join({str(tmp_path)!r}, f"{{i}}.png")) for i in range(4)])
"""
    process = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # its own group: a hang leaves no workers behind
    try:
        _, errors = process.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.png", "1.png", "2.png", "3.png"]


def test_report_text_is_measured_as_agg_measures_it():
    """report._shaped's width, height and descent (from the layout and each glyph's box, loaded once) are those
    FT2Font.set_text gives, for any size, accents, arrows, leading and trailing spaces."""
    from matplotlib.backends.backend_agg import RendererAgg, get_hinting_flag
    from matplotlib.font_manager import FontProperties

    from introspect import report

    if not report.GLYPH_BY_GLYPH:
        pytest.skip("matplotlib other than 3.11: text drawn by Agg itself")
    flags = get_hinting_flag()
    for size in (6.0, 7.0, 8.5, 14.0):
        font = RendererAgg(10, 10, 100)._prepare_font(FontProperties(size=size))
        for text in ("layer4.1.conv2:511", "act -3.93e+03", "r 2.27 · on 42.1%", "Wj(y)_Q", " lead", "trail ",
                     "É ü ß → ←", " ", "", "gy|", "rotated"):
            measured = report._shaped(font, size, 100.0, text, flags)[1]
            font.set_text(text, 0.0, flags=flags)
            width, height = font.get_width_height()
            assert measured == (width / 64, height / 64, font.get_descent() / 64), (size, text)


def test_report_lines_are_laid_out_as_freetype_lays_them_out():
    """report._layout places each glyph of a line where FT2Font._layout does (its own advances and kerning for
    DejaVu Sans, regular and bold, at several sizes; random lines of letters, digits, punctuation and accents,
    ligatures left to FreeType)."""
    import random
    import string

    from matplotlib.backends.backend_agg import RendererAgg, get_hinting_flag
    from matplotlib.font_manager import FontProperties

    from introspect import report

    if not report.GLYPH_BY_GLYPH:
        pytest.skip("matplotlib other than 3.11: text drawn by Agg itself")
    flags, rng = get_hinting_flag(), random.Random(0)
    characters = string.ascii_letters + string.digits + string.punctuation + " ·→←–éüßÉ°±µ×"
    for weight in ("normal", "bold"):
        for size, dpi in ((5.0, 100.0), (7.0, 200.0), (11.0, 200.0)):
            font = RendererAgg(10, 10, dpi)._prepare_font(FontProperties(size=size, weight=weight))
            for _ in range(150):
                text = "".join(rng.choice(characters) for _ in range(rng.randint(1, 30)))
                ours = report._layout(font, size, dpi, text, flags)
                font.set_size(size, dpi)
                theirs = font._layout(text, flags=flags)
                assert [(i.glyph_index, i.x, i.y) for i in ours] == [(i.glyph_index, i.x, i.y) for i in theirs], text


def test_report_text_is_drawn_with_the_pixels_agg_draws():
    """Report figures draw text from layouts and glyphs kept between calls (report._shaped, report._glyph): the
    page's pixels are those of matplotlib's own Agg canvas, for text at any position, size, colour and alignment."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from introspect import report

    page = report.Page(2.0)
    for i in range(12):
        page.text(0.1 + i * 0.5371, 0.1 + i * 0.1393, f"layer4.1:{i} · ratio {i / 7:.2f}\nsecond $x_$ line → {i}",
                  size=8 + i % 3, color=report.INK if i % 2 else report.BELOW_ONE, ha=("left", "center")[i % 2],
                  parse_math=False)
    page.text(1.0, 1.8, "rotated", rotation=30)  # drawn by Agg itself, as is mathtext
    page.text(3.0, 1.8, "$x^2$")
    axes = page.axes(5.0, 1.0, 2.0, 0.6)  # tick labels and axis labels are text too
    axes.plot([0.0, 1.0, 0.3])
    axes.set_xlabel("sample", fontsize=report.TEXT_SIZE)
    page.fig.canvas.draw()
    cached = np.asarray(page.fig.canvas.buffer_rgba()).copy()
    FigureCanvasAgg(page.fig).draw()
    assert np.array_equal(cached, np.asarray(page.fig.canvas.buffer_rgba()))
    if report.GLYPH_BY_GLYPH:  # matplotlib 3.11: the glyphs came from the cache
        assert report._glyph.cache_info().hits > 0


def test_report_images_are_drawn_with_the_pixels_agg_draws(monkeypatch):
    """A report canvas resamples a page's images by indexing (report._PixelImage): the pixels of matplotlib's own
    Agg canvas, for grey, RGB and colour-mapped images, NaN pixels, integer and fractional scales, at positions off
    the pixel grid, and for images shrunk, past the page's edge, with pixel centres on the boundaries between source
    pixels, of integers, half floats, masked RGB or with alpha (drawn by matplotlib itself), and with matplotlib's
    image.origin at the bottom (report tiles keep row 0 on top)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.image import BboxImage

    from introspect import report

    make_image = BboxImage.make_image
    rng = np.random.default_rng(0)
    page = report.Page(4.5)
    for i in range(40):
        rows, cols = (int(n) for n in rng.integers(1, 30, 2))
        grey = rng.random((rows, cols)).astype(np.float32)
        if i % 5 == 3:
            grey[0] = np.nan  # a dead channel's empty slot
        scale = float(rng.integers(1, 6)) + (rng.random() if i % 8 == 1 else 0.0)
        x, top = 0.2 + (i % 8) * 0.9 + rng.random() * 0.05, 0.1 + (i // 8) * 0.75 + rng.random() * 0.05
        w, h = cols * scale / report.DPI, rows * scale / report.DPI
        if i % 4 == 1:
            page.image(x, top, rng.random((rows, cols, 3)).astype(np.float32), w, h)
        elif i % 4 == 2:
            page.image(x, top, grey, w, h, cmap=report.ACTIVATION_CMAP, bare=True, norm=Normalize(-0.2, 0.9))
        else:
            page.image(x, top, grey, w, h)
    special = [  # left to matplotlib: shrunk; past the right and bottom edges; pixel centres exactly on the boundaries
        # between source pixels (a box half a pixel off the grid, 3x), where Agg's fixed-point arithmetic decides
        page.image(3.0, 3.5, rng.random((40, 40)).astype(np.float32), 0.1, 0.1)[1],
        page.image(7.3, 4.1, rng.random((20, 20)).astype(np.float32), 0.5, 0.5)[1],
        page.image(138.5 / report.DPI, 3.9, rng.random((26, 26)).astype(np.float32), 78 / report.DPI, 78 / report.DPI,
                   cmap=report.ACTIVATION_CMAP, bare=True, norm=Normalize(0.0, 2.3))[1],
        # kinds the reports do not draw: uint8 grey, RGBA, float16 RGB, masked RGB
        page.image(5.0, 3.5, rng.integers(0, 256, (10, 10), dtype=np.uint8), 0.1, 0.1)[1],
        page.image(5.5, 3.5, rng.random((10, 10, 4)).astype(np.float32), 0.1, 0.1)[1],
        page.image(6.0, 3.5, rng.random((10, 10, 3)).astype(np.float16), 0.2, 0.2)[1],
        page.image(6.5, 3.5, np.ma.masked_array(rng.random((10, 10, 3)), rng.random((10, 10, 3)) < 0.2), 0.2, 0.2)[1]]
    upright = np.ones((12, 9), np.float32)
    upright[0] = 0.0  # a black top row
    with matplotlib.rc_context({"image.origin": "lower"}):  # a notebook's setting: report tiles keep row 0 on top
        page.image(4.4, 3.6, upright, 36 / report.DPI, 48 / report.DPI)
    resampled = []  # the images drawn by matplotlib's resampling
    monkeypatch.setattr(BboxImage, "make_image", lambda image, *args, **kwargs: resampled.append(image) or
                        make_image(image, *args, **kwargs))
    page.fig.canvas.draw()
    fast = np.asarray(page.fig.canvas.buffer_rgba()).copy()
    assert all(any(image is shown for shown in resampled) for image in special)
    assert len(resampled) <= len(special) + 6  # most of the others were indexed
    top, left = round(3.6 * report.DPI), round(4.4 * report.DPI)
    assert (fast[top + 1, left + 1:left + 35, :3] == 0).all() and (fast[top + 6, left + 1:left + 35, :3] == 255).all()
    FigureCanvasAgg(page.fig).draw()
    assert np.array_equal(fast, np.asarray(page.fig.canvas.buffer_rgba()))


def test_values_under_tiles_keep_their_trailing_zeros_as_the_site_writes_them():
    """Three significant digits with the zeros kept (JavaScript's toPrecision(3), the site's form): 12.0 beside
    12.6, not "12"; no dangling point on whole numbers; fewer digits only where the room is too narrow."""
    from introspect.report import format_value

    assert [format_value(v) for v in (12.0, 12.6, 120.0, 3.4, 0.5, 12345.0)] == \
        ["12.0", "12.6", "120", "3.40", "0.500", "1.23e+04"]
    assert format_value(float("nan")) == "n/a"
    assert len(format_value(3.4, width_inches=0.1)) < len("3.40")
