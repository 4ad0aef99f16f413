"""The per-step terms with written-out gradients: the same values as their tensor-op versions, and gradients that
gradcheck confirms (float64), on images, 1-D signals, black images and masked classes."""
import pytest
import torch
import torch.nn.functional as F

from introspect import gradients
from introspect.outputs import log_probability
from introspect.quality import ink_level
from introspect.quality import total_variation as tv


def _images(*shape, seed=0, scale=1.0):
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale)


@pytest.mark.parametrize("shape", [(3, 2, 5, 6), (2, 1, 1, 9), (2, 1, 7, 1), (2, 3, 1, 1), (2, 4, 5)])
def test_total_variation_matches_its_tensor_ops_and_gradcheck(shape):
    images = _images(*shape, seed=1)
    assert torch.equal(gradients.total_variation(images.float(), 1.5), -1.5 * tv(images.float(), reduction="mean"))
    assert torch.autograd.gradcheck(lambda x: gradients.total_variation(x, 1.5), (images.requires_grad_(),))


def test_total_variation_gradient_equals_autograd_of_the_tensor_ops():
    images = _images(4, 1, 28, 28, seed=2).float().requires_grad_()
    (fused,) = torch.autograd.grad(gradients.total_variation(images, 15.0).sum(), images)
    (plain,) = torch.autograd.grad((-15.0 * tv(images, reduction="mean")).sum(), images)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-7)


def _plain_ink(images):
    return -50.0 * (ink_level(images) - 0.8).clamp(max=0).pow(2)


@pytest.mark.parametrize("scale", [1.0, 0.2])  # full strength (no shortfall), faint (a shortfall)
def test_ink_shortfall_matches_its_tensor_ops_and_gradcheck(scale):
    images = _images(3, 1, 6, 6, seed=3, scale=scale)
    assert torch.equal(gradients.ink_shortfall(images.float(), 0.8, 50.0), _plain_ink(images.float()))
    assert torch.autograd.gradcheck(lambda x: gradients.ink_shortfall(x, 0.8, 50.0), (images.requires_grad_(),))


def test_ink_shortfall_of_a_black_image_is_finite_as_before():
    """sum(x^2) / sum(x) has no derivative at a black image (0/0): both versions give 0 there, not NaN."""
    black = torch.zeros(2, 1, 4, 4, requires_grad=True)
    (fused,) = torch.autograd.grad(gradients.ink_shortfall(black, 0.8, 50.0).sum(), black)
    (plain,) = torch.autograd.grad(_plain_ink(black).sum(), black)
    assert torch.equal(fused, plain) and torch.equal(gradients.ink_shortfall(black, 0.8, 50.0), _plain_ink(black))


def test_ink_shortfall_gradient_raises_a_faint_image():
    faint = _images(2, 1, 8, 8, seed=4, scale=0.3).float().requires_grad_()
    (gradient,) = torch.autograd.grad(gradients.ink_shortfall(faint, 0.9, 1.0).sum(), faint)
    brightest = faint.detach().flatten(1).argmax(1)
    assert (gradient.flatten(1).gather(1, brightest[:, None]) > 0).all()  # brighter ink is better


def test_confidence_matches_its_tensor_ops_and_gradcheck():
    scores = torch.randn(4, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    picked = torch.tensor([[0], [5], [2], [2]])
    plain = (scores.gather(1, picked) + 10.0 * log_probability(scores, picked, None)).squeeze(1)
    assert torch.equal(gradients.confidence(scores, picked, 10.0), plain)
    assert torch.autograd.gradcheck(lambda s: gradients.confidence(s, picked, 10.0), (scores.requires_grad_(),))


def test_confidence_treats_another_class_s_non_finite_score_as_absent():
    scores = torch.tensor([[2.0, float("-inf"), 0.5], [1.0, float("nan"), float("inf")]], requires_grad=True)
    picked = torch.tensor([[0], [0]])
    values = gradients.confidence(scores, picked, 10.0)
    expected = torch.stack([2.0 + 10 * F.log_softmax(torch.tensor([2.0, 0.5]), 0)[0], torch.tensor(1.0)])
    torch.testing.assert_close(values.detach(), expected)
    (gradient,) = torch.autograd.grad(values.sum(), scores)
    assert torch.isfinite(gradient).all() and (gradient[:, 1] == 0).all() and gradient[1, 2] == 0
    assert gradient[1, 0] == 1.0  # the only present class: probability 1, so only the score's own gradient


def test_confidence_under_autocast_gives_the_dtypes_of_its_tensor_ops():
    scores = torch.randn(2, 5, dtype=torch.bfloat16, requires_grad=True)
    picked = torch.tensor([[1], [3]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        values = gradients.confidence(scores, picked, 10.0)
        plain = (scores.gather(1, picked) + 10.0 * log_probability(scores, picked, None)).squeeze(1)
    assert values.dtype == plain.dtype and torch.equal(values, plain)
    (gradient,) = torch.autograd.grad(values.float().sum(), scores)
    assert gradient.dtype == torch.bfloat16 and torch.isfinite(gradient).all()


def test_ink_shortfall_at_the_floor_takes_the_gradient_of_its_tensor_ops():
    """A pixel sum exactly at the floor (1e-12): clamp passes no gradient there, so neither does the sum's term."""
    images = torch.zeros(1, 1, 1, 3, dtype=torch.float64)
    images[0, 0, 0, 0] = 1e-12
    fused_input, plain_input = images.clone().requires_grad_(), images.clone().requires_grad_()
    (fused,) = torch.autograd.grad(gradients.ink_shortfall(fused_input, 0.8, 50.0).sum(), fused_input)
    (plain,) = torch.autograd.grad(_plain_ink(plain_input).sum(), plain_input)
    torch.testing.assert_close(fused, plain)


def test_confidence_of_a_non_finite_picked_score_takes_the_gradient_of_its_tensor_ops():
    scores = torch.tensor([[float("inf"), 1.0, 2.0], [float("nan"), 0.0, 1.0], [0.5, 1.0, 2.0]], requires_grad=True)
    picked = torch.tensor([[0], [0], [0]])
    (fused,) = torch.autograd.grad(gradients.confidence(scores, picked, 10.0).sum(), scores)
    (plain,) = torch.autograd.grad((scores.gather(1, picked) + 10.0 * log_probability(scores, picked, None)).sum(),
                                   scores)
    torch.testing.assert_close(fused, plain)
    assert fused[0, 0] == 1.0  # only the score's own term: it is absent from the log-probability


@pytest.mark.parametrize("term", [lambda x: gradients.total_variation(x, 1.0), lambda x: gradients.ink_shortfall(x, 0.8, 1.0),
                                  lambda x: gradients.confidence(x.flatten(1), torch.tensor([[0], [1]]), 1.0)])
def test_a_second_derivative_is_refused_not_wrong(term):
    images = _images(2, 1, 3, 3, seed=6, scale=0.2).requires_grad_()
    (first,) = torch.autograd.grad(term(images).sum(), images, create_graph=True)
    with pytest.raises(RuntimeError):
        first.sum().backward()
