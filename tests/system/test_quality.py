"""Cheap guards of the class-visualization quality bars (one seed; the full table is benchmarks/quality.py).
Judges are the zoo's independent classifiers (tests/assets/zoo), never used during optimization."""
from pathlib import Path

import pytest
import torch

from introspect import class_scores, load_checkpoint, load_model, visualize_classes
from introspect.data import load_dataset
from introspect.quality import Manifold, bright_share, frame_brightness, realism, total_variation
from helpers import zoo_model

JUDGE = Path(__file__).resolve().parents[1] / "assets" / "mnist-judge.pt"


@pytest.fixture(scope="module")
def default_classes(shipped_mnist):
    return visualize_classes(shipped_mnist.model, shipped_mnist.spec)


def test_own_model_is_sure_of_every_class(default_classes):
    assert default_classes.probabilities.min() >= 0.99


def test_independent_classifier_recognizes_every_digit(default_classes):
    judge = load_checkpoint(JUDGE)
    assert judge.spec.architecture == "lenet"  # another architecture, never used during optimization
    probabilities = torch.softmax(class_scores(judge.model, judge.spec, default_classes.images), 1)
    picked = probabilities.gather(1, torch.tensor(default_classes.labels).view(-1, 1)).squeeze(1)
    assert picked.min() >= 0.9, picked


def test_statistics_like_real_digits(default_classes):
    real = load_dataset("mnist", "train").pixels()
    stats = realism(default_classes.images, real)
    assert 0.7 <= stats.tv_ratio <= 1.5
    assert 0.5 <= stats.bright_ratio <= 2.0
    corners = default_classes.images[:, :, :4, :4]
    assert corners.mean() < 0.1  # dark background


def _named(judge_name: str, result) -> tuple[int, int]:
    """(named correctly with p >= 0.9, named correctly) of ``result``'s images by a zoo judge."""
    judge = zoo_model(judge_name)
    probabilities = torch.softmax(class_scores(judge.model, judge.spec, result.images), 1)
    labels = torch.tensor(result.labels)
    right = probabilities.argmax(1) == labels
    sure = probabilities.gather(1, labels.view(-1, 1)).squeeze(1) >= 0.9
    return int((right & sure).sum()), int(right.sum())


def _per_class_ratio(statistic, result, real, labels) -> torch.Tensor:
    return statistic(result.images) / torch.stack([statistic(real[labels == c]).mean() for c in result.labels])


def test_mnist_bars_seed_0(default_classes):
    """Both zoo judges name every digit with p >= 0.9; the frame stays dark; strokes like real digits, near
    the data's manifold (the #13 bars, on one seed)."""
    assert _named("mnist-judge-vgg", default_classes) == (10, 10)
    assert _named("mnist-judge-mlp", default_classes) == (10, 10)
    assert frame_brightness(default_classes.images).max() <= 0.02  # real digits: 0.003
    test = load_dataset("mnist", "test")
    real, labels = test.pixels(), test.labels
    tv = _per_class_ratio(total_variation, default_classes, real, labels)
    bright = _per_class_ratio(bright_share, default_classes, real, labels)
    assert 0.7 <= tv.min() and tv.max() <= 1.3, tv
    assert 0.7 <= bright.min() and bright.max() <= 1.4, bright
    manifold = Manifold.fit(load_dataset("mnist", "train").pixels())
    assert _per_class_ratio(manifold.residual, default_classes, real, labels).max() <= 2


def test_fashion_mnist_bars_seed_0():
    """Items, not textures: each judge names >= 9 of 10 with p >= 0.9 (shirts pass for T-shirts even when
    real), the 3-pixel frame is at most twice as bright as real items', and the images stay near the
    data's manifold."""
    loaded = load_model("fashion-mnist")
    result = visualize_classes(loaded.model, loaded.spec)
    assert _named("fashion-mnist-judge-vgg", result)[0] >= 9
    assert _named("fashion-mnist-judge-mlp", result)[0] >= 9
    test = load_dataset("fashion-mnist", "test")
    real = test.pixels()
    assert frame_brightness(result.images).max() <= 2 * frame_brightness(real).mean()
    manifold = Manifold.fit(load_dataset("fashion-mnist", "train").pixels())
    assert _per_class_ratio(manifold.residual, result, real, test.labels).max() <= 2
