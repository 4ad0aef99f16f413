"""Do class images look like the data? Default settings, seeds 0-4, against real images of each class.

    python benchmarks/quality.py [--models mnist,fashion-mnist,seqcnn-closed,multihead,tinyvit] [--seeds 0,1,2,3,4]
    python benchmarks/quality.py --ablation [--seeds 0,1]     # the defaults with one part changed at a time

For each model (the built-in models, and zoo models from tests/assets/zoo, whose image prior is
estimated from their training data as `introspect classes --dataset NAME` does) and seed:
- judges: how many of the 10 class images each independent classifier (tests/assets/zoo:
  a BatchNorm VGG and an MLP per dataset, never used during optimization) names correctly with
  p >= 0.9 (in brackets: named correctly at all);
- per class image, ratios to the real held-out (test split) images of its class: total
  variation (bar 0.7-1.3), share of pixels > 0.5 (bar 0.7-1.4), energy outside the top-50
  principal components of the real training images (bar <= 2);
- the mean brightness of the 3-pixel frame (bar: <= 0.02 on MNIST, <= 2x real on Fashion-MNIST).
Then the wall-time ratio of `introspect classes` (defaults) to the blog's loop on the built-in
MNIST model, in this process (bar <= 1.0). Lines end with "ok" or "MISSED".
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import introspect  # noqa: E402
from blog_loop import blog_loop  # noqa: E402
from introspect.data import load_dataset  # noqa: E402
from introspect.params import with_prior, without_prior  # noqa: E402
from introspect.quality import Manifold, bright_share, frame_brightness, total_variation  # noqa: E402
from zoo import ASSETS, zoo_model  # noqa: E402


def best_time(fn, repeats: int) -> float:
    """The shortest of ``repeats`` wall times of ``fn()``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)

MANIFEST = json.loads((ASSETS / "manifest.json").read_text())
FRAME_BAR = {"mnist": ("<= 0.02", lambda value, real: value <= 0.02),
             "fashion-mnist": ("<= 2x real", lambda value, real: value <= 2 * real)}


D = introspect.CLASSES_DEFAULTS
#: The defaults with one part changed: (settings, objective, candidates, what the spec keeps).
ABLATIONS = {
    "defaults": (D, "confidence", 1, None),
    "no data prior (grey start, 1/f spectrum)": (D.replace(image=replace(D.image, use_prior=False)), "confidence", 1,
                                                 without_prior),
    "no data: the model's own prior (normalization mean, ink, ±50% zoom)": (D, "confidence", 1, without_prior),
    "FFT with the data's spectrum instead of the data basis": (D.replace(image=replace(D.image, parametrization="fft")),
                                                               "confidence", 1, None),
    "no ink term": (D.replace(ink=0.0), "confidence", 1, None),
    "no redirected ReLU gradient": (D.replace(redirect_relu=False), "confidence", 1, None),
    "logit objective": (D, "logit", 1, None),
    "TV 0.5 instead of 15": (D.replace(tv=0.5), "confidence", 1, None),
    "--candidates 3": (D, "confidence", 3, None),
}


