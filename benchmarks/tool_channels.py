"""Channel images of other tools (lucent, torch-dreams) scored by channel_quality.py's two measures, beside ours.

    python benchmarks/tool_channels.py --tool-python TOOLS/bin/python --model mnist --layer conv2 [--channels 0-15]

The tools are never dependencies: install them in a separate venv that also sees torch and this repository
(e.g. ``python3 -m venv --system-site-packages TOOLS``, or a ``.pth`` file naming our site-packages), then
``TOOLS/bin/pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1 torch-dreams`` and
``TOOLS/bin/pip install decorator tqdm ipython opencv-python-headless``. Each tool runs in a subprocess on the
same built-in model, channels and steps, with its own defaults:
- lucent: ``render_vis`` with its standard transforms, decorrelated FFT image, ``fixed_image_size`` the model's
  size, one batched objective ``sum(channel(layer, i, batch=i))``;
- lucent-scaled: the same with the standard transforms' padding and jitters scaled from 224 px to the model's
  size (at least 2 pixels, lucent's minimum), as a user of a small net would set them;
- torch-dreams: ``Dreamer.render`` with a batched FFT image and its default affine, its random resize held at 1
  because the model's input size is fixed.
All three draw RGB images: the model sees their channel mean (the grey picture that is scored), then its own
normalization.

Columns as channel_quality.py's: the share of live (not rarely active) channels whose image reaches the best
real image (ratio >= 1, at introspect's measuring point), the median ratio, the distance from the data (energy
outside the top-50 principal components of the training images over the real test images' median; real images
sit near 1, issue #26's bar is a median <= 2.0) and the seconds of the optimization. Route ``s`` (our data
style) and ``a`` (our texture style) are measured alongside in this process.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import introspect  # noqa: E402
from channel_quality import run_route  # noqa: E402
from introspect import channels as ch  # noqa: E402
from introspect.channels import CHANNELS_DEFAULTS, dataset_examples, measure_channels, parse_channel_list  # noqa: E402
from introspect.data import load_dataset  # noqa: E402
from introspect.quality import Manifold  # noqa: E402

#: Runs in the tools' Python: argv = repo root, model, layer, channels (comma-separated), steps, tool, output.
TOOL_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np, torch
    from torch import nn
    root, name, layer, channels, steps, tool, out = sys.argv[1:]
    sys.path.insert(0, root)
    import introspect
    channels, steps = [int(c) for c in channels.split(",")], int(steps)
    loaded = introspect.load_model(name)
    spec = loaded.spec
    size = spec.image_shape[-1]

    class Grey(nn.Module):
        # The tool's RGB picture in [0, 1] as the model's grey input: channel mean, then its normalization.
        def __init__(self, net, undo=None):
            super().__init__()
            self.net, self.normalize, self.undo = net, spec.normalize(), undo
        def forward(self, x):
            if self.undo is not None:
                x = self.undo(x)
            return self.net(self.normalize(x.mean(1, keepdim=True)))

    torch.manual_seed(0)
    started = time.perf_counter()
    if tool.startswith("lucent"):
        from lucent.optvis import objectives, param, render, transform
        model = Grey(loaded.model).eval()
        transforms = transform.standard_transforms
        if tool == "lucent-scaled":  # its standard transforms with pad and jitters scaled from 224 px to ours
            scale = size / 224
            transforms = [transform.pad(max(1, round(12 * scale)), mode="constant", constant_value=.5),
                          transform.jitter(max(2, round(8 * scale))),
                          transform.random_scale([1 + (i - 5) / 50. for i in range(11)]),
                          transform.random_rotate(list(range(-10, 11)) + 5 * [0]),
                          transform.jitter(max(2, round(4 * scale)))]
        objective = sum(objectives.channel("net_" + layer.replace(".", "_"), c, batch=i)
                        for i, c in enumerate(channels))
        images = render.render_vis(model, objective, lambda: param.image(size, batch=len(channels)),
                                   transforms=transforms, thresholds=(steps,), fixed_image_size=size,
                                   preprocess=False,
                                   show_image=False, progress=False)[-1]
        images = torch.as_tensor(images).permute(0, 3, 1, 2)
    else:
        from torch_dreams import Dreamer
        from torch_dreams.batched_image_param import BatchedAutoImageParam
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        model = Grey(loaded.model, undo=lambda x: x * std + mean).eval()
        dreamer = Dreamer(model, quiet=True, device="cpu")
        batch = BatchedAutoImageParam(batch_size=len(channels), height=size, width=size, device="cpu")
        def loss(outputs):
            return -sum(outputs[0][i, c].mean() for i, c in enumerate(channels))
        # render optimizes a copy of the parameters and returns it
        done = dreamer.render(layers=[model.net.get_submodule(layer)], image_parameter=batch, iters=steps,
                              custom_func=loss, scale_max=1.0, scale_min=1.0)
        images = torch.cat([p.postprocess(device="cpu") for p in done.image_params])
    seconds = time.perf_counter() - started
    np.savez(out, images=images.mean(1, keepdim=True).detach().numpy(), seconds=seconds)
""")

