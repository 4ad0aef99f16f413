"""`introspect channels`: what each channel of a layer responds to, with real examples beside each.

The run is a list of work items, one per chunk of the plan. Under torchrun the items (and the dataset
pass's batches) are split over the processes; each saves its finished items as part files in the run
folder, and rank 0 alone claims the folder, merges and writes the reports. ``--resume`` redoes the
items whose part file is missing.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from rich.console import Console

from introspect.channels import (CHANNELS_DEFAULTS, ChannelsPlan, ChannelsResult, ChunkResult, ExampleStats,
                                 assemble_channels, cache_examples, cached_examples, chunk_channels,
                                 dataset_examples_many, examples_pass, plan_channels, split_items, time_chunk,
                                 visualize_chunk, work_items)
from introspect.data import ImageDataset
from introspect.engine import on_device
from introspect.errors import UserError
from introspect.layers import select_layers
from introspect.runs import (Provenance, check_out, claim_run_folder, finished_items, layer_record, read_manifest,
                             read_part, run_status, write_channels, write_manifest, write_part)

from ..distributed import Ranks, fault_after, join
from ..data import add_data_options, apply_prior, dataset_from_args
from ..options import (add_model_options, add_output_options, add_render_options, config_from_args,
                       input_files, load_arguments, load_model_from_args, parse_formats, positive_float, positive_int)
from ..output import LineProgress, Outcome, Output, plural, written
from .classes import finished


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("channels", help="what each channel of a layer responds to, with real top examples",
                       description="Optimize one image per channel of a layer (all channels batched) and show, beside "
                                   "each, the dataset images that excite it most. Under torchrun the work is split "
                                   "over the processes.")
    add_model_options(p)
    p.add_argument("--layer", metavar="NAMES",
                   help="layer(s) by dotted path, comma-separated, or 'all' for every conv/Linear layer (see `introspect layers`)")
    p.add_argument("--channels", metavar="LIST", help="channels, e.g. 0-15,20 (default: all)")
    p.add_argument("--neuron", action="store_true", help="maximize the centre spatial position instead of the map's mean")
    p.add_argument("--diverse", type=positive_int, default=1, metavar="N",
                   help="N different images per channel, pushed apart by a diversity term (default: 1)")
    p.add_argument("--top-k", type=positive_int, default=5, metavar="K", help="real examples per channel (default: 5)")
    add_data_options(p, "for real examples, ratios and the image prior")
    p.add_argument("--batch-size", type=positive_int, metavar="N",
                   help="images optimized at once, one chunk (default: automatic, to fit memory)")
    p.add_argument("--memory", type=positive_float, metavar="GIB",
                   help="memory one chunk may use, in GiB (default: half the free GPU memory; on the CPU a quarter "
                        "of the RAM, at most 8)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="complete an interrupted run in its folder with its own settings, redoing only missing chunks")
    p.add_argument("--distributed", type=positive_int, metavar="N",
                   help="run as N processes on this machine (wraps `torchrun --standalone --nproc-per-node N`)")
    add_render_options(p, CHANNELS_DEFAULTS)
    add_output_options(p, "channels", formats=True)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, io: Output) -> Outcome:
    if args.distributed:
        return torchrun(args)
    if args.resume:
        args = resumed(args)
    elif not args.layer:
        raise UserError("{layer} is required (or --resume RUN_DIR to complete an earlier run)", settings=("layer",))
    loaded = load_model_from_args(args)
    for note in loaded.notes:
        io.note(note)
    layers = select_layers(loaded.model, loaded.spec.input_shape, args.layer)
    config = config_from_args(args, CHANNELS_DEFAULTS)
    ranks, device = join(config.device)
    try:
        if not ranks.main:  # only rank 0 speaks; errors still reach stderr
            io = dataclasses.replace(io, out=Console(quiet=True), err=Console(stderr=True, quiet=True))
        return run_ranked(args, io, loaded, layers, config.replace(device=device), ranks)
    finally:
        ranks.close()


def torchrun(args: argparse.Namespace) -> Outcome:
    """--distributed N: the same command as N processes under torchrun (this process becomes torchrun)."""
    argv, skip = [], False
    for arg in args.argv:
        if skip or arg == "--distributed" or arg.startswith("--distributed="):
            skip = arg == "--distributed" and not skip
            continue
        argv.append(arg)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                              f"--nproc-per-node={args.distributed}", "-m", "introspect_cli.main", *argv])


def resumed(args: argparse.Namespace) -> argparse.Namespace:
    """The settings of the run in --resume RUN_DIR (from its manifest), with this command's output flags."""
    manifest = read_manifest(args.resume)
    stored = args.command_parsers["channels"].parse_args(manifest["argv"][1:])
    for name in ("quiet", "json", "progress", "debug", "resume", "dry_run"):
        setattr(stored, name, getattr(args, name))
    stored.argv, stored.out, stored.distributed = manifest["argv"], args.resume, None
    return stored


