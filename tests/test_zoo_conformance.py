"""Models nobody here trained, with defaults and no wrappers: every command runs on each (fast subset;
the quality bars of the full matrix are issue work still open). The zoo is tests/zoo/models.py with the
checkpoints of tests/assets/zoo (trained by tests/zoo/train.py)."""
import json
from pathlib import Path

import pytest

from introspect_cli.main import main

ZOO = Path(__file__).resolve().parent / "zoo" / "models.py"
ASSETS = Path(__file__).resolve().parent / "assets" / "zoo"
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