TOOLS = ("lucent", "lucent-scaled", "torch-dreams")


def tool_images(python: str, tool: str, model: str, layer: str, channels: list[int], steps: int):
    """Grey images (N, 1, H, W) in [0, 1] drawn by ``tool`` in the tools' Python, and its seconds."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "images.npz"
        script = Path(folder) / "tool.py"
        script.write_text(TOOL_SCRIPT)
        done = subprocess.run([python, str(script), str(ROOT), model, layer, ",".join(map(str, channels)),
                               str(steps), tool, str(out)], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{tool} failed:\n{done.stderr[-3000:]}")
        saved = np.load(out)
        return torch.from_numpy(saved["images"]).float(), float(saved["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool-python", required=True, help="the Python of a venv with the tools installed")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated (default: {','.join(TOOLS)})")
    parser.add_argument("--model", default="mnist", help="a built-in model (default: mnist)")
    parser.add_argument("--layer", default="conv2", help="one layer (default: conv2)")
    parser.add_argument("--channels", default="", help="e.g. 0-15 (default: all)")
    parser.add_argument("--steps", type=int, default=CHANNELS_DEFAULTS.steps,
                        help=f"steps for every route (default: {CHANNELS_DEFAULTS.steps})")
    parser.add_argument("--ours", default="a,s", help="channel_quality.py routes measured alongside (default: a,s)")
    args = parser.parse_args()
    torch.manual_seed(0)
    loaded = introspect.load_model(args.model)
    model, spec = loaded.model, loaded.spec
    train, test = load_dataset(args.model, "train"), load_dataset(args.model, "test")
    pixels = train.pixels()
    manifold = Manifold.fit(pixels)
    real = float(manifold.residual(test.pixels()).median())
    examples = dataset_examples(model, spec, args.layer, train, k=5, cache_key=loaded.sha256)
    count = len(examples.max_value)
    chosen = parse_channel_list(args.channels, count) if args.channels else list(range(count))
    live = torch.tensor([bool(examples.live[c]) and not bool(examples.rare[c]) for c in chosen])
    print(f"model {args.model}, layer {args.layer}, {len(chosen)} channels ({int(live.sum())} live), "
          f"steps {args.steps}; distance = residual outside 50 PCs / median over real test images ({real:.3f})")
    print("| tool | share ratio >= 1 | median ratio | median distance (max) | s |")
    print("|---|---|---|---|---|")
    runs = [(f"introspect {route}", route) for route in filter(None, args.ours.split(","))]
    runs += [(tool, tool) for tool in filter(None, args.tools.split(","))]
    for label, what in runs:
        if what in TOOLS:
            images, seconds = tool_images(args.tool_python, what, args.model, args.layer, chosen, args.steps)
        else:
            started = time.perf_counter()
            images = run_route(what, model, spec, args.layer, chosen, examples, train, pixels, args.steps,
                               weight=ch.DATA_DISTANCE_WEIGHT, target=ch.DATA_TARGET)  # the shipped data style
            seconds = time.perf_counter() - started
        values = measure_channels(model, spec, args.layer, images, chosen, spec.activation(args.layer))
        ratio = (values / examples.max_value[chosen].clamp(min=1e-12))[live]
        distance = (manifold.residual(images) / real)[live]
        print(f"| {label} | {float((ratio >= 1).float().mean()):.3f} | {float(ratio.median()):.2f} "
              f"| {float(distance.median()):.2f} ({float(distance.max()):.2f}) | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
