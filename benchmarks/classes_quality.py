"""How real do class visualizations look? Compares settings, with the default last.

    python benchmarks/classes_quality.py [--seeds 0,1,2] [--judge tests/assets/mnist-judge.pt]

For each setting and seed, on the shipped MNIST model: the lowest probability
the model gives an image for its class; what an independent classifier (a
LeNet-5 trained separately, never used during optimization; rebuild it with
`introspect train --arch lenet --seed 2 --out tests/assets/mnist-judge.pt`)
says (lowest probability and how many of 10 it gets right with p >= 0.9); and
the ratio of total variation and of the share of bright pixels (> 0.5) to real
MNIST digits (1.0 = like real digits; targets 0.7-1.5 and 0.5-2).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import dataclasses

from blog_loop import blog_loop
from introspect import ImageConfig, RenderConfig, TransformConfig, class_scores, load_checkpoint, load_model, visualize_classes
from introspect.data import load_dataset
from introspect.quality import realism

NO_TRANSFORMS = TransformConfig(jitter=0, scale=0, rotate=0)
DEFAULT = RenderConfig()


def image(**changes) -> ImageConfig:
    return dataclasses.replace(DEFAULT.image, **changes)


SETTINGS = {
    "pixel, logit, no transforms, grey start": DEFAULT.replace(image=image(parametrization="pixel", init_bias=0.0),
                                                               transforms=NO_TRANSFORMS),
    "pixel + transforms, dark start": DEFAULT.replace(image=image(parametrization="pixel")),
    "pixel + transforms + TV 0.5, dark start": DEFAULT.replace(image=image(parametrization="pixel"), tv=0.5),
    "FFT 1/f (lucid-like), grey start": DEFAULT.replace(image=image(use_spectrum=False, init_bias=0.0)),
    "FFT 1/f, dark start": DEFAULT.replace(image=image(use_spectrum=False)),
    "FFT real-digit spectrum, grey start": DEFAULT.replace(image=image(init_bias=0.0)),
    "FFT real-digit spectrum, no transforms": DEFAULT.replace(transforms=NO_TRANSFORMS),
    "default (FFT real-digit spectrum + transforms, dark start)": DEFAULT,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    parser.add_argument("--judge", default=str(Path(__file__).resolve().parents[1] / "tests/assets/mnist-judge.pt"),
                        help="independent classifier checkpoint (default: tests/assets/mnist-judge.pt)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    loaded, judge = load_model("mnist"), load_checkpoint(args.judge)
    real = load_dataset("mnist", "train").pixels()

    def score(images: torch.Tensor) -> dict:
        labels = torch.arange(10).view(-1, 1)
        own = torch.softmax(class_scores(loaded.model, loaded.spec, images), 1).gather(1, labels).squeeze(1)
        other = torch.softmax(class_scores(judge.model, judge.spec, images), 1).gather(1, labels).squeeze(1)
        quality = realism(images, real)
        return {"own_min": own.min().item(), "judge_min": other.min().item(),
                "judge_ok": int((other >= 0.9).sum()), "tv": quality.tv_ratio, "bright": quality.bright_ratio}

    rows = []
    for seed in seeds:
        start = time.perf_counter()
        rows.append(("blog loop (50 steps, log-softmax, uint8)", seed, score(blog_loop(loaded.model, loaded.spec)),
                     time.perf_counter() - start))
        for name, config in SETTINGS.items():
            start = time.perf_counter()
            result = visualize_classes(loaded.model, loaded.spec, config=config.replace(seed=seed))
            rows.append((name, seed, score(result.images), time.perf_counter() - start))
    print(f"{'setting':58s} seed  own p(min)  judge p(min)  judge>=0.9  TV/real  bright/real   time")
    for name, seed, s, seconds in rows:
        print(f"{name:58s} {seed:4d}  {s['own_min']:10.3f}  {s['judge_min']:12.3f}  {s['judge_ok']:7d}/10  "
              f"{s['tv']:7.2f}  {s['bright']:11.2f}  {seconds:5.1f}s")


if __name__ == "__main__":
    main()
