"""`introspect channels`: what each channel of a layer responds to, with real examples beside each."""
from __future__ import annotations

import argparse
import time

from introspect.channels import (CHANNELS_DEFAULTS, ChannelsPlan, ChannelsResult, dataset_examples, plan_channels,
                                 visualize_channels)
from introspect.data import DATASETS, ImageDataset, check_fits, load_dataset, load_image_folder
from introspect.errors import UserError
from introspect.layers import select_layers
from introspect.runs import Provenance, check_out, claim_run_folder, layer_record, run_status, write_channels

from ..options import (add_data_dir, add_model_options, add_output_options, add_render_options, config_from_args,
                       input_files, load_model_from_args, parse_formats, positive_int)
from ..output import Outcome, Output, plural, written
from .classes import finished


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("channels", help="what each channel of a layer responds to, with real top examples",
                       description="Optimize one image per channel of a layer (all channels batched) and show, beside "
                                   "each, the dataset images that excite it most.")
    add_model_options(p)
    p.add_argument("--layer", required=True, metavar="NAMES",
                   help="layer(s) by dotted path, comma-separated, or 'all' for every conv/Linear layer (see `introspect layers`)")
    p.add_argument("--channels", metavar="LIST", help="channels, e.g. 0-15,20 (default: all)")
    p.add_argument("--neuron", action="store_true", help="maximize the centre spatial position instead of the map's mean")
    p.add_argument("--diverse", type=positive_int, default=1, metavar="N",
                   help="N different images per channel, pushed apart by a diversity term (default: 1)")
    p.add_argument("--top-k", type=positive_int, default=5, metavar="K", help="real examples per channel (default: 5)")
    p.add_argument("--dataset", metavar="NAME", help=f"dataset for examples: {', '.join(DATASETS)} or none (default: the model's training dataset)")
    p.add_argument("--images", metavar="DIR",
                   help="your own pictures as the dataset (sub-folders are classes; each converted to the model's "
                        "input like activations --image; default: none)")
    p.add_argument("--split", default="train", choices=["train", "test"], help="dataset split (default: train)")
    add_data_dir(p)
    p.add_argument("--batch-size", type=positive_int, metavar="N", help="images optimized at once (default: automatic, to fit memory)")
    add_render_options(p, CHANNELS_DEFAULTS)
    add_output_options(p, "channels", formats=True)
    p.set_defaults(run=run)


def examples_dataset(args: argparse.Namespace, spec, io: Output) -> ImageDataset | None:
    """The dataset for real examples: --dataset, else the model's own; None (said) without one."""
    if args.images is not None:
        if args.dataset is not None:
            raise UserError("give --dataset or --images, not both")
        data = load_image_folder(args.images, spec)
        io.err.print(f"data: {data.source}", markup=False)
        return data
    name = args.dataset or spec.dataset
    if name is None or name == "none":
        io.err.print("no dataset: the report shows no real examples or ratios (pass --dataset to add them)", markup=False)
        return None
    try:
        data = load_dataset(name, args.split, args.data_dir)
    except UserError as exc:
        if args.dataset or args.data_dir:  # asked for explicitly: a real error
            raise
        io.note(f"{exc.message.template}; the report is written without real examples")
        return None
    check_fits(data, spec.input_shape)
    io.err.print(f"data: {data.source}", markup=False)
    return data


