"""Image-steps per second against chunk size (images optimized at once) for one layer, on the CPU or CUDA.

    python benchmarks/chunk_speed.py [--model mnist] [--layer conv2] [--sizes 1,4,16,64] [--device cpu] [--amp]
    python benchmarks/chunk_speed.py --extrapolate [--model torchvision:resnet18] [--size 32] [--layers 4 | A,B,C]
                                     [--threads 1]

Each size is timed on a few steps after a warm-up step (``time_chunk``), and the planner's own chunk size for the
device's memory is printed for comparison. With --extrapolate, the dry run's estimates for `--layer all`
(``estimate_channels``: small batches, extrapolated) are compared, for a few layers (a comma-separated list, or N
spread over all), with timing the planned first chunk itself (``time_chunk``, the dry run's old way).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's introspect, installed or not

from introspect import load_model  # noqa: E402
from introspect.channel_runs import estimate_channels  # noqa: E402
from introspect.channels import CHANNELS_DEFAULTS, memory_budget, plan_channels, time_chunk  # noqa: E402
from introspect.layers import select_layers  # noqa: E402
from introspect.models import MetaOverrides  # noqa: E402


def extrapolate(args: argparse.Namespace) -> None:
    """The dry run's estimate (``estimate_channels`` over `--layer all`, as `introspect channels --dry-run`) of a
    few layers' first chunk against timing that chunk itself (``time_chunk``, the dry run's old way)."""
    loaded = load_model(args.model, meta=MetaOverrides(size=args.size))
    config = CHANNELS_DEFAULTS.replace(device=args.device, amp=args.amp)
    every = select_layers(loaded.model, loaded.spec.input_shape, "all")
    if args.layers.isdigit():
        count = int(args.layers)
        layers = [every[round(i * (len(every) - 1) / max(1, count - 1))] for i in range(count)]
    else:
        layers = args.layers.split(",")
    plan = plan_channels(loaded.model, loaded.spec, every, device=args.device)
    start = time.perf_counter()
    rows = {row["layer"]: row for row in estimate_channels(loaded.model, loaded.spec, plan, config)}
    print(f"{args.model} at {loaded.spec.input_shape[-1]} px on {args.device}, {torch.get_num_threads()} threads: "
          f"the dry run's timing of {len(every)} layers took {time.perf_counter() - start:.1f} s; the full chunk: "
          f"{args.steps} steps after a warm-up (mean and fastest)")
    print(f"{'layer':<24} {'chunk':>6} {'timed':>12} {'estimate s/step':>16} {'full s/step':>12} {'fastest':>8} "
          f"{'ratio':>6} {'/fastest':>8} {'full wall s':>12}")
    for layer in layers:
        row, stamps, start = rows[layer], [], time.perf_counter()
        full = time_chunk(loaded.model, loaded.spec, plan[layer], config, steps=args.steps,
                          clock=lambda: stamps.append(time.perf_counter()) or stamps[-1])
        fastest = min(b - a for a, b in zip(stamps, stamps[1:]))
        timed, estimate = "+".join(map(str, row["timed_images"])), row["seconds_per_step"]
        print(f"{layer:<24} {row['chunk_images']:>6} {timed:>12} {estimate:>16.4f} {full:>12.4f} {fastest:>8.4f} "
              f"{estimate / full:>6.2f} {estimate / fastest:>8.2f} {time.perf_counter() - start:>12.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist")
    parser.add_argument("--layer", default="conv2")
    parser.add_argument("--sizes", default="1,4,16,64")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per size")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--extrapolate", action="store_true", help="compare the dry run's extrapolated step time")
    parser.add_argument("--layers", default="4", help="--extrapolate: layers, or how many spread over all")
    parser.add_argument("--size", type=int, help="input size in pixels (torchvision models; default theirs)")
    parser.add_argument("--threads", type=int, help="torch's CPU threads (1: steadier timings on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.extrapolate:
        return extrapolate(args)
    loaded = load_model(args.model, meta=MetaOverrides(size=args.size))
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
