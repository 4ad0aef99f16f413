"""Channel report pages never collide: no two texts overlap, no text leaves the figure, pages stay under 4,000 px."""
import numpy as np
import pytest
import torch
from matplotlib.text import Text

from introspect.channels import CHANNELS_DEFAULTS, HISTOGRAM_BINS, ChannelsResult, ExampleStats
from introspect.report import MAX_PAGE_PX, channels_figures

LONG = "features.denseblock4.denselayer16.conv2"


def make_result(channels: int, with_examples: bool, layer: str = LONG, size: int = 32
                ) -> tuple[ChannelsResult, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(channels)
    k = 5
    examples = None
    if with_examples:
        peak = torch.rand(channels, generator=generator) - 0.1  # some dead
        examples = ExampleStats(
            layer=layer, activation="relu", neuron=False,
            top_indices=torch.randint(0, 50, (channels, k), generator=generator),
            top_values=torch.rand(channels, k, generator=generator) * 1000 - 1,
            max_value=torch.rand(channels, generator=generator) * 3, peak=peak,
            active=(torch.rand(channels, generator=generator) * 2.5).long(),  # of 50 images: some rarely active
            histogram=torch.zeros(channels, HISTOGRAM_BINS, dtype=torch.int64),
            dataset="a-dataset-with-a-long-name", split="train", source="test", count=50)
    result = ChannelsResult(
        layer=layer, channels=list(range(channels)), images=torch.rand(channels, 3, size, size, generator=generator),
        activations=torch.randn(channels, generator=generator) * 1e4, activation="relu", neuron=False, diverse=1,
        config=CHANNELS_DEFAULTS, renders=[], examples=examples, spatial=True)
    data = (torch.randint(0, 255, (50, 3, size, size), dtype=torch.uint8, generator=generator) if with_examples
            else None)
    return result, data


def text_boxes(fig) -> list:
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("with_examples", [False, True])
@pytest.mark.parametrize("channels", [1, 8, 24, 64, 512])
def test_channel_pages_have_no_colliding_text(channels, with_examples):
    result, data = make_result(channels, with_examples)
    figures = channels_figures(result, data, model_name="torchvision:densenet121 (RANDOM WEIGHTS)")
    for fig in figures:
        fig.canvas.draw()
        width, height = fig.bbox.width, fig.bbox.height
        assert height <= MAX_PAGE_PX + 1
        boxes = text_boxes(fig)
        corners = np.array([[b.x0, b.y0, b.x1, b.y1] for _, b in boxes])
        assert (corners[:, 0] >= 0).all() and (corners[:, 1] >= 0).all(), "text leaves the figure"
        assert (corners[:, 2] <= width).all() and (corners[:, 3] <= height).all(), "text leaves the figure"
        x0, y0, x1, y1 = (corners[:, i] for i in range(4))
        overlap = ((x0[:, None] < x1[None, :]) & (x0[None, :] < x1[:, None])
                   & (y0[:, None] < y1[None, :]) & (y0[None, :] < y1[:, None]))
        np.fill_diagonal(overlap, False)
        pairs = np.argwhere(overlap)
        assert len(pairs) == 0, f"{channels} channels: {boxes[pairs[0][0]][0]!r} overlaps {boxes[pairs[0][1]][0]!r}"
    if channels == 512:
        assert len(figures) > 1  # taller than 4,000 px: split


def test_every_channel_labelled_once_across_pages():
    result, data = make_result(64, True)
    figures = channels_figures(result, data, max_height_px=1500)
    tiles = [t for fig in figures for t, _ in text_boxes(fig) if t.startswith(f"{LONG}:")]
    assert len(figures) > 1 and len(tiles) == 64


def test_logit_units_are_named_by_their_classes():
    result, _ = make_result(3, False, layer="fc2")
    figure, = channels_figures(result, unit_names=["zero", "one", "two"])
    texts = " ".join(t for t, _ in text_boxes(figure))
    assert "fc2:0 (zero)" in texts and "fc2:2 (two)" in texts


def test_the_overview_splits_past_4000_px():
    from introspect.report import index_figures

    pages = index_figures([make_result(2, True, f"layer{i}.block.conv")[0] for i in range(60)], "m")
    assert len(pages) > 1
    assert all(page.get_figheight() * page.dpi <= MAX_PAGE_PX for page in pages)


def test_the_activations_report_splits_past_4000_px():
    from introspect.activations import ActivationsResult, ImageInput
    from introspect.report import activations_figures

    outputs = {f"stage{i}.block{j}.conv": torch.rand(16, 6, 6) for i in range(4) for j in range(6)}
    result = ActivationsResult(input=ImageInput(torch.rand(3, 24, 24), "noise"), outputs=outputs,
                               activations={name: "relu" for name in outputs}, probabilities=torch.tensor([0.3, 0.7]),
                               predicted=1, saliency=torch.rand(3, 24, 24), class_names=["a", "b"])
    pages = activations_figures(result, model_name="m")
    assert len(pages) >= 3 and all(page.get_figheight() * page.dpi <= MAX_PAGE_PX for page in pages)
    assert sum(len(page.sections) for page in pages) == len(outputs) + 1  # every layer once, the header once


def test_an_activations_report_says_where_a_signal_stopped_a_layers_visualizations():
    from introspect.activations import ActivationsResult, ImageInput, Visualized
    from introspect.report import activations_figures

    outputs = {"conv": torch.rand(8, 6, 6), "later": torch.rand(8, 6, 6)}
    result = ActivationsResult(input=ImageInput(torch.rand(1, 24, 24), "noise"), outputs=outputs,
                               activations={name: "relu" for name in outputs}, probabilities=torch.tensor([0.3, 0.7]),
                               predicted=1, saliency=torch.rand(1, 24, 24), class_names=["a", "b"])
    shown = {"conv": Visualized([3, 5], torch.rand(2, 1, 24, 24), 7, 50, 7),
             "later": Visualized([1], torch.rand(1, 1, 24, 24), 50, 50)}
    texts = [t.get_text() for page in activations_figures(result, shown, model_name="m") for t in page.findobj(Text)]
    strips = [t for t in texts if t.startswith("what the")]
    assert strips == ["what the 2 strongest respond to (optimized images; interrupted: stopped at step 7 of 50), "
                      "each numbered under it",
                      "what the 1 strongest respond to (optimized images), each numbered under it"]
    assert {"#3", "#5", "#1"} <= set(texts) and not any(t.startswith("optimized images: none") for t in texts)
    del shown["later"]  # a signal came before its optimization
    pages = activations_figures(result, shown, model_name="m", not_visualized=["later"])
    texts = [t.get_text() for page in pages for t in page.findobj(Text)]
    assert texts.count("optimized images: none (interrupted before this layer's)") == 1


def test_one_by_one_maps_are_drawn_as_bars_not_a_one_position_strip():
    """A (C, 1, 1) output (a late conv at a small input size, a squeeze-excitation) is C values, one per channel."""
    from introspect.activations import ActivationsResult, ImageInput
    from introspect.report import activations_figures

    outputs = {"features.12.0": torch.rand(40, 1, 1), "signal.conv": torch.rand(6, 1, 20)}
    result = ActivationsResult(input=ImageInput(torch.rand(3, 24, 24), "noise"), outputs=outputs,
                               activations={name: "relu" for name in outputs}, probabilities=torch.tensor([0.3, 0.7]),
                               predicted=1, saliency=torch.rand(3, 24, 24), class_names=["a", "b"])
    texts = [t.get_text() for page in activations_figures(result, model_name="m") for t in page.findobj(Text)]
    assert any(t.startswith("relu(features.12.0): 40 channels (1×1 maps)") for t in texts)
    assert not any("along 1 positions" in t for t in texts)
    assert any(t.startswith("relu(signal.conv): 6 channels along 20 positions") for t in texts)  # a 1-D signal: a strip


@pytest.mark.parametrize("scale", [1e-10, 1.0, 1e7])
def test_no_axis_text_lands_on_an_activations_section_title(scale):
    """Untrained deep layers give values near 1e-10: no axis offset ("1e-10") may be drawn over a section's title."""
    from introspect.activations import ActivationsResult, ImageInput
    from introspect.report import activations_figures

    generator = torch.Generator().manual_seed(0)
    outputs = {"conv": torch.randn(12, 5, 5, generator=generator) * scale,
               "pooled": torch.randn(40, 1, 1, generator=generator) * scale,
               "signal": torch.randn(6, 1, 30, generator=generator) * scale,
               "fc": torch.randn(3, generator=generator) * scale}
    result = ActivationsResult(input=ImageInput(torch.rand(3, 24, 24), "noise"), outputs=outputs,
                               activations={name: "identity" for name in outputs}, probabilities=torch.tensor([0.3, 0.7]),
                               predicted=1, saliency=torch.rand(3, 24, 24), class_names=["a", "b"])
    titles = 0
    for fig in activations_figures(result, model_name="m"):
        fig.canvas.draw()
        boxes = text_boxes(fig)
        for title, box in boxes:
            if title.split(":")[0] not in outputs:
                continue
            titles += 1
            hits = [text for text, other in boxes if other is not box and other.overlaps(box)]
            assert not hits, f"{hits[0]!r} is drawn over {title!r}"
    assert titles == len(outputs)


def test_large_images_are_shrunk_on_the_pages_and_the_header_says_so():
    """A 224-pixel model's tiles are drawn at 112 pixels (each the mean of 2x2), so a wide layer's pages are a
    quarter of the pixels to draw and encode; 32-pixel ones are drawn as they were (4x nearest)."""
    from matplotlib.image import BboxImage

    from introspect.report import shrink_factor, shrunk

    for size, expected, said in ((224, 112, True), (32, 128, False)):
        result, data = make_result(4, True, size=size)
        figure, = channels_figures(result, data)
        mosaics = [a for a in figure.findobj(BboxImage)]
        assert len(mosaics) == 4
        drawn = mosaics[0].get_window_extent(figure.canvas.get_renderer())
        assert round(drawn.height) == expected
        header = "\n".join(t.get_text() for t in figure.findobj(Text))
        assert ("images shown at 1/2 of their 224x224 pixels" in header) == said
    image = torch.rand(3, 224, 224)
    torch.testing.assert_close(shrunk(image, 2), image.view(3, 112, 2, 112, 2).mean((2, 4)))
    # by the short side: a long strip stays an image (one row would be drawn as a waveform)
    assert [shrink_factor(h, w) for h, w in ((224, 224), (40, 8000), (2, 300), (1, 4096), (336, 224))] == [2, 1, 1, 1, 2]
