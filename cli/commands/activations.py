"""`introspect activations`: what each layer sees for one image, and which pixels drove the decision."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from introspect.activations import ImageInput, Visualized, inspect_image, load_image, strongest_channels
from introspect.channels import CHANNELS_DEFAULTS, visualize_channels
from introspect.data import DATASETS, ImageDataset, check_fits, load_dataset, load_image_folder
from introspect.errors import UserError
from introspect.folders import check_out, claimed_run
from introspect.layers import select_layers
from introspect.records import Provenance, write_activations

from ..data import apply_prior
from ..options import (add_data_dir, add_device, add_model_options, add_output_options, input_files, repeat_record,
                       load_model_from_args, parse_formats, positive_int, resolve_device)
from ..output import Outcome, Output
from .classes import finished


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("activations", help="what each layer sees for one image, and a saliency map",
                       description="Show the input as the model sees it with its prediction, every layer's feature maps "
                                   "or unit activations, and the saliency of the predicted class.")
    add_model_options(p)
    source = p.add_argument_group("image (one of)")
    source.add_argument("--image", metavar="PATH", help="any image file, converted to the model's input (the report says "
                        "how); or a .npy array of the input's shape with values in [0, 1]; or a .wav file for a "
                        "signal input")
    source.add_argument("--dataset", choices=list(DATASETS), help="take the image from this dataset's held-out (test) split")
    source.add_argument("--images", metavar="DIR",
                        help="take the image from your own pictures (sorted by path; sub-folders are classes), with --index")
    source.add_argument("--index", type=int, metavar="N", help="index into the held-out split, with --dataset, or into --images")
    source.add_argument("--frame", type=int, metavar="N",
                        help="frame of an animated or multi-page --image, from 0 (default: none; such images are refused)")
    add_data_dir(p)
    p.add_argument("--layer", default="all", metavar="NAMES", help="layers, comma-separated, or all (default: all)")
    p.add_argument("--invert", default="auto", choices=["auto", "yes", "no"],
                   help="invert a grayscale picture; auto: when its border is light; never a signal (default: auto)")
    p.add_argument("--with-visualizations", action="store_true",
                   help="below each layer, the optimized images of its strongest channels or units")
    p.add_argument("--top", type=positive_int, default=3, metavar="N",
                   help="strongest channels highlighted (and visualized) per layer (default: 3)")
    p.add_argument("--steps", type=positive_int, default=CHANNELS_DEFAULTS.steps,
                   help=f"optimization steps for --with-visualizations (default: {CHANNELS_DEFAULTS.steps})")
    add_device(p)
    add_output_options(p, "activations", formats=True)
    p.set_defaults(run=run)



def read_input(args: argparse.Namespace, spec, io: Output) -> tuple[ImageInput, ImageDataset | None]:
    """The image to inspect, and the dataset it came from (for the prior of --with-visualizations)."""
    if sum(x is not None for x in (args.image, args.dataset, args.images)) != 1:
        raise UserError("give one of --image PATH, --dataset NAME --index N or --images DIR --index N")
    if args.image is not None:
        if args.index is not None:
            raise UserError("--index goes with --dataset, not --image")
        return load_image(args.image, spec, args.invert, args.frame), None
    if args.frame is not None:
        raise UserError("--frame goes with --image")
    what = "--dataset" if args.images is None else "--images"
    if args.index is None:
        raise UserError(f"{what} needs --index N (an index into {'its held-out split' if args.images is None else 'the pictures'})")
    if args.images is None:
        data = load_dataset(args.dataset, "test", args.data_dir)
        check_fits(data, spec.image_shape)
        name = f"{args.dataset} held-out"
    else:
        data = load_image_folder(args.images, spec, args.invert)
        name = f"{args.images}"
    if not 0 <= args.index < len(data):
        raise UserError(f"--index {args.index} is out of range: {name} has 0-{len(data) - 1}")
    io.err.print(f"data: {data.source}", markup=False)
    label = int(data.labels[args.index])
    file = data.files[args.index] if data.files else None  # which picture of the folder
    # its own conversion steps (the folder keeps only the pixels), read again
    read = load_image(Path(args.images) / file, spec, args.invert) if file else None
    return ImageInput(pixels=data.pixels(slice(args.index, args.index + 1))[0],
                      source=f"{name} #{args.index} ({f'{file}, ' if file else ''}label {data.class_names[label]}; "
                             f"{data.source})",
                      label=label, conversion=read.conversion if read else [], upscaled=read.upscaled if read else 1.0,
                      file=file), data


#: An input enlarged at least this many times is said to be (the model sees a blur).
UPSCALE_WARNING = 4


def input_warnings(image: ImageInput) -> list[str]:
    """What about the input would mislead a reading of the model's answer: a uniform input, a much enlarged one."""
    warnings = []
    if image.uniform:
        warnings.append(f"the input is uniform after conversion (every value {float(image.pixels.mean()):.3f}): the "
                        "model's answer says nothing about the picture (its drawing lost to the background?)")
    if image.upscaled >= UPSCALE_WARNING:
        warnings.append(f"the picture was enlarged {image.upscaled:.3g}x to the model's input: the model sees a blur "
                        "with none of a real input's detail")
    return warnings



