"""Models nobody here trained, with defaults and no wrappers: every command runs on each (fast subset;
the quality bars of the full matrix are the slow test at the end). The zoo is tests/zoo/models.py with the
checkpoints of tests/assets/zoo (trained by tests/zoo/train.py)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import zoo_model
from introspect_cli.main import main

ZOO = Path(__file__).resolve().parents[1] / "zoo" / "models.py"
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "zoo"
SEVEN = Path(__file__).resolve().parents[2] / "examples" / "seven.png"
MANIFEST = json.loads((ASSETS / "manifest.json").read_text())
#: name -> (a middle layer for channels, the logits flags)
CASES = {
    "seqcnn-closed": ("features.3", []),
    "multihead": (None, ["--logits-layer", "classify"]),
    "dictnet": (None, ["--logits-output", "logits"]),
    "tinyvit": ("vit.encoder.layers.encoder_layer_1", []),
}


def _model(name: str) -> list[str]:
    entry = MANIFEST[name]
    return ["--model", f"{ZOO}:{entry['class']}", "--checkpoint", str(ASSETS / f"{name}.pt"), "--size", "28",
            "--mean", str(entry["mean"][0]), "--std", str(entry["std"][0])]


@pytest.mark.parametrize("name", list(CASES))
def test_every_command_runs_with_defaults(name, tmp_path, capsys):
    layer, logits = CASES[name]
    model = _model(name)
    assert main(["layers", *model, "--json", "--quiet"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    layer = layer or next(l["name"] for l in layers if l["type"] in ("Conv2d", "Linear") and l["output_shape"])
    assert main(["classes", *model, *logits, "--steps", "3", "--out", "classes"]) == 0
    assert len(json.loads((tmp_path / "classes" / "run.json").read_text())["images"]) == 10
    assert main(["channels", *model, "--layer", layer, "--channels", "0-3", "--steps", "3", "--dataset",
                 MANIFEST[name]["dataset"], "--out", "channels"]) == 0
    assert main(["activations", *model, *logits, "--dataset", MANIFEST[name]["dataset"], "--index", "3",
                 "--out", "activations"]) == 0
    record = json.loads((tmp_path / "activations" / "run.json").read_text())
    assert (record["prediction"] is None) == (name in ("multihead", "dictnet") and not logits)


def test_every_command_on_the_sigmoid_and_map_models(tmp_path, capsys):
    """Issue #20: the multi-label sigmoid model shows sigmoid probabilities and works before its sigmoid; the
    fully-convolutional detector run at 4x its training size (112x112) gives exactly its 2 classes."""
    for name, size, layer, count in (("multilabel", "28", "features.3", 3), ("detector", "112", "features.3", 2)):
        model = [*_model(name), "--size", size]
        capsys.readouterr()
        assert main(["layers", *model, "--device", "cpu", "--json", "--quiet"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["output_kind"] == ("sigmoid logits" if name == "multilabel" else "logits")
        assert summary["logits"] == ("head" if name == "multilabel" else "")
        assert summary["logits_position"] == (None if name == "multilabel" else "mean")
        assert main(["classes", *model, "--steps", "3", "--out", f"{name}-classes"]) == 0
        out = capsys.readouterr().out
        record = json.loads((tmp_path / f"{name}-classes" / "run.json").read_text())
        assert len(record["images"]) == count
        if name == "multilabel":
            assert "lowest probability (sigmoid)" in out and record["output_kind"] == "sigmoid logits"
            with torch.no_grad():  # the probabilities shown are the model's own sigmoids
                loaded = zoo_model(name)
                images = torch.from_numpy(np.load(tmp_path / f"{name}-classes" / "images.npz")["images"]).float() / 255
                own = loaded.model((images - loaded.spec.mean[0]) / loaded.spec.std[0])
            shown = torch.tensor([image["probability"] for image in record["images"]])
            assert torch.allclose(shown, own.diagonal(), atol=0.01)
        else:
            assert record["logits_position"] == "mean" and [i["name"] for i in record["images"]] == ["0", "1"]
        data = ["--dataset", "mnist"] if size == "28" else []  # mnist's 28x28 images do not fit 112x112
        assert main(["channels", *model, "--layer", layer, "--channels", "0-3", "--steps", "3", *data,
                     "--out", f"{name}-channels"]) == 0
        # activations: a 28x28 dataset image; the detector at 112x112 takes a picture file (resized)
        source = ["--dataset", "mnist", "--index", "3"] if size == "28" else ["--image", str(SEVEN)]
        assert main(["activations", *model, *source, "--out", f"{name}-act"]) == 0
        assert len(json.loads((tmp_path / f"{name}-act" / "run.json").read_text())["top5"]) == count


def test_the_closed_relu_model_reaches_its_classes_with_defaults(tmp_path):
    """The story of issue 12: first-layer ReLUs closed on a dark image; the default start must not depend on luck."""
    assert main(["classes", *_model("seqcnn-closed"), "--steps", "64", "--classes", "0,7", "--out", "c"]) == 0
    images = json.loads((tmp_path / "c" / "run.json").read_text())["images"]
    assert all(image["probability"] >= 0.9 for image in images), images


def test_the_closed_relu_model_with_its_data_looks_like_digits(tmp_path):
    """With --dataset the prior is estimated from the data (recorded in run.json), every class reaches
    p >= 0.9 with the default steps, and a judge of another architecture names >= 8 of 10."""
    import numpy as np
    import torch

    from helpers import zoo_model
    from introspect import class_scores

    assert main(["classes", *_model("seqcnn-closed"), "--dataset", "mnist", "--out", "c"]) == 0
    record = json.loads((tmp_path / "c" / "run.json").read_text())
    assert record["prior"]["source"].startswith("estimated from 4,000 images")
    assert len(record["prior"]["image_mean"][0]) == 28 and len(record["prior"]["spectrum"]) == 28
    assert all(image["probability"] >= 0.9 for image in record["images"]), record["images"]
    with np.load(tmp_path / "c" / "images.npz") as arrays:
        images = torch.from_numpy(arrays["images"]).float() / 255
    judge = zoo_model("mnist-judge-vgg")
    assert int((class_scores(judge.model, judge.spec, images).argmax(1) == torch.arange(10)).sum()) >= 8


#: name -> (middle layer, judges of another architecture family): benchmarks/zoo.py's matrix.
MATRIX = {
    "seqcnn": ("features.3", ["vgg", "mlp"]), "seqcnn-closed": ("features.3", ["vgg", "mlp"]),
    "bnresnet": ("block1.relu2", ["vgg", "mlp"]), "actnet": ("gelu", ["vgg", "mlp"]),
    "functionalnet": ("conv2", ["vgg", "mlp"]), "multihead": ("trunk.4", ["vgg", "mlp"]),
    "dictnet": ("body.3", ["vgg", "mlp"]), "mlp": ("layers.3", ["vgg"]),
    "tinyvit": ("vit.encoder.layers.encoder_layer_1", ["vgg", "mlp"]),
}


def _zoo_classes(name: str):
    """The zoo model (its prior from its training data, as --dataset gives it), its data, its class images."""
    from helpers import zoo_model
    from introspect import load_dataset, visualize_classes
    from introspect.params import with_prior

    loaded = zoo_model(name)
    data = load_dataset(MANIFEST[name]["dataset"], "train")
    loaded.spec = with_prior(loaded.spec, data.pixels())
    return loaded, data, visualize_classes(loaded.model, loaded.spec)


def _named_by(model_name: str, classes) -> int:
    import torch

    from helpers import zoo_model
    from introspect import class_scores

    judge = zoo_model(model_name)
    return int((class_scores(judge.model, judge.spec, classes.images).argmax(1) == torch.tensor(classes.labels)).sum())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MATRIX))
def test_zoo_bars_with_defaults(name):
    """Issue #10's bars, defaults and the model's own data only: every class p >= 0.9; another zoo model
    of a different architecture, trained on the same data, names >= 8 of 10; >= 90% of live channels
    of a middle layer reach ratio >= 1."""
    from introspect import dataset_examples, visualize_channels

    loaded, data, classes = _zoo_classes(name)
    assert classes.probabilities.min() >= 0.9, classes.probabilities
    others = [other for other, entry in MANIFEST.items() if entry.get("role") == "zoo"
              and entry["dataset"] == MANIFEST[name]["dataset"] and entry["class"] != MANIFEST[name]["class"]]
    assert max(_named_by(other, classes) for other in others) >= 8
    layer = MATRIX[name][0]
    channels = visualize_channels(loaded.model, loaded.spec, layer,
                                  examples=dataset_examples(loaded.model, loaded.spec, layer, data))
    live = ~(channels.dead | channels.rare)
    assert float(((channels.ratio >= 1) & live).sum() / live.sum()) >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MATRIX))
def test_zoo_class_images_named_by_a_judge_of_another_family(name):
    """Stricter than another zoo model: an independent judge (never a zoo model) of another family names >= 8."""
    _, _, classes = _zoo_classes(name)
    assert max(_named_by(f"{MANIFEST[name]['dataset']}-judge-{kind}", classes) for kind in MATRIX[name][1]) >= 8


def test_prior_from_your_own_pictures_and_none_without_data(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "pics").mkdir()
    for i in range(3):
        image = Image.new("L", (28, 28))
        image.paste(255, (10 + i, 6, 16 + i, 22))  # a bright bar on black, like a "1"
        image.save(tmp_path / "pics" / f"{i}.png")
    assert main(["classes", *_model("seqcnn"), "--images", "pics", "--steps", "2", "--out", "mine"]) == 0
    mine = json.loads((tmp_path / "mine" / "run.json").read_text())
    prior = mine["prior"]
    assert prior["source"].startswith("estimated from 3 images")
    assert mine["parametrization"] == "basis" and prior["basis"]["components"] >= 1
    assert prior["image_mean"][0][0][0] == 0 and prior["image_support"][0][14][13] == 1
    assert main(["classes", *_model("seqcnn"), "--steps", "2", "--out", "none"]) == 0
    assert json.loads((tmp_path / "none" / "run.json").read_text())["parametrization"] == "fft"  # no basis to use
    derived = json.loads((tmp_path / "none" / "run.json").read_text())["prior"]
    assert derived["source"].startswith("from the model itself: images start at its normalization mean")
    assert derived["source"].endswith("(pass --dataset or --images DIR for data-like images)")
    assert derived["image_mean"] == [[[0.1307]]] and derived["spectrum"] is None and "basis" not in derived
    assert derived["ink_level"] == pytest.approx((0.3081 ** 2 + 0.1307 ** 2) / 0.1307, abs=1e-4)
    assert "prior: from the model itself" in capsys.readouterr().err



def pitch_errors(images: torch.Tensor, frequencies, sample_rate: float) -> torch.Tensor:
    """Cents from each class's frequency to the dominant frequency (the FFT peak, Hann window, 16x zero-padded,
    above 50 Hz) of its class waveform (N, 1, 1, L)."""
    wave = images.flatten(1).double()
    wave = wave - wave.mean(1, keepdim=True)
    n = 16 * wave.shape[1]
    spectrum = torch.fft.rfft(wave * torch.hann_window(wave.shape[1], dtype=torch.double), n=n).abs()
    spectrum[:, :int(50 * n / sample_rate)] = 0
    peak = spectrum.argmax(1).double() * sample_rate / n
    return 1200 * torch.log2(peak / torch.tensor(frequencies, dtype=torch.double))


def test_every_command_runs_on_the_tone_model_with_defaults(tmp_path, capsys):
    """Issue #21: the 1-D zoo model (input (1, 1024) as C, L): layers, classes, channels and activations (a .npy
    signal) with defaults, few steps; finite values, status complete. (evaluate needs a dataset of signals.)"""
    entry = MANIFEST["tones"]
    (tmp_path / "notes.txt").write_text("\n".join(entry["class_names"]))
    model = ["--model", f"{ZOO}:{entry['class']}", "--checkpoint", str(ASSETS / "tones.pt"), "--input-shape", "1,1024",
             "--mean", "0.5", "--std", "0.25", "--class-names", str(tmp_path / "notes.txt")]
    assert main(["layers", *model, "--json", "--quiet"]) == 0
    layers = {l["name"]: l for l in json.loads(capsys.readouterr().out)["layers"]}
    assert layers["features.3"]["type"] == "Conv1d" and layers["features.3"]["units"] == 32
    assert main(["classes", *model, "--steps", "3", "--out", "classes"]) == 0
    record = json.loads((tmp_path / "classes" / "run.json").read_text())
    assert record["status"] == "complete" and len(record["images"]) == 12
    assert all(np.isfinite(image["probability"]) for image in record["images"])
    assert main(["channels", *model, "--layer", "features.3", "--channels", "0-3", "--steps", "3",
                 "--out", "channels"]) == 0
    assert json.loads((tmp_path / "channels" / "run.json").read_text())["status"] == "complete"
    t = np.arange(1024) / entry["sample_rate"]
    np.save(tmp_path / "e5.npy", (0.5 + 0.2 * np.sin(2 * np.pi * entry["frequencies"][7] * t))[None])
    assert main(["activations", *model, "--image", str(tmp_path / "e5.npy"), "--out", "activations"]) == 0
    assert json.loads((tmp_path / "activations" / "run.json").read_text())["prediction"]["name"] == "E5"
    from PIL import Image

    site = tmp_path / "activations" / "site"
    with Image.open(site / "img" / "image-0" / "input.png") as picture:  # a waveform picture, not a 1-px strip
        assert picture.height >= 100 and picture.width >= 400
    with Image.open(site / "img" / "image-0" / "saliency.png") as strip:
        assert strip.height >= 16
    assert "input.png" in (site / "data" / "image-0.js").read_text()


@pytest.mark.slow
def test_the_tone_models_class_waveforms_sound_their_pitch_with_defaults():
    """Issue #21's bar: with the CLI's defaults (no data) the dominant frequency of >= 8 of the 12 class waveforms
    lies within 50 cents of the class's frequency (benchmarks/zoo.py --only tones prints the figure)."""
    from introspect import visualize_classes

    entry = MANIFEST["tones"]
    result = visualize_classes(zoo_model("tones").model, zoo_model("tones").spec)
    cents = pitch_errors(result.images, entry["frequencies"], entry["sample_rate"])
    assert int((cents.abs() <= 50).sum()) >= 8, cents


