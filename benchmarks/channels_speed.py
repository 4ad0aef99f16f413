"""Speed of `introspect channels` on all 64 conv2 channels of the MNIST model, in one process.

    python benchmarks/channels_speed.py [--steps 256] [--sequential 8] [--device cpu]

Prints the engine's wall time, image-steps/s and GFLOP/s next to the
throughput of the same convolutions (conv1 + conv2 forward and input-gradient
backward, plain torch, same batch) measured here, i.e. the share of what this
machine does on that work; then the ratio to the same engine run one channel
at a time (timed on --sequential channels and scaled to 64).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's introspect, installed or not

from introspect import load_model  # noqa: E402
from introspect.channels import CHANNELS_DEFAULTS, visualize_channels  # noqa: E402


def conv_flops_per_image(model) -> float:
    """conv1 + conv2 forward, plus the input-gradient backward of each (no weight gradients)."""
    conv1 = 2 * 26 * 26 * 32 * 1 * 9
    conv2 = 2 * 24 * 24 * 64 * 32 * 9
    return 2 * (conv1 + conv2)


def reference_throughput(model, batch: int, steps: int, device: torch.device) -> float:
    """GFLOP/s of the bare convolutions: forward and input-gradient backward of conv1 and conv2."""
    conv1, conv2 = model.conv1.to(device), model.conv2.to(device)
    for p in (*conv1.parameters(), *conv2.parameters()):
        p.requires_grad_(False)
    x = torch.randn(batch, 1, 28, 28, device=device, requires_grad=True)

    def step():
        out = conv2(torch.relu(conv1(x)))
        (grad,) = torch.autograd.grad(out.mean(), x)
        return grad

    for _ in range(3):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - start
    for p in (*conv1.parameters(), *conv2.parameters()):
        p.requires_grad_(True)
    return conv_flops_per_image(model) * batch * steps / seconds / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=256, help="optimization steps (default: 256)")
    parser.add_argument("--sequential", type=int, default=8,
                        help="channels timed one at a time for the comparison (default: 8)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timings of each, alternating; the best is kept (default: 3)")
    args = parser.parse_args()
    device = torch.device(args.device)
    loaded = load_model("mnist")
    model, spec = loaded.model, loaded.spec
    config = CHANNELS_DEFAULTS.replace(steps=args.steps, device=str(device))
    channels = list(range(64))

    visualize_channels(model, spec, "conv2", channels[:4], config.replace(steps=3))  # warm-up
    batched, reference = float("inf"), 0.0
    for _ in range(args.repeats):  # alternate, so both see the same machine load
        _sync(device)
        start = time.perf_counter()
        visualize_channels(model, spec, "conv2", channels, config, batch_size=64)
        _sync(device)
        batched = min(batched, time.perf_counter() - start)
        reference = max(reference, reference_throughput(model, 64, min(args.steps, 128), device))
    work = len(channels) * args.steps
    achieved = conv_flops_per_image(model) * work / batched / 1e9

    start = time.perf_counter()
    for c in channels[:args.sequential]:
        visualize_channels(model, spec, "conv2", [c], config, batch_size=1)
    _sync(device)
    sequential = (time.perf_counter() - start) * len(channels) / args.sequential

    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} CPU threads")
    print(f"conv2, 64 channels x {args.steps} steps in one batch (best of {args.repeats}): {batched:.2f} s, "
          f"{work / batched:.0f} image-steps/s, {achieved:.1f} GFLOP/s (conv FLOPs only)")
    print(f"same convolutions, bare torch, batch 64: {reference:.1f} GFLOP/s -> engine reaches "
          f"{achieved / reference:.0%} of it")
    print(f"one channel at a time (timed on {args.sequential}, scaled to 64): {sequential:.2f} s -> "
          f"batched is {sequential / batched:.1f}x faster")


if __name__ == "__main__":
    main()
