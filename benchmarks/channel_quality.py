"""Do channel images beat the data and still look like it? Routes (channel styles) on a built-in model's layer.

    python benchmarks/channel_quality.py --model mnist --layer conv2 [--channels 0-7] [--routes a,b,c,d,e] [--steps 256]
    python benchmarks/channel_quality.py --model torchvision:resnet18 --size 64 --images TRAIN_DIR --held-out TEST_DIR \
        --layer layer1.0.conv1 --routes a,s

``--images`` (with ``--held-out``) measures any model (``--size``: its square input) on pictures of your own, as
``introspect channels --images`` does: the image prior is estimated from them, ``--held-out`` gives the real images'
median distance; routes a and s only (the others need a data basis: inputs of at most 3,072 values).

For each route, over the layer's chosen channels, against the model's training data (``load_dataset(name, "train")``):
- share >= 1: the share of live (not rarely active) channels whose image excites them at least as much as the best
  real image (ratio = optimized activation / best real activation, as ``ChannelsResult.ratio``);
- median ratio;
- distance: energy outside the top-50 principal components of the real training images (``quality.Manifold``),
  divided by the median of the same energy over the real held-out (test) images; median (and max) over the channels.
  Real images sit near 1; the issue's bar is a median <= 2.0;
- seconds: wall time of the optimization (the examples pass, done once, is not counted).

Routes:
  a  texture: today's CHANNELS_DEFAULTS (FFT with the data's spectrum, grey start, free brightness)
  b  the data basis (``--param basis``: the data's mean start) with a free brightness direction, activation objective
  c  the data basis started at the channel's top real example (its coefficients), with free brightness
  d  MaCo-style: phase-only Fourier image with the data's magnitude spectrum, the data's mean logit as bias
  e  feature accentuation: the channel's top real example (free pixels), pushed until the channel reaches
     1.2x the best real activation, minus a distance penalty to the start
  f  c and e together: the top example's coefficients in the data basis, pushed to the target with the distance penalty
  s  the shipped ``--style data`` (CHANNELS_DEFAULTS with ``image.style = "data"``): free pixels from the channel's
     top real example, pushed to DATA_TARGET x the best real activation while the distance from the data above
     DATA_BUDGET is penalized (``objectives.near_data``; the subspace from the training images)

``--diverse N`` (route s only): N images per channel (``visualize_channels(diverse=N)``); the share and distance
are over all the live channels' images, and "diverse" is the share of live channels whose images' median pairwise
pixel L2 distance is at least that of the channel's top-N real examples (``--top`` real examples are kept per channel,
at least N: the copies start at N of them chosen far apart, ``channels.spread_starts``). With route s or ``--diverse``,
``--failures`` lists the images below ratio 1 (copy, start, distance) and ``--rescue 0`` turns off the extra steps
of those (``channels.rescued``; ``--rescue 0 --failures`` lists the images the rescue starts from).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import introspect  # noqa: E402
from introspect import channels as ch  # noqa: E402
from introspect.channels import CHANNELS_DEFAULTS, dataset_examples, measure_channels, parse_channel_list  # noqa: E402
from introspect.data import load_dataset, load_image_folder  # noqa: E402
from introspect.engine import render  # noqa: E402
from introspect.objectives import INPUT, Objective  # noqa: E402
from introspect.params import START_MARGIN, BasisImage, Prior, image_generators  # noqa: E402
from introspect.quality import Manifold  # noqa: E402


class BrightBasis(nn.Module):
    """The data basis plus one free brightness offset per image; optionally started at given coefficients."""

    name = "basis+brightness"

    def __init__(self, spec, keys, seed, start: torch.Tensor | None = None, std: float = 0.01):
        super().__init__()
        basis = torch.tensor(spec.image_basis, dtype=torch.float32)
        self.inner = BasisImage(spec.image_shape, image_generators(seed, keys), basis, std=std,
                                bias=torch.tensor(spec.basis_mean, dtype=torch.float32).view(spec.image_shape))
        if start is not None:
            with torch.no_grad():
                self.inner.coefficients.add_(start)
        self.shift = nn.Parameter(torch.zeros(len(keys), 1, 1, 1))

    def forward(self):
        inner = self.inner
        return inner.prior((inner.coefficients @ inner.basis).view(-1, *inner.shape) + self.shift)


def basis_coefficients(spec, pixels: torch.Tensor) -> torch.Tensor:
    """Coefficients (N, k) of real images in the data basis: the projection of their centred logits."""
    basis = torch.tensor(spec.image_basis, dtype=torch.float32)
    mean = torch.tensor(spec.basis_mean, dtype=torch.float32)
    centred = torch.logit(pixels.flatten(1).clamp(START_MARGIN, 1 - START_MARGIN)) - mean
    return centred @ basis.T / basis.pow(2).sum(1)


class PhaseImage(nn.Module):
    """MaCo: a fixed magnitude spectrum (the data's), only the phase optimized."""

    name = "maco"

    def __init__(self, spec, keys, seed, gain: float = 6.0):
        super().__init__()
        c, h, w = spec.image_shape
        magnitude = torch.tensor(spec.spectrum).float()
        self.register_buffer("magnitude", magnitude / magnitude.pow(2).mean().sqrt())
        generators = image_generators(seed, keys)
        self.phase = nn.Parameter(torch.stack([torch.rand(c, h, w // 2 + 1, generator=g) * 2 * torch.pi
                                               for g in generators]))
        self.size, self.gain = (h, w), gain
        mean = introspect.params.prior_map(spec.image_mean, spec.image_shape)
        self.prior = Prior(torch.logit(mean.clamp(START_MARGIN, 1 - START_MARGIN)), None)

    def forward(self):
        spectrum = torch.polar(self.magnitude.expand_as(self.phase), self.phase)
        image = torch.fft.irfft2(spectrum, s=self.size, norm="ortho")
        image = image / image.flatten(1).std(1).clamp(min=1e-6).view(-1, 1, 1, 1)
        return self.prior(self.gain * image * 0.5)


def accentuate(base: Objective, target: torch.Tensor, start: torch.Tensor, weight: float) -> Objective:
    """min(channel, target) / target minus ``weight`` x mean squared pixel distance to ``start``."""

    def fn(a):
        value = base(a)
        t = target.to(value)
        gain = torch.minimum(value, t) / t
        return gain - weight * (a[INPUT] - start.to(a[INPUT])).pow(2).flatten(1).mean(1)

    return Objective(fn, base.layers, f"accentuate({base.name})")


def run_route(route: str, model, spec, layer: str, channels: list[int], examples, train, pixels: torch.Tensor,
              steps: int, seed: int = 0, weight: float = 1.0, target: float = 1.2,
              budget: float | None = None, pixel_weight: float | None = None) -> torch.Tensor:
    """The route's images (N, C, H, W) for ``channels``, one batch."""
    plan = ch.plan_channels(model, spec, [layer], channels, steps=steps)[layer]
    if route == "a":
        return ch.visualize_chunk(model, spec, plan, 0, CHANNELS_DEFAULTS.replace(steps=steps, seed=seed)).render.images
    if route == "s":
        ch.DATA_DISTANCE_WEIGHT, ch.DATA_TARGET = weight, target
        ch.DATA_BUDGET = budget if budget is not None else ch.DATA_BUDGET
        ch.DATA_PIXEL_WEIGHT = pixel_weight if pixel_weight is not None else ch.DATA_PIXEL_WEIGHT
        config = CHANNELS_DEFAULTS.replace(steps=steps, seed=seed,
                                           image=replace(CHANNELS_DEFAULTS.image, style="data"))
        return ch.visualize_channels(model, spec, layer, channels, config=config, examples=examples,
                                     dataset=train).images
    config = CHANNELS_DEFAULTS.replace(steps=steps, seed=seed)
    keys = list(channels)
    parts = config.parts(spec, keys)
    objective = ch.chunk_objective(plan, channels)
    top = pixels[examples.top_indices[channels, 0]]
    if route == "b":
        param = BrightBasis(spec, keys, seed)
    elif route == "c":
        param = BrightBasis(spec, keys, seed, start=basis_coefficients(spec, top), std=0.0)
    elif route == "f":
        param = BrightBasis(spec, keys, seed, start=basis_coefficients(spec, top), std=0.0)
        objective = accentuate(objective, target * examples.max_value[channels], top, weight)
    elif route == "d":
        param = PhaseImage(spec, keys, seed)
    elif route == "e":
        param = introspect.params.PixelImage(spec.image_shape, image_generators(seed, keys), std=0.0,
                                             bias=torch.logit(top.clamp(START_MARGIN, 1 - START_MARGIN)))
        objective = accentuate(objective, target * examples.max_value[channels], top, weight)
    else:
        raise ValueError(route)
    return render(model, objective, param, transforms=parts.transforms, optimizer=parts.optimizer,
                  steps=steps).images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist")
    parser.add_argument("--layer", default="conv2", help="one layer, or several comma-separated")
    parser.add_argument("--channels", default="", help="e.g. 0-7 (default: all)")
    parser.add_argument("--routes", default="a,b,c,d,e")
    parser.add_argument("--steps", type=int, default=CHANNELS_DEFAULTS.steps)
    parser.add_argument("--seed", type=int, default=0, help="the runs' seed (routes a, s and --diverse: --seed)")
    parser.add_argument("--target", type=float, default=ch.DATA_TARGET,
                        help="routes e, f, s: the target, x the best real activation")
    parser.add_argument("--weight", type=float, default=ch.DATA_DISTANCE_WEIGHT,
                        help="routes e, f, s: the weight of the distance penalty")
    parser.add_argument("--diverse", type=int, default=1, help="route s: images per channel")
    parser.add_argument("--budget", type=float, default=ch.DATA_BUDGET,
                        help="route s: the distance from the data that costs nothing")
    parser.add_argument("--top", type=int, default=5,
                        help="real examples kept per channel (the CLI's --top-k; --diverse picks its starts among them)")
    parser.add_argument("--spread-weight", type=float, default=ch.DIVERSE_WEIGHT,
                        help="--diverse: the weight of the repulsion between a channel's copies")
    parser.add_argument("--margin", type=float, default=ch.DIVERSE_MARGIN,
                        help="--diverse: the copies keep this x the top-N real examples' median distance apart")
    parser.add_argument("--pixel-weight", type=float, default=ch.DATA_PIXEL_WEIGHT,
                        help="route s, inputs over 3,072 values: the weight of the squared pixel distance")
    parser.add_argument("--rescue", type=float, default=ch.RESCUE_SHARE,
                        help="route s, --diverse: the share of the steps the images below the best real one go on (0: none)")
    parser.add_argument("--failures", action="store_true",
                        help="route s, --diverse: list every live channel's image below ratio 1 (its copy, start, distance)")
    parser.add_argument("--size", type=int, help="the model's square input size (torchvision models)")
    parser.add_argument("--images", metavar="DIR", help="training pictures (sub-folders are classes) for the model")
    parser.add_argument("--held-out", metavar="DIR", help="with --images: held-out pictures for the real distance")
    args = parser.parse_args()
    if bool(args.images) != bool(args.held_out):
        parser.error("--images and --held-out go together")
    torch.manual_seed(0)
    ch.RESCUE_SHARE = args.rescue
    loaded = introspect.load_model(args.model, meta=introspect.MetaOverrides(size=args.size))
    model, spec = loaded.model, loaded.spec
    if args.images:
        train, test = load_image_folder(args.images, spec), load_image_folder(args.held_out, spec)
        spec, _ = introspect.prior_for(spec, train)  # as the command line does with --images
    else:
        train, test = load_dataset(args.model, "train"), load_dataset(args.model, "test")
    pixels = train.pixels()
    manifold = Manifold.fit(pixels)
    real = float(manifold.residual(test.pixels()).median())
    print(f"model {args.model}, steps {args.steps}, seed {args.seed}; distance = residual outside 50 PCs / median over "
          f"real test images ({real:.3f})")
    print("| layer | route | channels | live | share ratio >= 1 | median ratio | median distance (max) | s |")
    print("|---|---|---|---|---|---|---|---|")
    for layer in args.layer.split(","):
        examples = dataset_examples(model, spec, layer, train, k=max(args.top, args.diverse), cache_key=loaded.sha256)
        count = len(examples.max_value)
        chosen = parse_channel_list(args.channels, count) if args.channels else list(range(count))
        keep = [c for c in chosen if bool(examples.live[c]) and not bool(examples.rare[c])]
        if args.diverse > 1:
            diverse_row(args, model, spec, layer, examples, train, pixels, manifold, real)
            continue
        for route in args.routes.split(","):
            started = time.perf_counter()
            images = run_route(route, model, spec, layer, chosen, examples, train, pixels, args.steps, seed=args.seed,
                               weight=args.weight, target=args.target,
                               budget=args.budget, pixel_weight=args.pixel_weight)
            seconds = time.perf_counter() - started
            values = measure_channels(model, spec, layer, images, chosen, spec.activation(layer))
            ratio = values / examples.max_value[chosen].clamp(min=1e-12)
            mask = torch.tensor([c in keep for c in chosen])
            distance = manifold.residual(images) / real
            live_ratio, live_distance = ratio[mask], distance[mask]
            print(f"| {layer} | {route} | {len(chosen)} | {int(mask.sum())} | {float((live_ratio >= 1).float().mean()):.3f} "
                  f"| {float(live_ratio.median()):.2f} | {float(live_distance.median()):.2f} "
                  f"({float(live_distance.max()):.2f}) | {seconds:.1f} |", flush=True)
            if args.failures and route == "s":
                failures(examples, train, chosen, keep, 1, ratio, distance)


def diverse_row(args, model, spec, layer, examples, train, pixels, manifold, real) -> None:
    """The shipped data style with ``--diverse N``: one table row (share and distance over every live channel's
    images; "diverse": the share of live channels whose images differ at least as much as their top-N real ones)."""
    n = args.diverse
    ch.DIVERSE_WEIGHT, ch.DIVERSE_MARGIN = args.spread_weight, args.margin
    count = len(examples.max_value)
    chosen = parse_channel_list(args.channels, count) if args.channels else list(range(count))
    keep = [c for c in chosen if bool(examples.live[c]) and not bool(examples.rare[c])]
    config = CHANNELS_DEFAULTS.replace(steps=args.steps, seed=args.seed,
                                       image=replace(CHANNELS_DEFAULTS.image, style="data"))
    started = time.perf_counter()
    result = ch.visualize_channels(model, spec, layer, chosen, config=config, diverse=n, examples=examples,
                                   dataset=train)
    seconds = time.perf_counter() - started
    owners = [c for c in chosen for _ in range(n)]
    ratio = result.activations / examples.max_value[owners].clamp(min=1e-12)
    distance = manifold.residual(result.images) / real
    mask = torch.tensor([c in keep for c in owners])
    diverse = [ch.median_pairwise(result.images[i * n:(i + 1) * n])
               >= ch.median_pairwise(pixels[examples.top_indices[c, :n]])
               for i, c in enumerate(chosen) if c in keep]
    print(f"| {layer} | s, diverse {n} | {len(chosen)} | {len(keep)} | {float((ratio[mask] >= 1).float().mean()):.3f} "
          f"| {float(ratio[mask].median()):.2f} | {float(distance[mask].median()):.2f} ({float(distance[mask].max()):.2f}) "
          f"| {seconds:.1f} | diverse {sum(diverse) / max(1, len(diverse)):.3f} |", flush=True)
    if args.failures:
        failures(examples, train, chosen, keep, n, ratio, distance)


def failures(examples, train, chosen, keep, n, ratio, distance) -> None:
    """Every live channel's image below ratio 1: its copy, the rank among the top real examples and the ratio of the
    example it started from (``channels.spread_starts``), its ratio and distance, and how often the channel is
    active."""
    rows = []
    for i, c in enumerate(chosen):
        if c not in keep:
            continue
        picks = ch.spread_starts(train.pixels(examples.top_indices[c]).float(), n)
        best = float(examples.max_value[c].clamp(min=1e-12))
        for j in range(n):
            if float(ratio[i * n + j]) < 1:
                rows.append(f"| {c} | {j} | {picks[j]} | {float(examples.top_values[c, picks[j]]) / best:.2f} "
                            f"| {float(ratio[i * n + j]):.2f} | {float(distance[i * n + j]):.2f} "
                            f"| {float(examples.active_fraction[c]):.3f} |")
    print(f"images below ratio 1: {len(rows)}")
    if rows:
        print("| channel | copy | start (rank) | start ratio | ratio | distance | active share |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(rows), flush=True)


if __name__ == "__main__":
    main()
