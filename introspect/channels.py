"""Channels of any layer: optimized images for all of them in one batched run, and the real
dataset images that excite each most.

A channel's activation on an image is the mean over its spatial map of the
post-activation output (what the next layer sees); ``neuron=True`` takes the
centre position instead. Linear layers: the unit's value after its activation.
"""
from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .cache import cache_path, read_entry, write_entry
from .data import ImageDataset
from . import objectives
from .engine import ProgressCallback, RenderConfig, RenderResult, on_device
from .errors import Message, UserError
from .hooks import Probe, record
from .layers import describe_layers, model_device, not_a_tensor, pass_batch_size, resolve_layer
from .models.spec import ModelSpec
from .objectives import ACTIVATION_FUNCTIONS, UNJUDGED_ACTIVATIONS, Objective, reduce_channels
from .params import BASIS_VALUES, STARTS, ImageConfig, example_image_for, prior_for
from .quality import saturates, saved_levels

#: Defaults of channel visualizations: a grey start whose brightness may move, the data's spectrum but
#: not its support (which holds channels below what they can reach), a faster rate and more steps
#: reach activations above the best real image's (benchmarks/zoo.py).
CHANNELS_DEFAULTS = RenderConfig(steps=256, lr=0.1, image=ImageConfig(init_bias=0.0, free_brightness=True,
                                                                      use_support=False))

#: The data style (``ImageConfig.style``), chosen by benchmarks/channel_quality.py: each image (free pixels from its
#: channel's top real example) is pushed to DATA_TARGET x the best real activation (nothing is gained past it) while
#: its distance from the data above DATA_BUDGET costs DATA_DISTANCE_WEIGHT per unit: its energy outside the top
#: DATA_COMPONENTS principal components of the real images, over the median real image's energy outside the top
#: DATA_MEASURED (the issue's measure: fewer components held than measured keep the images inside the measure's
#: subspace, whose last directions another estimate of it may differ on). Its Adam rate is DATA_LR_SCALE x ``lr``
#: (real images start saturated). Inputs of more than params.BASIS_VALUES values have no such subspace: there the
#: squared pixel distance to the example costs DATA_PIXEL_WEIGHT (``objectives.accentuate``; 60 rather than 10 brings
#: resnet18 at 64 px within the distance bar: benchmarks/channel_quality.py --images, docs/measured.md "RGB").
DATA_TARGET = 1.5
DATA_BUDGET = 1.8
DATA_DISTANCE_WEIGHT = 0.05
DATA_COMPONENTS = 40
DATA_MEASURED = 50
DATA_LR_SCALE = 2.0
DATA_PIXEL_WEIGHT = 60.0
#: At most this many real images (evenly spaced) give the data's principal subspace.
DATA_SUBSPACE_IMAGES = 10000

#: Weight of the diversity term of a diverse run in the texture style (objectives.diversity).
DIVERSITY_WEIGHT = 1.0
#: ``diverse`` = N > 1 in the data style: the N copies of a channel start at N of its top real examples chosen far apart
#: (``spread_starts``), and each pair of copies closer than DIVERSE_MARGIN x the median pairwise pixel distance of
#: the channel's top N real examples costs DIVERSE_WEIGHT x the relative shortfall (``objectives.spread``; measured in
#: benchmarks/channel_quality.py: a squared shortfall needed weight 10 to hold and pushed MNIST fc1's images off the
#: data, median distance 2.22; a repulsion within the data's principal subspace overshot in pixels, 1.87 vs 1.65).
DIVERSE_MARGIN = 1.1
DIVERSE_WEIGHT = 1.0
#: The weight of the distance penalty (DATA_DISTANCE_WEIGHT) with ``diverse`` > 1: copies from weaker examples went
#: further from the data on MNIST fc1 (channels 0-15: median distance 2.27 at 0.05, 1.52 at 0.2 with every image above the best real one).
DIVERSE_DISTANCE_WEIGHT = 0.2
#: The data style's images (every copy, ``diverse`` 1 or more) still below their channel's best real image after the
#: run (hard channels, where the penalty holds them near the data below it: Fashion-MNIST conv2 with ``diverse`` 3,
#: 12 of 180 images at 0.69-0.96) go on for RESCUE_SHARE x the steps from where they are, at ``lr`` (not
#: DATA_LR_SCALE x: twice it moved them further from the data), with the single image's distance weight and the
#: target RESCUE_TARGET x the best real activation; of RESCUE_LOOKS looks along the way each keeps the first above the
#: best real image, the least moved (``rescued``; benchmarks/channel_quality.py --failures lists the images below it).
RESCUE_SHARE = 0.25
RESCUE_TARGET = 1.2
RESCUE_LOOKS = 16
#: The best real activation a dead channel's data-style image aims past (a tiny positive target); its images have
#: no real image to beat, so the rescue leaves them.
DEAD_BEST = 1e-6
#: A live channel active (post-activation > 0 somewhere) on fewer than this share of the dataset's images is "rarely active".
RARE_SHARE = 0.01


def channel_values(output: torch.Tensor, activation: str, neuron: bool = False) -> torch.Tensor:
    """(B, C[, H, W]) layer output -> (B, C) post-activation channel activations."""
    return reduce_channels(ACTIVATION_FUNCTIONS[activation](output), neuron)


#: The examples pass summarizes a layer's output on the CPU in parts of about this many bytes (``summary``).
SUMMARY_BYTES = 2 ** 20
#: ... and folds each layer's channel values into its statistics (top images, histogram) this many images at a time,
#: however small its batches: that bookkeeping costs per call, not per image.
SETTLE_ROWS = 2048
#: ... or sooner, once a wide layer's pending values and peaks hold this many bytes.
SETTLE_BYTES = 64 * 2 ** 20
#: Fixed histogram bins of a channel's activation (the same for every layer, so shards merge by adding):
#: bin 0 holds values <= 0, bin 1 values in (0, 1e-4), then 32 log-spaced bins from 1e-4 to 1e4 (four per
#: decade, each [lower, upper)), and the last bin values >= 1e4.
HISTOGRAM_EDGES = torch.logspace(-4, 4, 33, dtype=torch.float64)
HISTOGRAM_BINS = len(HISTOGRAM_EDGES) + 2
QUANTILES = (0.5, 0.9, 0.99)
_ARRAYS = ("top_indices", "top_values", "max_value", "peak", "active", "histogram")


def histogram_bins(values: torch.Tensor) -> torch.Tensor:
    """The bin (0..HISTOGRAM_BINS-1) of each value, see HISTOGRAM_EDGES."""
    inside = torch.bucketize(values.double(), HISTOGRAM_EDGES.to(values.device), right=True) + 1
    return torch.where(values <= 0, torch.zeros_like(inside), inside)


def channel_histograms(values: torch.Tensor) -> torch.Tensor:
    """(N, C) channel activations -> (C, HISTOGRAM_BINS) int64: images per bin (see HISTOGRAM_EDGES)."""
    channels = values.shape[1]
    counts = torch.zeros(channels * HISTOGRAM_BINS, dtype=torch.int64)
    counts.index_add_(0, (torch.arange(channels) * HISTOGRAM_BINS + histogram_bins(values)).flatten(),
                      torch.ones(values.numel(), dtype=torch.int64))
    return counts.view(channels, HISTOGRAM_BINS)


