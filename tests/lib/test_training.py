"""Training and evaluation: reproducible for a seed, on the device asked for, the model handed back on the CPU."""
import copy

import torch

from helpers import tiny_dataset
from introspect.training import evaluate, train


def _weights(model):
    return [p.detach().clone() for p in model.parameters()]


def test_training_is_reproducible_and_leaves_the_model_on_the_cpu(tiny_model, shipped_mnist, device):
    spec, data = shipped_mnist.spec, tiny_dataset(40)
    first, second = copy.deepcopy(tiny_model), copy.deepcopy(tiny_model)
    rng = torch.get_rng_state()
    history = train(first, spec, data, epochs=2, seed=3, batch_size=16, max_batches=2, device=device)
    train(second, spec, data, epochs=2, seed=3, batch_size=16, max_batches=2, device=device)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG left as it was
    assert len(history) == 2 and all(s.loss > 0 for s in history)
    assert all(p.device.type == "cpu" for p in first.parameters()) and not first.training
    assert all(torch.equal(a, b) for a, b in zip(_weights(first), _weights(second)))
    assert not all(torch.equal(a, b) for a, b in zip(_weights(first), _weights(tiny_model)))


def test_evaluation_on_a_device_leaves_the_callers_model_where_it_was(shipped_mnist, device):
    data = tiny_dataset(30)
    model = shipped_mnist.model
    before = _weights(model)
    result = evaluate(model, shipped_mnist.spec, data, batch_size=8, device=device)
    assert result.count == 30 and int(result.confusion.sum()) == 30
    assert result.accuracy == float(result.confusion.diag().sum()) / 30
    assert next(model.parameters()).device.type == "cpu"
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(model)))
    default = evaluate(model, shipped_mnist.spec, data, batch_size=8)  # the CPU, the model as it is
    assert (default.confusion - result.confusion).abs().sum() <= 2  # another device may flip a near tie


def test_a_model_that_does_not_run_on_one_image_is_evaluated_in_its_batches(tiny_spec):
    """The CPU batch is sized from a dry forward of one image; a model whose forward drops a batch of one
    (``.squeeze()``) ran on the library's batches of 500 and must still do: it keeps the largest batch."""
    from torch import nn

    class Squeezed(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc2 = nn.Linear(784, 10)

        def forward(self, x):
            return torch.log_softmax(self.fc2(x.flatten(1)).squeeze(), dim=1)

    result = evaluate(Squeezed(), tiny_spec, tiny_dataset(n=12))
    assert result.confusion.sum() == 12
