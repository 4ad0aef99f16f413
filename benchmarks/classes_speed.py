"""Speed of `introspect classes` (default settings) against the blog's loop, in one process.

    python benchmarks/classes_speed.py [--model mnist] [--repeats 3]

Prints both wall times (best of --repeats), their ratio and image-steps/s.
Noisy machines: compare the ratio, not the seconds.
"""
from __future__ import annotations

import argparse
import time

import torch

from blog_loop import blog_loop
from introspect import CLASSES_DEFAULTS, load_model, visualize_classes


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist", help="built-in model (default: mnist)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; the best is kept (default: 3)")
    args = parser.parse_args()
    loaded = load_model(args.model)
    config = CLASSES_DEFAULTS
    classes = list(range(loaded.spec.num_classes))
    ours = best_time(lambda: visualize_classes(loaded.model, loaded.spec, config=config), args.repeats)
    blog_steps = 50
    blog = best_time(lambda: blog_loop(loaded.model, loaded.spec, classes, steps=blog_steps), args.repeats)
    ours_work = len(classes) * config.steps
    blog_work = len(classes) * blog_steps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model}, best of {args.repeats}")
    print(f"introspect classes (default: {config.steps} steps, {len(classes)} images in one batch): "
          f"{ours:.2f} s, {ours_work / ours:.0f} image-steps/s")
    print(f"blog loop ({blog_steps} steps per class, one class at a time, new Adam each step, uint8 round trip): "
          f"{blog:.2f} s, {blog_work / blog:.0f} image-steps/s")
    print(f"wall-time ratio blog/introspect: {blog / ours:.2f}x (above 1: introspect is faster); "
          f"per image-step: {(ours_work / ours) / (blog_work / blog):.1f}x")


if __name__ == "__main__":
    main()