def run(args: argparse.Namespace, io: Output) -> Outcome:
    loaded = load_model_from_args(args)
    for note in loaded.notes:
        io.note(note)
    model, spec = loaded.model, loaded.spec
    image, data = read_input(args, spec, io)
    for warning in input_warnings(image):
        io.err.print(f"warning: {warning}", markup=False)
    prior = apply_prior(loaded, data, io) if args.with_visualizations else None
    spec = loaded.spec
    notes: list[str] = []
    layers = select_layers(model, spec.input_shape, args.layer, notes)
    for note in notes:
        io.note(note)
    device = str(resolve_device(args.device))
    formats = parse_formats(args.format)
    check_out(args.out, args.force)
    provenance = Provenance.of(loaded, args.argv, input_files(args), prior=prior)
    config = CHANNELS_DEFAULTS.replace(device=device, steps=args.steps)
    provenance.repeat = repeat_record(args, loaded, config if args.with_visualizations else None)
    with claimed_run(args.out, "activations", args.force) as run_folder:
        started = time.time()
        result = inspect_image(model, spec, image, layers, device)
        with io.interrupts.stepping():  # from here a signal no longer drops the run: it is written, then said
            visualizations = strongest_visualizations(args, model, spec, result, layers, config, io) \
                if args.with_visualizations else None
            # a signal stopped the visualizations: the layer it stopped (its images so far) and those never started
            left = [layer for layer in layers if layer not in visualizations and strongest_channels(result, layer,
                                                                                                    args.top)
                    ] if visualizations is not None and io.interrupts.received is not None else []
            cut = next((v for v in (visualizations or {}).values() if v.interrupted_at is not None), None)
            if len(layers) > 8:  # a page of maps per few layers: seconds of drawing to say something of
                io.err.print(f"writing the report and site of {len(layers)} layers", markup=False)
        with io.interrupts.deferred():
            record = write_activations(run_folder, result, provenance, visualizations,
                                       config if args.with_visualizations else None, formats, args.top,
                                       time.time() - started, spec.logits, not_visualized=left)
    summary = {"run": str(run_folder.path), "input": record["input"], "prediction": record["prediction"],
               "top5": record["top5"], "status": record["status"]}
    failure = result.failure()
    if failure is None and not bool(result.saliency.any()):
        judged = "the predicted class's score" if result.predicted is not None else "the last layer's strongest unit"
        io.err.print(f"warning: the saliency is 0 at every pixel: {judged} does not change with the input here (a "
                     "closed path, or an output that ignores the input)", markup=False)
    if failure is not None:  # the layers' outputs are written: where the NaN starts is what to look at
        io.err.print(f"error: {failure}; wrote the layers' outputs to {run_folder.path}", markup=False)
        return Outcome(1, {**summary, "error": failure})
    if cut is not None or left:
        stopped = next(layer for layer, v in visualizations.items() if v is cut) if cut is not None else None
        io.err.print(f"interrupted ({io.interrupts.name}) "
                     + (f"at step {cut.interrupted_at} of {cut.steps} of {stopped}'s visualizations"
                        if cut is not None else "between two layers' visualizations")
                     + (f" ({', '.join(left)}: none)" if left else "")
                     + f": wrote the partial run to {run_folder.path}", markup=False)
        return Outcome(io.interrupts.exit_code, summary)
    prediction = record["prediction"]
    io.out.print((f"prediction: {prediction['name']} (p={prediction['probability']:.3f}); " if prediction else
                  "no prediction (the model's logits are unknown: name them with --logits-layer NAME or "
                  "--logits-output KEY); ") + f"wrote {run_folder.path}/report.png", markup=False)
    return finished(io, summary)


def strongest_visualizations(args: argparse.Namespace, model, spec, result, layers: list[str], config,
                             io: Output) -> dict[str, Visualized]:
    """Optimized images of each layer's strongest channels for this image. A signal stops the optimization after its
    current step: that layer keeps its images so far (``interrupted_at``), the layers after it get none."""
    visualizations = {}
    interrupts = io.interrupts
    with io.progress() as bar, interrupts.stepping():
        for layer in layers:
            if interrupts.received is not None:  # came between two layers' optimizations
                break
            top = strongest_channels(result, layer, args.top)
            if not top:
                continue
            task = bar.add_task(f"{layer}: optimizing", total=None, info="", unit="step")

            def on_step(step: int, total: int, _values, task=task) -> None:
                bar.update(task, completed=step, total=total, info="")
                interrupts.check()

            vis = visualize_channels(model, spec, layer, top, config, callback=on_step)
            # stopped, a layer whose channels took several chunks has those of the chunks that ran
            visualizations[layer] = Visualized(vis.channels, vis.images[:len(vis.channels)], vis.steps_done,
                                               config.steps, vis.interrupted_at)
            if vis.interrupted_at is not None:
                break
    return visualizations