#: MNIST and Fashion-MNIST classifiers of the zoo, for the no-data bar.
ZOO_CLASSIFIERS = [name for name, entry in MANIFEST.items() if entry.get("role") == "zoo"]


def _without_data(name: str):
    """The zoo model as a user's model without data (input size, mean/std, class names; no prior, no dataset
    name: benchmarks/no_data.py's ``bare``) and its class images with defaults."""
    from introspect import visualize_classes
    from introspect.params import without_prior

    loaded = zoo_model(name)
    spec = without_prior(loaded.spec).replace(dataset=None)
    return visualize_classes(loaded.model, spec)


def _other_judges(name: str) -> list[str]:
    entry = MANIFEST[name]
    return [f"{entry['dataset']}-judge-vgg", f"{entry['dataset']}-judge-mlp"] + [
        other for other in ZOO_CLASSIFIERS if MANIFEST[other]["dataset"] == entry["dataset"]
        and MANIFEST[other]["class"] != entry["class"]]


@pytest.mark.slow  # 8 candidates per class without data: about 8 CPU seconds
def test_without_data_a_judge_of_another_architecture_names_the_classes():
    """Issue #20 item 5: a user's MNIST CNN with only --size, --mean and --std: its class images (the prior from
    its normalization) are named by the independent VGG judge >= 8 of 10 (10 at seed 0; 8 with the grey start
    before, which gave seqcnn-closed 3: benchmarks/no_data.py)."""
    assert _named_by("mnist-judge-vgg", _without_data("functionalnet")) >= 8


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO_CLASSIFIERS)
def test_every_zoo_classifier_without_data(name):
    """Every zoo classifier without data: the best judge of another architecture names >= 8 of 10
    (benchmarks/no_data.py prints the table; the Fashion-MNIST MLP, whose pullover, coat and shirt stay hardest,
    8/8/9 at seeds 0-2 under the input noise of models that read pixels densely, 7/8/7 before)."""
    classes = _without_data(name)
    assert max(_named_by(judge, classes) for judge in _other_judges(name)) >= 8
