"""The dataset pass of `introspect channels --layer all`: one pass for every layer against one pass per layer
(what the command did before), then the whole command once, from one process.

    python benchmarks/examples_pass.py [--model fashion-mnist] [--images N] [--command --steps 8]

Nothing is cached in the timed passes; both ways must give the same statistics. ``--images`` times the first N
images only; ``--command`` also times the whole command (on all images, in a temporary cache folder).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from introspect import load_model
from introspect.channels import dataset_examples, dataset_examples_many
from introspect.data import ImageDataset, load_dataset
from introspect.layers import select_layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fashion-mnist")
    parser.add_argument("--images", type=int, help="time the passes on the first N images (default: all)")
    parser.add_argument("--command", action="store_true", help="also time `introspect channels --layer all`")
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    loaded = load_model(args.model)
    data = load_dataset(loaded.spec.dataset, "train")
    if args.images:
        data = ImageDataset(data.name, data.split, data.images[:args.images], data.labels[:args.images],
                            data.class_names, data.source)
    layers = select_layers(loaded.model, loaded.spec.input_shape, "all")
    print(f"{args.model}: {len(data):,} {data.name} images, layers {', '.join(layers)}, {torch.get_num_threads()} threads")
    started = time.perf_counter()
    many = dataset_examples_many(loaded.model, loaded.spec, layers, data)
    one_pass = time.perf_counter() - started
    started = time.perf_counter()
    each = {layer: dataset_examples(loaded.model, loaded.spec, layer, data) for layer in layers}
    per_layer = time.perf_counter() - started
    assert all(torch.equal(many[layer].histogram, each[layer].histogram) for layer in layers)
    print(f"dataset pass: one pass for {len(layers)} layers {one_pass:.1f} s; one pass per layer {per_layer:.1f} s "
          f"({per_layer / one_pass:.1f}x)")
    if not args.command:
        return
    from introspect_cli.main import main as introspect

    with tempfile.TemporaryDirectory() as folder:
        os.environ["INTROSPECT_CACHE"] = os.path.join(folder, "cache")
        started = time.perf_counter()
        code = introspect(["channels", "--model", args.model, "--layer", "all", "--steps", str(args.steps), "--quiet",
                           "--out", os.path.join(folder, "run")])
        command = time.perf_counter() - started
    print(f"introspect channels --model {args.model} --layer all --steps {args.steps}: {command:.1f} s (exit {code}); "
          f"with one pass per layer it would take about {command - one_pass + per_layer:.1f} s")


if __name__ == "__main__":
    main()
