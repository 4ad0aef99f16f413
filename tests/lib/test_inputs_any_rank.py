"""Inputs of any rank (issue #21): 1-D signals (C, L) and (L,), one-row images, and no silent NaN."""
import math

import pytest
import torch
from torch import nn

from introspect.engine import RenderConfig, render
from introspect.models import ModelSpec
from introspect.normalize import Normalize
from introspect.objectives import Objective, class_logits, total_variation
from introspect.params import PixelImage, image_generators
from introspect.quality import total_variation as tv
from introspect.transforms import RandomAffine, TransformConfig


class Signal(nn.Module):
    """Takes (B, 1, 64) or, with ``flat``, (B, 64)."""

    def __init__(self, flat: bool = False) -> None:
        super().__init__()
        self.flat = flat
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv1d(1, 4, 5, stride=2)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)

    def forward(self, x):
        assert x.ndim == (2 if self.flat else 3), x.shape
        x = x[:, None] if self.flat else x
        return self.fc(torch.relu(self.conv(x)).mean(-1))


def spec_of(shape) -> ModelSpec:
    channels = shape[0] if len(shape) > 1 else 1
    return ModelSpec(name="signal", architecture="user", input_shape=shape, mean=(0.5,) * channels, std=(0.25,) * channels,
                     logits_layer="", class_names=("a", "b", "c"))


@pytest.mark.parametrize("shape,flat", [((1, 64), False), ((64,), True)])
def test_a_1d_model_runs_classes_with_defaults_and_no_nan(shape, flat):
    spec = spec_of(shape)
    assert spec.image_shape == (1, 1, 64) and not spec.is_image
    result = RenderConfig(steps=4, tv=0.5).render(Signal(flat), class_logits("", [0, 1, 2]), spec, [0, 1, 2])
    assert result.images.shape == (3, 1, 1, 64)
    assert torch.isfinite(result.values).all() and torch.isfinite(result.history).all()
    assert not result.stopped and result.failure() is None


def test_spec_shapes_and_normalize_reshape():
    assert spec_of((3, 8, 8)).is_image and spec_of((3, 8, 8)).image_shape == (3, 8, 8)
    with pytest.raises(ValueError, match="input_shape"):
        ModelSpec(name="x", architecture="user", input_shape=(1, 2, 3, 4), mean=(0.5,), std=(0.25,),
                  logits_layer=None, class_names=())
    pixels = torch.rand(2, 1, 1, 64)
    assert Normalize.of(spec_of((1, 64)))(pixels).shape == (2, 1, 64)
    assert Normalize.of(spec_of((64,)))(pixels).shape == (2, 64)


def test_total_variation_of_one_row_is_finite():
    row = torch.rand(2, 1, 1, 16)
    assert torch.isfinite(tv(row, reduction="mean")).all()
    assert torch.allclose(tv(row, reduction="mean"), (row[..., 1:] - row[..., :-1]).abs().flatten(1).mean(1))
    assert torch.isfinite(total_variation(1.0)({"<input>": row})).all()


def test_one_row_transforms_stay_on_the_row():
    """Jitter and scale along the row; no rotation (which would sample off it and darken the signal)."""
    images = torch.ones(4, 1, 1, 64)
    out = RandomAffine(TransformConfig(rotate=45.0, scale=0.0, jitter=0), image_generators(0, range(4), 1))(images)
    assert torch.allclose(out, images)  # no rotation, no shift: unchanged
    shifted = RandomAffine(TransformConfig(rotate=0.0, scale=0.0, jitter=4), image_generators(0, range(4), 1))(images)
    assert shifted.shape == images.shape and set(shifted.unique().tolist()) <= {0.0, 1.0}


def _nan_after(step: int) -> Objective:
    calls = {"n": 0}

    def fn(a):
        calls["n"] += 1
        value = a["<input>"].flatten(1).mean(1)
        return value * math.nan if calls["n"] >= step else value

    return Objective(fn, [], "explodes")


