"""What the explorer shows beyond the runs, computed from the recorded model and dataset.

Per channel: a histogram of its activation over the dataset (the bins of
``channels.HISTOGRAM_EDGES``), the share of images that activate it, its map on its top
examples, the previous layer's channels that feed it (activation x gradient) and the classes
it raises. Per class: the confusions on the held-out split, its highest-scoring images and
the channels that drive it. ``introspect.site`` turns these into pages.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from .channels import channel_histograms, channel_values
from .layers import pass_batch_size
from .data import load_dataset, load_image_folder
from .hooks import Probe
from .errors import UserError
from .objectives import ACTIVATION_FUNCTIONS
from .repeat import load_recorded, read_repeat

#: Highest-scoring held-out images kept per class.
CLASS_TOP = 8
#: Output attributions (per class) only for models with at most this many classes.
MAX_OUTPUT_CLASSES = 100


# --- the model and data behind the runs -------------------------------------------------------


def load_recorded_model(record: dict, trust: bool = False):
    """The model a run.json names (its repeat record, whichever version wrote it: ``read_repeat``), checked
    against the recorded checkpoint digest; (LoadedModel, None) or (None, why not). A model that loads code
    (a .py file, a package class, a TorchScript archive, a checkpoint that needs unpickling) only with ``trust``."""
    model = record.get("model") if isinstance(record.get("model"), dict) else {}
    if model.get("random_weights"):
        return None, "the run's model has random weights, which cannot be loaded again"
    try:
        loaded = load_recorded(read_repeat(record).load, trust=trust)
    except UserError as exc:
        return None, exc.message
    except Exception as exc:  # noqa: BLE001 - any failure to load means: show what the runs hold
        return None, f"the model could not be loaded ({type(exc).__name__}: {exc})"
    if model.get("checkpoint_sha256") and loaded.sha256 != model["checkpoint_sha256"]:
        return None, "the model's weights changed since the run (checkpoint digest differs)"
    return loaded, None


def load_data(name: str | None, split: str):
    """The dataset a run used, as (ImageDataset, None) or (None, why not)."""
    if not name or name == "none":
        return None, "the runs used no dataset"
    try:
        return load_dataset(name, split), None
    except Exception as exc:  # noqa: BLE001
        return None, f"the {name} {split} data could not be loaded ({exc})"


def recorded_images(record: dict) -> str | None:
    """The folder of the user's own pictures a run used (its repeat record's data ``images``, or its inputs),
    or None when it used a named dataset or none."""
    repeat = record.get("repeat") if isinstance(record.get("repeat"), dict) else {}
    data = repeat.get("data") if isinstance(repeat.get("data"), dict) else {}
    inputs = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}
    images = inputs.get("images") if isinstance(inputs.get("images"), dict) else {}
    for folder in (data.get("images"), images.get("path")):
        if isinstance(folder, str) and folder:
            return folder
    return None


def load_images(folder: str, spec):
    """The user's pictures a run used (``recorded_images``) as (ImageDataset, None) or (None, why not)."""
    if not Path(folder).is_dir():
        return None, f"the images folder '{folder}' the run used is gone"
    try:
        return load_image_folder(folder, spec), None
    except Exception as exc:  # noqa: BLE001
        return None, f"the images in '{folder}' could not be loaded ({exc})"


# --- what explore computes ----------------------------------------------------------------------