def pinned(plan: ChannelsPlan, manifest: dict) -> ChannelsPlan:
    """The plan with the chunk sizes of the run being resumed (the same items, whatever the memory now)."""
    chunks = manifest.get("chunks", {})
    plan = dataclasses.replace(plan, layers=tuple(dataclasses.replace(p, chunk=chunks.get(p.layer, p.chunk))
                                                  for p in plan.layers))
    expected = [{"layer": i.layer, "index": i.index, "channels": chunk_channels(plan[i.layer], i.index)}
                for i in work_items(plan)]
    if [{k: item.get(k) for k in ("layer", "index", "channels")} for item in manifest.get("items", [])] != expected:
        raise UserError(f"the work items in the manifest of '{manifest.get('folder')}' do not match this model's "
                        "plan; was the model or its file changed?")
    return plan


def estimate(loaded, plan: ChannelsPlan, config, args: argparse.Namespace, ranks: Ranks, io: Output) -> list[dict]:
    """--dry-run: time a few steps of each layer's real chunk; print the estimated wall time and memory."""
    rows, total = [], 0.0
    for layer in plan.layers:
        per_step = time_chunk(loaded.model, loaded.spec, layer, config, args.neuron)
        first = len(chunk_channels(layer, 0)) * layer.diverse  # the timed chunk: a full one, or all images
        seconds = per_step * config.steps * layer.images / first
        total += seconds
        memory = first * layer.bytes_per_image
        rows.append({"layer": layer.layer, "seconds_per_step": per_step, "seconds": seconds, "memory_bytes": memory})
        io.err.print(f"estimate: {layer.layer}: {per_step:.3g} s per step of {first} image(s) -> "
                     f"{duration(seconds)}; about {memory / 2**20:,.0f} MiB per chunk", markup=False)
    shared = f", about {duration(total / ranks.world)} over {ranks.world} processes" if ranks.world > 1 else ""
    io.err.print(f"estimate: total {duration(total)} of optimization{shared} (without the dataset pass)", markup=False)
    return rows


def duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def run_ranked(args: argparse.Namespace, io: Output, loaded, layers: list[str], config, ranks: Ranks) -> Outcome:
    formats = parse_formats(args.format)
    plan = None
    if ranks.main:  # rank 0 plans (chunk sizes depend on its memory); every rank follows that plan
        budget = int(args.memory * 2**30) if args.memory else None
        plan = plan_channels(loaded.model, loaded.spec, layers, args.channels, diverse=args.diverse,
                             batch_size=args.batch_size, steps=config.steps, device=config.device, budget_bytes=budget)
        if args.resume:
            plan = pinned(plan, read_manifest(args.resume))
        else:
            check_out(args.out, args.force)
    plan = ranks.broadcast(plan)
    for layer in plan.layers:
        io.err.print(f"plan: {layer.layer}: {plural(layer.images, 'image')} × {config.steps} steps = "
                     f"{layer.images * config.steps:,} image-steps, {layer.chunks} chunk(s) of up to {layer.chunk} "
                     f"on {config.device}", markup=False)
    if args.dry_run:
        rows = estimate(loaded, plan, config, args, ranks, io) if ranks.main else []
        return Outcome(summary={"plan": [{"layer": p.layer, "images": p.images, "steps": config.steps, "chunk": p.chunk,
                                          "device": config.device, **row} for p, row in zip(plan.layers, rows)]})
    data = dataset_from_args(args, loaded.spec, io, "the report shows no real examples or ratios")
    prior = apply_prior(loaded, data, io)
    examples = examples_of(args, loaded, layers, data, config, ranks, io)
    provenance = Provenance.of(loaded, args.argv, input_files(args), prior=prior)
    provenance.load = load_arguments(args, loaded)
    items = work_items(plan)
    run_folder = None
    if ranks.main:
        run_folder = claim_run_folder(args.out, "channels", args.force, resume=bool(args.resume))
    try:
        folder = Path(ranks.broadcast(str(run_folder.path) if run_folder else None))
        if ranks.main and not args.resume:
            write_manifest(folder, {
                "argv": args.argv, "folder": str(folder), "chunks": {p.layer: p.chunk for p in plan.layers},
                "items": [{"id": i.id, "layer": i.layer, "index": i.index, "images": i.images,
                           "channels": chunk_channels(plan[i.layer], i.index)} for i in items]})
        done = ranks.broadcast(finished_items(folder) if ranks.main else None)
        shares = split_items([i for i in items if i.id not in done], ranks.world)
        started = time.time()
        partial = optimize(loaded, plan, shares[ranks.rank], config, args, folder, ranks, io)
        ranks.barrier()
        if not ranks.main:
            return Outcome()
        chunks = [ChunkResult.from_dict(read_part(folder, i)) for i in sorted(finished_items(folder))]
        results = [assemble_channels(p, [c for c in chunks + partial if c.layer == p.layer], config, args.neuron,
                                     examples.get(p.layer)) for p in plan.layers
                   if any(c.layer == p.layer for c in chunks + partial)]
        status = status_of(plan, items, chunks, partial)
        extra = {"distributed": ranks.record([len(s) for s in shares])} if ranks.world > 1 else {}
        if args.resume:
            extra["resumed"] = {"items_redone": sum(len(s) for s in shares), "items_kept": len(done)}
        with io.interrupts.deferred():
            write_channels(run_folder, results, provenance, data, time.time() - started, status, formats,
                           loaded.spec.class_names, loaded.spec.logits_layer, extra)
    except BaseException:
        if run_folder is not None:
            run_folder.abandon()
            if ranks.world > 1 and run_folder.path.exists():
                io.err.print(f"stopped: complete the run with `introspect channels --resume {run_folder.path}`",
                             markup=False)
        raise
    summary = {"run": str(run_folder.path), "status": status, "layers": [layer_record(r) for r in results]}
    if status != "complete":
        io.err.print(f"{status} ({io.interrupts.name}): wrote the partial run to {run_folder.path}; complete it with "
                     f"`introspect channels --resume {run_folder.path}`", markup=False)
        return Outcome(io.interrupts.exit_code, summary)
    for result in results:
        io.out.print(summary_line(result), markup=False)
        summary = result.summary()
        if summary.share_ratio_at_least_1 is not None and summary.share_ratio_at_least_1 < 0.9:
            io.note(f"health: {result.layer}: only {summary.share_ratio_at_least_1:.0%} of live channels reached the "
                    "best real image (ratio >= 1); more --steps or a higher --lr usually gets further")
    io.out.print(written(run_folder), markup=False)
    return finished(io, summary)


def status_of(plan: ChannelsPlan, items, chunks: list[ChunkResult], partial: list[ChunkResult]) -> str:
    if partial:
        return run_status(partial[0].render.interrupted_at)
    done = {(c.layer, c.index) for c in chunks}
    missing = [i for i in items if (i.layer, i.index) not in done]
    if not missing:
        return "complete"
    return f"interrupted before layer {missing[0].layer} ({len(items) - len(missing)} of {len(items)} chunks done)"


