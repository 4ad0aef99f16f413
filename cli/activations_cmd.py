"""`introspect activations`: what each layer sees for one image, and which pixels drove the decision."""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from rich.console import Console

from introspect.activations import ImageInput, inspect_image, load_image
from introspect.channels import CHANNELS_DEFAULTS, visualize_channels
from introspect.data import DATASETS, load_dataset
from introspect.errors import UserError
from introspect.report import activations_figure, save_figure
from introspect.runs import RunFolder, check_out

from .channels_cmd import resolve_layers
from .common import (FORMATS, add_model_options, claim_out_dir, load_model_from_args, model_label, parse_formats,
                     positive_int, progress, resolve_device, run_record)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("activations", help="what each layer sees for one image, and a saliency map",
                       description="Show the input as the model sees it with its prediction, every layer's feature maps "
                                   "or unit activations, and the saliency of the predicted class.")
    add_model_options(p)
    source = p.add_argument_group("image (one of)")
    source.add_argument("--image", metavar="PATH", help="any image file; converted to the model's input (the report says how)")
    source.add_argument("--dataset", choices=list(DATASETS), help="take the image from this dataset's held-out (test) split")
    source.add_argument("--index", type=int, metavar="N", help="index into the held-out split, with --dataset")
    source.add_argument("--frame", type=int, metavar="N",
                        help="frame of an animated or multi-page --image, from 0 (default: none; such images are refused)")
    p.add_argument("--data-dir", metavar="DIR", help="where datasets are stored or downloaded (default: the user cache)")
    p.add_argument("--layer", default="all", metavar="NAMES", help="layers, comma-separated, or all (default: all)")
    p.add_argument("--invert", default="auto", choices=["auto", "yes", "no"],
                   help="invert a grayscale image; auto: when its border is light (default: auto)")
    p.add_argument("--with-visualizations", action="store_true",
                   help="below each layer, the optimized images of its strongest channels or units")
    p.add_argument("--top", type=positive_int, default=3, metavar="N",
                   help="strongest channels highlighted (and visualized) per layer (default: 3)")
    p.add_argument("--steps", type=positive_int, default=CHANNELS_DEFAULTS.steps,
                   help=f"optimization steps for --with-visualizations (default: {CHANNELS_DEFAULTS.steps})")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", help="run folder (default: a new runs/activations-NNN)")
    g.add_argument("--force", action="store_true", help="allow --out to overwrite an earlier run")
    g.add_argument("--format", default="png", metavar="LIST",
                   help=f"report formats, comma-separated from {','.join(FORMATS)}; png is always written (default: png)")
    p.set_defaults(run=run_activations)


def read_input(args: argparse.Namespace, spec, err: Console) -> ImageInput:
    if (args.image is None) == (args.dataset is None):
        raise UserError("give either --image PATH or --dataset NAME --index N")
    if args.image is not None:
        if args.index is not None:
            raise UserError("--index goes with --dataset, not --image")
        return load_image(args.image, spec, args.invert, args.frame)
    if args.frame is not None:
        raise UserError("--frame goes with --image, not --dataset")
    if args.index is None:
        raise UserError("--dataset needs --index N (an index into its held-out split)")
    data = load_dataset(args.dataset, "test", args.data_dir)
    if not 0 <= args.index < len(data):
        raise UserError(f"--index {args.index} is out of range: the {args.dataset} held-out split has 0-{len(data) - 1}")
    if tuple(data.images.shape[1:]) != tuple(spec.input_shape):
        raise UserError(f"{args.dataset} images are {tuple(data.images.shape[1:])}; the model takes {tuple(spec.input_shape)}")
    err.print(f"data: {data.source}", markup=False)
    label = int(data.labels[args.index])
    return ImageInput(pixels=data.pixels(slice(args.index, args.index + 1))[0],
                      source=f"{args.dataset} held-out #{args.index} (label {data.class_names[label]}; {data.source})",
                      label=label)