def ablation(models: list[str], seeds: list[int]) -> None:
    references: dict[str, Reference] = {}
    print("| setting | model | own p (min) | judges p>=0.9, worst seed (VGG / MLP) | TV / real | bright / real "
          "| frame (max) | off-manifold (max) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, (config, objective, candidates, change) in ABLATIONS.items():
        for name in models:
            loaded, dataset = model_and_data(name)
            if change is not None:
                loaded.spec = change(loaded.spec)
            reference = references.setdefault(dataset, Reference(dataset))
            rows = [measure(loaded, reference, seed, config, objective, candidates) for seed in seeds]
            tv, bright, manifold = (span([row[key] for row in rows]) for key in ("tv", "bright", "manifold"))
            print(f"| {label} | {name} | {min(row['own'] for row in rows):.3f} | {min(row['vgg'] for row in rows)[0]}/10 / "
                  f"{min(row['mlp'] for row in rows)[0]}/10 | {tv[0]:.2f}-{tv[1]:.2f} | {bright[0]:.2f}-{bright[1]:.2f} "
                  f"| {max(row['frame'] for row in rows):.3f} | {manifold[1]:.2f} |", flush=True)


def model_and_data(name: str):
    """The model (with its data prior) and the name of its dataset."""
    if name in ("mnist", "fashion-mnist"):
        return introspect.load_model(name), name
    entry = MANIFEST[name]
    loaded = zoo_model(name)
    loaded.spec = with_prior(loaded.spec, load_dataset(entry["dataset"], "train").pixels())
    return loaded, entry["dataset"]


class Reference:
    """Real images of one dataset, its judges and its manifold, loaded once."""

    def __init__(self, dataset: str) -> None:
        test = load_dataset(dataset, "test")
        self.pixels, self.labels = test.pixels(), test.labels
        self.manifold = Manifold.fit(load_dataset(dataset, "train").pixels())
        self.judges = {kind: zoo_model(f"{dataset}-judge-{kind}") for kind in ("vgg", "mlp")}
        self.real_frame = float(frame_brightness(self.pixels).mean())

    def per_class(self, statistic, images: torch.Tensor, labels: list[int]) -> torch.Tensor:
        """statistic(image) / mean statistic(real images of its class), per image."""
        values = statistic(images)
        real = torch.stack([statistic(self.pixels[self.labels == c]).mean() for c in labels])
        return values / real


def measure(loaded, reference: Reference, seed: int, config=introspect.CLASSES_DEFAULTS, objective: str = "confidence",
            candidates: int = 1) -> dict:
    result = introspect.visualize_classes(loaded.model, loaded.spec, config=config.replace(seed=seed), objective=objective,
                                          candidates=candidates)
    images, labels = result.images, torch.tensor(result.labels)
    row = {"own": float(result.probabilities.min())}
    for kind, judge in reference.judges.items():
        p = torch.softmax(introspect.class_scores(judge.model, judge.spec, images), 1)
        right = p.argmax(1) == labels
        row[kind] = (int((right & (p.gather(1, labels.view(-1, 1)).squeeze(1) >= 0.9)).sum()), int(right.sum()))
    row["tv"] = reference.per_class(total_variation, images, result.labels)
    row["bright"] = reference.per_class(bright_share, images, result.labels)
    row["manifold"] = reference.per_class(reference.manifold.residual, images, result.labels)
    row["frame"] = float(frame_brightness(images).max())
    return row


def span(values: list[torch.Tensor]) -> tuple[float, float]:
    joined = torch.cat(values)
    return float(joined.min()), float(joined.max())


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def timing_ratio(repeats: int = 3) -> tuple[float, float, float]:
    """Best wall times of `introspect classes` (defaults) and the blog loop on the built-in MNIST model."""
    loaded = introspect.load_model("mnist")
    ours = best_time(lambda: introspect.visualize_classes(loaded.model, loaded.spec), repeats)
    blog = best_time(lambda: blog_loop(loaded.model, loaded.spec), repeats)
    return ours, blog, ours / blog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mnist,fashion-mnist,seqcnn-closed,multihead,tinyvit,mlp",
                        help="built-in and zoo model names (default: mnist,fashion-mnist,seqcnn-closed,multihead,tinyvit,mlp)")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (default: 0,1,2,3,4)")
    parser.add_argument("--no-timing", action="store_true", help="skip the timing ratio to the blog loop")
    parser.add_argument("--ablation", action="store_true",
                        help="instead: the defaults with one part changed at a time, on mnist, fashion-mnist, "
                             "seqcnn-closed and tinyvit unless --models is given")
    args = parser.parse_args()
    if args.ablation:
        models = args.models.split(",") if "--models" in sys.argv else ["mnist", "fashion-mnist", "seqcnn-closed", "tinyvit"]
        ablation(models, [int(s) for s in args.seeds.split(",")])
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    seeds = [int(s) for s in args.seeds.split(",")]
    references: dict[str, Reference] = {}
    print(f"torch {torch.__version__}, seeds {args.seeds}, default settings")
    print("| model | data | own p (min) | judge VGG: p>=0.9 (correct), worst seed | judge MLP: p>=0.9 (correct), worst seed "
          "| TV / real | bright / real | frame (max; real) | off-manifold / real (max) | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        started = time.time()
        loaded, dataset = model_and_data(name)
        reference = references.setdefault(dataset, Reference(dataset))
        rows = [measure(loaded, reference, seed) for seed in seeds]
        judges = [min(row[kind] for row in rows) for kind in ("vgg", "mlp")]
        tv, bright, manifold = (span([row[key] for row in rows]) for key in ("tv", "bright", "manifold"))
        frame = max(row["frame"] for row in rows)
        label, frame_ok = FRAME_BAR.get(dataset, ("", lambda value, real: True))
        need = 10 if dataset == "mnist" else 9
        builtin = name in ("mnist", "fashion-mnist")
        judge_text = [f"{ok}/10 ({right}/10) {verdict(ok >= need) if builtin else verdict(right >= 8)}"
                      for ok, right in judges]
        print(f"| {name} | {dataset} | {min(row['own'] for row in rows):.3f} {verdict(min(row['own'] for row in rows) >= 0.9)} "
              f"| {judge_text[0]} | {judge_text[1]} "
              f"| {tv[0]:.2f}-{tv[1]:.2f} {verdict(0.7 <= tv[0] and tv[1] <= 1.3)} "
              f"| {bright[0]:.2f}-{bright[1]:.2f} {verdict(0.7 <= bright[0] and bright[1] <= 1.4)} "
              f"| {frame:.3f}; {reference.real_frame:.3f} {verdict(frame_ok(frame, reference.real_frame))} "
              f"| {manifold[1]:.2f} {verdict(manifold[1] <= 2)} | {time.time() - started:.0f} |", flush=True)
    print("judge bars: built-in models every class with p >= 0.9 by both judges for every seed (Fashion-MNIST: 9 of 10); "
          "zoo models >= 8 of 10 named correctly by a judge of another architecture")
    if not args.no_timing:
        ours, blog, ratio = timing_ratio()
        print(f"timing: introspect classes {ours:.2f} s, blog loop {blog:.2f} s; ratio {ratio:.2f} {verdict(ratio <= 1.0)} "
              "(bar <= 1.0; best of 3, same process)")


if __name__ == "__main__":
    main()