def forward(loaded, pixels: torch.Tensor, layers: Sequence[str], logits: bool = True,
            grad: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Outputs of ``layers`` (and the logits, or None without ``logits``) for pixel-space images, in one
    pass that stops as soon as it has them all. With ``grad`` they are the tensors the forward went on
    with, in the autograd graph, so gradients with respect to them can be taken."""
    name = (loaded.spec.logits or "") if logits else None
    wanted = list(layers) + ([name] if name is not None else [])
    device = next(loaded.model.parameters(), pixels).device  # outputs stay there; callers gather to the CPU
    with Probe(loaded.model, loaded.spec, wanted, clone=not grad) as probe, torch.set_grad_enabled(grad):
        outputs = probe(pixels.to(device).requires_grad_(grad))
    return outputs, None if name is None else outputs[name]


def _chunks(n: int, size: int = 256) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _pass_batch(loaded, layers: Sequence[str] | None) -> int:
    """Images per batch of a no-grad pass over a dataset up to ``layers`` (None: the whole forward)."""
    device = next(loaded.model.parameters(), torch.empty(0)).device
    return pass_batch_size(loaded.model, loaded.spec.input_shape, device, stop_after=layers or None)


def _spatial_sum(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).sum(2) if x.ndim == 4 else x


def compute_layers(loaded, dataset, layers: Sequence[str], examples: dict[str, np.ndarray],
                   channel_lists: dict[str, list[int]], neuron: bool) -> dict:
    """Per layer: histogram of each channel's activation over ``dataset``, the share of images that
    activate it, each channel's map on its top examples, input attributions (activation x gradient
    of the previous layer, averaged over the top examples) and output attributions (per class).
    ``examples[layer]`` (C, k) holds the top examples of the channels ``channel_lists[layer]``."""
    spec = loaded.spec
    values = {layer: [] for layer in layers}
    active = {layer: [] for layer in layers}
    for part in _chunks(len(dataset), _pass_batch(loaded, layers)):
        outputs, _ = forward(loaded, dataset.pixels(part), layers, logits=False)
        for layer in layers:
            post = ACTIVATION_FUNCTIONS[spec.activation(layer)](outputs[layer].float())
            values[layer].append(channel_values(outputs[layer].float(), spec.activation(layer), neuron).cpu())
            active[layer].append(((post.flatten(2).amax(2) if post.ndim == 4 else post) > 0).cpu())
    found: dict[str, dict] = {}
    for layer in layers:
        matrix = torch.cat(values[layer])
        found[layer] = {"hist": channel_histograms(matrix), "low": matrix.amin(0), "high": matrix.amax(0),
                        "active": torch.cat(active[layer]).float().mean(0)}
    for layer in layers:
        top = torch.as_tensor(examples[layer])  # (C, k)
        channels, k = top.shape
        maps = []
        for part in _chunks(channels * k):
            flat = top.flatten()[part]
            outputs, _ = forward(loaded, dataset.pixels(flat), [layer], logits=False)
            output = ACTIVATION_FUNCTIONS[spec.activation(layer)](outputs[layer].float())
            own = torch.as_tensor(channel_lists[layer])[torch.arange(part.start, part.stop) // k]
            maps.append(output[torch.arange(len(flat)), own.to(output.device)].cpu())
        found[layer]["maps"] = torch.cat(maps).view(channels, k, *maps[0].shape[1:]).half()
    for previous, layer in zip(layers, layers[1:]):
        top = torch.as_tensor(examples[layer])
        channels, k = top.shape
        attributions = []
        for part in _chunks(channels * k, 128):
            outputs, _ = forward(loaded, dataset.pixels(top.flatten()[part]), [previous, layer], logits=False,
                                 grad=True)
            own = torch.as_tensor(channel_lists[layer])[torch.arange(part.start, part.stop) // k].view(-1, 1)
            measured = channel_values(outputs[layer], spec.activation(layer), neuron)
            gradient, = torch.autograd.grad(measured.gather(1, own.to(measured.device)).sum(), outputs[previous])
            attributions.append(_spatial_sum(outputs[previous].detach() * gradient).cpu())
        found[layer]["inputs"] = torch.cat(attributions).view(channels, k, -1).mean(1)
    if spec.num_classes <= MAX_OUTPUT_CLASSES and layers:
        union = torch.as_tensor(np.unique(np.concatenate([examples[l].ravel() for l in layers])))
        position = {int(v): i for i, v in enumerate(union.tolist())}
        per_class: dict[str, torch.Tensor] = {}
        for part in _chunks(len(union), 128):
            outputs, logits = forward(loaded, dataset.pixels(union[part]), layers, grad=True)
            for j in range(spec.num_classes):
                grads = torch.autograd.grad(logits[:, j].sum(), [outputs[l] for l in layers], retain_graph=True)
                for layer, gradient in zip(layers, grads):
                    value = _spatial_sum(outputs[layer].detach() * gradient).cpu()
                    per_class.setdefault(layer, torch.zeros(len(union), spec.num_classes, value.shape[1]))
                    per_class[layer][part, j] = value
        for layer in layers:
            rows = torch.as_tensor([[position[int(i)] for i in row] for row in examples[layer]])  # (C, k)
            own = torch.as_tensor(channel_lists[layer])
            picked = per_class[layer][rows].mean(1)  # (C, classes, all channels)
            found[layer]["outputs"] = picked[torch.arange(len(own)), :, own]  # (C, classes)
    return found


def compute_classes(loaded, heldout, layers: Sequence[str]) -> dict:
    """Over the held-out split: the confusion matrix, each class's highest-scoring images, and per
    layer the channels' attribution (activation x gradient of the class logit) on those images."""
    logits = torch.cat([forward(loaded, heldout.pixels(part), [])[1].detach().cpu()
                        for part in _chunks(len(heldout), _pass_batch(loaded, None))])
    classes = logits.shape[1]
    confusion = torch.zeros(classes, classes, dtype=torch.long)
    confusion.index_put_((heldout.labels, logits.argmax(1)), torch.ones(len(heldout), dtype=torch.long), accumulate=True)
    top = logits.topk(min(CLASS_TOP, len(heldout)), dim=0).indices.T  # (classes, k)
    found = {"confusion": confusion, "top": top, "top_scores": logits.gather(0, top.T).T, "channels": {}}
    if layers:
        flat, owner = top.flatten(), torch.arange(classes).repeat_interleave(top.shape[1])
        sums = {layer: [] for layer in layers}
        for part in _chunks(len(flat), 128):
            outputs, out = forward(loaded, heldout.pixels(flat[part]), layers, grad=True)
            grads = torch.autograd.grad(out.gather(1, owner[part].view(-1, 1).to(out.device)).sum(),
                                        [outputs[l] for l in layers])
            for layer, gradient in zip(layers, grads):
                sums[layer].append(_spatial_sum(outputs[layer].detach() * gradient).cpu())
        found["channels"] = {layer: torch.cat(v).view(classes, top.shape[1], -1).mean(1) for layer, v in sums.items()}
    return found