def run_activations(args: argparse.Namespace, out: Console, err: Console) -> int:
    loaded = load_model_from_args(args, err)
    model, spec = loaded.model, loaded.spec
    image = read_input(args, spec, err)
    layers = resolve_layers(model, spec, args.layer)
    device = str(resolve_device(args.device))
    formats = parse_formats(args.format)
    check_out(args.out, args.force)
    run = claim_out_dir(args, "activations")
    try:
        started = time.time()
        result = inspect_image(model, spec, image, layers, device)
        visualizations = strongest_visualizations(args, model, spec, result, layers, device, err) \
            if args.with_visualizations else None
        with args.interrupts.deferred():
            record = write_activations_run(run, args, loaded, image, result, visualizations, layers, formats,
                                           time.time() - started)
    except BaseException:
        run.abandon()
        raise
    args.summary = {"run": str(run.path), "input": record["input"], "prediction": record["prediction"], "top5": record["top5"]}
    out.print(f"prediction: {spec.class_names[result.predicted]} (p={float(result.probabilities[result.predicted]):.3f}); "
              f"wrote {run.path}/report.png", markup=False)
    if args.interrupts.received:
        err.print(f"interrupted ({args.interrupts.name}) after the work was done: the run is complete", markup=False)
        return args.interrupts.exit_code
    return 0


def strongest_visualizations(args: argparse.Namespace, model, spec, result, layers: list[str], device: str,
                             err: Console) -> dict[str, tuple[list[int], torch.Tensor]]:
    """Optimized images of each layer's strongest channels for this image."""
    visualizations = {}
    with progress(err, args) as bar:
        for layer in layers:
            shown = result.shown(layer)
            strength = shown.mean((1, 2)) if shown.ndim == 3 else shown
            top = [i for i in torch.argsort(strength, descending=True)[:args.top].tolist() if strength[i] > 0]
            if not top:
                continue
            task = bar.add_task(f"{layer}: optimizing", total=None, info="", unit="step")
            vis = visualize_channels(model, spec, layer, top, CHANNELS_DEFAULTS.replace(device=device, steps=args.steps),
                                     callback=lambda s, t, v, task=task: bar.update(task, completed=s, total=t, info=""))
            visualizations[layer] = (top, vis.images)
    return visualizations


def write_activations_run(run: RunFolder, args: argparse.Namespace, loaded, image: ImageInput, result, visualizations,
                          layers: list[str], formats: list[str], seconds: float) -> dict:
    spec = loaded.spec
    fig = activations_figure(result, visualizations, model_label(loaded), highlight=args.top,
                             logits_layer=spec.logits_layer)
    for fmt in formats:
        with run.file(f"report.{fmt}") as path:
            save_figure(fig, path)
    arrays = {layer: output.numpy() for layer, output in result.outputs.items()}
    arrays.update(input=image.pixels.numpy(), saliency=result.saliency.numpy(),
                  grad_times_input=result.grad_times_input.numpy(), probabilities=result.probabilities.numpy())
    with run.file("activations.npz") as path:
        np.savez_compressed(path, **arrays)
    record = run_record(loaded, args, CHANNELS_DEFAULTS.replace(steps=args.steps) if args.with_visualizations else None,
                        seconds, "complete", 0)
    record.update({
        "command_name": "activations",
        "input": {"source": image.source, "conversion": image.conversion, "label": image.label},
        "prediction": {"class": result.predicted, "name": spec.class_names[result.predicted],
                       "probability": float(result.probabilities[result.predicted])},
        "top5": [{"class": int(i), "name": spec.class_names[int(i)], "probability": float(result.probabilities[i])}
                 for i in torch.argsort(result.probabilities, descending=True)[:5]],
        "layers": {layer: {"shape": list(result.outputs[layer].shape), "activation_shown": result.activations[layer]}
                   for layer in layers},
        "npz_note": "activations.npz holds each layer's output as its hook records it (before any functional ReLU)",
    })
    run.finish(record)
    return record
