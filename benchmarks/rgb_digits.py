"""A folder of RGB pictures for measuring models with a data prior on pictures of your own (no download):
MNIST digits at 64 px, each in a random colour on a random two-colour gradient, with a little noise; sub-folders
are the digits' classes.

    python benchmarks/rgb_digits.py OUT_DIR [--count 2000] [--split train]

(benchmarks/channel_quality.py --images /tmp/rgb-train --held-out /tmp/rgb-test used 2,000 train and 500 test.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from introspect.data import load_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--split", default="train", choices=("train", "test"))
    args = parser.parse_args()
    data = load_dataset("mnist", args.split)
    rng = np.random.default_rng(0 if args.split == "train" else 1)
    picked = np.linspace(0, len(data) - 1, args.count).astype(int)
    digits = data.pixels(torch.as_tensor(picked)).numpy()[:, 0]
    for n, (digit, label) in enumerate(zip(digits, data.labels[picked].tolist())):
        ink = np.array(Image.fromarray((digit * 255).astype(np.uint8)).resize((64, 64), Image.BILINEAR)) / 255.0
        colour, start, end = rng.random(3), rng.random(3), rng.random(3)
        ramp = np.linspace(0, 1, 64)[:, None] if rng.random() < 0.5 else np.linspace(0, 1, 64)[None, :]
        background = start * (1 - ramp[..., None]) + end * ramp[..., None]
        rgb = background * (1 - ink[..., None]) + colour * ink[..., None]
        rgb = np.clip(rgb + rng.normal(0, 0.03, rgb.shape), 0, 1)
        folder = Path(args.out) / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rgb * 255).astype(np.uint8)).save(folder / f"{n:05d}.png")


if __name__ == "__main__":
    main()
