import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import digit, hook_count
from introspect.activations import ImageInput, inspect_image, load_image
from introspect.models import ModelSpec


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


def test_16bit_png_reads_like_the_8bit_one(tmp_path, shipped_mnist):
    model, spec = shipped_mnist.model, shipped_mnist.spec
    seven = digit(7)
    Image.fromarray(seven).save(tmp_path / "8.png")
    Image.fromarray(seven.astype(np.uint16) * 257).save(tmp_path / "16.png")
    eight, sixteen = load_image(tmp_path / "8.png", spec), load_image(tmp_path / "16.png", spec)
    assert sixteen.conversion == ["read 28×28 I;16", "16-bit values scaled by 1/65535"]
    torch.testing.assert_close(sixteen.pixels, eight.pixels, atol=1 / 255, rtol=0)
    assert inspect_image(model, spec, sixteen, []).predicted == inspect_image(model, spec, eight, []).predicted == 7


def test_16bit_image_is_resized_in_float_and_replicated_for_rgb(tmp_path, tiny_spec):
    ramp = np.tile(np.arange(56, dtype=np.uint16) * 50, (56, 1))  # every value below 256: nothing left in 8 bits
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    image = load_image(tmp_path / "ramp.png", dataclasses.replace(tiny_spec, input_shape=(3, 28, 28), mean=(0.1307,) * 3, std=(0.3081,) * 3))
    assert image.pixels.shape == (3, 28, 28)
    torch.testing.assert_close(image.pixels, image.pixels[:1].expand(3, -1, -1))
    expected = (2 * torch.arange(1, 27) + 0.5) * 50 / 65535  # bilinear halving of a linear ramp, away from the edges
    torch.testing.assert_close(image.pixels[0, :, 1:-1], expected.expand(28, 26), atol=1e-6, rtol=0)
    assert image.conversion[-2:] == ["resized 56×56 → 28×28 (bilinear)", "grayscale replicated to 3 channels"]


@pytest.mark.parametrize("scale", [1, 255])
def test_float_tiff_in_unit_or_byte_range(tmp_path, tiny_spec, scale):
    seven = digit(7)
    Image.fromarray(seven).save(tmp_path / "8.png")
    Image.fromarray(seven.astype(np.float32) / 255 * scale).save(tmp_path / "f.tif")
    image = load_image(tmp_path / "f.tif", tiny_spec)
    assert image.conversion == ["read 28×28 F", f"float values taken as [0, {scale}]"]
    torch.testing.assert_close(image.pixels, load_image(tmp_path / "8.png", tiny_spec).pixels, atol=1e-6, rtol=0)


def test_values_outside_the_range_are_clipped_and_said(tmp_path, tiny_spec):
    array = np.zeros((28, 28), dtype=np.float32)
    array[10:18, 10:18] = 300
    array[0, 0] = -5
    Image.fromarray(array).save(tmp_path / "f.tif")
    image = load_image(tmp_path / "f.tif", tiny_spec)
    assert image.conversion[1:] == ["float values taken as [0, 255]", "values outside [0, 1] clipped"]
    assert image.pixels.min() == 0 and image.pixels.max() == 1 and image.pixels[0, 12, 12] == 1


@pytest.mark.parametrize("orientation, turns", [(6, 1), (8, -1)])
def test_exif_orientation_is_applied(tmp_path, tiny_spec, orientation, turns):
    seven = digit(7)[:, 2:]  # 26 wide, 28 high
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation: how the stored pixels must be turned to be upright
    Image.fromarray(np.rot90(seven, turns).copy()).save(tmp_path / "phone.png", exif=exif)
    image = load_image(tmp_path / "phone.png", dataclasses.replace(tiny_spec, input_shape=(1, 28, 26)))
    torch.testing.assert_close(image.pixels[0], torch.from_numpy(seven).float() / 255)
    assert image.conversion == ["read 28×26 L", f"turned upright (EXIF orientation {orientation})"]


