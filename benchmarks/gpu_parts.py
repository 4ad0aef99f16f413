"""The GPU check's own parts (run by benchmarks/gpu_check.sh), one subcommand each. On the CPU (the check's
rehearsal) the same code runs at small sizes, and what only CUDA measures (peak memory, host syncs) is skipped, said so.

    python3 benchmarks/gpu_parts.py env    [--device cuda]        # versions, the GPU, where introspect comes from
    python3 benchmarks/gpu_parts.py memory [--model torchvision:resnet50] [--size PX] [--layers A,B] [--device cuda]
    python3 benchmarks/gpu_parts.py syncs  [--model torchvision:resnet50] [--size PX] [--layer L] [--channels 8]
                                           [--device cuda]

memory: the largest chunk of `--layer all` planned against the memory budget (issue 14: its peak within the
budget), then the chunks calibrated on the first chunk's measured peak (issue 24: planned within 2x of the peak).
syncs: host syncs on CUDA (torch.cuda.set_sync_debug_mode) of 32 against 64 steps, classes and channels (issue 24:
2 more, the NaN check every 16 steps; tests/lib/test_engine.py::test_a_step_waits_for_no_gpu counts the same on the
CPU's copy of the CUDA path).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's introspect, installed or not

from introspect import CLASSES_DEFAULTS, load_model, visualize_classes  # noqa: E402
from introspect.channels import (CHANNELS_DEFAULTS, calibrate_plan, memory_budget, plan_channels,  # noqa: E402
                                 visualize_channels, visualize_chunk)
from introspect.engine import on_device  # noqa: E402
from introspect.layers import select_layers  # noqa: E402
from introspect.models import MetaOverrides  # noqa: E402

GIB = 2 ** 30


def env(args: argparse.Namespace) -> None:
    """What runs here: Python, torch, the device, and where introspect and lucent come from."""
    import introspect

    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}, "
          f"{torch.get_num_threads()} CPU threads")
    try:
        import introspect_cli
        cli = f"from {Path(introspect_cli.__file__).parent}"
    except ImportError:
        cli = "not importable (gpu_check.sh links it to cli/ and puts the link on PYTHONPATH)"
    print(f"introspect from {Path(introspect.__file__).parent}, introspect_cli {cli}")
    try:
        import lucent
        print(f"lucent {getattr(lucent, '__version__', '?')} from {Path(lucent.__file__).parent}")
    except ImportError:
        print("lucent: not installed (the lucent bar prints docs/measured.md's CPU figure instead)")
    if torch.device(args.device).type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("error: no CUDA device here (run the rehearsal with --rehearse on a machine without one)")
        free, total = torch.cuda.mem_get_info()
        print(f"{torch.cuda.get_device_name()}: {free / GIB:.1f} of {total / GIB:.1f} GiB free, "
              f"{torch.cuda.device_count()} device(s)")


def loaded_model(args: argparse.Namespace):
    return load_model(args.model, meta=MetaOverrides(size=args.size)) if args.size else load_model(args.model)


def peak_of(run, device: torch.device) -> int | None:
    """Peak device memory of ``run()`` above what was allocated before it; None off CUDA."""
    if device.type != "cuda":
        run()
        return None
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def memory(args: argparse.Namespace) -> None:
    """The largest planned chunk's peak against the budget; the calibrated chunks' peaks against their plan."""
    loaded = loaded_model(args)
    device = torch.device(args.device)
    budget = memory_budget(device) if args.budget_gib is None else int(args.budget_gib * GIB)
    every = select_layers(loaded.model, loaded.spec.input_shape, "all")
    plan = plan_channels(loaded.model, loaded.spec, every, device=args.device, steps=1, budget_bytes=budget)
    largest = max(plan.layers, key=lambda p: min(p.chunk, p.images) * p.bytes_per_image)
    with on_device(loaded.model, device) as model:
        peaks = {amp: peak_of(lambda amp=amp: visualize_chunk(model, loaded.spec, largest, 0, CHANNELS_DEFAULTS.replace(
            steps=1, device=args.device, amp=amp)), device) for amp in (False, True)}
    images = min(largest.chunk, largest.images)
    if peaks[False] is None:
        print(f"{len(every)} layers planned; largest chunk {largest.layer} ({images} images) ran fp32 and --amp; "
              f"peak memory not measured on {device.type}")
    else:
        peak = max(peaks.values())
        print(f"largest chunk of --layer all: {largest.layer}, {images} images, peak {peaks[False] / GIB:.2f} GiB "
              f"fp32, {peaks[True] / GIB:.2f} GiB --amp, budget {budget / GIB:.2f} GiB:",
              "OK" if peak <= budget else "OVER BUDGET")

    config = CHANNELS_DEFAULTS.replace(steps=1, device=args.device, amp=True)
    chosen = plan_channels(loaded.model, loaded.spec, args.layers.split(","), device=args.device, steps=1,
                           budget_bytes=budget)
    calibrated = calibrate_plan(loaded.model, loaded.spec, chosen, config, budget_bytes=budget)
    with on_device(loaded.model, device) as model:
        for before, after in zip(chosen.layers, calibrated.layers):
            peak = peak_of(lambda after=after: visualize_chunk(model, loaded.spec, after, 0, config), device)
            ran = min(after.chunk, after.images)  # the first chunk's images (fewer than the chunk when all fit)
            planned = ran * after.bytes_per_image
            head = (f"{after.layer}: chunk {before.chunk} (estimate {before.bytes_per_image / 2**20:.1f} MiB/image) -> "
                    f"{after.chunk} ({after.bytes_per_image / 2**20:.1f} MiB/image)")
            if peak is None:
                print(f"{head}; calibration and peaks are CUDA only (unchanged on {device.type})")
                continue
            print(f"{head}; first chunk {ran} images, peak {peak / GIB:.2f} GiB, planned {planned / GIB:.2f} GiB "
                  f"({planned / max(peak, 1):.2f}x, bar 1-2x), budget {budget / GIB:.1f} GiB:",
                  "OK" if peak <= budget and peak <= planned <= 2 * peak else "CHECK")


def count_syncs(run) -> int:
    """Host syncs torch reports while ``run()`` works on CUDA."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchronizing" in str(w.message) for w in caught)


