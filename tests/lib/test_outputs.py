"""Models whose output is not one logits tensor: tuples, dicts, namedtuples, dataclasses, no logits at all;
installed-package classes; transformer token layers."""
import json
from collections import namedtuple
from dataclasses import dataclass

import pytest
import torch

from helpers import HEADS
from introspect.channels import CHANNELS_DEFAULTS, visualize_channels
from introspect.errors import UserError
from introspect.layers import describe_layers
from introspect.models import MetaOverrides, load_model
from introspect.outputs import describe, pick
from introspect.records import save_run

def test_pick_from_every_structure():
    t = torch.ones(1, 3)
    Out = namedtuple("Out", "aux logits")

    @dataclass
    class ModelOutput:
        loss: object
        logits: torch.Tensor

    assert pick(t, "") is t and pick((t * 0, t), "1") is t and pick({"logits": t}, "logits") is t
    assert pick(Out(t * 0, t), "logits") is t and pick(Out(t * 0, t), "1") is t
    assert pick(ModelOutput(None, t), "logits") is t
    with pytest.raises(KeyError, match="not in the model's output"):
        pick((t,), "4")
    with pytest.raises(KeyError, match="not a tensor"):
        pick(ModelOutput(None, t), "loss")
    assert describe((t, {"a": t})) == "a tuple of 2 (0: (1, 3), 1: dict)"


def test_dict_output_by_key(heads):
    loaded = load_model(f"{heads}:Named", meta=MetaOverrides(size=12, logits_output="logits"))
    assert loaded.spec.num_classes == 5 and loaded.spec.logits == ":logits"
    with pytest.raises(UserError, match="'nope' is not in the model's output"):
        load_model(f"{heads}:Named", meta=MetaOverrides(size=12, logits_output="nope"))


def test_installed_package_class(heads, monkeypatch, tmp_path):
    package = tmp_path / "site" / "zoo_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(HEADS)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    loaded = load_model("zoo_pkg.nets:Named", meta=MetaOverrides(size=12, logits_output="logits"))
    assert loaded.source == "zoo_pkg.nets:Named" and loaded.spec.num_classes == 5
    with pytest.raises(UserError, match="cannot import 'no_such_pkg.nets'"):
        load_model("no_such_pkg.nets:Net", meta=MetaOverrides(size=12))


def test_token_layers_channel_is_a_unit_over_tokens(heads, tmp_path):
    loaded = load_model(f"{heads}:Tokens", meta=MetaOverrides(size=16))
    layers = {l.name: l for l in describe_layers(loaded.model, loaded.spec.input_shape)}
    assert layers["vit.encoder.layers.encoder_layer_0"].output_shape == (5, 8)  # 4 patches + class token
    assert layers["vit.encoder.layers.encoder_layer_0"].units == 8
    for neuron in (False, True):
        result = visualize_channels(loaded.model, loaded.spec, "vit.encoder.layers.encoder_layer_0",
                                    config=CHANNELS_DEFAULTS.replace(steps=6), neuron=neuron)
        out = save_run(result, tmp_path / f"t{int(neuron)}", loaded=loaded)
        record = json.loads((out / "run.json").read_text())["layers"][0]
        assert record["channels"] == list(range(8)) and record["reduction"] == ("centre" if neuron else "mean")
