"""Train the conformance zoo and its judges, reproducibly, on the CPU.

    python tests/zoo/train.py [--only NAME ...] [--out DIR]

Writes tests/assets/zoo/NAME.pt (a plain state_dict) for each model and
updates tests/assets/zoo/manifest.json with its class, dataset, held-out
accuracy, seed, epochs, normalization and where its logits are. MNIST is the
offline 4,000/1,000 split (so its models train with augmentation),
Fashion-MNIST the full 60,000/10,000; "tones" (ToneCNN, 1-D) is synthetic, generated here (``tones``). All of it takes about 15 CPU-minutes on
two threads; a rerun on the same setup rewrites byte-identical checkpoints.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# On shared cores, OpenMP threads that spin while waiting for a descheduled partner make
# training several times slower; passive waiting avoids that (read when torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import models  # noqa: E402  # tests/zoo/models.py, beside this script
from introspect.data import DATASETS, ImageDataset, load_dataset  # noqa: E402
from introspect.training import random_affine  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "zoo"
BARS = {"mnist": 0.97, "fashion-mnist": 0.85, "tones": 0.97}
CLOSED_BIAS = -1.5  # seqcnn-closed: every first-layer bias, frozen
#: The multi-label model's questions: each label is "the digit is in this set".
LABEL_SETS = {"even": (0, 2, 4, 6, 8), "greater than 4": (5, 6, 7, 8, 9), "has a loop": (0, 6, 8, 9)}
DETECTED = 7  # the detector's positive class
DETECTOR_WEIGHTS = (1.0, 4.0)  # cross-entropy weights of "not 7" and "7" (one digit in ten is a 7)


def targets(task: str, labels: torch.Tensor) -> torch.Tensor:
    """What a model of ``task`` learns from digit labels: the digit; (N, 3) yes/no floats; 1 for a 7, else 0."""
    if task == "multilabel":
        return torch.stack([torch.isin(labels, torch.tensor(digits)) for digits in LABEL_SETS.values()], 1).float()
    if task == "detector":
        return (labels == DETECTED).long()
    return labels


def task_loss(task: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, targets(task, labels))
    if task == "detector":
        return F.cross_entropy(logits.flatten(1), targets(task, labels), weight=torch.tensor(DETECTOR_WEIGHTS))
    return F.cross_entropy(logits, labels)


def correct(task: str, logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Right answers: per image (classes, detector) or per image and label (multilabel, counted as a fraction)."""
    if task == "multilabel":
        return ((logits > 0).float() == targets(task, labels)).float().mean(1).sum().item()
    return (logits.flatten(1).argmax(1) == targets(task, labels)).sum().item()


@dataclass(frozen=True)
class Recipe:
    cls: str
    dataset: str
    seed: int
    epochs: int
    augment: str | None = None  # a key of AUGMENTATIONS
    lr: float = 5e-3
    batch_size: int = 64
    logits: dict = field(default_factory=lambda: {"output": None})
    closed: bool = False
    task: str = "classes"  # "classes" (softmax), "multilabel" (sigmoids: LABEL_SETS) or "detector" (DETECTED vs not)