@dataclass
class ExampleStats:
    """Per-channel statistics of one layer over a dataset (one no-grad pass); ``merge`` adds shards exactly."""

    layer: str
    activation: str
    neuron: bool
    top_indices: torch.Tensor  # (C, k) dataset indices, strongest first (ties: lower index first)
    top_values: torch.Tensor  # (C, k) their channel activations
    max_value: torch.Tensor  # (C,) the highest channel activation of any image
    peak: torch.Tensor  # (C,) the highest post-activation value anywhere in the map
    active: torch.Tensor  # (C,) int64: images on which the channel's output is positive somewhere
    histogram: torch.Tensor  # (C, HISTOGRAM_BINS) int64: images per bin of the channel activation
    dataset: str
    split: str
    source: str
    count: int
    notes: list[str] = field(default_factory=list)  # what happened to the cache entry; never saved in it

    @property
    def judged(self) -> bool:
        """Whether the channels are judged by the sign of their output (``live``, ``rare``): after an activation
        that closes, where never positive means closed for every real image. An output measured as it is
        ("identity": a logit, a norm's or a PReLU's output) or after tanh is signed and passes values below zero on,
        so below zero on every image says nothing; a sigmoid's is never 0 (``UNJUDGED_ACTIVATIONS``)."""
        return self.activation.partition(":")[0] not in UNJUDGED_ACTIVATIONS

    @property
    def live(self) -> torch.Tensor:
        """Some real image gives the channel a positive output somewhere (every channel of an unjudged output)."""
        return self.peak > 0 if self.judged else torch.ones(self.peak.shape, dtype=torch.bool)

    @property
    def rare(self) -> torch.Tensor:
        """Live, but active on fewer than RARE_SHARE of the images (none of an unjudged output)."""
        if not self.judged:
            return torch.zeros(self.peak.shape, dtype=torch.bool)
        return self.live & (self.active_fraction < RARE_SHARE)

    @property
    def active_fraction(self) -> torch.Tensor:
        """(C,) the fraction of images on which the channel is active."""
        return self.active.double() / max(1, self.count)

    @property
    def quantiles(self) -> torch.Tensor:
        """(C, 3) 50th, 90th, 99th percentile of the channel activation, read from the histogram: the upper
        edge of the bin that holds it (0 for the bin of values <= 0)."""
        uppers = torch.cat([torch.zeros(1, dtype=torch.float64), HISTOGRAM_EDGES, torch.full((1,), math.inf)])
        cumulative = self.histogram.cumsum(1)
        total = cumulative[:, -1:].clamp(min=1).double()
        index = torch.stack([(cumulative.double() < q * total).sum(1) for q in QUANTILES], 1)
        return uppers[index.clamp(max=HISTOGRAM_BINS - 1)].float()

    def merge(self, other: "ExampleStats", k: int | None = None) -> "ExampleStats":
        """The statistics of both shards' images together (the same as one pass over all of them), the top ``k``
        (None: as many as this one keeps; a shard of fewer than k images keeps all it has, so pass k)."""
        values = torch.cat([self.top_values, other.top_values], 1)
        indices = torch.cat([self.top_indices, other.top_indices], 1)
        top_values, top_indices = _top(values, indices, k or self.top_values.shape[1])
        return ExampleStats(
            self.layer, self.activation, self.neuron, top_indices, top_values,
            torch.maximum(self.max_value, other.max_value), torch.maximum(self.peak, other.peak),
            self.active + other.active, self.histogram + other.histogram, self.dataset, self.split, self.source,
            self.count, self.notes + [n for n in other.notes if n not in self.notes])

    def save(self, path: Path) -> None:
        """One .npz file (written as it is: ``cache.write_entry`` makes it atomic)."""
        meta = {"layer": self.layer, "activation": self.activation, "neuron": self.neuron, "dataset": self.dataset,
                "split": self.split, "source": self.source, "count": self.count}
        np.savez_compressed(path, meta=np.array(json.dumps(meta)), **{k: getattr(self, k).numpy() for k in _ARRAYS})

    @classmethod
    def load(cls, path: Path) -> "ExampleStats":
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: torch.from_numpy(data[k]) for k in _ARRAYS}
        return cls(**meta, **arrays)