def test_nan_for_every_image_is_a_failure_naming_step_and_term():
    param = PixelImage((1, 4, 4), image_generators(0, range(2)))
    result = render(nn.Identity(), _nan_after(3), param, steps=40)
    assert result.failed and result.stopped == [0, 1]
    assert result.failed_at == {0: 3, 1: 3}
    assert result.steps_done < 40  # stopped at the next check instead of running on
    assert result.failed_terms == ("explodes",)
    message = str(result.failure())
    assert "step 3" in message and "explodes" in message and "lr" in message and "every image" in message


def test_nan_for_some_images_marks_only_them():
    def fn(a):
        values = a["<input>"].flatten(1).mean(1)
        return torch.where(torch.arange(len(values)) == 1, values * math.nan, values)

    param = PixelImage((1, 4, 4), image_generators(0, range(3)))
    result = render(nn.Identity(), Objective(fn, [], "half"), param, steps=5)
    assert result.stopped == [1] and not result.failed and result.steps_done == 5
    assert result.failed_at == {1: 1} and "1 of 3 images" in str(result.failure())


def test_a_conv1d_layer_has_its_channels_as_units_not_its_positions():
    from introspect.channels import visualize_channels
    from introspect.layers import describe_layers

    spec = spec_of((1, 64))
    info = next(i for i in describe_layers(Signal(), spec.input_shape) if i.name == "conv")
    assert info.output_shape == (4, 1, 30) and info.units == 4 and info.channel == "a map, spatial mean"
    result = visualize_channels(Signal(), spec, "conv", config=RenderConfig(steps=3))
    assert result.channels == [0, 1, 2, 3] and torch.isfinite(result.activations).all()


def test_a_signal_is_read_from_npy_and_wav_and_refused_with_one_line(tmp_path):
    """activations' --image: a .npy array of the input's shape, or a .wav file for a signal; never inverted."""
    import wave

    import numpy as np

    from introspect.errors import UserError
    from introspect.pictures import load_image

    spec = spec_of((1, 64))
    wave_values = 0.5 + 0.4 * np.sin(np.arange(64) / 3)
    np.save(tmp_path / "x.npy", wave_values[None].astype(np.float32))
    np.save(tmp_path / "batch.npy", wave_values[None, None])
    for name in ("x.npy", "batch.npy"):
        read = load_image(tmp_path / name, spec)
        assert read.pixels.shape == (1, 1, 64) and torch.allclose(read.pixels.flatten().double(),
                                                                  torch.from_numpy(wave_values), atol=1e-6)
    with wave.open(str(tmp_path / "x.wav"), "wb") as sound:
        sound.setnchannels(2), sound.setsampwidth(2), sound.setframerate(8000)
        samples = np.round((wave_values[:40] * 2 - 1) * 32767).astype("<i2")
        sound.writeframes(np.stack([samples, samples], 1).tobytes())
    read = load_image(tmp_path / "x.wav", spec)
    assert read.pixels.shape == (1, 1, 64) and torch.allclose(read.pixels[0, 0, :40].double(),
                                                              torch.from_numpy(wave_values[:40]), atol=1e-4)
    assert float(read.pixels[0, 0, 40:].sub(0.5).abs().max()) == 0  # padded with silence
    assert any("mixed to one" in note for note in read.conversion)
    np.save(tmp_path / "wide.npy", np.zeros((2, 64), np.float32))
    np.save(tmp_path / "loud.npy", wave_values[None] * 4 - 2)
    for name, words in (("wide.npy", "shape (2, 64); the model takes (1, 64)"), ("loud.npy", "(w + 1) / 2")):
        with pytest.raises(UserError, match=None) as caught:
            load_image(tmp_path / name, spec)
        assert words in str(caught.value) and "\n" not in str(caught.value)
    from PIL import Image

    Image.new("L", (64, 1)).save(tmp_path / "row.png")
    with pytest.raises(UserError, match="takes a signal"):
        load_image(tmp_path / "row.png", spec)
    with pytest.raises(UserError, match="applies to pictures"):
        load_image(tmp_path / "x.npy", spec, invert="yes")
    np.save(tmp_path / "light.npy", np.full(64, 0.9, np.float32))  # a light "border" never inverts a signal
    assert torch.allclose(load_image(tmp_path / "light.npy", spec_of((64,)), invert="auto").pixels, torch.tensor(0.9))


