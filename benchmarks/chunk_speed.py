"""Image-steps per second against chunk size (images optimized at once) for one layer, on the CPU or CUDA.

    python benchmarks/chunk_speed.py [--model mnist] [--layer conv2] [--sizes 1,4,16,64] [--device cpu] [--amp]

Each size is timed on a few steps after a warm-up step (``time_chunk``, what `--dry-run` uses), and the
planner's own chunk size for the device's memory is printed for comparison.
"""
from __future__ import annotations

import argparse

import torch

from introspect import load_model
from introspect.channels import CHANNELS_DEFAULTS, memory_budget, plan_channels, time_chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist")
    parser.add_argument("--layer", default="conv2")
    parser.add_argument("--sizes", default="1,4,16,64")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per size")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true")
    args = parser.parse_args()
    loaded = load_model(args.model)
    config = CHANNELS_DEFAULTS.replace(device=args.device, amp=args.amp)
    auto = plan_channels(loaded.model, loaded.spec, [args.layer], device=args.device)[args.layer]
    print(f"{args.model} {args.layer} on {args.device}{' with amp' if args.amp else ''}: {torch.get_num_threads()} "
          f"threads; planned chunk {auto.chunk} for a budget of {memory_budget(args.device) / 2**30:.1f} GiB")
    print(f"{'chunk':>6} {'s/step':>9} {'image-steps/s':>14}")
    for size in (int(s) for s in args.sizes.split(",")):
        plan = plan_channels(loaded.model, loaded.spec, [args.layer], list(range(size)) if size <= auto.output_shape[0]
                             else [c % auto.output_shape[0] for c in range(size)], batch_size=size,
                             device=args.device)[args.layer]
        seconds = time_chunk(loaded.model, loaded.spec, plan, config, steps=args.steps)
        print(f"{size:>6} {seconds:>9.4f} {size / seconds:>14.1f}")


if __name__ == "__main__":
    main()
