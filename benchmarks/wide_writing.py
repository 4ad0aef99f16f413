"""Writing a wide layer's run at full size, with real-image examples, on the CPU: issue #24's GPU writing bar
(2048 channels written in <= 10% of their optimization, about 18 s on an H200) is CPU work, measured here
without the GPU's optimization.

    python benchmarks/wide_writing.py [--channels 2048] [--size 224] [--images 1000] [--steps 2]
    python benchmarks/wide_writing.py --images 0      # no dataset, as the GPU check's `floor.py writing` runs

The model is one 1x1 conv of --channels outputs after a 32-pixel average pooling (its optimization costs next
to nothing); its examples come from --images smooth random RGB images (noise at 1/8 of the size, upsampled:
they compress about as natural images do). Prints each phase in wall and CPU time (this process and its
forked page workers) and the writing against the bar. This machine's cores draw the pages: a 2-core figure is
an upper bound for a GPU machine's 16.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # floor's clock, and the checkout's introspect

from floor import PhaseClock, now  # noqa: E402
from introspect.channel_runs import run_channels  # noqa: E402
from introspect.channels import CHANNELS_DEFAULTS  # noqa: E402
from introspect.data import ImageDataset  # noqa: E402
from introspect.models.spec import ModelSpec  # noqa: E402
from introspect_cli.memory import keep_freed_memory  # noqa: E402

#: The H200's optimization of resnet50 layer4.2.conv3's 2048 channels at 256 steps with --amp (issue #24).
GPU_OPTIMIZATION_SECONDS = 178.0


class Wide(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(32)
        self.conv = nn.Conv2d(3, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(self.pool(x)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=2048, help="the layer's channels (default: 2048)")
    parser.add_argument("--size", type=int, default=224, help="input size in pixels (default: 224)")
    parser.add_argument("--images", type=int, default=1000, help="dataset images for the examples; 0: no dataset, as gpu_check.sh's writing part (default: 1000)")
    parser.add_argument("--steps", type=int, default=2, help="optimization steps (default: 2)")
    args = parser.parse_args()
    keep_freed_memory()
    generator = torch.Generator().manual_seed(0)
    model = Wide(args.channels)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    data = None
    if args.images:
        coarse = torch.rand(args.images, 3, max(1, args.size // 8), max(1, args.size // 8), generator=generator)
        images = (nn.functional.interpolate(coarse, size=args.size, mode="bilinear") * 255).to(torch.uint8)
        data = ImageDataset("smooth-noise", "train", images, torch.arange(args.images) % 10,
                            tuple(str(i) for i in range(10)), "seeded smooth random images")
    spec = ModelSpec(name="wide", architecture="wide", input_shape=(3, args.size, args.size), mean=(0.5,) * 3,
                     std=(0.25,) * 3, logits_layer=None, class_names=(), activations={"conv": "relu"})
    clock = PhaseClock()
    start = now()
    with tempfile.TemporaryDirectory() as scratch:
        run_channels(model, spec, ["conv"], Path(scratch) / "run", config=CHANNELS_DEFAULTS.replace(steps=args.steps),
                     data=data, listener=clock)
        finished = now()
        files = len(list((Path(scratch) / "run").rglob("*")))
    m = clock.marks
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads; {args.channels} channels at "
          f"{args.size} px, {args.images} example images, {args.steps} steps; {files} files written")
    for n, name in enumerate(("wall", "cpu")):
        print(f"{name:<4}: examples pass and plan {m['optimize'][n] - start[n]:.2f} s | optimize and assemble "
              f"{m['write'][n] - m['optimize'][n]:.2f} s | write {m['end'][n] - m['write'][n]:.2f} s | after it "
              f"{finished[n] - m['end'][n]:.2f} s")
    write = m["end"][0] - m["write"][0]
    print(f"writing {args.channels} channels: {write:.2f} s wall = {write / GPU_OPTIMIZATION_SECONDS:.1%} of the "
          f"H200's {GPU_OPTIMIZATION_SECONDS:.0f} s optimization of 2048 channels (bar: <= 10%, "
          f"{GPU_OPTIMIZATION_SECONDS / 10:.1f} s)")


if __name__ == "__main__":
    main()
