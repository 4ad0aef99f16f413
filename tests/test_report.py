"""Report text is plain text: "$" in class, layer or model names never goes through mathtext."""
import io
from collections import OrderedDict

import pytest
import torch
from matplotlib.text import Text
from torch import nn

from introspect.activations import ImageInput, inspect_image
from introspect.classes import visualize_classes
from introspect.channels import CHANNELS_DEFAULTS, visualize_channels
from introspect.engine import RenderConfig
from introspect.models import ModelSpec
from introspect.report import activations_figure, channels_figure, figure, index_figure
from introspect_cli.main import main

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


def test_cli_classes_with_dollar_class_names_writes_the_report(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES + tuple(str(i) for i in range(4, 10))) + "\n")
    out = tmp_path / "run"
    assert main(["classes", "--class-names", str(names), "--steps", "2", "--snapshots", "1", "--out", str(out)]) == 0
    assert (out / "report.png").stat().st_size > 0


def test_every_feature_map_tile_carries_its_channel_number(dollar_model):
    model, spec = dollar_model
    inspected = inspect_image(model, spec, ImageInput(torch.rand(1, 8, 8), "x"), ["$c_$", "fc"])
    fig = activations_figure(inspected, highlight=1, logits_layer="fc")
    texts = [t.get_text() for t in fig.findobj(Text)]
    assert "0" in texts and "1" in texts