def _top(values: torch.Tensor, indices: torch.Tensor, k: int, ascending: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest of each row, ties broken by the lower index, so any order of merging gives the same
    (``ascending``: the indices already rise along each row)."""
    if not ascending:
        order = indices.argsort(stable=True, dim=1)
        values, indices = values.gather(1, order), indices.gather(1, order)
    if 0 < k < values.shape[1] and values.numel() and not bool(values.isnan().any()):
        # The candidates first, without sorting whole rows: those above each row's k-th largest value, then the
        # ones equal to it in index order, as many as are missing. (NaN, which the sort puts first and no
        # comparison keeps, is left to the sort of whole rows.)
        kth = values.topk(k, dim=1).values[:, -1:]
        above, tied = values > kth, values == kth
        keep = above | (tied & (tied.cumsum(1) <= k - above.sum(1, keepdim=True)))
        kept = keep.nonzero()[:, 1].view(-1, k)  # in index order
        values, indices = values.gather(1, kept), indices.gather(1, kept)
    order = values.argsort(stable=True, dim=1, descending=True)[:, :k]
    return values.gather(1, order), indices.gather(1, order)


def examples_cache_path(sha256: str, dataset: ImageDataset, layer: str, activation: str, neuron: bool, k: int) -> Path:
    """Cache file keyed by checkpoint, the dataset's content (its digest), layer and reduction."""
    reduction = "centre" if neuron else "mean"
    return cache_path("examples", f"{sha256[:16]}-{dataset.name}-{dataset.split}-{dataset.digest()[:16]}-"
                                  f"{layer}-{activation}-{reduction}-top{k}-v2", ".npz")


def _read_cached(path: Path, dataset: ImageDataset, layer: str, activation: str, neuron: bool, k: int) -> ExampleStats:
    """The cache entry at ``path``; ValueError when its contents do not fit the request."""
    stats = ExampleStats.load(path)
    channels, n = len(stats.max_value), len(dataset)
    shapes = {"top_indices": (channels, min(k, n)), "top_values": (channels, min(k, n)), "peak": (channels,),
              "active": (channels,), "histogram": (channels, HISTOGRAM_BINS)}
    if ((stats.layer, stats.activation, stats.neuron, stats.count) != (layer, activation, neuron, n)
            or any(tuple(getattr(stats, name).shape) != shape for name, shape in shapes.items())
            or not bool(((stats.top_indices >= 0) & (stats.top_indices < n)).all())):
        raise ValueError("its contents do not fit this layer and dataset")
    return stats


def _cache_layer(layer: str, tap: str) -> str:
    """A layer as the examples cache names it: with the module hooked for it when that is another."""
    return layer if tap in ("", layer) else f"{layer}@{tap}"


def cached_examples(spec: ModelSpec, layers: Sequence[str], dataset: ImageDataset, k: int, neuron: bool,
                    cache_key: str | None) -> tuple[dict[str, ExampleStats], list[str]]:
    """The layers' cache entries that can be read, and notes on those that could not (to be recomputed)."""
    found, notes = {}, []
    for layer in layers if cache_key else []:
        activation = spec.activation(layer)
        path = examples_cache_path(cache_key, dataset, _cache_layer(layer, spec.tap(layer)), activation, neuron, k)
        stats, note = read_entry(path, lambda p, layer=layer, a=activation: _read_cached(p, dataset, layer, a, neuron, k))
        if stats is not None:
            found[layer] = stats
        notes += [note] if note else []
    return found, notes


def cache_examples(stats: dict[str, ExampleStats], dataset: ImageDataset, k: int, cache_key: str,
                   spec: ModelSpec) -> list[str]:
    """Write each layer's statistics to the cache (``spec`` says where each layer is measured); notes when it
    cannot be written."""
    for layer, entry in stats.items():
        where = _cache_layer(layer, spec.tap(layer))
        path = examples_cache_path(cache_key, dataset, where, entry.activation, entry.neuron, k)
        note = write_entry(path, entry, ExampleStats.save)
        if note:
            return [note]
    return []


@torch.no_grad()
def examples_pass(model: nn.Module, spec: ModelSpec, layers: Sequence[str], dataset: ImageDataset, k: int = 5,
                  neuron: bool = False, batch_size: int | None = None, device: str = "cpu",
                  callback: Callable[[int, int], None] | None = None, shard: tuple[int, int] = (0, 1)
                  ) -> dict[str, ExampleStats]:
    """One batched no-grad pass over ``dataset`` that records all ``layers`` at once (stopping after the
    deepest) and keeps each layer's statistics. ``shard=(rank, world)`` takes only the batches
    ``rank, rank + world, ...`` of the whole pass; ``ExampleStats.merge`` of all shards equals the whole pass.
    ``batch_size`` None: ``pass_batch_size``'s."""
    for layer in layers:
        resolve_layer(model, layer)
    rank, world = shard
    k = min(k, len(dataset))
    done = 0
    stats: dict[str, ExampleStats] = {}
    activations: dict[str, set[str]] = {}  # per hooked module: the activations its layers are measured with
    for layer in layers:
        activations.setdefault(spec.tap(layer), set()).add(spec.activation(layer))

    def summary(output: torch.Tensor, activation: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C) channel values and (B, C) peaks of a layer's output: computed in the hook, so no output is kept.
        On the CPU a few images at a time (SUMMARY_BYTES of output): the activated copy stays in the cache, and
        no batch-sized copy is allocated (its fresh pages cost more than the arithmetic); the same values."""
        rows = len(output)
        if output.device.type == "cpu" and output.ndim > 1:
            rows = max(1, SUMMARY_BYTES // max(1, output[0].numel() * 4))
        function = ACTIVATION_FUNCTIONS[activation]
        if output.ndim == 4 and not neuron:  # conv maps, the bulk of a pass: no per-part lists or copies
            values = torch.empty(output.shape[:2], device=output.device)
            peaks = torch.empty_like(values)
            on_cpu = output.device.type == "cpu"
            # A ReLU'd part of a contiguous map goes into one buffer, reused part after part (clamp is what
            # torch.relu computes, into a tensor laid out as its own would be); on the CPU a mean is the sum divided
            # by the count, the same bits, so each part is summed and the whole batch divided once.
            reuse = on_cpu and activation == "relu" and output.dtype == torch.float32 and output.is_contiguous()
            scratch = torch.empty((min(rows, len(output)), *output.shape[1:])) if reuse else None
            over_space = torch.sum if on_cpu else torch.mean
            for part, value, peak in zip(output.split(rows), values.split(rows), peaks.split(rows)):
                post = function(part.float()) if scratch is None else torch.clamp(part, min=0, out=scratch[:len(part)])
                torch.amax(post, (2, 3), out=peak)
                over_space(post, (2, 3), out=value)
            if on_cpu:
                values.div_(output.shape[2] * output.shape[3])
            return values.cpu(), peaks.cpu()
        value_parts, peak_parts = [], []
        for part in output.split(rows):
            post = function(part.float())
            peak_parts.append(post.flatten(2).amax(2) if post.ndim == 4 else post.amax(1) if post.ndim == 3 else post)
            value_parts.append(reduce_channels(post, neuron))
        return torch.cat(value_parts).cpu(), torch.cat(peak_parts).cpu()

    def reduce(tap: str, output: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {activation: summary(output, activation) for activation in activations[tap]}

    pending: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {layer: [] for layer in layers}
    waiting = dict.fromkeys(layers, 0)  # rows pending per layer

    def settle(layer: str) -> None:
        """Fold a layer's pending rows (channel values, peaks, dataset indices) into its statistics."""
        if not pending[layer]:
            return
        values, peaks, indices = (torch.cat(parts) for parts in zip(*pending[layer]))
        pending[layer].clear()
        waiting[layer] = 0
        top_values, top_indices = _top(values.T, indices.expand(values.shape[1], -1), k, ascending=True)  # in order
        part = ExampleStats(layer, spec.activation(layer), neuron, top_indices, top_values, values.amax(0),
                            peaks.amax(0), (peaks > 0).sum(0), channel_histograms(values),
                            dataset.name, dataset.split, dataset.source, len(dataset))
        stats[layer] = stats[layer].merge(part, k) if layer in stats else part

    with on_device(model, device) as model:
        batch_size = batch_size or pass_batch_size(model, spec.input_shape, device, stop_after=list(layers))
        starts = list(range(0, len(dataset), batch_size))[rank::world]
        total = sum(min(batch_size, len(dataset) - start) for start in starts)
        with Probe(model, spec, list(layers), device, reduce=reduce) as probe:
            for start in starts:
                outputs = probe(dataset.pixels(slice(start, start + batch_size)))
                for layer in layers:
                    recorded = outputs[layer]  # the model's own output ("", ":KEY") is recorded whole
                    values, peaks = (summary(recorded, spec.activation(layer)) if isinstance(recorded, torch.Tensor)
                                     else recorded[spec.activation(layer)])
                    pending[layer].append((values, peaks, torch.arange(start, start + len(values))))
                    waiting[layer] += len(values)
                    if waiting[layer] >= SETTLE_ROWS or waiting[layer] * values.shape[1] * 8 >= SETTLE_BYTES:
                        settle(layer)
                done += len(values)
                if callback is not None:
                    callback(done, total)
            for layer in layers:
                settle(layer)
    return stats


def constant_mean_notes(model: nn.Module, spec: ModelSpec, layers: Sequence[str], neuron: bool) -> list[Message]:
    """A note for each layer measured at an instance norm's own output (an InstanceNorm, or a GroupNorm of one
    channel per group, without running statistics and with no activation after it) when channels are scored by their
    spatial mean: that mean is the norm's bias on every image, so no image can raise it, and its ratios and top
    examples compare rounding noise."""
    notes, modules = [], dict(model.named_modules())
    for layer in layers if not neuron else ():
        tap = modules.get(spec.tap(layer))
        per_image = (isinstance(tap, nn.modules.instancenorm._InstanceNorm) and not tap.track_running_stats) or (
            isinstance(tap, nn.GroupNorm) and tap.num_groups == tap.num_channels)
        if per_image and spec.activation(layer) == "identity":
            notes.append(Message("{layer} is measured at {tap}, an instance norm's output: each channel's spatial "
                                 "mean is the norm's bias on every image, so no image raises it and its ratios compare "
                                 "noise; use {neuron} (the centre position), or a layer after an activation",
                                 settings=("neuron",), layer=layer, tap=spec.tap(layer)))
    return notes


def dataset_examples_many(model: nn.Module, spec: ModelSpec, layers: Sequence[str], dataset: ImageDataset,
                          k: int = 5, neuron: bool = False, batch_size: int | None = None, device: str = "cpu",
                          callback: Callable[[int, int], None] | None = None,
                          cache_key: str | None = None) -> dict[str, ExampleStats]:
    """Top-k dataset images per channel and activation statistics of every layer in ``layers``, from one
    pass for all the layers not cached yet (none when all are).

    With ``cache_key`` (the checkpoint's sha256) each layer is cached on its own under the user cache
    folder, so later runs of any subset reuse it. A cache entry that cannot be read is recomputed and
    rewritten; a cache folder that cannot be written means no caching. Either is said in the ``notes``.
    """
    layers = list(dict.fromkeys(layers))
    found, notes = cached_examples(spec, layers, dataset, k, neuron, cache_key)
    missing = [layer for layer in layers if layer not in found]
    fresh = examples_pass(model, spec, missing, dataset, k, neuron, batch_size, device, callback) if missing else {}
    if cache_key and fresh:
        notes += cache_examples(fresh, dataset, k, cache_key, spec)
    stats = {layer: found.get(layer) or fresh[layer] for layer in layers}
    for entry in stats.values():
        entry.notes = list(notes)
    return stats


def dataset_examples(model: nn.Module, spec: ModelSpec, layer: str, dataset: ImageDataset, k: int = 5,
                     neuron: bool = False, batch_size: int | None = None, device: str = "cpu",
                     callback: Callable[[int, int], None] | None = None,
                     cache_key: str | None = None) -> ExampleStats:
    """``dataset_examples_many`` for one layer."""
    return dataset_examples_many(model, spec, [layer], dataset, k, neuron, batch_size, device, callback, cache_key)[layer]


def memory_budget(device: str | torch.device) -> int:
    """Bytes a chunk may use: half the free GPU memory on CUDA; on the CPU a quarter of the RAM, at most 8 GiB."""
    if torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return free // 2
    import os

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 8 << 30
    return min(8 << 30, ram // 4)


@dataclass(frozen=True)
class LayerPlan:
    """One layer of a channels run: what its channels are, and the chunks their images are optimized in."""

    layer: str
    output_shape: tuple[int, ...]  # (C,) or (C, H, W), without the batch dimension
    activation: str
    channels: tuple[int, ...]
    diverse: int
    chunk: int  # images optimized at once, a multiple of ``diverse``
    bytes_per_image: int  # estimated memory of one image's forward and backward up to the layer
    tap: str = ""  # the module hooked to measure the layer (a BatchNorm after it, say); "" the layer itself
    measured_at: str = ""  # where its channels are measured, in words (ModelSpec.measured_at)

    @property
    def images(self) -> int:
        return len(self.channels) * self.diverse

    @property
    def chunks(self) -> int:
        return math.ceil(self.images / self.chunk)

    @property
    def spatial(self) -> bool:
        return len(self.output_shape) == 3


@dataclass(frozen=True)
class ChannelsPlan:
    """Every layer's plan, from one dry forward pass; a dry run prints it and the run follows it."""

    layers: tuple[LayerPlan, ...]
    steps: int
    device: str

    def __getitem__(self, layer: str) -> LayerPlan:
        return next(p for p in self.layers if p.layer == layer)


def plan_channels(model: nn.Module, spec: ModelSpec, layers: Sequence[str],
                  channels: str | Sequence[int] | None = None, *, diverse: int = 1, batch_size: int | None = None,
                  steps: int = CHANNELS_DEFAULTS.steps, device: str = "cpu",
                  budget_bytes: int | None = None) -> ChannelsPlan:
    """Plan a channels run of ``layers`` from one dry forward pass: output shapes, the activation, the
    channels (all, a list, or text such as "0-15,20" read against each layer's count) and the chunk
    size — ``batch_size``, or as many images as the activations up to the layer (kept for backward)
    fit in the device's memory budget, a multiple of ``diverse``."""
    if diverse < 1:
        raise UserError("{diverse} must be at least 1", settings=("diverse",))
    for layer in layers:
        resolve_layer(model, layer)
    here = model_device(model)  # the dry pass runs where the model is
    infos = {info.name: info for info in describe_layers(model, spec.input_shape, here, stop_after=layers)}
    budget = budget_bytes
    plans = []
    for layer in layers:
        info = infos.get(layer)
        if info is not None and info.returns is not None:
            raise not_a_tensor(layer, f"{'an' if info.returns[0] in 'AEIOUaeiou' else 'a'} {info.returns}")
        if info is None or info.output_shape is None:
            raise UserError("layer '{layer}' does not run in the model's forward pass", layer=layer)
        if len(info.output_shape) not in (1, 2, 3):
            raise UserError("layer '{layer}' has output shape {output_shape}; channels need (C,), (N, D) tokens or (C, H, W)",
                            layer=layer, output_shape=info.output_shape)
        count = info.output_shape[-1] if len(info.output_shape) == 2 else info.output_shape[0]
        if isinstance(channels, str):
            chosen = parse_channel_list(channels, count)
        else:
            chosen = list(range(count)) if channels is None else list(channels)
            bad = [c for c in chosen if not 0 <= c < count]
            if bad:
                raise UserError("channel {channel} is out of range: layer {layer} has channels 0-{last}",
                                channel=bad[0], layer=layer, last=count - 1)
        before = [i for i in infos.values() if i.finished is not None and i.finished <= info.finished and i.output_shape]
        per_image = 4 * 4 * (sum(math.prod(i.output_shape) for i in before) + 8 * math.prod(spec.image_shape))
        if batch_size:
            chunk = batch_size
        else:
            budget = memory_budget(device) if budget is None else budget
            chunk = max(1, budget // max(1, per_image))
        chunk = max(diverse, chunk // diverse * diverse)
        plans.append(LayerPlan(layer, info.output_shape, spec.activation(layer), tuple(chosen), diverse, chunk, per_image,
                               spec.tap(layer), spec.measured_at(layer)))
    return ChannelsPlan(tuple(plans), steps, str(device))


@dataclass(frozen=True)
class ChannelsSummary:
    """How one layer's channels did: counts, and ratios over the live, not rarely active channels
    whose optimization reached a positive activation."""

    channels: int
    live: int | None  # None without a dataset; rarely active channels count as live
    dead: int | None
    median_ratio: float | None
    share_ratio_at_least_1: float | None
    rare: int | None = None  # live but active on fewer than RARE_SHARE of the images
    not_reached: int = 0  # the optimized activation stayed at or below 0 (and, signed, below the best real image's)
    failed_images: int = 0  # optimized images whose objective became NaN/inf (stopped there; the others went on)
    images: int = 0  # optimized images in all

    @property
    def failed_note(self) -> str:
        """"; 3 of 64 images failed (NaN/inf objective)" when some did, else ""."""
        if not self.failed_images:
            return ""
        return f"; {self.failed_images} of {self.images} images failed (NaN/inf objective)"


@dataclass
class ChannelsResult:
    """Optimized images of channels of one layer, with their activations and dataset comparison."""

    layer: str
    channels: list[int]
    images: torch.Tensor  # (N * diverse, C, H, W); images of channel i at [i*diverse:(i+1)*diverse]
    activations: torch.Tensor  # (N * diverse,) post-activation channel activation of each image
    activation: str
    neuron: bool
    diverse: int
    config: RenderConfig
    renders: list[RenderResult]
    examples: ExampleStats | None = None
    batch_size: int = 0
    stopped: list[int] = field(default_factory=list)  # channels whose objective turned non-finite
    spatial: bool = True  # the layer's output is a map (conv), not a vector (Linear)
    measured_at: str = ""  # where the channels are measured, in words: "conv1 → bn1 → relu"

    @functools.cached_property
    def saved(self) -> torch.Tensor:
        """(N * diverse, C, H, W) uint8: the optimized images as they are saved (``quality.saved_levels``), worked
        out once: images.npz holds them and the saturation verdict is judged on them."""
        return saved_levels(self.images[:len(self.channels) * self.diverse].detach().cpu())

    @functools.cached_property
    def saturated(self) -> torch.Tensor:
        """(N,) bool: the channel saturates (``quality.saturates``), worked out once: the report's pages and its
        overview each ask, and at 224 pixels a wide layer's images take a while."""
        return saturates(self.saved.view(len(self.channels), self.diverse, *self.saved.shape[1:]), ~self.not_reached)

    @property
    def best(self) -> torch.Tensor:
        """(N,) the highest activation among each channel's images."""
        return self.activations.view(-1, self.diverse).amax(1)

    @property
    def dead(self) -> torch.Tensor:
        """(N,) bool: no real image gives the channel a positive output (all False without examples, and for a raw,
        signed output: ``ExampleStats.judged``)."""
        if self.examples is None:
            return torch.zeros(len(self.channels), dtype=torch.bool)
        return ~self.examples.live[self.channels]

    @property
    def rare(self) -> torch.Tensor:
        """(N,) bool: live but rarely active (all False without examples)."""
        if self.examples is None:
            return torch.zeros(len(self.channels), dtype=torch.bool)
        return self.examples.rare[self.channels]

    @property
    def style(self) -> str:
        """The style its images were made in: data (started at real examples) or texture (``ImageConfig.style``)."""
        return "texture" if self.penalty is None else "data"

    @property
    def penalty(self) -> str | None:
        """The data style's distance penalty: "subspace" (energy outside the data's principal components,
        ``objectives.near_data``), "pixel distance" (to the starting example, ``objectives.accentuate``: inputs too
        large for the subspace), or None (texture style)."""
        names = [r.objective for r in self.renders]
        if any(name.startswith("near_data") for name in names):
            return "subspace"
        return "pixel distance" if any(name.startswith("accentuate") for name in names) else None

    @property
    def style_detail(self) -> str:
        """The style in words, naming the parametrization and penalty used (as classes' settings line names its
        parametrization): the report header and run.json."""
        start = "free pixels from each channel's top real example, pushed to beat it"
        if self.penalty == "subspace":
            return (f"data style: {start}; penalty: energy outside the data's top {DATA_COMPONENTS} principal "
                    f"components past {DATA_BUDGET:g}x a real image's")
        if self.penalty == "pixel distance":
            values = math.prod(self.images.shape[1:])
            return (f"data style: {start}; penalty: squared pixel distance to that example (input of {values:,} "
                    f"values, over {BASIS_VALUES:,}: no principal subspace)")
        param = self.renders[0].param if self.renders else self.config.image.parametrization
        start = next((name for name, bias in STARTS.items() if bias == self.config.image.init_bias), "auto")
        return f"texture style: {param} image optimized from the {start} start"

    @property
    def not_reached(self) -> torch.Tensor:
        """(N,) bool: a live channel none of whose optimized images got a positive activation, nor the best real
        image's. A map's mean below 0 on every real image is no failure to beat: a signed output's, and a Hardswish's,
        SiLU's, GELU's or Mish's, whose every image may average below 0. A dead channel is dead, not unreached."""
        below = self.best <= 0
        if self.examples is not None:
            below &= (self.best < self.examples.max_value[self.channels].to(self.best.dtype)) & ~self.dead
        return below

    @property
    def ratio(self) -> torch.Tensor:
        """(N,) best visualization activation / highest activation of any real image; NaN for dead, rarely
        active or not reached channels, or without examples."""
        if self.examples is None:
            return torch.full((len(self.channels),), float("nan"))
        reference = self.examples.max_value[self.channels]
        ratio = self.best / reference.clamp(min=1e-12)
        left_out = self.dead | self.rare | self.not_reached | (reference <= 0)
        return torch.where(left_out, torch.full_like(ratio, float("nan")), ratio)

    def summary(self) -> ChannelsSummary:
        """Live, dead, rarely active and not reached counts; median ratio and the share of ratios >= 1
        over the channels that have a ratio (neither dead, rarely active nor not reached)."""
        ratio = self.ratio
        finite = ratio[~torch.isnan(ratio)]
        with_data = self.examples is not None
        return ChannelsSummary(
            channels=len(self.channels),
            live=int((~self.dead).sum()) if with_data else None,
            dead=int(self.dead.sum()) if with_data else None,
            median_ratio=float(finite.median()) if len(finite) else None,
            share_ratio_at_least_1=float((finite >= 1).float().mean()) if len(finite) else None,
            rare=int(self.rare.sum()) if with_data else None,
            not_reached=int(self.not_reached.sum()),
            failed_images=sum(len(render.stopped) for render in self.renders),
            images=len(self.activations),
        )

    @property
    def interrupted_at(self) -> int | None:
        return next((r.interrupted_at for r in self.renders if r.interrupted_at is not None), None)

    @property
    def steps_done(self) -> int:
        return min(r.steps_done for r in self.renders) if self.renders else 0


def parse_channel_list(text: str, count: int) -> list[int]:
    """'0-15,20' -> [0, ..., 15, 20], each within 0..count-1."""
    if not text.strip():
        raise UserError("empty channel list: write e.g. 0-15,20, or leave out {channels} for all channels",
                        settings=("channels",))
    channels: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise UserError("malformed channel list '{text}': empty item", text=text)
        lo_text, dash, hi_text = part.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if dash else lo
        except ValueError:
            raise UserError("malformed channel list '{text}': '{part}' is not N or N-M", text=text, part=part) from None
        if lo > hi:
            raise UserError("malformed channel range '{part}': the start is after the end", part=part)
        if hi >= count:
            raise UserError("channel {hi} is out of range: this layer has channels 0-{last}", hi=hi, last=count - 1)
        channels.extend(range(lo, hi + 1))
    return list(dict.fromkeys(channels))


@dataclass
class ChunkResult:
    """One chunk of a layer's plan, optimized: the unit of work a run splits, saves and resumes."""

    layer: str
    index: int  # the chunk's place in the layer's plan
    channels: list[int]
    render: RenderResult
    activations: torch.Tensor  # (images,) post-activation channel activation of each image

    def to_dict(self) -> dict:
        """Plain tensors, lists and numbers (loadable with ``torch.load(weights_only=True)``)."""
        return {"layer": self.layer, "index": self.index, "channels": self.channels,
                "activations": self.activations, "render": dict(vars(self.render))}

    @classmethod
    def from_dict(cls, data: dict) -> "ChunkResult":
        return cls(data["layer"], data["index"], data["channels"], RenderResult(**data["render"]), data["activations"])


def chunk_channels(plan: LayerPlan, index: int) -> list[int]:
    """The channels of chunk ``index`` of ``plan``."""
    per_chunk = plan.chunk // plan.diverse
    return list(plan.channels[index * per_chunk:(index + 1) * per_chunk])


def chunk_objective(plan: LayerPlan, channels: Sequence[int], neuron: bool = False) -> Objective:
    """What a chunk's images maximize: image i its channel (``objectives.channels`` with the layer's activation),
    plus the diversity term within each group of ``plan.diverse`` images."""
    where = plan.tap or plan.layer
    objective = objectives.channels(where, channels, activation=plan.activation, neuron=neuron, group=plan.diverse)
    if plan.diverse > 1:
        objective = objective + DIVERSITY_WEIGHT * objectives.diversity(where, plan.diverse)
    return objective


@dataclass(frozen=True)
class DataStarts:
    """What the data style needs for a layer's plan: per image (channel by channel, ``diverse`` copies each) the
    real example it starts from and its channel's best real activation (the target is DATA_TARGET x it)."""

    images: torch.Tensor  # (len(plan.channels) * diverse, C, H, W) in [0, 1]
    best: torch.Tensor  # (len(plan.channels) * diverse,) the channel's best real activation (a dead one: DEAD_BEST)
    live: torch.Tensor  # (len(plan.channels) * diverse,) bool: the image's channel is live (ExampleStats.live)
    mean: torch.Tensor | None = None  # (C*H*W,) the real images' mean; None for inputs too large (see data_subspace)
    components: torch.Tensor | None = None  # (C*H*W, DATA_COMPONENTS) orthonormal: their principal directions
    scale: float = 1.0  # the median real image's energy outside them
    spreads: torch.Tensor | None = None  # (len(plan.channels) * diverse,) pixel distance the copies keep; None: diverse 1

    @property
    def targets(self) -> torch.Tensor:
        """The activation each image is pushed to."""
        return DATA_TARGET * self.best

    def rows(self, part: slice | torch.Tensor) -> "DataStarts":
        """The starts of images ``part`` (a slice or an index tensor) only."""
        return replace(self, images=self.images[part], best=self.best[part], live=self.live[part],
                       spreads=None if self.spreads is None else self.spreads[part])

    def chunk(self, plan: LayerPlan, index: int) -> "DataStarts":
        per_chunk = plan.chunk // plan.diverse * plan.diverse
        return self.rows(slice(index * per_chunk, (index + 1) * per_chunk))


def data_starts(plan: LayerPlan, examples: ExampleStats, dataset: ImageDataset) -> DataStarts:
    """Each image starts at one of its channel's strongest real examples (copy j of ``diverse``: see
    ``spread_starts``) and aims at DATA_TARGET x the channel's best real activation (a dead channel: a tiny positive
    target); with ``diverse`` > 1 its copies keep DIVERSE_MARGIN x the median pairwise pixel distance of the
    channel's top ``diverse`` real examples apart."""
    channels, diverse = list(plan.channels), plan.diverse
    best = examples.max_value[channels].float().clamp(min=DEAD_BEST).repeat_interleave(diverse)
    live = examples.live[channels].repeat_interleave(diverse)
    if diverse == 1:
        picked = examples.top_indices[channels, 0]
        return DataStarts(dataset.pixels(picked).float(), best, live, *data_subspace(dataset))
    chosen, spreads = [], []
    for c in channels:
        pool = dataset.pixels(examples.top_indices[c]).float()
        chosen.append(pool[spread_starts(pool, diverse)])
        spreads += [DIVERSE_MARGIN * median_pairwise(pool[:diverse])] * diverse
    return DataStarts(torch.cat(chosen), best, live, *data_subspace(dataset),
                      spreads=torch.tensor(spreads).clamp(min=1e-6))


def spread_starts(pool: torch.Tensor, n: int) -> list[int]:
    """``n`` rows of ``pool`` (a channel's top real examples, strongest first) far apart: the strongest, then
    greedily the one farthest (pixel L2) from those picked; rows repeat when the pool has fewer than ``n``."""
    flat = pool.flatten(1)
    picked = [0]
    nearest = (flat - flat[0]).norm(dim=1)
    while len(picked) < min(n, len(flat)):
        picked.append(int(nearest.argmax()))
        nearest = torch.minimum(nearest, (flat - flat[picked[-1]]).norm(dim=1))
    return [picked[j % len(picked)] for j in range(n)]


def median_pairwise(images: torch.Tensor) -> float:
    """The median pixel L2 distance between the pairs of ``images`` (N, ...); 0 for fewer than two."""
    if len(images) < 2:
        return 0.0
    flat = images.flatten(1).float()
    upper = torch.triu_indices(len(flat), len(flat), 1)
    return float(torch.cdist(flat, flat)[upper[0], upper[1]].median())


def data_subspace(dataset: ImageDataset) -> tuple[torch.Tensor | None, torch.Tensor | None, float]:
    """The mean, top DATA_COMPONENTS principal directions (exact: the covariance's eigenvectors) and median energy
    outside the top DATA_MEASURED of at most DATA_SUBSPACE_IMAGES evenly spaced images of ``dataset``; (None, None,
    1.0) for inputs of more than params.BASIS_VALUES values. Computed once per dataset (every layer's starts
    use it)."""
    if "subspace" not in dataset.derived:
        dataset.derived["subspace"] = _data_subspace(dataset)
    return dataset.derived["subspace"]


def _data_subspace(dataset: ImageDataset) -> tuple[torch.Tensor | None, torch.Tensor | None, float]:
    if math.prod(dataset.pixels(slice(0, 1)).shape[1:]) > BASIS_VALUES or len(dataset) < 2:
        return None, None, 1.0
    picked = torch.linspace(0, len(dataset) - 1, min(len(dataset), DATA_SUBSPACE_IMAGES)).long()
    flat = dataset.pixels(picked).flatten(1).double()
    mean = flat.mean(0)
    centred = flat - mean
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    measured = vectors[:, -DATA_MEASURED:].flip(1)
    outside = (centred - centred @ measured @ measured.T).pow(2).sum(1)
    return mean.float(), measured[:, :DATA_COMPONENTS].float().contiguous(), max(float(outside.median()), 1e-12)


def visualize_chunk(model: nn.Module, spec: ModelSpec, plan: LayerPlan, index: int,
                    config: RenderConfig = CHANNELS_DEFAULTS, neuron: bool = False,
                    callback: ProgressCallback | None = None, starts: DataStarts | None = None) -> ChunkResult:
    """Optimize chunk ``index`` of ``plan`` (the model already on ``config.device``). Each image's randomness
    comes from (config.seed, channel, copy), so a chunk gives the same images wherever it runs. With
    ``starts`` (``starts_for``; the style not texture) each image starts at a real example and is pushed to its
    target while staying near the data (feature accentuation); without them the texture style runs (a note says so
    when the style asked for was data)."""
    channels, diverse = chunk_channels(plan, index), plan.diverse
    keys = [c * diverse + j for c in channels for j in range(diverse)]
    if config.image.style != "texture" and starts is not None:
        starts = starts.chunk(plan, index)
        weight = DATA_DISTANCE_WEIGHT if diverse == 1 else DIVERSE_DISTANCE_WEIGHT
        objective = data_objective(plan, channels, starts, starts.targets, weight, neuron)
        render = config.replace(lr=config.lr * DATA_LR_SCALE).render(
            model, objective, spec, keys, callback, param=example_image_for(spec, starts.images, keys, config.seed))
    else:
        render = config.render(model, chunk_objective(plan, channels, neuron), spec, keys, callback)
        if config.image.style == "data":
            render.notes.append(Message("{style} data needs real examples ({data}): these images are in the texture "
                                        "style", settings=("style", "data")))
    values = measure_channels(model, spec, plan.layer, render.images, [c for c in channels for _ in range(diverse)],
                              plan.activation, neuron, config.device)
    if starts is not None and config.image.style != "texture" and render.interrupted_at is None:
        render, values = rescued(model, spec, plan, channels, starts, config, neuron, render, values)
    return ChunkResult(plan.layer, index, channels, render, values)


def data_objective(plan: LayerPlan, channels: Sequence[int], starts: DataStarts, targets: torch.Tensor,
                   weight: float, neuron: bool = False) -> Objective:
    """The data style's objective for ``channels`` (``starts``: their rows): each image pushed to its target
    (nothing gained past it) while its distance from the data (``objectives.near_data``, ``weight``; inputs too
    large for the subspace: the pixel distance to its start) is penalized, and with ``diverse`` > 1 its copies
    kept apart (``objectives.spread``)."""
    base = objectives.channels(plan.tap or plan.layer, channels, activation=plan.activation, neuron=neuron,
                               group=plan.diverse)
    if starts.components is not None:
        objective = objectives.near_data(base, targets, starts.mean, starts.components, starts.scale, DATA_BUDGET,
                                         weight)
    else:
        objective = objectives.accentuate(base, targets, starts.images, DATA_PIXEL_WEIGHT)
    if starts.spreads is not None:  # diverse > 1
        objective = objective + objectives.spread(starts.spreads, plan.diverse, DIVERSE_WEIGHT)
    return objective


def rescued(model: nn.Module, spec: ModelSpec, plan: LayerPlan, channels: Sequence[int], starts: DataStarts,
            config: RenderConfig, neuron: bool, render: RenderResult,
            values: torch.Tensor) -> tuple[RenderResult, torch.Tensor]:
    """A data-style chunk's images still below their channel's best real image (``values``: measured) go on from
    where they are for config.steps x RESCUE_SHARE steps with the single image's distance weight, pushed to
    RESCUE_TARGET x the best real activation (with ``diverse`` > 1 their channel's other copies beside them, for the
    spread). Such an image takes, of RESCUE_LOOKS looks along the way and the end, the first above the best real
    image (else the strongest), when it is stronger than it was; the other images (and those of the channels
    ``starts.live`` marks dead) stay."""
    diverse, steps = plan.diverse, int(config.steps * RESCUE_SHARE)
    best = starts.best
    low = ((values < best) & starts.live).view(-1, diverse).any(1).tolist()
    groups = [i for i, bad in enumerate(low) if bad and not any(i * diverse <= r < (i + 1) * diverse
                                                                 for r in render.stopped)]
    if not groups or steps < 1:
        return render, values
    rows = torch.tensor([i * diverse + j for i in groups for j in range(diverse)])
    part = replace(plan, channels=tuple(channels[i] for i in groups), chunk=len(rows))
    part_starts = starts.rows(rows)
    objective = data_objective(part, part.channels, part_starts, RESCUE_TARGET * best[rows],
                               DATA_DISTANCE_WEIGHT, neuron)
    keys = [c * diverse + j for c in part.channels for j in range(diverse)]
    every = max(1, steps // RESCUE_LOOKS)
    again = config.replace(steps=steps, snapshots=tuple(range(every + 1, steps + 1, every))).render(
        model, objective, spec, keys, param=example_image_for(spec, render.images[rows], keys, config.seed))
    owners = [c for c in part.channels for _ in range(diverse)]
    looks = [again.snapshots[k] for k in sorted(again.snapshots)] + [again.images]
    measured = measure_channels(model, spec, plan.layer, torch.cat(looks), owners * len(looks), plan.activation,
                                neuron, config.device).view(len(looks), len(rows))
    reached = measured >= best[rows]
    first = torch.where(reached.any(0), reached.float().argmax(0), measured.argmax(0))
    pick = torch.arange(len(rows))
    now = measured[first, pick]
    better = (values[rows] < best[rows]) & (now > values[rows])
    taken = rows[better]
    images, values = render.images.clone(), values.clone()
    images[taken] = torch.stack(looks)[first, pick][better]
    values[taken] = now[better]
    return replace(render, images=images), values


def merge_renders(parts: Sequence[RenderResult]) -> RenderResult:
    """Renders of consecutive image rows as one: images, values, history and snapshots side by side, the rows of
    stopped images offset; an interruption in any part cuts the whole to the steps every part did."""
    first, offsets = parts[0], np.cumsum([0] + [len(p.values) for p in parts[:-1]]).tolist()
    steps = min(len(p.history) for p in parts)
    interrupted = [p.interrupted_at for p in parts if p.interrupted_at is not None]
    return replace(
        first, images=torch.cat([p.images for p in parts]), values=torch.cat([p.values for p in parts]),
        history=torch.cat([p.history[:steps] for p in parts], 1),
        snapshots={s: torch.cat([p.snapshots[s] for p in parts]) for s in first.snapshots
                   if all(s in p.snapshots for p in parts)},
        steps_done=min(p.steps_done for p in parts), interrupted_at=min(interrupted) if interrupted else None,
        stopped=[o + i for o, p in zip(offsets, parts) for i in p.stopped],
        failed_at={o + i: step for o, p in zip(offsets, parts) for i, step in p.failed_at.items()},
        failed_terms=tuple(dict.fromkeys(t for p in parts for t in p.failed_terms)),
        notes=list(dict.fromkeys(n for p in parts for n in p.notes)))


def _release_device_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def backed_off(run: Callable[[int, int], ChunkResult], count: int) -> list[ChunkResult]:
    """``run(lo, hi)`` optimizes channels lo..hi-1 of a chunk of ``count``; on an out-of-memory error the range is
    halved and each half run (halved again as needed), so a chunk that does not fit still finishes, fewer images
    at once. A single channel that does not fit raises the error."""
    def attempt(lo: int, hi: int) -> list[ChunkResult]:
        try:
            return [run(lo, hi)]
        except torch.OutOfMemoryError:
            if hi - lo <= 1:
                raise
        _release_device_memory()  # outside the except block: its traceback no longer holds the failed step's tensors
        middle = (lo + hi) // 2
        return attempt(lo, middle) + attempt(middle, hi)

    return attempt(0, count)


def visualize_chunk_fitting(model: nn.Module, spec: ModelSpec, plan: LayerPlan, index: int,
                            config: RenderConfig = CHANNELS_DEFAULTS, neuron: bool = False,
                            callback: ProgressCallback | None = None, starts: DataStarts | None = None) -> ChunkResult:
    """``visualize_chunk``, backing off on a CUDA out-of-memory error (``backed_off``): the chunk's channels are
    optimized in halves and merged into the same chunk. The images are the chunk's (each image's randomness comes
    from its channel and copy, not its batch), up to the float noise a smaller batch can bring."""
    channels, diverse = chunk_channels(plan, index), plan.diverse
    chunk_starts = None if starts is None else starts.chunk(plan, index)

    def run(lo: int, hi: int) -> ChunkResult:
        if (lo, hi) == (0, len(channels)):
            return visualize_chunk(model, spec, plan, index, config, neuron, callback, starts)
        part = replace(plan, channels=tuple(channels[lo:hi]), chunk=(hi - lo) * diverse)
        rows = slice(lo * diverse, hi * diverse)
        part_starts = None if chunk_starts is None else chunk_starts.rows(rows)
        return visualize_chunk(model, spec, part, 0, config, neuron, callback, part_starts)

    parts = backed_off(run, len(channels))
    if len(parts) == 1:
        return parts[0]
    return ChunkResult(plan.layer, index, channels, merge_renders([p.render for p in parts]),
                       torch.cat([p.activations for p in parts]))


#: Chunks sized from a measured peak get this headroom over it (planned memory stays within 2x of the measured).
MEASURED_HEADROOM = 1.25


def measured_bytes_per_image(model: nn.Module, spec: ModelSpec, plan: LayerPlan,
                             config: RenderConfig = CHANNELS_DEFAULTS, neuron: bool = False) -> int | None:
    """The peak device memory of one step of the layer's first chunk (``torch.cuda.max_memory_allocated`` above
    what was allocated before it), per image; None on the CPU, where nothing measures it cheaply. The model is
    on ``config.device``; a first chunk that does not fit is measured at half its size (and so on)."""
    device = torch.device(config.device)
    if device.type != "cuda":
        return None
    images = min(plan.chunk, plan.images)

    def probe(lo: int, hi: int) -> int:
        part = replace(plan, channels=tuple(chunk_channels(plan, 0)[lo:hi]), chunk=(hi - lo) * plan.diverse)
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        visualize_chunk(model, spec, part, 0, config.replace(steps=1, snapshots=()), neuron)
        torch.cuda.synchronize(device)
        return max(1, (torch.cuda.max_memory_allocated(device) - base) // part.images)

    return backed_off(probe, images // plan.diverse)[0]


def sized_from(plan: LayerPlan, per_image: int, budget: int) -> LayerPlan:
    """``plan`` with its chunk sized from a measured memory per image: as many images as fit ``budget`` at
    MEASURED_HEADROOM x the measurement, a multiple of ``diverse``."""
    bytes_per_image = math.ceil(per_image * MEASURED_HEADROOM)
    chunk = max(plan.diverse, budget // bytes_per_image // plan.diverse * plan.diverse)
    return replace(plan, chunk=chunk, bytes_per_image=bytes_per_image)


def calibrate_plan(model: nn.Module, spec: ModelSpec, plan: ChannelsPlan, config: RenderConfig = CHANNELS_DEFAULTS,
                   neuron: bool = False, budget_bytes: int | None = None) -> ChannelsPlan:
    """On CUDA: every layer's chunk re-sized from the measured peak of its first chunk (``measured_bytes_per_image``,
    ``sized_from``) against the device's memory budget: fewer, larger chunks where the estimate was cautious.
    Unchanged on the CPU."""
    if torch.device(config.device).type != "cuda":
        return plan
    budget = memory_budget(config.device) if budget_bytes is None else budget_bytes
    layers = []
    with on_device(model, config.device) as model:
        for layer in plan.layers:
            per_image = measured_bytes_per_image(model, spec, layer, config, neuron)
            layers.append(layer if per_image is None else sized_from(layer, per_image, budget))
    return replace(plan, layers=tuple(layers))


def assemble_channels(plan: LayerPlan, chunks: Sequence[ChunkResult], config: RenderConfig, neuron: bool = False,
                      examples: ExampleStats | None = None) -> ChannelsResult:
    """A layer's result from its chunks (in plan order; a run stopped early has only the first ones)."""
    chunks = sorted(chunks, key=lambda c: c.index)
    stopped = [chunk.channels[i // plan.diverse] for chunk in chunks for i in chunk.render.stopped]
    return ChannelsResult(layer=plan.layer, channels=[c for chunk in chunks for c in chunk.channels],
                          images=torch.cat([c.render.images for c in chunks]),
                          activations=torch.cat([c.activations for c in chunks]), activation=plan.activation,
                          neuron=neuron, diverse=plan.diverse, config=config, renders=[c.render for c in chunks],
                          examples=examples, batch_size=plan.chunk, stopped=list(dict.fromkeys(stopped)),
                          spatial=plan.spatial, measured_at=plan.measured_at)


def visualize_channels(model: nn.Module, spec: ModelSpec, layer: str, channels: Sequence[int] | None = None,
                       config: RenderConfig = CHANNELS_DEFAULTS, neuron: bool = False, diverse: int = 1,
                       batch_size: int | None = None, examples: ExampleStats | None = None,
                       callback: ProgressCallback | None = None, plan: LayerPlan | None = None,
                       data: ImageDataset | torch.Tensor | None = None,
                       dataset: ImageDataset | None = None) -> ChannelsResult:
    """One optimized image (or ``diverse`` images) per channel of ``layer``, all in batched chunks.

    Each image's randomness comes from (config.seed, channel, copy), so the
    chunk size does not change the results; a diversity group is never split.
    ``plan`` (from ``plan_channels``) fixes the channels and chunk size; without it one is made.
    ``data`` (an ImageDataset or real images) gives the images its image prior (``params.prior_for``), as the
    command line does with its dataset; the real examples beside them come from ``dataset_examples`` (``examples``).
    The data style (``config.image.style``) starts each image at its channel's top example: the images of
    ``dataset`` (else of ``data`` when it is an ImageDataset, else the built-in dataset ``examples`` name).
    The caller's model stays where it is (a copy runs on ``config.device`` if needed).
    """
    spec, _ = prior_for(spec, data)
    if plan is None:
        planned = plan_channels(model, spec, [layer], channels, diverse=diverse, batch_size=batch_size,
                                steps=config.steps, device=config.device)
        plan = (planned if batch_size else calibrate_plan(model, spec, planned, config, neuron))[layer]
    starts = starts_for(plan, config.image.style, examples, dataset or data)
    total_steps = config.steps * plan.chunks
    chunks: list[ChunkResult] = []
    with on_device(model, config.device) as model:
        for index in range(plan.chunks):
            offset = config.steps * index
            progress = None if callback is None else (
                lambda step, _total, v, offset=offset: callback(offset + step, total_steps, v))
            chunks.append(visualize_chunk_fitting(model, spec, plan, index, config, neuron, progress, starts))
            if chunks[-1].render.interrupted_at is not None:
                break
    return assemble_channels(plan, chunks, config, neuron, examples)


def starts_for(plan: LayerPlan, style: str, examples: ExampleStats | None,
               data: ImageDataset | torch.Tensor | None) -> DataStarts | None:
    """The data style's starts for ``plan`` (``data_starts``), or None for the texture style: ``style`` texture,
    no real examples, or (``style`` auto) no images of them to be found."""
    if style == "texture" or examples is None:
        return None
    try:
        return data_starts(plan, examples, examples_dataset(examples, data))
    except UserError:
        if style == "data":
            raise
        return None


def examples_dataset(examples: ExampleStats, data: ImageDataset | torch.Tensor | None) -> ImageDataset:
    """The dataset ``examples`` index: ``data`` when it is one (of as many images), else the built-in dataset they
    name."""
    if isinstance(data, ImageDataset) and len(data) == examples.count:
        return data
    from .data import load_dataset

    try:
        found = load_dataset(examples.dataset, examples.split)
    except Exception as error:  # noqa: BLE001 - said in the UserError
        raise UserError("{style} data needs the images of the real examples ({dataset}); pass that dataset",
                        settings=("style",), dataset=examples.dataset) from error
    if len(found) != examples.count:
        raise UserError("{style} data needs the images of the real examples ({dataset}); pass that dataset",
                        settings=("style",), dataset=examples.dataset)
    return found


def measure_channels(model: nn.Module, spec: ModelSpec, layer: str, images: torch.Tensor, channels: Sequence[int],
                     activation: str, neuron: bool = False, device: str = "cpu") -> torch.Tensor:
    """Post-activation activation of channel ``channels[i]`` on pixel-space image i, (N,)."""
    output = record(model, spec, images, [layer], device)[layer].float()
    picked = torch.as_tensor(list(channels), device=output.device).view(-1, 1)
    return channel_values(output, activation, neuron).gather(1, picked).squeeze(1).cpu()


@dataclass(frozen=True)
class WorkItem:
    """One chunk of a layer's plan: the unit a run splits over processes, saves, and resumes."""

    id: int  # its place among all the plan's chunks, layer by layer
    layer: str
    index: int  # the chunk's place in its layer's plan
    images: int
    cost: float  # estimated: images x memory per image (a stand-in for compute) x steps


def work_items(plan: ChannelsPlan) -> list[WorkItem]:
    """Every chunk of every layer, in plan order."""
    items: list[WorkItem] = []
    for layer in plan.layers:
        for index in range(layer.chunks):
            images = len(chunk_channels(layer, index)) * layer.diverse
            items.append(WorkItem(len(items), layer.layer, index, images,
                                  float(images) * layer.bytes_per_image * plan.steps))
    return items


def split_items(items: Sequence[WorkItem], world: int) -> list[list[WorkItem]]:
    """Items over ``world`` processes, balanced by cost (largest first, each to the least loaded, ties to the
    lower rank): the same split on every process. Each process's items stay in plan order."""
    loads, shares = [0.0] * world, [[] for _ in range(world)]
    for item in sorted(items, key=lambda i: (-i.cost, i.id)):
        rank = min(range(world), key=lambda r: (loads[r], r))
        shares[rank].append(item)
        loads[rank] += item.cost
    return [sorted(share, key=lambda i: i.id) for share in shares]


#: Batch sizes (images) a dry run times a layer's first chunk at, to extrapolate the full chunk's step time from;
#: then batches ``TIMING_GROWTH`` times larger while the timing of one is predicted to fit a layer's share of
#: ``TIMING_BUDGET`` seconds for the whole dry run: small batches underuse the cores (or a GPU), so a line
#: through them alone is too flat, and a larger batch sees the cache misses of the chunk's size.
TIMING_BATCHES = (4, 16)
TIMING_GROWTH = 4
TIMING_BUDGET = 10.0


def _step_seconds(model: nn.Module, spec: ModelSpec, plan: LayerPlan, config: RenderConfig, neuron: bool,
                  steps: int, clock: Callable[[], float]) -> tuple[list[float], bool]:
    """The seconds of each of ``steps`` steps of chunk 0 of ``plan`` after one warm-up step (the model already on
    the device), and whether the steps were interrupted."""
    stamps: list[float] = []
    done = visualize_chunk(model, spec, plan, 0, config.replace(steps=steps + 1, snapshots=()), neuron,
                           lambda *_: stamps.append(clock()))
    return [b - a for a, b in zip(stamps, stamps[1:])] or [0.0], done.render.interrupted_at is not None


def time_chunk(model: nn.Module, spec: ModelSpec, plan: LayerPlan, config: RenderConfig = CHANNELS_DEFAULTS,
               neuron: bool = False, steps: int = 3, clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds per optimization step of the layer's first (full-size) chunk, the mean of ``steps`` timed steps
    after one warm-up step."""
    with on_device(model, config.device) as model:
        seconds = _step_seconds(model, spec, plan, config, neuron, steps, clock)[0]
    return sum(seconds) / len(seconds)


@dataclass(frozen=True)
class StepEstimate:
    """Seconds per step of a layer's first chunk (``images`` images), from the fastest step (``timings``) of
    batches of ``timed`` images: extrapolated unless the last is the chunk itself."""

    seconds: float
    images: int
    timed: tuple[int, ...]
    timings: tuple[float, ...]

    @property
    def extrapolated(self) -> bool:
        return self.timed[-1] != self.images


def sub_chunk(plan: LayerPlan, images: int) -> LayerPlan:
    """``plan`` with chunks of about ``images`` images (whole groups of ``plan.diverse``, at least one): its chunk 0
    is the first images of the real first chunk, the same channels, fewer of them."""
    return replace(plan, chunk=max(plan.diverse, min(plan.chunk, images) // plan.diverse * plan.diverse))


def estimate_step(model: nn.Module, spec: ModelSpec, plan: LayerPlan, config: RenderConfig = CHANNELS_DEFAULTS,
                  neuron: bool = False, steps: int = 3, batches: tuple[int, int] = TIMING_BATCHES,
                  budget: float = 2.0, clock: Callable[[], float] = time.perf_counter) -> StepEstimate:
    """Seconds per step of the layer's first chunk without running it at full size: its first ``batches``
    images are timed (the fastest of ``steps`` steps after a warm-up: on a shared machine the slower ones waited
    for the cores), then ``TIMING_GROWTH`` times more while that is predicted (the last timing's wall time scaled
    by the line so far) to take at most ``budget`` seconds. The step time, close to affine in the batch (a fixed
    cost + a cost per image), is extrapolated along the line through the last two, kept between the largest
    batch's time (no cost per image) and that time scaled by the images (no fixed cost); a chunk reached so is
    timed whole. Small batches underuse a GPU or the CPU's threads, which flattens the line, and a chunk larger
    than the cache costs more per image: both make an estimate from batches smaller than the chunk low (0.7-1.0
    of the chunk's timing on 2 CPU cores: benchmarks/chunk_speed.py, extrapolate mode), not high; on a GPU,
    whose steps are fast, the batches timed within the budget come closer to the chunk."""
    images = len(chunk_channels(plan, 0)) * plan.diverse
    small = sub_chunk(plan, batches[0]).chunk if images > sub_chunk(plan, batches[1]).chunk else images
    sizes, timings = [small], []

    def line(n: int) -> float:
        if len(timings) == 1:
            return timings[0] * n / sizes[0]
        (n1, n2), (t1, t2) = sizes[-2:], timings[-2:]
        return min(max(t2 + (t2 - t1) * (n - n2) / (n2 - n1), t2), t2 * n / n2)

    with on_device(model, config.device) as model:
        while True:
            start = clock()
            seconds, interrupted = _step_seconds(model, spec, sub_chunk(plan, sizes[-1]), config, neuron, steps,
                                                 clock)
            took = clock() - start
            timings.append(min(seconds))
            if interrupted or sizes[-1] >= images:  # Ctrl-C (the caller stops), or the whole chunk was timed
                break
            larger = sub_chunk(plan, sizes[-1] * TIMING_GROWTH if len(sizes) > 1 else batches[1]).chunk
            larger = min(max(larger, sub_chunk(plan, sizes[-1] + plan.diverse).chunk), images)
            if len(sizes) > 1 and took * line(larger) / max(timings[-1], 1e-9) > budget:
                break
            sizes.append(larger)
    return StepEstimate(timings[-1] if sizes[-1] >= images else line(images), images, tuple(sizes), tuple(timings))
