"""Reproducible training and evaluation of classifiers on an ImageDataset."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import ImageDataset
from .engine import on_device
from .layers import pass_batch_size
from .models.spec import ModelSpec
from .outputs import output_kind
from .transforms import Normalize, affine


def random_affine(pixels: torch.Tensor, generator: torch.Generator, degrees: float = 10.0,
                  scale: tuple[float, float] = (0.9, 1.1), shift: float = 0.1) -> torch.Tensor:
    """Small random rotation, scale and shift per image (training augmentation)."""
    n = pixels.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(degrees)
    zoom = torch.empty(n).uniform_(scale[0], scale[1], generator=generator)
    offset = (torch.rand(n, 2, generator=generator) * 2 - 1) * shift * 2
    return affine(pixels, angle, zoom, offset[:, 0], offset[:, 1])


def torch_seed(seed: int) -> int:
    """A seed torch takes (0..2**64-1) for any Python int: those in range unchanged, others hashed into it."""
    if 0 <= seed < 1 << 64:
        return seed
    state = np.random.SeedSequence([1 + (seed < 0), abs(seed)]).generate_state(2, np.uint32)
    return int(state[0]) << 32 | int(state[1])


@dataclass
class EpochStats:
    epoch: int
    loss: float
    accuracy: float


def train(model: nn.Module, spec: ModelSpec, dataset: ImageDataset, *, epochs: int = 10, seed: int = 1,
          batch_size: int = 64, lr: float = 1.0, gamma: float = 0.8, augment: bool = True,
          max_batches: int | None = None, device: torch.device | str = "cpu",
          on_batch: Callable[[int, int], None] | None = None,
          on_epoch: Callable[[EpochStats], None] | None = None) -> list[EpochStats]:
    """Train with Adadelta + StepLR as pytorch/examples does, reproducibly for a given seed.

    Shuffling and augmentation draw from a local generator; dropout's draws use
    a forked global RNG, so the caller's RNG state is left as it was.
    ``on_batch(done, total)`` reports progress; ``max_batches`` caps each epoch (tests). Batches are
    drawn and augmented on the CPU (the same for any device) and trained on ``device``; the model is
    left on the CPU.
    """
    seed = torch_seed(seed)
    device = torch.device(device)
    model.to(device)
    generator = torch.Generator().manual_seed(seed)
    normalize = Normalize.of(spec, device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=gamma)
    batches = math.ceil(len(dataset) / batch_size)
    if max_batches is not None:
        batches = min(batches, max_batches)
    history = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.train()
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(dataset), generator=generator)
            total_loss, correct, seen = 0.0, 0, 0
            for b in range(batches):
                index = order[b * batch_size:(b + 1) * batch_size]
                pixels = dataset.pixels(index)
                if augment:
                    pixels = random_affine(pixels, generator)
                pixels, target = pixels.to(device), dataset.labels[index].to(device)
                logits = model(normalize(pixels))
                loss = F.nll_loss(logits, target) if output_kind(logits) == "log-softmax" else F.cross_entropy(logits, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * len(index)
                correct += (logits.argmax(1) == target).sum().item()
                seen += len(index)
                if on_batch is not None:
                    on_batch((epoch - 1) * batches + b + 1, epochs * batches)
            scheduler.step()
            stats = EpochStats(epoch, total_loss / seen, correct / seen)
            history.append(stats)
            if on_epoch is not None:
                on_epoch(stats)
    model.eval().to("cpu")
    return history


@dataclass
class Evaluation:
    accuracy: float
    confusion: torch.Tensor  # (classes, classes): rows true, columns predicted
    count: int


@torch.no_grad()
def evaluate(model: nn.Module, spec: ModelSpec, dataset: ImageDataset, batch_size: int | None = None,
             device: torch.device | str = "cpu", on_batch: Callable[[int, int], None] | None = None) -> Evaluation:
    """Accuracy and confusion matrix of ``model`` on ``dataset`` (eval mode, restored afterwards), computed
    on ``device`` (a copy of the model when it lives elsewhere), ``batch_size`` images at a time (None:
    ``layers.pass_batch_size``'s); ``on_batch(images done, images)`` after each batch."""
    with on_device(model, device) as placed:
        batch_size = batch_size or pass_batch_size(placed, spec.input_shape, device)
        return _evaluate(placed, spec, dataset, batch_size, torch.device(device), on_batch)


def _evaluate(model: nn.Module, spec: ModelSpec, dataset: ImageDataset, batch_size: int,
              device: torch.device, on_batch: Callable[[int, int], None] | None = None) -> Evaluation:
    was_training = model.training
    model.eval()
    normalize = Normalize.of(spec, device)
    try:
        k = spec.num_classes
        confusion = torch.zeros(k, k, dtype=torch.long)
        for start in range(0, len(dataset), batch_size):
            pixels = dataset.pixels(slice(start, start + batch_size)).to(device)
            predicted = model(normalize(pixels)).argmax(1).cpu()
            target = dataset.labels[start:start + batch_size]
            confusion += torch.bincount(target * k + predicted, minlength=k * k).view(k, k)
            if on_batch is not None:
                on_batch(min(start + batch_size, len(dataset)), len(dataset))
    finally:
        model.train(was_training)
    correct = confusion.diag().sum().item()
    return Evaluation(correct / max(1, len(dataset)), confusion, len(dataset))


@dataclass(frozen=True)
class TrainingRecipe:
    """Defaults of `introspect train` per dataset (the shipped checkpoints were made with these)."""

    epochs: int
    lr: float = 1.0
    gamma: float = 0.7
    augment: bool = False


TRAINING_RECIPES: dict[str, TrainingRecipe] = {
    "mnist": TrainingRecipe(epochs=50, gamma=0.93, augment=True),
    "fashion-mnist": TrainingRecipe(epochs=6, gamma=0.7),
}
