"""Models whose output is not one logits tensor: tuples, dicts, namedtuples, dataclasses, no logits at all;
installed-package classes; transformer token layers."""
import json
import textwrap
from collections import namedtuple
from dataclasses import dataclass

import pytest
import torch

from introspect.errors import UserError
from introspect.models import MetaOverrides, load_model
from introspect.outputs import describe, pick
from introspect_cli.main import main

HEADS = textwrap.dedent("""
    import torch
    from torch import nn

    class Heads(nn.Module):
        '''Like MTCNN's O-Net: (box, landmarks, softmax probabilities); the logits live in `classify`.'''
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.PReLU(8), nn.AdaptiveAvgPool2d(2), nn.Flatten())
            self.box, self.marks, self.classify = nn.Linear(32, 4), nn.Linear(32, 10), nn.Linear(32, 3)
        def forward(self, x):
            h = self.body(x)
            return self.box(h), self.marks(h), torch.softmax(self.classify(h), 1)

    class Named(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
        def forward(self, x):
            return {"features": x.mean((2, 3)), "logits": self.net(x)}

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            from torchvision.models import VisionTransformer
            self.vit = VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8,
                                         mlp_dim=16, num_classes=3)
        def forward(self, x):
            return self.vit(x)
""")


@pytest.fixture
def heads(tmp_path):
    (tmp_path / "heads.py").write_text(HEADS)
    return tmp_path / "heads.py"


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


def test_tuple_output_model_needs_no_logits_for_layers_channels_activations(heads, tmp_path, capsys):
    model = ["--model", f"{heads}:Heads", "--size", "16"]
    assert main(["layers", *model]) == 0
    assert "logits: unknown" in capsys.readouterr().out
    assert main(["channels", *model, "--layer", "body.0", "--steps", "2", "--out", "ch"]) == 0
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 30, 30)).save(image)
    assert main(["activations", *model, "--image", str(image), "--out", "act"]) == 0
    assert json.loads((tmp_path / "act" / "run.json").read_text())["prediction"] is None
    assert main(["classes", *model]) == 2
    assert "logits are unknown" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_tuple_output_logits_by_layer_or_by_item(heads, tmp_path, capsys):
    model = ["--model", f"{heads}:Heads", "--size", "16", "--steps", "8"]
    assert main(["classes", *model, "--logits-layer", "classify", "--out", "by-layer"]) == 0
    record = json.loads((tmp_path / "by-layer" / "run.json").read_text())
    assert [image["class"] for image in record["images"]] == [0, 1, 2]
    assert "softmax" not in capsys.readouterr().err
    assert main(["classes", *model, "--logits-output", "2", "--out", "by-item"]) == 0
    assert "looks like softmax probabilities" in capsys.readouterr().err  # the remedy is named
    assert main(["classes", *model, "--logits-output", "7"]) == 2
    assert "not in the model's output" in capsys.readouterr().err


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


def test_token_layers_channel_is_a_unit_over_tokens(heads, capsys):
    model = ["--model", f"{heads}:Tokens", "--size", "16"]
    assert main(["layers", *model, "--json"]) == 0
    layers = {l["name"]: l for l in json.loads(capsys.readouterr().out)["layers"]}
    assert layers["vit.encoder.layers.encoder_layer_0"]["output_shape"] == [5, 8]  # 4 patches + class token
    assert layers["vit.encoder.layers.encoder_layer_0"]["units"] == 8
    for extra in ([], ["--neuron"]):
        assert main(["channels", *model, "--layer", "vit.encoder.layers.encoder_layer_0", "--steps", "6",
                     "--out", f"t{len(extra)}", *extra]) == 0
        record = json.loads(open(f"t{len(extra)}/run.json").read())["layers"][0]
        assert record["channels"] == list(range(8)) and record["reduction"] == ("centre" if extra else "mean")
