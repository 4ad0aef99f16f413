"""The channels quality target on the shipped model (about a minute: marked slow; run with -m slow)."""
import pytest
import torch

from introspect.channels import dataset_examples, visualize_channels
from introspect.data import load_dataset


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["conv1", "conv2", "fc1"])
def test_live_channels_beat_the_best_real_image(shipped_mnist, layer):
    model, spec = shipped_mnist.model, shipped_mnist.spec
    examples = dataset_examples(model, spec, layer, load_dataset("mnist", "train"))
    result = visualize_channels(model, spec, layer, examples=examples)
    live = ~result.dead
    share = float((result.ratio[live] >= 1.0).float().mean())
    assert share >= 0.95, (layer, share, torch.nonzero(result.ratio < 1).flatten().tolist())
