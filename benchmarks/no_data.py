"""Class images of the zoo's classifiers without any data (issue #20 item 5): each zoo model gets only what
a user's model offers (its input size, --mean/--std, its class names; no dataset, no --images, no stored
prior), `visualize_classes` runs with defaults, and judges of another architecture trained on the same
task count how many of the class images they name.

    python benchmarks/no_data.py [--only seqcnn,bnresnet] [--steps N] [--seeds 0,1,2] [--threads T]
                                 [--noise S [--noise-everywhere]]

--noise replaces the input noise of models that read pixels through a fully connected layer (classes.DENSE_NOISE);
with --noise-everywhere every model gets it (the measurement that keeps it off conv nets).

Seconds are the class run's CPU time (process time, torch on --threads threads): steady on a shared machine.

Judges: the zoo's independent classifiers ({dataset}-judge-vgg, {dataset}-judge-mlp) and the other zoo
models of a different class trained on the same data; the bar is >= 8 of 10 from the best of them.
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

import introspect  # noqa: E402
import introspect.classes  # noqa: E402
from helpers import zoo_model  # noqa: E402  (loads a zoo model as a user would: its file and manifest flags)
from introspect.models.spec import PRIOR_FIELDS  # noqa: E402
from introspect.params import without_prior  # noqa: E402

ASSETS = ROOT / "tests" / "assets" / "zoo"
MANIFEST = json.loads((ASSETS / "manifest.json").read_text())


def bare(spec):
    """The spec with nothing dataset-derived: no image prior and no dataset name (input shape, mean/std and
    class names stay, as a user gives them)."""
    spec = without_prior(spec).replace(dataset=None)
    assert all(getattr(spec, name) is None for name in PRIOR_FIELDS)
    return spec


def judges(name: str) -> list[str]:
    """The judges of another architecture for zoo model ``name``: the independent ones, then the zoo's."""
    entry = MANIFEST[name]
    own = [f"{entry['dataset']}-judge-{kind}" for kind in ("vgg", "mlp")]
    zoo = [other for other, e in MANIFEST.items() if e.get("role") == "zoo" and e["dataset"] == entry["dataset"]
           and e["class"] != entry["class"]]
    return own + zoo


def named_by(judge_name: str, images: torch.Tensor, labels: list[int], cache: dict) -> int:
    """How many of ``images`` the judge names as their ``labels``."""
    if judge_name not in cache:
        cache[judge_name] = zoo_model(judge_name)
    judge = cache[judge_name]
    scores = introspect.class_scores(judge.model, judge.spec, images)
    return int((scores.argmax(1) == torch.tensor(labels)).sum())


def measure(name: str, config, cache: dict) -> dict:
    """One zoo model without data: its own count, every judge's count, the seconds of the class run."""
    loaded = zoo_model(name)
    spec = bare(loaded.spec)
    started = time.process_time()
    classes = introspect.visualize_classes(loaded.model, spec, config=config)
    seconds = time.process_time() - started
    own = named_by(name, classes.images, classes.labels, {name: loaded})
    counts = {judge: named_by(judge, classes.images, classes.labels, cache) for judge in judges(name)}
    return {"model": name, "own": own, "judges": counts, "seconds": seconds,
            "p_min": float(classes.probabilities.min())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = introspect.CLASSES_DEFAULTS
    parser.add_argument("--only", help="comma-separated zoo names (default: every zoo classifier)")
    parser.add_argument("--steps", type=int, default=defaults.steps, help=f"class steps (default: {defaults.steps})")
    parser.add_argument("--seeds", default=str(defaults.seed),
                        help=f"comma-separated seeds, one table row per model and seed (default: {defaults.seed})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--noise", type=float, help="input noise of models that read pixels densely "
                        f"(default: {introspect.classes.DENSE_NOISE})")
    parser.add_argument("--noise-everywhere", action="store_true", help="give every model that noise")
    args = parser.parse_args()
    if args.noise is not None:
        introspect.classes.DENSE_NOISE = args.noise
    if args.noise_everywhere:
        introspect.classes.reads_input_densely = lambda *_: True
    torch.set_num_threads(args.threads)
    names = [n for n, e in MANIFEST.items() if e.get("role") == "zoo" and (not args.only or n in args.only.split(","))]
    seeds = [int(seed) for seed in args.seeds.split(",")]
    cache: dict = {}
    print("| model | data | seed | self-named | best other-architecture judge | judges (count) | own p (min) | s |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for name in names:
        for seed in seeds:
            row = measure(name, defaults.replace(steps=args.steps, seed=seed), cache)
            rows.append(row)
            best = max(row["judges"].items(), key=lambda item: item[1])
            detail = ", ".join(f"{judge.replace(MANIFEST[name]['dataset'] + '-', '')} {count}"
                               for judge, count in row["judges"].items())
            print(f"| {name} | {MANIFEST[name]['dataset']} | {seed} | {row['own']}/10 | {best[1]}/10 ({best[0]}) "
                  f"| {detail} | {row['p_min']:.3f} | {row['seconds']:.1f} |", flush=True)
    passed = sum(max(row["judges"].values()) >= 8 for row in rows)
    print(f"\n{passed} of {len(rows)} runs (models x seeds) reach >= 8/10 from a judge of another architecture; "
          f"{sum(row['seconds'] for row in rows):.1f} CPU s of class runs in all")


if __name__ == "__main__":
    main()