def syncs(args: argparse.Namespace) -> None:
    """32 against 64 steps of classes (mnist) and channels (the model's layer): 2 more syncs at most."""
    device = torch.device(args.device)
    mnist, other = load_model("mnist"), loaded_model(args)
    channels = list(range(args.channels))
    runs = {"classes (mnist)": lambda steps: visualize_classes(
                mnist.model, mnist.spec, config=CLASSES_DEFAULTS.replace(steps=steps, device=args.device)),
            f"channels ({args.model} {args.layer}, {len(channels)} channels)": lambda steps: visualize_channels(
                other.model, other.spec, args.layer, channels=channels,
                config=CHANNELS_DEFAULTS.replace(steps=steps, device=args.device))}
    for name, run in runs.items():
        run(2)  # warm-up
        if device.type != "cuda":
            for steps in (32, 64):
                run(steps)
            print(f"{name}: ran 32 and 64 steps; syncs are counted on CUDA only "
                  "(tests/lib/test_engine.py::test_a_step_waits_for_no_gpu counts them on the CPU)")
            continue
        counts = {steps: count_syncs(lambda steps=steps: run(steps)) for steps in (32, 64)}
        extra = counts[64] - counts[32]
        print(f"{name}: {counts[32]} syncs at 32 steps, {counts[64]} at 64: {extra} for 32 more steps (bar <= 2):",
              "OK" if extra <= 2 else "CHECK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["env", "memory", "syncs"])
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for the rehearsal (default cuda)")
    parser.add_argument("--model", default="torchvision:resnet50", help="memory and syncs (default torchvision:resnet50)")
    parser.add_argument("--size", type=int, help="input size in pixels (torchvision models; default theirs)")
    parser.add_argument("--layers", default="layer4.2.conv3,layer1.0.conv1", help="memory: the layers calibrated")
    parser.add_argument("--budget-gib", type=float, help="memory: the budget (default: memory_budget's)")
    parser.add_argument("--layer", default="layer3.5.conv3", help="syncs: the channels' layer")
    parser.add_argument("--channels", type=int, default=8, help="syncs: how many channels (default 8)")
    args = parser.parse_args()
    {"env": env, "memory": memory, "syncs": syncs}[args.part](args)


if __name__ == "__main__":
    main()