def run(args: argparse.Namespace, io: Output) -> Outcome:
    loaded = load_model_from_args(args)
    for note in loaded.notes:
        io.note(note)
    layers = select_layers(loaded.model, loaded.spec.input_shape, args.layer)
    config = config_from_args(args, CHANNELS_DEFAULTS)
    plan = plan_channels(loaded.model, loaded.spec, layers, args.channels, diverse=args.diverse,
                         batch_size=args.batch_size, steps=config.steps, device=config.device)
    formats = parse_formats(args.format)
    check_out(args.out, args.force)
    for layer in plan.layers:
        io.err.print(f"plan: {layer.layer}: {plural(layer.images, 'image')} × {config.steps} steps = "
                     f"{layer.images * config.steps:,} image-steps, {layer.chunks} chunk(s) of up to {layer.chunk} "
                     f"on {config.device}", markup=False)
    if args.dry_run:
        return Outcome(summary={"plan": [{"layer": p.layer, "images": p.images, "steps": config.steps, "chunk": p.chunk,
                                          "device": config.device} for p in plan.layers]})
    data = examples_dataset(args, loaded.spec, io)
    interrupts = io.interrupts
    provenance = Provenance.of(loaded, args.argv, input_files(args))
    run_folder = claim_run_folder(args.out, "channels", args.force)
    started = time.time()
    results: list[ChannelsResult] = []
    said: set[str] = set()
    try:
        with io.progress() as bar, interrupts.stepping():
            try:
                for layer in layers:
                    interrupts.check()
                    results.append(channels_of_layer(args, loaded, plan, layer, config, data, bar, io))
                    for note in results[-1].examples.notes if results[-1].examples else []:
                        if note not in said:  # an unwritable cache would say so once per layer
                            said.add(note)
                            io.note(note)
                    if results[-1].interrupted_at is not None:
                        break
            except KeyboardInterrupt:
                if not results:
                    raise
        status = run_status(next((r.interrupted_at for r in results if r.interrupted_at is not None), None))
        if status == "complete" and len(results) < len(layers):
            status = f"interrupted before layer {layers[len(results)]} ({len(results)} of {len(layers)} layers done)"
        with interrupts.deferred():
            write_channels(run_folder, results, provenance, data, time.time() - started, status, formats,
                           loaded.spec.class_names, loaded.spec.logits_layer)
    except BaseException:
        run_folder.abandon()
        raise
    summary = {"run": str(run_folder.path), "status": status,
               "layers": [layer_record(r) for r in results]}
    if status != "complete":
        io.err.print(f"{status} ({interrupts.name}): wrote the partial run to {run_folder.path}", markup=False)
        return Outcome(interrupts.exit_code, summary)
    for result in results:
        io.out.print(summary_line(result), markup=False)
        summary = result.summary()
        if summary.share_ratio_at_least_1 is not None and summary.share_ratio_at_least_1 < 0.9:
            io.note(f"health: {result.layer}: only {summary.share_ratio_at_least_1:.0%} of live channels reached the "
                    "best real image (ratio >= 1); more --steps or a higher --lr usually gets further")
    io.out.print(written(run_folder), markup=False)
    return finished(io, summary)


def channels_of_layer(args: argparse.Namespace, loaded, plan: ChannelsPlan, layer: str, config,
                      data: ImageDataset | None, bar, io: Output) -> ChannelsResult:
    """Real examples (when there is data) and optimized images of one layer, checking for signals as it goes."""
    interrupts = io.interrupts
    examples = None
    if data is not None:
        task = bar.add_task(f"{layer}: examples", total=len(data), info="")

        def on_batch(done: int, total: int) -> None:
            bar.update(task, completed=done)
            interrupts.check()

        examples = dataset_examples(loaded.model, loaded.spec, layer, data, k=args.top_k, neuron=args.neuron,
                                    device=config.device, cache_key=loaded.sha256, callback=on_batch)
    task = bar.add_task(f"{layer}: optimizing", total=None, info="", unit="step")

    def on_step(step: int, total: int, values) -> None:
        bar.update(task, completed=step, total=total, info=f"mean activation {values.mean():.3g}")
        interrupts.check()

    result = visualize_channels(loaded.model, loaded.spec, layer, config=config, neuron=args.neuron,
                                examples=examples, callback=on_step, plan=plan[layer])
    for note in dict.fromkeys(n for r in result.renders for n in r.notes):
        io.note(note)
    if result.stopped:
        io.err.print(f"warning: {layer}: the objective became NaN/inf for channel(s) {result.stopped}; "
                     "their optimization stopped there, the others went on", markup=False)
    return result


def summary_line(result: ChannelsResult) -> str:
    summary = result.summary()
    if summary.live is None:
        return f"{result.layer}: {plural(summary.channels, 'channel')} (no dataset: no ratios)"
    share = "n/a" if summary.share_ratio_at_least_1 is None else f"{summary.share_ratio_at_least_1:.0%}"
    median = "n/a" if summary.median_ratio is None else f"{summary.median_ratio:.2f}"
    return (f"{result.layer}: {plural(summary.channels, 'channel')}, {summary.live} live, {summary.dead} dead, "
            f"{summary.rare} rarely active, {summary.not_reached} not reached; "
            f"ratio >= 1.0 for {share} of the others, median {median}")