def examples_of(args: argparse.Namespace, loaded, layers: list[str], data: ImageDataset | None, config, ranks: Ranks,
                io: Output) -> dict[str, ExampleStats]:
    """Every layer's real examples from one dataset pass (its batches split over the ranks); on rank 0."""
    if data is None:
        return {}
    interrupts = io.interrupts
    with io.progress() as bar:
        task = bar.add_task("examples", total=None, info="", unit="image")

        def on_batch(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            interrupts.check()

        if ranks.world == 1:
            stats = dataset_examples_many(loaded.model, loaded.spec, layers, data, k=args.top_k, neuron=args.neuron,
                                          device=config.device, cache_key=loaded.sha256, callback=on_batch)
        else:
            found, notes = cached_examples(loaded.spec, layers, data, args.top_k, args.neuron, loaded.sha256)
            missing = ranks.broadcast([layer for layer in layers if layer not in found] if ranks.main else None)
            part = examples_pass(loaded.model, loaded.spec, missing, data, args.top_k, args.neuron,
                                 device=config.device, callback=on_batch, shard=(ranks.rank, ranks.world)) \
                if missing else {}
            parts = ranks.gather(part)
            if not ranks.main:
                return {}
            fresh = {layer: merged(p[layer] for p in parts) for layer in missing}
            notes += cache_examples(fresh, data, args.top_k, loaded.sha256) if loaded.sha256 and fresh else []
            stats = {**found, **fresh}
    for note in dict.fromkeys(n for s in stats.values() for n in s.notes):
        io.note(note)
    return stats


def merged(parts) -> ExampleStats:
    parts = list(parts)
    total = parts[0]
    for part in parts[1:]:
        total = total.merge(part)
    return total


def optimize(loaded, plan: ChannelsPlan, mine, config, args: argparse.Namespace, folder: Path, ranks: Ranks,
             io: Output) -> list[ChunkResult]:
    """This rank's items, each saved as a part file when done; a chunk a signal stopped is returned (one
    process) or dropped (several), to be redone by --resume."""
    interrupts = io.interrupts
    with io.progress() as bar, interrupts.stepping(), on_device(loaded.model, config.device) as model:
        overall = None if isinstance(bar, LineProgress) or len(mine) < 2 else \
            bar.add_task("all layers", total=config.steps * len(mine), info="", unit="step")
        tasks, done = {}, {}
        for item in mine:
            if item.layer not in tasks:
                count = sum(1 for i in mine if i.layer == item.layer)
                tasks[item.layer] = bar.add_task(f"{item.layer}: optimizing", total=config.steps * count, info="",
                                                 unit="step")
                done[item.layer] = 0
        for position, item in enumerate(mine):
            interrupts.check()
            offset = config.steps * done[item.layer]

            def on_step(step: int, _total: int, values, task=tasks[item.layer], offset=offset, position=position) -> None:
                bar.update(task, completed=offset + step, info=f"mean activation {values.mean():.3g}")
                if overall is not None:
                    bar.update(overall, completed=config.steps * position + step)
                interrupts.check()

            chunk = visualize_chunk(model, loaded.spec, plan[item.layer], item.index, config, args.neuron, on_step)
            for note in chunk.render.notes:
                io.note(note)
            if chunk.render.stopped:
                stopped = list(dict.fromkeys(chunk.channels[i // plan[item.layer].diverse] for i in chunk.render.stopped))
                io.err.print(f"warning: {item.layer}: the objective became NaN/inf for channel(s) {stopped}; "
                             "their optimization stopped there, the others went on", markup=False)
            if chunk.render.interrupted_at is not None:
                if ranks.world > 1:
                    raise KeyboardInterrupt
                return [chunk]
            write_part(folder, item.id, chunk.to_dict())
            done[item.layer] += 1
            fault_after(ranks.rank, item.id)
    return []


def summary_line(result: ChannelsResult) -> str:
    summary = result.summary()
    if summary.live is None:
        return f"{result.layer}: {plural(summary.channels, 'channel')} (no dataset: no ratios)"
    share = "n/a" if summary.share_ratio_at_least_1 is None else f"{summary.share_ratio_at_least_1:.0%}"
    median = "n/a" if summary.median_ratio is None else f"{summary.median_ratio:.2f}"
    return (f"{result.layer}: {plural(summary.channels, 'channel')}, {summary.live} live, {summary.dead} dead, "
            f"{summary.rare} rarely active, {summary.not_reached} not reached; "
            f"ratio >= 1.0 for {share} of the others, median {median}")