def test_a_conv_is_shown_where_it_is_measured_after_its_batchnorm():
    """conv → BatchNorm → ReLU: the maps are relu(bn(conv)), and the report says so, not "relu(conv)"."""
    from matplotlib.text import Text

    from introspect.models.sources import measuring_fields
    from introspect.report import activations_figures

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    with torch.no_grad():
        model[1].running_mean.fill_(5.0)  # BatchNorm shifts every map: conv and bn outputs differ
    spec = ModelSpec(name="cbr", architecture="none", input_shape=(1, 8, 8), mean=(0.0,), std=(1.0,),
                     logits_layer="4", class_names=tuple("abc"), **measuring_fields(model))
    pixels = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0))
    result = inspect_image(model.eval(), spec, ImageInput(pixels, "test"), ["0", "4"])
    with torch.no_grad():
        torch.testing.assert_close(result.shown("0"), model[:3](pixels.unsqueeze(0))[0])
    assert result.measured_at == {"0": "0 → 1 → 2", "4": "4 (raw output)"}
    texts = [t.get_text() for page in activations_figures(result, model_name="m") for t in page.findobj(Text)]
    assert any(t.startswith("0 → 1 → 2: 4 channels") for t in texts)
    assert any(t.startswith("4: 3 units") for t in texts) and not any(t.startswith("relu(0)") for t in texts)


def test_a_layer_whose_output_is_a_tuple_is_refused_as_such():
    """Its first part, the LSTM's (1, 16, 6) output with its batch dimension, was drawn as one 16 x 6 channel."""
    from helpers import recurrent
    from introspect.errors import UserError

    model, spec = recurrent()
    image = ImageInput(torch.rand(1, 1, 16), "noise")
    with pytest.raises(UserError, match="layer 'lstm' returns a tuple of 2 .*not one tensor"):
        inspect_image(model, spec, image, ["lstm"])
    assert hook_count(model) == 0
    assert inspect_image(model, spec, image, ["conv", "fc"]).outputs["fc"].shape == (3,)


class _PositionTable(nn.Module):
    """A bias table from a fixed grid, not from the input (Swin V2's cpb_mlp), beside a conv that sees the image."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("grid", torch.linspace(-1, 1, 10).view(1, 5, 2))
        self.table, self.conv, self.fc = nn.Linear(2, 3), nn.Conv2d(3, 3, 1), nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)) + self.table(self.grid).mean(1))


def test_a_layer_that_does_not_depend_on_the_input_is_shown_as_it_is():
    """Only the saliency needs a gradient: `introspect activations --model torchvision:swin_v2_t` (every layer by
    default, its cpb_mlp tables among them) failed with "layer 'features.1.0.attn.cpb_mlp.0' does not depend on
    the input images" (exit 2); before that check it showed them."""
    model = _PositionTable().eval()
    spec = ModelSpec(name="table", architecture="none", input_shape=(3, 2, 2), mean=(0.0,) * 3, std=(1.0,) * 3,
                     logits_layer="", class_names=("a", "b"))
    pixels = torch.rand(3, 2, 2, generator=torch.Generator().manual_seed(0))
    result = inspect_image(model, spec, ImageInput(pixels, "test"), ["table", "conv"])
    with torch.no_grad():
        torch.testing.assert_close(result.outputs["table"], model.table(model.grid)[0])
    assert result.saliency.abs().sum() > 0 and hook_count(model) == 0
    assert all(p.requires_grad for p in model.parameters())


def test_a_big_picture_is_read_without_a_stray_warning(tmp_path, monkeypatch):
    """PIL warns of pictures past its decompression-bomb size (refusing those past twice it): one under that is read
    quietly, its size in the conversion notes."""
    import warnings

    import numpy as np
    from PIL import Image

    from introspect.models import load_model
    from introspect.pictures import load_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a 40x40 picture is then "big": 1,600 pixels
    Image.fromarray(np.full((40, 40), 128, np.uint8)).save(tmp_path / "big.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_image(tmp_path / "big.png", load_model("mnist").spec)
    assert not caught and any("40×40" in note for note in loaded.conversion)
