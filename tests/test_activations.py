import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import hook_count
from introspect.activations import ImageInput, inspect_image, load_image
from introspect.errors import UserError
from introspect.models import ModelSpec
from introspect_cli.main import main


def test_recorded_maps_equal_direct_forward(tiny_model, tiny_spec):
    pixels = torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(1))
    result = inspect_image(tiny_model, tiny_spec, ImageInput(pixels, "test"), ["conv1", "conv2", "fc1"])
    x = ((pixels - tiny_spec.mean[0]) / tiny_spec.std[0]).unsqueeze(0)
    with torch.no_grad():
        conv1 = tiny_model.conv1(x)
        conv2 = tiny_model.conv2(torch.relu(conv1))
    torch.testing.assert_close(result.outputs["conv1"], conv1[0])
    torch.testing.assert_close(result.outputs["conv2"], conv2[0])
    torch.testing.assert_close(result.shown("conv2"), torch.relu(conv2[0]))
    torch.testing.assert_close(result.probabilities, torch.exp(tiny_model.eval()(x))[0])
    assert hook_count(tiny_model) == 0


def test_saliency_of_linear_model_is_weights_over_std():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 4))
    spec = ModelSpec(name="lin", architecture="none", input_shape=(2, 3, 3), mean=(0.5, 0.2), std=(0.25, 0.5),
                     logits_layer="1", class_names=tuple("abcd"))
    pixels = torch.rand(2, 3, 3, generator=torch.Generator().manual_seed(0))
    result = inspect_image(model, spec, ImageInput(pixels, "test"), ["1"])
    weights = model[1].weight[result.predicted].detach().view(2, 3, 3)
    expected = weights / torch.tensor([0.25, 0.5]).view(2, 1, 1)
    torch.testing.assert_close(result.saliency, expected)
    torch.testing.assert_close(result.grad_times_input, expected * pixels)


def test_rgb_to_grayscale_resize_and_invert(tmp_path, tiny_spec):
    array = np.full((56, 84, 3), 255, dtype=np.uint8)  # white background, wider than tall
    array[20:36, 30:54] = (255, 0, 0)  # a red block: luma 0.299 * 255
    Image.fromarray(array).save(tmp_path / "red.png")
    image = load_image(tmp_path / "red.png", tiny_spec, invert="no")
    assert image.pixels.shape == (1, 28, 28)
    assert image.pixels[0, 0, 0] == pytest.approx(1.0)
    assert image.pixels[0, 14, 14] == pytest.approx(round(0.299 * 255) / 255, abs=0.01)
    assert any("grayscale" in note for note in image.conversion) and any("84×56 → 28×28" in n for n in image.conversion)
    inverted = load_image(tmp_path / "red.png", tiny_spec)  # auto: light border -> inverted
    torch.testing.assert_close(inverted.pixels, 1 - image.pixels)
    assert any("inverted" in note for note in inverted.conversion)


def test_grayscale_image_of_right_size_is_unchanged(tmp_path, tiny_spec):
    array = (np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)
    array[0, :] = array[-1, :] = array[:, 0] = array[:, -1] = 0  # dark border: no inversion
    Image.fromarray(array, mode="L").save(tmp_path / "g.png")
    image = load_image(tmp_path / "g.png", tiny_spec)
    torch.testing.assert_close(image.pixels[0], torch.from_numpy(array).float() / 255)
    assert image.conversion == ["read 28×28 L"]


def test_missing_and_unreadable_images(tmp_path, tiny_spec, capsys):
    with pytest.raises(UserError, match="does not exist"):
        load_image(tmp_path / "nope.png", tiny_spec)
    (tmp_path / "fake.png").write_text("not an image")
    assert main(["activations", "--image", str(tmp_path / "fake.png")]) == 2
    err = capsys.readouterr().err
    assert "is not an image" in err and "Traceback" not in err
    assert main(["activations", "--image", str(tmp_path / "nope.png")]) == 2
    assert not (tmp_path / "runs").exists()


def test_cli_dataset_index_end_to_end(tmp_path):
    out = tmp_path / "run"
    assert main(["activations", "--dataset", "mnist", "--index", "17", "--out", str(out)]) == 0
    data = np.load(out / "activations.npz")
    for key in ("conv1", "conv2", "fc1", "fc2", "input", "saliency", "probabilities"):
        assert key in data.files
    assert data["conv2"].shape == (64, 24, 24) and data["saliency"].shape == (1, 28, 28)
    record = json.loads((out / "run.json").read_text())
    assert "held-out #17" in record["input"]["source"]
    assert record["prediction"]["name"] == str(record["input"]["label"])  # the shipped model gets it right
    assert main(["activations", "--dataset", "mnist", "--index", "5000"]) == 2
