"""Library behaviour as the command line shows it: its flags (--image/--dataset/--images with --index and
--frame, --images for channels, --resume/--trust, --logits-layer/--logits-output, --size), its one-line
errors and exit codes, its notes, and that a command draws what the library draws. The library's own
behaviour is tested by calling it, in tests/lib."""
import json
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

import introspect.data as data
from helpers import digit
from introspect.activations import load_image
from introspect.channel_runs import part_path
from introspect.classes import visualize_classes
from introspect.errors import UserError
from introspect.models import MetaOverrides, load_model
from introspect_cli.main import main


# activations: the input flags and their errors

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


def test_activations_with_visualizations_saves_them(tmp_path):
    """--with-visualizations: each layer's strongest channels (by mean activation as shown, above 0), optimized,
    go into activations.npz as saved (uint8, with their layers and channels) and run.json (with the steps)."""
    out = tmp_path / "run"
    argv = ["activations", "--dataset", "mnist", "--index", "3", "--layer", "conv2,fc2", "--with-visualizations",
            "--top", "2", "--steps", "3", "--out", str(out)]
    assert main(argv) == 0
    data = np.load(out / "activations.npz")
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["steps_done"] == 3 and record["not_visualized"] == []
    shown = {"conv2": np.maximum(data["conv2"], 0).mean((1, 2)), "fc2": data["fc2"]}  # conv2 after its ReLU
    assert {layer: v["channels"] for layer, v in record["visualizations"].items()} == {
        layer: [int(c) for c in np.argsort(-values)[:2] if values[c] > 0] for layer, values in shown.items()}
    assert all(v["steps_done"] == 3 for v in record["visualizations"].values())
    layers, channels = data["visualized_layers"].tolist(), data["visualized_channels"].tolist()
    assert list(zip(layers, channels)) == [(layer, c) for layer, v in record["visualizations"].items()
                                           for c in v["channels"]]
    images = data["visualized_images"]
    assert images.dtype == np.uint8 and images.shape == (len(channels), 1, 28, 28) and images.std() > 0