def zoo_affine(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The zoo's MNIST augmentation: the library's small random rotation, scale and shift."""
    return random_affine(pixels, generator)


def distort(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The MNIST judges' augmentation: stronger rotation, scale, shear and shift, plus a smooth elastic warp."""
    n = pixels.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(15)
    zoom = 0.85 + 0.3 * torch.rand(n, generator=generator)
    shear = (torch.rand(n, generator=generator) * 2 - 1) * 0.2
    offset = (torch.rand(n, 2, generator=generator) * 2 - 1) * 0.2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, shear - sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    warp = torch.randn(n, 2, 4, 4, generator=generator) * 0.03
    grid = grid + F.interpolate(warp, size=pixels.shape[-2:], mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    return F.grid_sample(pixels, grid, align_corners=False, padding_mode="zeros")


def flip(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror half of the images left to right (Fashion-MNIST's classes are symmetric that way)."""
    mirrored = torch.rand(pixels.shape[0], generator=generator) < 0.5
    return torch.where(mirrored.view(-1, 1, 1, 1), pixels.flip(3), pixels)


def flip_shift(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flips plus shifts of up to 5% of the width."""
    return random_affine(flip(pixels, generator), generator, degrees=0.0, scale=(1.0, 1.0), shift=0.05)


AUGMENTATIONS = {"affine": zoo_affine, "distort": distort, "flip": flip, "flip-shift": flip_shift}

# MNIST: 4,000 digits, so augmented and many epochs; Fashion-MNIST: 60,000 images, few epochs.
# The judges use other seeds and other augmentations than the zoo.
RECIPES: dict[str, Recipe] = {
    "seqcnn": Recipe("SeqCNN", "mnist", seed=1, epochs=15, augment="affine"),
    "seqcnn-closed": Recipe("SeqCNN", "mnist", seed=2, epochs=15, augment="affine", closed=True),
    "bnresnet": Recipe("BNResNet", "mnist", seed=3, epochs=15, augment="affine"),
    "actnet": Recipe("ActNet", "mnist", seed=4, epochs=15, augment="affine"),
    "functionalnet": Recipe("FunctionalNet", "mnist", seed=5, epochs=15, augment="affine"),
    "multihead": Recipe("MultiHead", "mnist", seed=6, epochs=15, augment="affine", logits={"layer": "classify"}),
    "dictnet": Recipe("DictNet", "mnist", seed=7, epochs=15, augment="affine", logits={"output": "logits"}),
    "mlp": Recipe("MLP", "fashion-mnist", seed=8, epochs=10, lr=2e-3, batch_size=128),
    "tinyvit": Recipe("TinyViT", "fashion-mnist", seed=9, epochs=4, lr=2e-3, batch_size=256),
    "mnist-judge-vgg": Recipe("JudgeVGG", "mnist", seed=101, epochs=15, augment="distort"),
    "mnist-judge-mlp": Recipe("JudgeMLP", "mnist", seed=102, epochs=150, augment="distort", lr=3e-3, batch_size=128),
    "fashion-mnist-judge-vgg": Recipe("JudgeVGG", "fashion-mnist", seed=103, epochs=4, augment="flip-shift",
                                      lr=3e-3, batch_size=128),
    "fashion-mnist-judge-mlp": Recipe("JudgeMLP", "fashion-mnist", seed=104, epochs=20, augment="flip", lr=2e-3,
                                      batch_size=128),
    "multilabel": Recipe("MultiLabelNet", "mnist", seed=11, epochs=15, augment="affine", logits={"layer": "head"},
                         task="multilabel"),
    "detector": Recipe("DetectorFCN", "mnist", seed=12, epochs=15, augment="affine", task="detector"),
    "tones": Recipe("ToneCNN", "tones", seed=13, epochs=12, lr=3e-3, batch_size=128),
}

#: The tone model's signals: 1024 samples at 8 kHz; class k is the semitone 440 Hz * 2^(k/12) (A4 .. G#5).
SAMPLE_RATE, TONE_LENGTH, A4 = 8000, 1024, 440.0
NOTE_NAMES = ("A4", "A#4", "B4", "C5", "C#5", "D5", "D#5", "E5", "F5", "F#5", "G5", "G#5")
TONE_MEAN, TONE_STD = 0.5, 0.25  # pixel space: silence is 0.5, a full-scale tone swings 0.25 either way


def tone_frequencies() -> list[float]:
    return [A4 * 2 ** (k / 12) for k in range(len(NOTE_NAMES))]


def tones(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` synthetic tones (N, 1, 1024) in [0, 1] and their semitone labels: each its class's frequency
    detuned by up to 45 cents (the nearest semitone names it), random phase and amplitude (0.3-1.5: loud ones
    clip, as square-ish waves), harmonics 2-5 of random weights (up to 0.6/k) and phases, Gaussian noise (std
    0.05) and a random offset of up to 0.1 (pixel space = 0.5 + 0.25 x wave, clipped to [0, 1]). Pitch, not
    timbre or loudness, tells the classes apart."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(NOTE_NAMES), (count,), generator=g)
    detune = (torch.rand(count, generator=g) * 2 - 1) * 45
    freq = A4 * 2 ** ((labels + detune / 100) / 12)
    t = torch.arange(TONE_LENGTH) / SAMPLE_RATE
    amp = 0.3 + 1.2 * torch.rand(count, 1, generator=g)
    wave = amp * torch.sin(2 * math.pi * freq[:, None] * t + 2 * math.pi * torch.rand(count, 1, generator=g))
    for k in range(2, 6):
        weight = torch.rand(count, 1, generator=g) * 0.6 / k * amp
        wave = wave + weight * torch.sin(2 * math.pi * k * freq[:, None] * t
                                         + 2 * math.pi * torch.rand(count, 1, generator=g))
    wave = wave + 0.05 * torch.randn(count, TONE_LENGTH, generator=g) \
        + 0.1 * (torch.rand(count, 1, generator=g) * 2 - 1)
    return (TONE_MEAN + TONE_STD * wave).clamp(0, 1)[:, None], labels


def fit_tones(model: nn.Module, recipe: Recipe) -> None:
    """AdamW with a one-cycle schedule on fresh synthetic tones every epoch (12,000 a time)."""
    torch.manual_seed(recipe.seed)
    steps = 12_000 // recipe.batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=recipe.epochs * steps,
                                                   pct_start=0.2)
    model.train()
    for epoch in range(recipe.epochs):
        signals, labels = tones(steps * recipe.batch_size, recipe.seed * 1000 + epoch)
        for b in range(steps):
            batch = slice(b * recipe.batch_size, (b + 1) * recipe.batch_size)
            loss = F.cross_entropy(model((signals[batch] - TONE_MEAN) / TONE_STD), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()


@torch.no_grad()
def tone_accuracy(model: nn.Module) -> float:
    """Accuracy on 1,200 held-out tones (a seed no training epoch uses)."""
    signals, labels = tones(1200, 999_999)
    return (model((signals - TONE_MEAN) / TONE_STD).argmax(1) == labels).float().mean().item()


def normalize(pixels: torch.Tensor, dataset: str) -> torch.Tensor:
    info = DATASETS[dataset]
    return (pixels - info.mean[0]) / info.std[0]


class Logits:
    """Calls a model and picks its logits: a module's output ({"layer": NAME}) or an item of its output."""

    def __init__(self, model: nn.Module, where: dict):
        self.model, self.where, self.captured, self.handle = model, where, None, None
        if "layer" in where:
            self.handle = model.get_submodule(where["layer"]).register_forward_hook(self._capture)

    def _capture(self, module, inputs, output):
        self.captured = output

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        output = self.model(x)
        if "layer" in self.where:
            return self.captured
        key = self.where["output"]
        return output if key is None else output[key]


def build(recipe: Recipe) -> nn.Module:
    torch.manual_seed(recipe.seed)
    model = getattr(models, recipe.cls)()
    if recipe.closed:
        conv = model.features[0]
        with torch.no_grad():
            conv.bias.fill_(CLOSED_BIAS)
        conv.bias.requires_grad_(False)
    return model


def fit(model: nn.Module, recipe: Recipe, train_set: ImageDataset) -> None:
    """AdamW with a one-cycle schedule; seeded shuffling, augmentation and dropout."""
    generator = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    steps = math.ceil(len(train_set) / recipe.batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=recipe.epochs * steps,
                                                   pct_start=0.2)
    logits_of = Logits(model, recipe.logits)
    model.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(train_set), generator=generator)
        for b in range(steps):
            index = order[b * recipe.batch_size:(b + 1) * recipe.batch_size]
            pixels = train_set.pixels(index)
            if recipe.augment is not None:
                pixels = AUGMENTATIONS[recipe.augment](pixels, generator)
            x = normalize(pixels, recipe.dataset).contiguous(memory_format=torch.channels_last)
            loss = task_loss(recipe.task, logits_of(x), train_set.labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    logits_of.remove()
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, where: dict, dataset: str, test_set: ImageDataset, task: str = "classes") -> float:
    """Held-out accuracy (the same computation as tests/lib/test_zoo_models.py); multilabel: per label."""
    model.eval()
    logits_of = Logits(model, where)
    right = 0
    for start in range(0, len(test_set), 1000):
        x = normalize(test_set.pixels(slice(start, start + 1000)), dataset)
        right += correct(task, logits_of(x), test_set.labels[start:start + 1000])
    logits_of.remove()
    return right / len(test_set)


@torch.no_grad()
def open_channels(model: nn.Module, dataset: str) -> int:
    """First-layer channels positive anywhere (after the ReLU) on an all-black image."""
    black = normalize(torch.zeros(1, 1, 28, 28), dataset)
    return int((model.features[1](model.features[0](black)).amax((2, 3)) > 0).sum())


def manifest_entry(name: str, recipe: Recipe, model: nn.Module, acc: float) -> dict:
    if recipe.dataset == "tones":
        return {"class": recipe.cls, "role": "signal", "dataset": None, "accuracy": round(acc, 4),
                "held_out": "1200 synthetic tones", "seed": recipe.seed, "epochs": recipe.epochs, "augment": None,
                "input_shape": [1, TONE_LENGTH], "mean": [TONE_MEAN], "std": [TONE_STD],
                "class_names": list(NOTE_NAMES), "logits": recipe.logits,
                "params": sum(p.numel() for p in model.parameters()), "sample_rate": SAMPLE_RATE,
                "frequencies": [round(f, 2) for f in tone_frequencies()],
                "note": "synthetic tones generated by tests/zoo/train.py (tones): 440 Hz * 2^(k/12) detuned up to 45 "
                        "cents, random phase, amplitude (loud ones clip), harmonics 2-5 and noise; 1024 samples at "
                        "8 kHz as (C, L)"}
    info = DATASETS[recipe.dataset]
    entry = {
        "class": recipe.cls, "role": "judge" if "judge" in name else "zoo" if recipe.task == "classes" else "output-kind", "dataset": recipe.dataset,
        "accuracy": round(acc, 4), "held_out": f"{len(load_cached(recipe.dataset, 'test'))} test images",
        "seed": recipe.seed, "epochs": recipe.epochs, "augment": recipe.augment,
        "input_shape": [1, 28, 28], "mean": list(info.mean), "std": list(info.std),
        "class_names": list(info.class_names), "logits": recipe.logits,
        "params": sum(p.numel() for p in model.parameters()),
    }
    if recipe.task == "multilabel":
        entry.update(task="multilabel", class_names=list(LABEL_SETS), label_sets={k: list(v) for k, v in LABEL_SETS.items()},
                     note="independent sigmoids: the forward returns sigmoid(head(...)); accuracy is per label")
    if recipe.task == "detector":
        entry.update(task="detector", class_names=[f"not {DETECTED}", str(DETECTED)], positive=DETECTED,
                     note="fully convolutional: (2, 1, 1) logits at 28x28, a (2, H, W) map on larger inputs "
                          "(22x22 at 112x112); trained on 28x28 digits, 'a 7' against the nine others")
    if recipe.cls == "MultiHead":
        entry["outputs"] = ["box_regression", "landmarks", "probabilities"]
        entry["note"] = "output 2 is softmax probabilities, not logits; the logits are the output of layer 'classify'"
    if recipe.closed:
        entry["closed_bias"] = CLOSED_BIAS
        entry["open_channels_on_black"] = open_channels(model, recipe.dataset)
        entry["note"] = ("features.0's biases were set to closed_bias and frozen during training: on an all-black "
                         "image at most 2 of its 32 channels are positive after the ReLU")
    return entry


def format_manifest(manifest: dict) -> str:
    """JSON with one line per field, models sorted by name."""
    blocks = []
    for name, entry in sorted(manifest.items()):
        fields = ",\n".join(f"    {json.dumps(key)}: {json.dumps(value)}" for key, value in entry.items())
        blocks.append(f"  {json.dumps(name)}: {{\n{fields}\n  }}")
    return "{\n" + ",\n".join(blocks) + "\n}\n"


_CACHE: dict[tuple[str, str], ImageDataset] = {}


def load_cached(name: str, split: str) -> ImageDataset:
    if (name, split) not in _CACHE:
        _CACHE[name, split] = load_dataset(name, split)
    return _CACHE[name, split]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(RECIPES), metavar="NAME",
                        help=f"train only these (default: all): {', '.join(RECIPES)}")
    parser.add_argument("--out", type=Path, default=ASSETS, help="output folder (default: tests/assets/zoo)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    started = time.time()
    failures = []
    for name in args.only or RECIPES:
        recipe = RECIPES[name]
        t0 = time.time()
        if recipe.dataset == "tones":
            model = build(recipe)
            fit_tones(model, recipe)
            acc = tone_accuracy(model)
        else:
            model = build(recipe).to(memory_format=torch.channels_last)
            fit(model, recipe, load_cached(recipe.dataset, "train"))
            model = model.to(memory_format=torch.contiguous_format)
            acc = accuracy(model, recipe.logits, recipe.dataset, load_cached(recipe.dataset, "test"), recipe.task)
        seconds = time.time() - t0
        entry = manifest_entry(name, recipe, model, acc)
        torch.save(model.state_dict(), args.out / f"{name}.pt")
        manifest[name] = entry
        manifest_path.write_text(format_manifest(manifest))
        size = (args.out / f"{name}.pt").stat().st_size
        print(f"{name:24s} {recipe.dataset:13s} acc {acc:.4f}  params {entry['params']:7d}  "
              f"{size / 1e6:.2f} MB  {seconds:6.1f} s", flush=True)
        if acc < BARS[recipe.dataset] or entry.get("open_channels_on_black", 0) > 2:
            failures.append(name)
    print(f"total {time.time() - started:.0f} s")
    if failures:
        sys.exit(f"below the bar: {', '.join(failures)}")


if __name__ == "__main__":
    main()
