"""The conformance zoo with defaults: class images (own-model p, another architecture's verdict) and
channel ratios of a middle layer, one row per model.

    python benchmarks/zoo.py [--steps N] [--only seqcnn,tinyvit]
    python benchmarks/zoo.py --only tones      # the 1-D tone model: pitch of each class waveform


Each model gets its image prior from its training data, as `introspect classes --dataset NAME` does.
Judges are the zoo's independent classifiers (tests/assets/zoo, never used during optimization):
how many of the 10 class images each names correctly; then the best of the other zoo models of a
different architecture trained on the same data (issue #10's bar: >= 8 of 10).
Channels: the share of live channels (neither dead nor rarely active) whose best image excites the
channel at least as much as the best real image (ratio >= 1; bar: >= 90%).
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
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "system"))

import introspect  # noqa: E402
from helpers import zoo_model  # noqa: E402  (loads a zoo model as a user would: its file and manifest flags)
from introspect.params import with_prior  # noqa: E402

ASSETS = ROOT / "tests" / "assets" / "zoo"
#: A middle layer of each model, as a user would pick one (its activation, a module or an F.gelu call,
#: is found at load: see introspect.models.sources.find_activations).
MIDDLE = {"seqcnn": "features.3", "seqcnn-closed": "features.3", "bnresnet": "block1.relu2", "actnet": "gelu",
          "functionalnet": "conv2", "multihead": "trunk.4", "dictnet": "body.3", "mlp": "layers.3",
          "tinyvit": "vit.encoder.layers.encoder_layer_1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=introspect.CLASSES_DEFAULTS.steps,
                        help=f"class steps (default: {introspect.CLASSES_DEFAULTS.steps}, the CLI's default)")
    parser.add_argument("--only", help="comma-separated zoo names (default: all)")
    args = parser.parse_args()
    manifest = json.loads((ASSETS / "manifest.json").read_text())
    if args.only and "tones" in args.only.split(","):
        tones(manifest["tones"], args.steps)
    names = [n for n, e in manifest.items() if e.get("role") == "zoo" and (not args.only or n in args.only.split(","))]
    if not names:
        return
    print("| model | data | held-out acc | own p (min) | judge correct (VGG / MLP) | other zoo models: best | middle layer "
          "| live ratio >= 1 | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        entry, started = manifest[name], time.time()
        loaded = zoo_model(name)
        data = introspect.load_dataset(entry["dataset"], "train")
        loaded.spec = with_prior(loaded.spec, data.pixels())
        classes = introspect.visualize_classes(loaded.model, loaded.spec,
                                               config=introspect.CLASSES_DEFAULTS.replace(steps=args.steps))
        verdicts = []
        for kind in ("vgg", "mlp"):
            judge_name = f"{entry['dataset']}-judge-{kind}"
            judge = zoo_model(judge_name)
            logits = introspect.class_scores(judge.model, judge.spec, classes.images)
            verdicts.append(int((logits.argmax(1) == torch.tensor(classes.labels)).sum()))
        others = []  # the bar: another zoo model of a different architecture, trained on the same data
        for other, other_entry in manifest.items():
            if other_entry.get("role") == "zoo" and other_entry["dataset"] == entry["dataset"] \
                    and other_entry["class"] != entry["class"]:
                judge = zoo_model(other)
                logits = introspect.class_scores(judge.model, judge.spec, classes.images)
                others.append((int((logits.argmax(1) == torch.tensor(classes.labels)).sum()), other))
        best = max(others)
        layer = MIDDLE[name]
        examples = introspect.dataset_examples(loaded.model, loaded.spec, layer, data)
        channels = introspect.visualize_channels(loaded.model, loaded.spec, layer, examples=examples)
        eligible = ~(channels.dead | channels.rare)  # live channels; not reached ones count as missed
        reached = (channels.ratio >= 1) & eligible  # NaN ratios compare False
        share = f"{int(reached.sum())}/{int(eligible.sum())} ({float(reached.sum() / eligible.sum().clamp(min=1)):.0%})"
        print(f"| {name} | {entry['dataset']} | {entry['accuracy']:.1%} | {classes.probabilities.min():.3f} | "
              f"{verdicts[0]}/10 / {verdicts[1]}/10 | {best[0]}/10 ({best[1]}) | {layer} | {share} "
              f"| {time.time() - started:.0f} |",
              flush=True)


def tones(entry: dict, steps: int) -> None:
    """The tone model's class waveforms with defaults (no data): how far (cents) each one's dominant frequency
    lies from its class's, and how many within 50 cents (issue #21's bar: >= 8 of 12)."""
    from test_zoo_conformance import pitch_errors

    started = time.time()
    loaded = zoo_model("tones")
    classes = introspect.visualize_classes(loaded.model, loaded.spec,
                                           config=introspect.CLASSES_DEFAULTS.replace(steps=steps))
    cents = pitch_errors(classes.images, entry["frequencies"], entry["sample_rate"])
    print("| class | Hz | cents off |\n|---|---|---|")
    for name, hz, off in zip(entry["class_names"], entry["frequencies"], cents.tolist()):
        print(f"| {name} | {hz:.1f} | {off:+.0f} |")
    print(f"tones: {int((cents.abs() <= 50).sum())} of {len(cents)} class waveforms within 50 cents; own p (min) "
          f"{classes.probabilities.min():.3f}; {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
