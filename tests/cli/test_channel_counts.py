"""Models whose input has other than 1 or 3 channels: 2- and 4-channel images, a 2-channel 1-D signal. Every
command runs to the end, and the pictures show the channels as ``encoding.shown_channels`` says."""
import json
import textwrap

import numpy as np
import pytest
from PIL import Image

from introspect.encoding import shown_channels
from introspect_cli.main import main

MODELS = textwrap.dedent("""
    import torch.nn.functional as F
    from torch import nn

    class Image(nn.Module):
        def __init__(self, channels=4):
            super().__init__()
            self.conv1 = nn.Conv2d(channels, 6, 3, padding=1)
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            return self.fc(F.relu(self.conv1(x)).mean([2, 3]))

    class TwoChannels(Image):
        def __init__(self):
            super().__init__(2)

    class Signal(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv1d(2, 6, 5, padding=2)
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            return self.fc(F.relu(self.conv1(x)).mean(2))
""")


def test_shown_channels_keeps_grey_and_rgb_and_draws_others_as_rgb():
    image = np.arange(5 * 2 * 2, dtype=np.uint8).reshape(5, 2, 2)
    assert np.array_equal(shown_channels(image[:1]), image[:1])
    assert np.array_equal(shown_channels(image[:3]), image[:3])
    two = shown_channels(image[:2])
    assert two.shape == (3, 2, 2) and np.array_equal(two[:2], image[:2]) and not two[2].any()
    assert np.array_equal(shown_channels(image[:4]), image[:3]) and np.array_equal(shown_channels(image), image[:3])
    assert shown_channels(np.moveaxis(image[:2], 0, -1), axis=-1).shape == (2, 2, 3)


@pytest.mark.parametrize("command", ["classes", "channels"])
@pytest.mark.parametrize("model,shape", [("Image", "4,8,8"), ("TwoChannels", "2,8,8"), ("Signal", "2,32")])
def test_other_channel_counts_run_to_the_end(tmp_path, capsys, command, model, shape):
    (tmp_path / "nets.py").write_text(MODELS)
    out = tmp_path / "run"
    layer = ["--layer", "conv1"] if command == "channels" else []
    assert main([command, "--model", f"{tmp_path / 'nets.py'}:{model}", "--input-shape", shape, "--steps", "2",
                 *layer, "--out", str(out)]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    channels = int(shape.split(",")[0])
    images = np.load(out / "images.npz")["images"]
    assert images.shape[1] == channels  # every channel kept
    assert (f"the model takes {channels}-channel images" in err) == (model != "Signal")
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    report = np.asarray(Image.open(out / "report.png"))
    assert report.ndim == 3 and report.shape[2] == 3  # an opaque page, not a 4th channel read as alpha
    pictures = sorted((out / "site" / "img").rglob("*.png"))
    assert pictures and all(Image.open(p).mode in ("L", "RGB", "RGBA") for p in pictures)
    if model == "Signal" and command == "classes":  # the explorer draws a waveform (a line per channel), no strip
        assert all(Image.open(p).size == (600, 160) for p in pictures if p.name.startswith("class-"))


def test_the_layers_table_shows_a_signals_maps_as_channels_along_it(tmp_path, capsys):
    """A Conv1d's output was listed as "6×1×32", "a map, spatial mean": how it is kept inside, not what it is."""
    (tmp_path / "nets.py").write_text(MODELS)
    assert main(["layers", "--model", f"{tmp_path / 'nets.py'}:Signal", "--input-shape", "2,32"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if " conv1 " in line)
    assert "6×32" in row and "a signal, mean along it" in row and "6×1×32" not in row
