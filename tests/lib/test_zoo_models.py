"""The conformance zoo (tests/zoo): every checkpoint loads into its class and reaches its stated accuracy."""
import importlib.util
import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from introspect.data import DATASETS, load_dataset

ZOO = Path(__file__).resolve().parents[1] / "zoo"
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "zoo"
MANIFEST = json.loads((ASSETS / "manifest.json").read_text())
IMAGES = sorted(name for name, entry in MANIFEST.items() if entry["role"] != "signal")
BARS = {"mnist": 0.97, "fashion-mnist": 0.85}


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(f"zoo_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


models = _import(ZOO / "models.py")


@lru_cache(maxsize=None)
def _held_out(dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset(dataset, "test")
    info = DATASETS[dataset]
    return (data.pixels() - info.mean[0]) / info.std[0], data.labels


def _load(name: str) -> torch.nn.Module:
    model = getattr(models, MANIFEST[name]["class"])()
    model.load_state_dict(torch.load(ASSETS / f"{name}.pt", weights_only=True))
    return model.eval()


@torch.inference_mode()
def _logits(model: torch.nn.Module, where: dict, x: torch.Tensor) -> torch.Tensor:
    if "layer" in where:
        captured = []
        handle = model.get_submodule(where["layer"]).register_forward_hook(lambda m, i, o: captured.append(o))
        model(x)
        handle.remove()
        return captured[0]
    output = model(x)
    return output if where["output"] is None else output[where["output"]]


def test_manifest_lists_every_checkpoint_within_size_limits():
    files = {p.stem: p.stat().st_size for p in ASSETS.glob("*.pt")}
    assert set(files) == set(MANIFEST)
    assert max(files.values()) <= 2_000_000 and sum(files.values()) <= 12_000_000
    for entry in map(MANIFEST.get, IMAGES):
        assert entry["input_shape"] == [1, 28, 28]
        assert (tuple(entry["mean"]), tuple(entry["std"])) == (DATASETS[entry["dataset"]].mean, DATASETS[entry["dataset"]].std)


@pytest.mark.parametrize("name", IMAGES)
def test_held_out_accuracy_is_reached_again(name):
    entry = MANIFEST[name]
    x, labels = _held_out(entry["dataset"])
    model = _load(name).to(memory_format=torch.channels_last)  # faster convolutions on the CPU
    x = x.contiguous(memory_format=torch.channels_last)
    logits = torch.cat([_logits(model, entry["logits"], x[i:i + 2000]).flatten(1) for i in range(0, len(x), 2000)])
    if entry.get("task") == "multilabel":  # per label: logit > 0 (p > 0.5) against "the digit is in the set"
        truth = torch.stack([torch.isin(labels, torch.tensor(digits)) for digits in entry["label_sets"].values()], 1)
        accuracy = ((logits > 0) == truth).float().mean().item()
    else:
        truth = (labels == entry["positive"]).long() if entry.get("task") == "detector" else labels
        accuracy = (logits.argmax(1) == truth).float().mean().item()
    assert accuracy == pytest.approx(entry["accuracy"], abs=0.002)
    assert accuracy >= BARS[entry["dataset"]]


@torch.no_grad()
def test_the_tone_model_names_the_pitch_of_held_out_tones():
    """ToneCNN (1-D, input (1, 1024)): the semitone of synthetic tones made as tests/zoo/train.py makes them."""
    import importlib
    import sys

    sys.path.insert(0, str(ZOO))
    try:
        train = importlib.import_module("train")  # tests/zoo/train.py (it imports models.py beside it)
    finally:
        sys.path.remove(str(ZOO))
    entry = MANIFEST["tones"]
    assert entry["input_shape"] == [1, train.TONE_LENGTH] and entry["class_names"] == list(train.NOTE_NAMES)
    assert entry["frequencies"] == [round(f, 2) for f in train.tone_frequencies()]
    signals, labels = train.tones(1200, 999_999)
    accuracy = (_load("tones")((signals - entry["mean"][0]) / entry["std"][0]).argmax(1) == labels).float().mean()
    assert float(accuracy) == pytest.approx(entry["accuracy"], abs=0.002) and float(accuracy) >= 0.97


@torch.no_grad()
def test_closed_seqcnn_keeps_its_first_layer_shut_on_black():
    model = _load("seqcnn-closed")
    info = DATASETS[MANIFEST["seqcnn-closed"]["dataset"]]
    black = torch.full((1, 1, 28, 28), (0 - info.mean[0]) / info.std[0])
    opened = (model.features[1](model.features[0](black)).amax((2, 3)) > 0).sum().item()
    assert opened <= 2
    # The open SeqCNN, trained without the frozen biases, is not shut: the closed one is the special case.
    assert (_load("seqcnn").features[0](black).amax((2, 3)) > 0).sum().item() > 2


@torch.no_grad()
def test_output_shapes():
    x, _ = _held_out("mnist")
    box, landmarks, probabilities = _load("multihead")(x[:3])
    assert box.shape == (3, 4) and landmarks.shape == (3, 10) and probabilities.shape == (3, 10)
    assert torch.allclose(probabilities.sum(1), torch.ones(3))
    out = _load("dictnet")(x[:3])
    assert set(out) == {"features", "logits"} and out["logits"].shape == (3, 10) and out["features"].shape[0] == 3
    assert [n for n, _ in _load("tinyvit").named_children()] == ["vit"]
