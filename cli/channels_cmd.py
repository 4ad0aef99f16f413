"""`introspect channels`: what each channel of a layer responds to, with real examples beside each."""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from matplotlib.backends.backend_pdf import PdfPages
from rich.console import Console

from introspect.channels import (CHANNELS_DEFAULTS, ChannelsResult, auto_batch_size, dataset_examples, layer_units,
                                 parse_channel_list, visualize_channels)
from introspect.data import DATASETS, ImageDataset, load_dataset
from introspect.errors import UserError
from introspect.layers import describe_layers, resolve_layer
from introspect.report import channels_figure, index_figure, save_figure, to_uint8
from introspect.runs import RunFolder, check_out

from .common import (add_model_options, add_output_options, add_render_options, claim_out_dir, config_from_args,
                     load_model_from_args, model_label, plural, positive_int, progress, run_record, run_status, written)

HOOKABLE_TYPES = ("Conv1d", "Conv2d", "Conv3d", "Linear", "LazyLinear", "LazyConv2d")


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
    p.add_argument("--split", default="train", choices=["train", "test"], help="dataset split (default: train)")
    p.add_argument("--data-dir", metavar="DIR", help="where datasets are stored or downloaded (default: the user cache)")
    p.add_argument("--batch-size", type=positive_int, metavar="N", help="images optimized at once (default: automatic, to fit memory)")
    add_render_options(p, CHANNELS_DEFAULTS)
    add_output_options(p, "channels", formats=False)
    p.set_defaults(run=run_channels)


def resolve_layers(model: torch.nn.Module, spec, text: str) -> list[str]:
    if text.strip() == "all":
        infos = describe_layers(model, spec.input_shape)
        layers = [i.name for i in infos if i.type in HOOKABLE_TYPES and i.output_shape is not None]
        if not layers:
            raise UserError("--layer all found no conv or Linear layers; name layers explicitly (see `introspect layers`)")
        return layers
    layers = [name.strip() for name in text.split(",")]
    if not all(layers):
        raise UserError(f"--layer '{text}' has an empty name; write e.g. conv1,conv2 (see `introspect layers`)")
    for name in layers:
        resolve_layer(model, name)
    return list(dict.fromkeys(layers))


def load_examples_dataset(args: argparse.Namespace, spec, err: Console) -> ImageDataset | None:
    name = args.dataset or spec.dataset
    if name is None or name == "none":
        err.print("no dataset: the report shows no real examples or ratios (pass --dataset to add them)", markup=False)
        return None
    try:
        data = load_dataset(name, args.split, args.data_dir)
    except UserError as exc:
        if args.dataset or args.data_dir:  # asked for explicitly: a real error
            raise
        err.print(f"note: {exc}; the report is written without real examples", markup=False)
        return None
    if tuple(data.images.shape[1:]) != tuple(spec.input_shape):
        raise UserError(f"dataset {name} has images of shape {tuple(data.images.shape[1:])}, "
                        f"the model takes {tuple(spec.input_shape)}; choose another --dataset")
    err.print(f"data: {data.source}", markup=False)
    return data