def test_animated_gif_needs_a_frame(tmp_path, capsys):
    seven, one = digit(7), digit(1)
    Image.fromarray(seven).save(tmp_path / "anim.gif", save_all=True, append_images=[Image.fromarray(one)], duration=100)
    gif, out = str(tmp_path / "anim.gif"), tmp_path / "r"
    assert main(["activations", "--image", gif, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "has 2 frames" in err and "--frame N (0-1)" in err
    assert not out.exists()
    assert main(["activations", "--image", gif, "--frame", "5", "--out", str(out)]) == 2
    assert "--frame 5 is out of range" in capsys.readouterr().err and not out.exists()
    assert main(["activations", "--dataset", "mnist", "--index", "0", "--frame", "1", "--out", str(out)]) == 2
    assert "--frame goes with --image" in capsys.readouterr().err and not out.exists()
    assert main(["activations", "--image", gif, "--frame", "1", "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out / "activations.npz")["input"][0], one / 255, atol=1e-6)
    record = json.loads((out / "run.json").read_text())
    assert "frame 1 of 2" in record["input"]["conversion"] and record["prediction"]["name"] == "1"


def test_activations_of_one_of_your_own_pictures(tmp_path, capsys):
    """--images DIR --index N: the picture of that index (sorted by path), unreadable files skipped; the run says
    which file it was."""
    import json
    import shutil
    from pathlib import Path

    from PIL import Image

    from introspect_cli.main import main

    (tmp_path / "pics" / "seven").mkdir(parents=True)
    (tmp_path / "pics" / "zzz").mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "examples" / "seven.png", tmp_path / "pics" / "seven" / "a.png")
    (tmp_path / "pics" / "zzz" / "broken.png").write_text("not a picture")
    Image.new("L", (28, 28)).save(tmp_path / "pics" / "zzz" / "black.png")
    assert main(["activations", "--images", "pics", "--index", "0", "--out", "a", "--quiet"]) == 0
    record = json.loads((tmp_path / "a" / "run.json").read_text())
    assert record["prediction"]["class"] == 7 and "1 unreadable skipped" in record["input"]["source"]
    assert main(["activations", "--images", "pics", "--index", "1", "--out", "c", "--quiet"]) == 0
    assert "#1 (zzz/black.png, label zzz" in json.loads((tmp_path / "c" / "run.json").read_text())["input"]["source"]
    assert main(["activations", "--images", "pics", "--index", "2", "--out", "b"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["activations", "--images", "pics", "--image", "x.png", "--out", "b"]) == 2

def test_a_drawing_on_transparency_and_a_blank_or_tiny_picture_are_said(tmp_path, capsys):
    """A white stroke on a transparent background was composited onto white, then inverted: an all-black input, and a
    prediction with exit 0. It is composited onto black now; a uniform or much enlarged input gets a warning; a
    folder's picture records its conversion steps as an --image does."""
    import json

    from PIL import Image, ImageDraw

    from introspect_cli.main import main

    for name, ink in (("white", 255), ("black", 0)):
        picture = Image.new("RGBA", (28, 28), (0, 0, 0, 0))
        ImageDraw.Draw(picture).line((14, 4, 14, 24), fill=(ink, ink, ink, 255), width=3)
        picture.save(tmp_path / f"{name}.png")
        assert main(["activations", "--image", f"{name}.png", "--layer", "fc2", "--out", name]) == 0
        assert "warning" not in capsys.readouterr().err
        arrays = np.load(tmp_path / name / "activations.npz")
        assert float(arrays["input"].max()) == 1.0 and float(arrays["input"].min()) == 0.0  # the stroke, on black
    Image.new("L", (3, 3), 0).save(tmp_path / "tiny.png")
    assert main(["activations", "--image", "tiny.png", "--layer", "fc2", "--out", "tiny"]) == 0
    err = capsys.readouterr().err
    assert "warning: the input is uniform after conversion" in err and "enlarged 9.33x" in err
    (tmp_path / "pics" / "a").mkdir(parents=True)
    Image.new("RGB", (56, 56), (250, 250, 250)).save(tmp_path / "pics" / "a" / "light.png")
    assert main(["activations", "--images", "pics", "--index", "0", "--layer", "fc2", "--out", "folder", "--quiet"]) == 0
    conversion = json.loads((tmp_path / "folder" / "run.json").read_text())["input"]["conversion"]
    assert conversion[0] == "read 56×56 RGB" and any(step.startswith("inverted") for step in conversion)


# channels: layer and channel errors


def test_cli_unknown_layer_names_closest(capsys):
    assert main(["channels", "--layer", "conv3"]) == 2
    err = capsys.readouterr().err
    assert "closest: conv2" in err and "introspect layers" in err and len(err.strip().splitlines()) == 1


def test_cli_channel_out_of_range(capsys):
    assert main(["channels", "--layer", "conv1", "--channels", "0-40"]) == 2
    assert "channels 0-31" in capsys.readouterr().err

# channels and classes with --images: the run record and the library's pictures


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


def test_data_gives_the_library_the_pictures_the_cli_draws_with_it(shipped_mnist, tmp_path):
    """One prior-from-data policy (params.prior_for): visualize_classes(data=...) draws byte for byte what
    `introspect classes --images DIR` draws."""
    import numpy as np
    from PIL import Image

    from introspect import CLASSES_DEFAULTS
    from introspect.data import load_image_folder
    from introspect.encoding import to_uint8
    from introspect_cli.main import main

    generator = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "pictures" / label).mkdir(parents=True)
        for i in range(6):
            pixels = (generator.random((28, 28)) ** 3 * 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "pictures" / label / f"{i}.png")
    out = tmp_path / "run"
    assert main(["classes", "--classes", "3,8", "--steps", "2", "--images", str(tmp_path / "pictures"),
                 "--out", str(out), "--quiet"]) == 0
    data = load_image_folder(tmp_path / "pictures", shipped_mnist.spec)
    result = visualize_classes(shipped_mnist.model, shipped_mnist.spec, [3, 8], CLASSES_DEFAULTS.replace(steps=2),
                               data=data)
    with np.load(out / "images.npz") as arrays:
        assert np.array_equal(arrays["images"], to_uint8(result.images))
    plain = visualize_classes(shipped_mnist.model, shipped_mnist.spec, [3, 8], CLASSES_DEFAULTS.replace(steps=2))
    assert not np.array_equal(to_uint8(plain.images), to_uint8(result.images))  # the data's prior did apply

# channels --resume of a model that loads code


NET = textwrap.dedent("""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(1, 4, 3)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))
""")


def test_resuming_a_run_whose_model_loads_code_needs_trust(tmp_path, capsys, monkeypatch):
    """A complete run keeps nothing to resume (its "wrote" line names every file left) and --resume refuses it;
    a run stopped after its first chunk resumes, its model loading code, only with --trust."""
    import introspect.channel_runs as runs
    from introspect_cli.main import main

    (tmp_path / "net.py").write_text(NET)
    argv = ["channels", "--model", "net.py:Net", "--input-shape", "1,8,8", "--layer", "conv", "--steps", "1",
            "--batch-size", "2"]
    assert main([*argv, "--out", "run"]) == 0
    wrote = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote "))
    assert sorted(wrote.split(": ", 1)[1].split(", ")) == sorted(p.name for p in (tmp_path / "run").iterdir())
    assert main(["channels", "--resume", "run"]) == 2
    assert "is complete: there is nothing to resume" in capsys.readouterr().err

    def stop(rank, item):  # Ctrl-C once the first chunk is saved
        if item == 0:
            raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(runs, "fault_after", stop)
        assert main([*argv, "--out", "stopped", "--quiet"]) != 0
    assert part_path(tmp_path / "stopped", 0).exists() and not part_path(tmp_path / "stopped", 1).exists()
    assert main(["channels", "--resume", "stopped"]) == 2
    err = capsys.readouterr().err
    assert "loads code" in err and "net.py is imported" in err and "--trust" in err
    assert not (tmp_path / "stopped" / "run.json").exists()
    assert main(["channels", "--resume", "stopped", "--trust", "--quiet"]) == 0
    assert json.loads((tmp_path / "stopped" / "run.json").read_text())["status"] == "complete"
    assert not (tmp_path / "stopped" / "manifest.json").exists() and not (tmp_path / "stopped" / "parts").exists()

# models whose output is not one logits tensor, TorchScript, missing metadata


def test_tuple_output_model_needs_no_logits_for_layers_channels_activations(heads, tmp_path, capsys):
    model = ["--model", f"{heads}:Heads", "--size", "16"]
    assert main(["layers", *model]) == 0
    assert "logits: unknown" in capsys.readouterr().out
    assert main(["channels", *model, "--layer", "body.0", "--steps", "2", "--out", "ch"]) == 0
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 30, 30)).save(image)
    assert main(["activations", *model, "--image", str(image), "--out", "act"]) == 0
    assert json.loads((tmp_path / "act" / "run.json").read_text())["prediction"] is None
    assert main(["classes", *model]) == 2
    assert "logits are unknown" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_tuple_output_logits_by_layer_or_by_item(heads, tmp_path, capsys):
    model = ["--model", f"{heads}:Heads", "--size", "16", "--steps", "8"]
    assert main(["classes", *model, "--logits-layer", "classify", "--out", "by-layer"]) == 0
    record = json.loads((tmp_path / "by-layer" / "run.json").read_text())
    assert [image["class"] for image in record["images"]] == [0, 1, 2]
    assert "softmax" not in capsys.readouterr().err
    assert main(["classes", *model, "--logits-output", "2", "--out", "by-item"]) == 0
    # fx sees torch.softmax(self.classify(x)): the objective works on classify, before the softmax (issue #20)
    assert "softmax of layer classify's output" in capsys.readouterr().err
    assert main(["classes", *model, "--logits-output", "7"]) == 2
    assert "not in the model's output" in capsys.readouterr().err




def test_torchscript_classes_only(small_net_file, tmp_path, capsys):
    model = load_model(f"{small_net_file}:SmallNet", meta=MetaOverrides(size=28)).model
    torch.jit.script(model).save(str(tmp_path / "scripted.pt"))
    out = tmp_path / "run"
    assert main(["classes", "--model", str(tmp_path / "scripted.pt"), "--input-shape", "1,28,28", "--steps", "2",
                 "--out", str(out)]) == 0
    assert (out / "report.png").exists()
    assert main(["channels", "--model", str(tmp_path / "scripted.pt"), "--input-shape", "1,28,28",
                 "--layer", "block2.0"]) == 2
    assert "TorchScript" in capsys.readouterr().err


def test_missing_metadata_is_one_clear_error(small_net_file, capsys):
    assert main(["layers", "--model", f"{small_net_file}:SmallNet"]) == 2
    err = capsys.readouterr().err
    assert "--size N" in err and len(err.strip().splitlines()) == 1


def test_softmax_output_is_seen_and_its_input_used(small_net_file, capsys):
    assert main(["layers", "--model", f"{small_net_file}:SoftNet", "--size", "28"]) == 0
    err = capsys.readouterr().err
    assert "the model's output is softmax of layer" in err and "before the softmax" in err


