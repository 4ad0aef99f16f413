"""introspect vs lucent on the same work, in one script: resnet18 (random init), layer3, 64 channels
at 128 px, 64 steps, CPU.

    python benchmarks/lucent_compare.py --lucent-python /path/to/lucent-venv/bin/python

lucent is never a dependency: install it in a separate venv (`python3 -m venv L && L/bin/pip install
torch-lucent`; it pins kornia 0.4.1). It runs in a subprocess with render_vis(fixed_image_size=128,
its standard transforms, one batched objective: sum of channel(layer3, i, batch=i)), on a fresh copy
of the same weights (lucent leaves a hook on every module). Prints both wall times and the ratio.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
import torchvision

from introspect.channels import CHANNELS_DEFAULTS, visualize_channels
from introspect.models.sources import load_model, MetaOverrides

LUCENT_SCRIPT = textwrap.dedent("""
    import copy, sys, time, torch, torchvision
    from lucent.optvis import render, param, transform, objectives
    state = torch.load(sys.argv[1], weights_only=True)
    channels, steps, size = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    base = torchvision.models.resnet18(weights=None)
    base.load_state_dict(state)
    model = copy.deepcopy(base).eval()
    objective = sum(objectives.channel("layer3", i, batch=i) for i in range(channels))
    start = time.perf_counter()
    render.render_vis(model, objective, lambda: param.image(size, batch=channels),
                      transforms=transform.standard_transforms, thresholds=(steps,), fixed_image_size=size,
                      show_image=False, progress=False)
    print(time.perf_counter() - start)
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lucent-python", required=True, help="python of a venv with torch-lucent installed")
    parser.add_argument("--channels", type=int, default=64, help="channels of layer3 (default: 64)")
    parser.add_argument("--steps", type=int, default=64, help="optimization steps (default: 64)")
    parser.add_argument("--size", type=int, default=128, help="image size in pixels (default: 128)")
    parser.add_argument("--amp", action="store_true", help="also time introspect with bfloat16 autocast")
    args = parser.parse_args()

    with torch.random.fork_rng():
        torch.manual_seed(0)
        state = torchvision.models.resnet18(weights=None).state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "resnet18-random.pt"
        torch.save(state, weights)
        loaded = load_model("torchvision:resnet18", checkpoint=weights, meta=MetaOverrides(size=args.size))
        config = CHANNELS_DEFAULTS.replace(steps=args.steps)
        visualize_channels(loaded.model, loaded.spec, "layer3", [0, 1], config.replace(steps=2))  # warm-up
        timings = {}
        for label, cfg in [("fp32", config)] + ([("bf16 autocast (--amp)", config.replace(amp=True))] if args.amp else []):
            start = time.perf_counter()
            result = visualize_channels(loaded.model, loaded.spec, "layer3", list(range(args.channels)), cfg)
            timings[label] = time.perf_counter() - start
        run = subprocess.run([args.lucent_python, "-c", LUCENT_SCRIPT, str(weights), str(args.channels),
                              str(args.steps), str(args.size)], capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"lucent failed:\n{run.stderr[-2000:]}")
        lucent = float(run.stdout.strip().splitlines()[-1])
    work = args.channels * args.steps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; resnet18 random init, layer3, "
          f"{args.channels} channels, {args.size} px, {args.steps} steps, CPU")
    print(f"lucent (fp32): {lucent:.1f} s, {work / lucent:.1f} image-steps/s")
    for label, seconds in timings.items():
        print(f"introspect {label}: {seconds:.1f} s, {work / seconds:.1f} image-steps/s "
              f"(chunks of {result.batch_size}) -> {lucent / seconds:.1f}x faster than lucent")


if __name__ == "__main__":
    main()
