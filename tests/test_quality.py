"""Cheap guards of the class-visualization quality targets (seconds): see benchmarks/classes_quality.py."""
from pathlib import Path

import pytest
import torch

from introspect import class_scores, load_checkpoint, visualize_classes
from introspect.data import load_dataset
from introspect.quality import realism

JUDGE = Path(__file__).parent / "assets" / "mnist-judge.pt"


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
