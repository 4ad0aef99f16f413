"""A faithful reimplementation of the original blog's class-visualization loop, for comparison only.

For each class in turn: start from a black uint8 image; every step convert it to
a float tensor, build a NEW Adam optimizer, take one step on
loss = -10*out[target] + sum(out) (out = the model's log_softmax output),
then round the image back to uint8. Weight gradients are computed as in the
blog (parameters keep requires_grad). The blog's learning rate is not stated
in the brief; 0.1 in [0, 1] pixel units is assumed (one fresh Adam step moves
every pixel by about lr).
"""
from __future__ import annotations

import numpy as np
import torch

from introspect.models import ModelSpec


def blog_loop(model: torch.nn.Module, spec: ModelSpec, classes=range(10), steps: int = 50, lr: float = 0.1) -> torch.Tensor:
    """Returns (N, 1, 28, 28) float images in [0, 1], one per class, made one class at a time."""
    model.eval()
    mean, std = spec.mean[0], spec.std[0]
    results = []
    for target in classes:
        image = np.zeros((1, 1, 28, 28), dtype=np.uint8)
        for _ in range(steps):
            x = torch.tensor(image / 255.0, dtype=torch.float32, requires_grad=True)
            optimizer = torch.optim.Adam([x], lr=lr)
            out = model((x - mean) / std)
            loss = -10 * out[0, target] + out.sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            image = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        results.append(torch.from_numpy(image).float() / 255)
    model.zero_grad(set_to_none=True)
    return torch.cat(results)


def main() -> None:
    """The blog program as a whole process: load the MNIST net, run the loop, save one PNG per class."""
    import argparse
    from pathlib import Path

    from PIL import Image

    from introspect.models import load_model

    parser = argparse.ArgumentParser(description="the blog's class-visualization program")
    parser.add_argument("--out", required=True, help="folder for class-N.png")
    args = parser.parse_args()
    loaded = load_model("mnist")
    images = blog_loop(loaded.model, loaded.spec)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for target, image in enumerate(images):
        Image.fromarray((image[0] * 255).round().byte().numpy()).save(out / f"class-{target}.png")


if __name__ == "__main__":
    main()
