"""What the explorer computes, against values worked out by hand on a two-layer model small enough to follow.

The model: x (two pixels) -> fc1 = W1 x -> relu -> fc2 = W2 relu(fc1) (the logits), with
W1 = [[1, -1], [-1, 2]], W2 = [[1, 1], [2, -1]], no biases, no normalization. On the four images
    x0 = (0.5, 0.2)  x1 = (0.1, 0.4)  x2 = (0.9, 0.1)  x3 = (0.2, 0.3)
fc1 is (0.3, -0.1), (-0.3, 0.7), (0.8, -0.7), (-0.1, 0.4); after the relu h = (0.3, 0), (0, 0.7), (0.8, 0),
(0, 0.4); the logits W2 h are (0.3, 0.6), (0.7, -0.7), (0.8, 1.6), (0.4, -0.4).
"""
import math

import pytest
import torch
from torch import nn

from introspect import explore
from introspect.channels import HISTOGRAM_BINS, HISTOGRAM_EDGES
from introspect.models import ModelSpec
from introspect.models.registry import LoadedModel

PIXELS = torch.tensor([[0.5, 0.2], [0.1, 0.4], [0.9, 0.1], [0.2, 0.3]]).view(4, 1, 1, 2)
LABELS = torch.tensor([1, 0, 0, 0])


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 2.0]]))
            self.fc2.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, -1.0]]))

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class Images:
    """The little a dataset needs to be for explore: pixels by index, labels, a length."""

    labels = LABELS

    def __len__(self) -> int:
        return len(PIXELS)

    def pixels(self, index) -> torch.Tensor:
        return PIXELS[index].clone()


@pytest.fixture
def loaded() -> LoadedModel:
    spec = ModelSpec(name="two", architecture="two-layers", input_shape=(1, 1, 2), mean=(0.0,), std=(1.0,),
                     logits_layer="fc2", class_names=("a", "b"), activations={"fc1": "relu"})
    return LoadedModel(TwoLayers(), spec, "test", None)


def log_bin(value: float) -> int:
    """The histogram bin of a value by its definition: 0 for <= 0, then four bins per decade from 1e-4."""
    return 0 if value <= 0 else 2 + math.floor((math.log10(value) + 4) * 4)


def test_the_bins_are_those_of_the_channels_histogram():
    assert HISTOGRAM_BINS == 35 and [log_bin(v) for v in (0.0, -1.0, 0.3, 0.4, 0.7, 0.8)] == [0, 0, 15, 16, 17, 17]
    assert HISTOGRAM_EDGES[13] <= 0.3 < HISTOGRAM_EDGES[14]  # bin 15 is [edge 13, edge 14)
    counts = explore.channel_histograms(torch.tensor([[0.3, 0.0], [0.0, 0.7], [0.8, 0.0], [0.0, 0.4]]))
    expected = torch.zeros(2, HISTOGRAM_BINS, dtype=torch.int64)
    expected[0, 0], expected[0, 15], expected[0, 17] = 2, 1, 1
    expected[1, 0], expected[1, 16], expected[1, 17] = 2, 1, 1
    assert torch.equal(counts, expected)


def test_forward_gives_layers_and_logits_with_gradients(loaded):
    outputs, logits = explore.forward(loaded, PIXELS.clone(), ["fc1"], grad=True)
    assert torch.allclose(outputs["fc1"], torch.tensor([[0.3, -0.1], [-0.3, 0.7], [0.8, -0.7], [-0.1, 0.4]]))
    assert torch.allclose(logits, torch.tensor([[0.3, 0.6], [0.7, -0.7], [0.8, 1.6], [0.4, -0.4]]))
    gradient, = torch.autograd.grad(logits[:, 1].sum(), outputs["fc1"])  # W2[1] where the relu is open
    assert torch.allclose(gradient, torch.tensor([[2.0, 0.0], [0.0, -1.0], [2.0, 0.0], [0.0, -1.0]]))
    assert all(p.requires_grad for p in loaded.model.parameters())  # frozen only during the pass


def test_compute_layers(loaded, device):
    loaded.model.to(device)  # explore --device: the model there, the images and results on the CPU
    examples = {"fc1": torch.tensor([[2, 0], [1, 3]]).numpy(),  # the two highest of h0 (0.8, 0.3) and h1 (0.7, 0.4)
                "fc2": torch.tensor([[2, 1], [2, 0]]).numpy()}  # the two highest logits of each class
    found = explore.compute_layers(loaded, Images(), ["fc1", "fc2"], examples, {"fc1": [0, 1], "fc2": [0, 1]}, False)
    fc1, fc2 = found["fc1"], found["fc2"]
    assert fc1["hist"][0, [0, 15, 17]].tolist() == [2, 1, 1] and int(fc1["hist"][0].sum()) == 4
    assert fc1["hist"][1, [0, 16, 17]].tolist() == [2, 1, 1]
    assert fc2["hist"][0, [log_bin(v) for v in (0.3, 0.4, 0.7)]].tolist() == [1, 1, 2]  # 0.7 and 0.8 share a bin
    assert fc2["hist"][1, 0] == 2  # the negative logits
    assert fc1["low"].tolist() == [0.0, 0.0] and torch.allclose(fc1["high"], torch.tensor([0.8, 0.7]))
    assert fc1["active"].tolist() == [0.5, 0.5] and fc2["active"].tolist() == [1.0, 0.5]
    assert torch.allclose(fc1["maps"].float(), torch.tensor([[0.8, 0.3], [0.7, 0.4]]), atol=1e-3)
    # inputs: fc2 channel j, mean over its top examples of h_i * W2[j, i]
    #   channel 0 on x2, x1: mean h = (0.4, 0.35) times (1, 1); channel 1 on x2, x0: mean h = (0.55, 0) times (2, -1)
    assert torch.allclose(fc2["inputs"], torch.tensor([[0.4, 0.35], [1.1, 0.0]]))
    # outputs: channel c of fc1, mean over its top examples of h_c * W2[class, c]:
    #   channel 0 (x2, x0): mean h0 = 0.55 times (1, 2); channel 1 (x1, x3): mean h1 = 0.55 times (1, -1)
    assert torch.allclose(fc1["outputs"], torch.tensor([[0.55, 1.1], [0.55, -0.55]]))
    # fc2 is the logits: each unit raises its own class by its mean value on its top examples
    assert torch.allclose(fc2["outputs"], torch.tensor([[0.75, 0.0], [0.0, 1.1]]))
    assert all(value.device.type == "cpu" for layer in found.values() for value in layer.values())


def test_compute_classes(loaded, monkeypatch, device):
    loaded.model.to(device)
    monkeypatch.setattr(explore, "CLASS_TOP", 2)
    found = explore.compute_classes(loaded, Images(), ["fc1"])
    # predictions: x0 -> b, x1 -> a, x2 -> b, x3 -> a; labels b, a, a, a
    assert found["confusion"].tolist() == [[2, 1], [0, 1]]
    assert found["top"].tolist() == [[2, 1], [2, 0]]
    assert torch.allclose(found["top_scores"], torch.tensor([[0.8, 0.7], [1.6, 0.6]]))
    # per class, mean over its top images of h_i * W2[class, i]: a on x2, x1; b on x2, x0
    assert torch.allclose(found["channels"]["fc1"], torch.tensor([[0.4, 0.35], [1.1, 0.0]]))
    assert found["channels"]["fc1"].device.type == found["confusion"].device.type == "cpu"
