"""The conformance zoo with defaults: class images (own-model p, another architecture's verdict) and
channel ratios of a middle layer, one row per model.

    python benchmarks/zoo.py [--steps 128] [--only seqcnn,tinyvit]

Judges are the zoo's independent classifiers (tests/assets/zoo, never used during optimization).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import introspect  # noqa: E402
from introspect.models import MetaOverrides  # noqa: E402

ZOO, ASSETS = ROOT / "tests" / "zoo" / "models.py", ROOT / "tests" / "assets" / "zoo"
MIDDLE = {"seqcnn": "features.3", "seqcnn-closed": "features.3", "bnresnet": None, "actnet": None,
          "functionalnet": None, "multihead": None, "dictnet": None, "mlp": None,
          "tinyvit": "vit.encoder.layers.encoder_layer_1"}


def load(name: str, entry: dict):
    logits = entry["logits"]
    meta = MetaOverrides(input_shape=tuple(entry["input_shape"]), mean=tuple(entry["mean"]), std=tuple(entry["std"]),
                         logits_layer=logits.get("layer"),
                         logits_output=None if logits.get("output") is None else str(logits["output"]))
    return introspect.load_model(f"{ZOO}:{entry['class']}", ASSETS / f"{name}.pt", meta=meta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=128, help="class steps (default: 128, the CLI's default)")
    parser.add_argument("--only", help="comma-separated zoo names (default: all)")
    args = parser.parse_args()
    manifest = json.loads((ASSETS / "manifest.json").read_text())
    names = [n for n, e in manifest.items() if e.get("role") == "zoo" and (not args.only or n in args.only.split(","))]
    print("| model | data | held-out acc | own p (min) | judge correct (VGG / MLP) | middle layer | live ratio >= 1 | s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        entry, started = manifest[name], time.time()
        loaded = load(name, entry)
        data = introspect.load_dataset(entry["dataset"], "train")
        classes = introspect.visualize_classes(loaded.model, loaded.spec,
                                               config=introspect.CLASSES_DEFAULTS.replace(steps=args.steps))
        verdicts = []
        for kind in ("vgg", "mlp"):
            judge_name = f"{entry['dataset']}-judge-{kind}"
            judge = load(judge_name, manifest[judge_name])
            logits = introspect.class_scores(judge.model, judge.spec, classes.images)
            verdicts.append(int((logits.argmax(1) == torch.tensor(classes.labels)).sum()))
        layer = MIDDLE.get(name) or next(i.name for i in introspect.describe_layers(loaded.model, loaded.spec.input_shape)
                                         if i.type in ("Conv2d", "Linear") and i.output_shape and i.units and i.units > 10)
        examples = introspect.dataset_examples(loaded.model, loaded.spec, layer, data)
        channels = introspect.visualize_channels(loaded.model, loaded.spec, layer, examples=examples)
        summary = channels.summary()
        share = "n/a" if summary.share_ratio_at_least_1 is None else f"{summary.share_ratio_at_least_1:.0%}"
        print(f"| {name} | {entry['dataset']} | {entry['accuracy']:.1%} | {classes.probabilities.min():.3f} | "
              f"{verdicts[0]}/10 / {verdicts[1]}/10 | {layer} | {share} of {summary.live} | {time.time() - started:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