class Poisoned(nn.Module):
    """Channel 1 of its input made NaN."""

    def forward(self, x):
        return torch.cat([x[:, :1], x[:, 1:2] * math.nan, x[:, 2:]], 1)


class HalfBroken(nn.Module):
    """A conv whose channel 1 is NaN: channel runs of it fail on that channel's images only."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Sequential(nn.Conv2d(1, 4, 3), Poisoned())
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def test_a_channels_summary_says_how_many_images_failed():
    from introspect.channels import CHANNELS_DEFAULTS, visualize_channels
    from introspect.records import layer_record
    from introspect_cli.commands.channels import summary_line

    spec = ModelSpec(name="half", architecture="user", input_shape=(1, 8, 8), mean=(0.5,), std=(0.25,),
                     logits_layer="fc", class_names=("a", "b"))
    model = HalfBroken().eval()
    result = visualize_channels(model, spec, "conv", [0, 1, 2, 3], CHANNELS_DEFAULTS.replace(steps=3))
    summary = result.summary()
    assert (summary.failed_images, summary.images) == (1, 4) and result.stopped == [1]
    assert summary_line(result).endswith("; 1 of 4 images failed (NaN/inf objective)")
    record = layer_record(result)
    assert record["failed_images"] == 1 and record["failed_channels"] == [1]
    healthy = visualize_channels(model, spec, "conv", [0, 2], CHANNELS_DEFAULTS.replace(steps=3))
    assert healthy.summary().failed_images == 0 and "failed" not in summary_line(healthy)


def test_an_elementwise_module_fed_a_signal_has_its_channels_as_units():
    """The ReLU after a Conv1d has the conv's 4 channels, each a one-row map (B, 4, 1, 60), in the layers table and
    hooked alone — not 60 "units" of 4 tokens; a ReLU after a Linear (a vector or tokens) stays as it is."""
    from introspect.hooks import HookRegistry
    from introspect.layers import describe_layers

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 4, 5), nn.ReLU()).eval()
    info = describe_layers(model, (1, 64))[1]
    assert (info.output_shape, info.units, info.channel) == ((4, 1, 60), 4, "a map, spatial mean")
    x = torch.randn(2, 1, 64)
    with HookRegistry(model, ["1"]) as hooks:
        recorded = hooks.run(x)["1"]
    torch.testing.assert_close(recorded, torch.relu(model[0](x)).unsqueeze(2))
    for shape in ((8,), (3, 8)):  # an MLP's (B, F) and a transformer's (B, T, D)
        mlp = nn.Sequential(nn.Linear(8, 6), nn.ReLU()).eval()
        assert [(i.output_shape, i.units) for i in describe_layers(mlp, shape)] == [((*shape[:-1], 6), 6)] * 2
        with HookRegistry(mlp, ["1"]) as hooks:
            assert hooks.run(torch.randn(2, *shape))["1"].shape == (2, *shape[:-1], 6)


def test_the_tone_model_lists_every_module_with_its_channels():
    """ToneCNN (zoo): every module but the Linear is a signal, its channels its units — the ReLUs and the Sequential
    holding them too — and hooked, a ReLU or the Sequential gives its channels as one-row maps."""
    from helpers import zoo_model

    from introspect.hooks import HookRegistry
    from introspect.layers import describe_layers

    loaded = zoo_model("tones")
    model = loaded.model.eval()
    units = {i.name: (i.output_shape, i.units) for i in describe_layers(model, loaded.spec.input_shape)}
    lengths = {"0": 512, "1": 512, "2": 256, "3": 256, "4": 256, "5": 128, "6": 128, "7": 128}
    expected = {f"features.{k}": ((16 if int(k) < 3 else 32, 1, n), 16 if int(k) < 3 else 32) for k, n in lengths.items()}
    assert units == {**expected, "features": ((32, 1, 128), 32), "pool": ((32, 1, 1), 32), "fc": ((12,), 12)}
    x = torch.rand(2, 1, 1024, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), HookRegistry(model, ["features.4", "features"]) as hooks:
        recorded = hooks.run(x)
    with torch.no_grad():
        direct = model.features[:5](x)
    assert recorded["features"].shape == (2, 32, 1, 128)
    torch.testing.assert_close(recorded["features.4"], direct.unsqueeze(2))
