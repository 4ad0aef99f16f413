"""PNG reports fit for print: at most 7.5 in wide, text at least 8 pt, never on the pixels, at least 4.5:1
contrast against what is behind it, and image tiles at least 4x a 28-pixel input's size at the saved DPI."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb
from matplotlib.image import AxesImage, BboxImage
from matplotlib.text import Text
from torch import nn

from introspect.activations import ImageInput, inspect_image
from introspect.channels import CHANNELS_DEFAULTS, HISTOGRAM_BINS, ExampleStats, visualize_channels
from introspect.classes import format_probability, visualize_classes
from introspect.engine import RenderConfig
from introspect.models import ModelSpec
from introspect.report import (DPI, channels_figures, figure, fit, index_figures, activations_figures,
                               flat_channels)

SIZE = 28


def model_and_spec(channels: int):
    torch.manual_seed(channels)
    model = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, channels, 3)), ("relu", nn.ReLU()),
                                       ("pool", nn.AdaptiveAvgPool2d(2)), ("flat", nn.Flatten()),
                                       ("fc", nn.Linear(channels * 4, 4))]))
    spec = ModelSpec(name="tiny", architecture="user", input_shape=(1, SIZE, SIZE), mean=(0.5,), std=(0.5,),
                     logits_layer="fc", class_names=("zero", "one", "two", "three"), activations={"conv": "relu"})
    return model.eval(), spec


def luminance(color) -> float:
    channel = np.array(to_rgb(color))
    linear = np.where(channel <= 0.03928, channel / 12.92, ((channel + 0.055) / 1.055) ** 2.4)
    return float(linear @ [0.2126, 0.7152, 0.0722])


def contrast(a, b) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def measure(fig) -> dict:
    """Checks one figure; returns the smallest text size, contrast and 28-px tile scale found."""
    assert fig.get_figwidth() <= 7.5 + 1e-9
    assert fig.dpi == DPI
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    image_axes = [ax for ax in fig.axes if ax.images]
    pictures = fig.findobj(BboxImage)  # pixels drawn straight on the figure
    boxes = [ax.get_window_extent(renderer) for ax in image_axes] + [p.get_window_extent(renderer) for p in pictures]
    sizes, contrasts, scales = [], [], []
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        assert "ratio nan" not in text.get_text()
        sizes.append(text.get_fontsize())
        assert text.get_fontsize() >= 8, text.get_text()
        extent = text.get_window_extent(renderer)
        for box in boxes:
            overlaps = (extent.x0 < box.x1 - 0.5 and box.x0 + 0.5 < extent.x1 and extent.y0 < box.y1 - 0.5
                        and box.y0 + 0.5 < extent.y1)
            assert not overlaps, f"{text.get_text()!r} is drawn over an image"
        patch = text.get_bbox_patch()
        owner = text.axes
        background = (patch.get_facecolor() if patch is not None else
                      owner.get_facecolor() if owner is not None and owner.bbox.overlaps(extent) and
                      owner.patch.get_visible() and extent.x0 > owner.bbox.x0 and extent.x1 < owner.bbox.x1
                      and extent.y0 > owner.bbox.y0 and extent.y1 < owner.bbox.y1 else fig.get_facecolor())
        ratio = contrast(text.get_color(), background)
        contrasts.append(ratio)
        assert ratio >= 4.5, f"{text.get_text()!r}: contrast {ratio:.2f}"
    drawn = [(image, box) for ax, box in zip(image_axes, boxes) for image in ax.images if isinstance(image, AxesImage)]
    drawn += list(zip(pictures, boxes[len(image_axes):]))
    for image, box in drawn:
        h, w = np.asarray(image.get_array()).shape[:2]
        if h == SIZE:  # input-sized tiles (mosaics are one input high)
            scales.append(min(box.height / h, box.width / w))
            assert box.height >= 4 * h - 1 and box.width >= 4 * w - 1, (box.height, box.width, h, w)
    return {"size": min(sizes), "contrast": min(contrasts), "scale": min(scales) if scales else None}


def with_examples(result, k: int = 5):
    """``result`` given real examples: 60 random 28-px images, some channels dead, some rarely active."""
    generator = torch.Generator().manual_seed(len(result.channels))
    n = len(result.channels)
    result.examples = ExampleStats(
        layer=result.layer, activation="relu", neuron=False,
        top_indices=torch.randint(0, 60, (n, k), generator=generator),
        top_values=torch.rand(n, k, generator=generator) * 1000,
        max_value=torch.rand(n, generator=generator) * 3, peak=torch.rand(n, generator=generator) - 0.1,
        active=(torch.rand(n, generator=generator) * 2.5).long(),
        histogram=torch.zeros(n, HISTOGRAM_BINS, dtype=torch.int64), dataset="mnist", split="train", source="test",
        count=60)
    return torch.randint(0, 255, (60, 1, SIZE, SIZE), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("channels", [1, 8, 64, 512])
def test_channel_reports_print(channels):
    model, spec = model_and_spec(channels)
    result = visualize_channels(model, spec, "conv", config=CHANNELS_DEFAULTS.replace(steps=2))
    pages = channels_figures(result, model_name="tiny (RANDOM WEIGHTS)")
    found = [measure(page) for page in pages]
    found += [measure(page) for page in index_figures([result], "tiny")]
    if channels in (8, 512):
        data = with_examples(result)
        found += [measure(page) for page in channels_figures(result, data, model_name="tiny")]
        found += [measure(page) for page in index_figures([result], "tiny")]
    assert min(f["size"] for f in found) >= 8 and min(f["contrast"] for f in found) >= 4.5
    assert min(f["scale"] for f in found if f["scale"]) >= 4 - 1e-6


def test_classes_and_activations_reports_print():
    model, spec = model_and_spec(8)
    classes = visualize_classes(model, spec, config=RenderConfig(steps=2, snapshots=(1,)))
    measure(figure(classes))
    inspected = inspect_image(model, spec, ImageInput(torch.rand(1, SIZE, SIZE), "noise"), ["conv", "fc"])
    for page in activations_figures(inspected, model_name="tiny", logits_layer="fc"):
        measure(page)
    texts = [t.get_text() for page in activations_figures(inspected, model_name="tiny") for t in page.findobj(Text)]
    assert "three" in texts  # the logits' bars are named by their classes, not numbered -0.5..3.5


def test_numbers_never_break_mid_number():
    assert "3.\n" not in fit("optimized 3.6 and 0.125", 0.9, 8)
    assert all(not line.endswith(".") for line in fit("ratio 2.53 · optimized 3.61", 0.5, 8).split("\n"))


def test_cli_and_tile_share_the_probability_format():
    assert format_probability(0.99996) == "p>0.999"


def test_flat_channels_say_they_saturate_and_rank_last():
    from matplotlib.text import Text as T

    model, spec = model_and_spec(8)
    result = visualize_channels(model, spec, "conv", config=CHANNELS_DEFAULTS.replace(steps=2))
    result.images[2] = 0.5  # uniform: no contrast
    result.activations[2] = result.activations.max() + 1  # the strongest, all the same
    assert flat_channels(result).tolist() == [i == 2 for i in range(8)]
    page, = channels_figures(result, model_name="tiny")
    texts = [t.get_text().replace("\n", " ") for t in page.findobj(T)]
    assert any(t.startswith("conv:2") and "saturates: prefers a uniform input" in t for t in texts)
    assert any("try neuron mode" in t for t in texts)
    index, = index_figures([result], "tiny")
    numbers = [t.get_text() for t in index.findobj(T) if t.get_text().startswith("#")]
    assert numbers[-1] == "#2"  # flat, ranked after every informative channel


def test_without_a_dataset_a_caption_does_not_repeat_the_blue_activation():
    """Without a dataset a channel's optimized activation is the blue number under its image; the caption under
    that names the channel (and says "not reached" or "saturates") without giving the number again."""
    from introspect.report import OPTIMIZED

    model, spec = model_and_spec(4)
    with torch.no_grad():
        model.conv.weight[1], model.conv.bias[1] = 0.0, -1.0  # never reached
    result = visualize_channels(model, spec, "conv", config=CHANNELS_DEFAULTS.replace(steps=2))
    result.images[2] = 0.5  # uniform: saturates
    page, = channels_figures(result, model_name="tiny")
    texts = page.findobj(Text)
    captions = [t.get_text().replace("\n", " ") for t in texts if t.get_text().startswith("conv:")]
    blue = [t.get_text() for t in texts if t.get_color() == OPTIMIZED]
    assert len(captions) == 4 and len(blue) == 4  # one optimized image each, its activation in blue
    assert captions[1] == "conv:1 · not reached" and captions[2].startswith("conv:2 saturates")
    assert not any("optimized" in c for c in captions), captions


def test_with_a_dataset_a_caption_gives_the_ratio_not_the_blue_activation():
    """With a dataset too, a channel's optimized activation (the best of its optimized images) is the blue number
    under its image, the same value: the caption gives its ratio, dead or rarely active verdict, not that again."""
    from introspect.report import OPTIMIZED

    model, spec = model_and_spec(8)
    result = visualize_channels(model, spec, "conv", config=CHANNELS_DEFAULTS.replace(steps=2))
    data = with_examples(result)
    page, = channels_figures(result, data, model_name="tiny")
    texts = page.findobj(Text)
    captions = [t.get_text().replace("\n", " ") for t in texts if t.get_text().startswith("conv:")]
    blue = [float(t.get_text()) for t in texts if t.get_color() == OPTIMIZED]
    np.testing.assert_allclose(blue, result.best.numpy(), rtol=5e-3, atol=1e-6)  # one image a channel: its best
    assert len(captions) == 8 and any(" · ratio " in c for c in captions) and any("dead" in c for c in captions)
    assert not any("optimized" in c for c in captions), captions


def test_the_report_and_the_site_call_the_same_channels_saturating(tmp_path):
    """One verdict (quality.saturates) for the report, from the result, and the site, from the saved bytes: a channel
    never reached keeps its flat start (not saturating), a constant one keeps it too (saturating), and an image
    whose contrast crosses the flat threshold only once rounded to 8 bits gets the same verdict in both."""
    from introspect.folders import Run
    from introspect.records import layer_record, to_uint8
    from introspect.site import _gather

    model, spec = model_and_spec(4)
    with torch.no_grad():
        model.conv.weight[1:] = 0
        model.conv.bias[1:3] = torch.tensor([-1.0, 1.0])  # 1: never reached; 2: constant, reached
        model.conv.weight[3], model.conv.bias[3] = 1.0, 0.0  # 3: reached from the start (brighter is stronger)
    result = visualize_channels(model, spec, "conv", config=CHANNELS_DEFAULTS.replace(steps=3))
    ramp = torch.linspace(-1, 1, SIZE * SIZE).view(1, SIZE, SIZE)
    result.images[3] = 0.5 + ramp / ramp.std(unbiased=False) * 0.01999  # just under FLAT_STD, just over once saved
    record = {"command_name": "channels", "model": {"name": "tiny"}, "diverse": 1, "neuron": False, "dataset": None,
              "layers": [layer_record(result)]}
    arrays = {"layers": np.array(["conv"] * 4), "images": to_uint8(result.images), "scores": result.activations.numpy()}
    site = _gather([Run(tmp_path / "run", record, arrays)], compute=False)
    report = flat_channels(result).tolist()
    assert report[1:3] == [False, True] and bool(result.not_reached[1]) and not bool(result.not_reached[3])
    assert [site.layers[0]["per"][c]["flat"] for c in range(4)] == report
    assert [entry["saturates"] for entry in record["layers"][0]["per_channel"]] == report  # read, not worked out again
    for entry in record["layers"][0]["per_channel"]:  # a run recorded before the verdict: judged from its saved bytes
        del entry["saturates"]
    older = _gather([Run(tmp_path / "older", record, arrays)], compute=False)
    assert [older.layers[0]["per"][c]["flat"] for c in range(4)] == report
    record["layers"][0]["per_channel"][0]["saturates"] = True  # one entry with it, the others without: the bytes
    mixed = _gather([Run(tmp_path / "mixed", record, arrays)], compute=False)
    assert [mixed.layers[0]["per"][c]["flat"] for c in range(4)] == report


def test_a_flat_image_that_never_activated_its_channel_is_not_called_saturating():
    """A channel the optimization never opened (untrained GoogLeNet's inception5b, few steps) keeps its grey start:
    "not reached", not "prefers a uniform input; try neuron mode"."""
    from matplotlib.text import Text as T

    model, spec = model_and_spec(8)
    result = visualize_channels(model, spec, "conv", config=CHANNELS_DEFAULTS.replace(steps=2))
    result.images[3] = 0.5  # still the grey start
    result.activations[3] = 0.0  # ReLU closed throughout
    assert not flat_channels(result)[3] and bool(result.not_reached[3])
    page, = channels_figures(result, model_name="tiny")
    texts = [t.get_text().replace("\n", " ") for t in page.findobj(T)]
    assert any(t.startswith("conv:3 · not reached") for t in texts)
    assert not any("saturate" in t for t in texts)


def test_activation_maps_are_drawn_without_an_axes_each():
    """A MobileNetV3's activations report built an axes per channel map (3,075 of them: 30 of its 42 s). The maps are
    drawn straight onto the page, the strongest framed in red, with one axes for the colour bar."""
    from introspect.activations import ActivationsResult
    from introspect.pictures import ImageInput
    from introspect.report import activations_figures

    maps = torch.rand(40, 6, 6)
    result = ActivationsResult(input=ImageInput(pixels=torch.rand(1, 8, 8), source="test", conversion=()),
                               outputs={"conv": maps}, activations={"conv": "relu"}, probabilities=torch.zeros(0),
                               predicted=None, saliency=torch.zeros(1, 8, 8), class_names=())
    figures = activations_figures(result)
    axes = sum(len(fig.axes) for fig in figures)
    frames = [a for fig in figures for a in fig.artists if type(a).__name__ == "Rectangle"]
    assert axes < 10 and len(frames) == 3  # the header's panels and one colour bar; the top 3 framed
    assert all(a.get_edgecolor()[:3] == (1.0, 0.0, 0.0) for a in frames)


def test_a_map_holding_nan_is_drawn_last_unframed_and_said_so():
    """A NaN map ranked first by its NaN mean, was framed in red as a strongest channel, and the colour scale took
    NaN limits."""
    from introspect.activations import ActivationsResult
    from introspect.pictures import ImageInput
    from introspect.report import activations_figures

    maps = torch.rand(6, 5, 5)
    maps[2, 0, 0] = float("nan")
    result = ActivationsResult(input=ImageInput(pixels=torch.rand(1, 8, 8), source="test", conversion=()),
                               outputs={"conv": maps}, activations={"conv": "relu"}, probabilities=torch.zeros(0),
                               predicted=None, saliency=torch.zeros(1, 8, 8), class_names=())
    (figure,) = activations_figures(result, highlight=6)
    texts = [t.get_text() for t in figure.texts]
    numbers = [t for t in texts if t.isdigit()]
    assert numbers[-1] == "2" and any("1 with NaN/inf, drawn blank and last" in t.replace("\n", " ") for t in texts)
    assert len([a for a in figure.artists if type(a).__name__ == "Rectangle"]) == 5  # every finite map, not map 2