def run_channels(args: argparse.Namespace, out: Console, err: Console) -> int:
    loaded = load_model_from_args(args, err)
    model, spec = loaded.model, loaded.spec
    layers = resolve_layers(model, spec, args.layer)
    selections = {layer: parse_channel_list(args.channels, layer_units(model, spec, layer)) if args.channels is not None else None
                  for layer in layers}
    config = config_from_args(args, CHANNELS_DEFAULTS)
    check_out(args.out, args.force)
    plan = []
    for layer in layers:
        count = len(selections[layer] or range(layer_units(model, spec, layer))) * args.diverse
        chunk = args.batch_size or auto_batch_size(model, spec, layer, args.diverse, config.device)
        chunk = max(args.diverse, chunk // args.diverse * args.diverse)
        err.print(f"plan: {layer}: {plural(count, 'image')} × {config.steps} steps = {count * config.steps:,} image-steps, "
                  f"{-(-count // chunk)} chunk(s) of up to {chunk} on {config.device}", markup=False)
        plan.append({"layer": layer, "images": count, "steps": config.steps, "chunk": chunk, "device": config.device})
    if args.dry_run:
        args.summary = {"plan": plan}
        return 0
    data = load_examples_dataset(args, spec, err)
    interrupts = args.interrupts
    run = claim_out_dir(args, "channels")
    started = time.time()
    results: list[ChannelsResult] = []
    cache_notes: set[str] = set()
    try:
        with progress(err, args) as bar, interrupts.stepping():
            try:
                for layer in layers:
                    interrupts.check()
                    results.append(channels_of_layer(args, loaded, layer, selections[layer], config, data, bar, err))
                    for note in results[-1].examples.notes if results[-1].examples else []:
                        if note not in cache_notes:  # an unwritable cache would say so once per layer
                            cache_notes.add(note)
                            err.print(f"note: {note}", markup=False)
                    if results[-1].interrupted_at is not None:
                        break
            except KeyboardInterrupt:
                if not results:
                    raise
        status = run_status(next((r.interrupted_at for r in results if r.interrupted_at is not None), None))
        if status == "complete" and len(results) < len(layers):
            status = f"interrupted before layer {layers[len(results)]} ({len(results)} of {len(layers)} layers done)"
        with interrupts.deferred():
            write_channels_run(run, results, loaded, data, args, time.time() - started, status)
    except BaseException:
        run.abandon()
        raise
    args.summary = {"run": str(run.path), "status": status, "layers": [layer_summary(r) for r in results]}
    if status != "complete":
        err.print(f"{status} ({interrupts.name}): wrote the partial run to {run.path}", markup=False)
        return interrupts.exit_code
    for result in results:
        out.print(summary_line(result), markup=False)
    out.print(written(run), markup=False)
    if interrupts.received:
        err.print(f"interrupted ({interrupts.name}) after the work was done: the run is complete", markup=False)
        return interrupts.exit_code
    return 0


def channels_of_layer(args: argparse.Namespace, loaded, layer: str, channels: list[int] | None, config,
                      data: ImageDataset | None, bar, err: Console) -> ChannelsResult:
    """Real examples (when there is data) and optimized images of one layer, checking for signals as it goes."""
    interrupts = args.interrupts
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

    result = visualize_channels(loaded.model, loaded.spec, layer, channels, config, neuron=args.neuron,
                                diverse=args.diverse, batch_size=args.batch_size, examples=examples, callback=on_step)
    for note in dict.fromkeys(n for r in result.renders for n in r.notes):
        err.print(f"note: {note}", markup=False)
    if result.stopped:
        err.print(f"warning: {layer}: the objective became NaN/inf for channel(s) {result.stopped}; "
                  "their optimization stopped there, the others went on", markup=False)
    return result


def summary_line(result: ChannelsResult) -> str:
    if result.examples is None:
        return f"{result.layer}: {plural(len(result.channels), 'channel')} (no dataset: no ratios)"
    live = ~result.dead
    ratios = result.ratio[live]
    share = float((ratios >= 1).float().mean()) if len(ratios) else float("nan")
    median = float(ratios.median()) if len(ratios) else float("nan")
    return (f"{result.layer}: {plural(len(result.channels), 'channel')}, {int(live.sum())} live, {int((~live).sum())} dead; "
            f"ratio >= 1.0 for {share:.0%} of live channels, median {median:.2f}")


def layer_summary(result: ChannelsResult) -> dict:
    ratio = result.ratio
    live = ~result.dead
    finite = ratio[~torch.isnan(ratio)]
    return {
        "layer": result.layer, "activation": result.activation, "reduction": "centre" if result.neuron else "mean",
        "channels": result.channels, "batch_size": result.batch_size,
        "live": int(live.sum()) if result.examples is not None else None,
        "dead": int((~live).sum()) if result.examples is not None else None,
        "median_ratio": float(finite.median()) if len(finite) else None,
        "share_ratio_at_least_1": float((finite >= 1).float().mean()) if len(finite) else None,
        "per_channel": [
            {"channel": c, "activation": float(result.best[i]), "ratio": None if torch.isnan(ratio[i]) else float(ratio[i]),
             "dead": bool(result.dead[i])}
            for i, c in enumerate(result.channels)
        ],
    }


def write_channels_run(run: RunFolder, results: list[ChannelsResult], loaded, data: ImageDataset | None,
                       args: argparse.Namespace, seconds: float, status: str) -> None:
    rows: dict[str, list] = {key: [] for key in ("images", "labels", "layers", "scores", "examples",
                                                 "example_activations", "ratio", "dead")}
    for r in results:
        n = len(r.channels) * r.diverse
        rows["images"].append(to_uint8(r.images[:n]))
        rows["labels"].append(np.repeat(r.channels, r.diverse))
        rows["layers"].append(np.array([r.layer] * n))
        rows["scores"].append(r.activations[:n].numpy())
        rows["ratio"].append(r.ratio.repeat_interleave(r.diverse, 0).numpy())
        rows["dead"].append(r.dead.repeat_interleave(r.diverse, 0).numpy())
        if r.examples is not None:
            rows["examples"].append(r.examples.top_indices[r.channels].repeat_interleave(r.diverse, 0).numpy())
            rows["example_activations"].append(r.examples.top_values[r.channels].repeat_interleave(r.diverse, 0).numpy())
    arrays = {k: np.concatenate(v) for k, v in rows.items() if v}
    with run.file("images.npz") as path:
        np.savez_compressed(path, **arrays)

    name = model_label(loaded)
    pages = [channels_figure(r, data.images if data is not None else None, name) for r in results]
    index = index_figure(results, name)
    for r, page in zip(results, pages):
        with run.file(f"report-{r.layer}.png") as path:
            save_figure(page, path)
    with run.file("index.png") as path:
        save_figure(index, path)
    with run.file("report.png") as path:
        save_figure(pages[0] if len(pages) == 1 else index, path)
    with run.file("report.pdf") as path, PdfPages(path) as pdf:
        for page in ([index] if len(pages) > 1 else []) + pages:
            pdf.savefig(page)

    record = run_record(loaded, args, results[0].config, seconds, status, min(r.steps_done for r in results))
    record.update({
        "command_name": "channels",
        "dataset": None if data is None else {"name": data.name, "split": data.split, "source": data.source, "count": len(data)},
        "definitions": {
            "activation": "mean over the spatial map of the post-activation output (what the next layer sees); "
                          "Linear: the unit's value after its activation; --neuron: the centre position",
            "live": "some real image gives the channel a positive output somewhere",
            "ratio": "the visualization's activation / the highest activation of any real image (live channels only)",
        },
        "neuron": args.neuron, "diverse": args.diverse, "top_k": args.top_k,
        "layers": [layer_summary(r) for r in results],
    })
    run.finish(record)
