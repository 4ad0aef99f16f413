"""`introspect channels`: what each channel of a layer responds to, with real examples beside each.

The run itself (plan, manifest, work split over torchrun processes, part files, merge, report) is
``introspect.channel_runs``; this module turns flags into its arguments and its events into progress bars
and lines.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys

from rich.console import Console

from introspect.channel_runs import ChannelsRun, estimate_channels, read_manifest, resume_channels, run_channels
from introspect.channels import CHANNELS_DEFAULTS, ChannelsResult, constant_mean_notes, plan_channels
from introspect.distributed import Ranks, join
from introspect.errors import UserError
from introspect.folders import check_out
from introspect.layers import select_layers
from introspect.models import file_sha256
from introspect.records import Provenance, layer_record
from introspect.repeat import load_recorded, read_repeat

from ..data import add_data_options, apply_prior, dataset_from_args
from ..options import (add_model_options, add_output_options, add_render_options, config_from_args, input_files,
                       load_model_from_args, memory_gib, parse_formats, positive_int, process_count,
                       repeat_record)
from ..output import Outcome, Output, RunProgress, duration, estimate_line, plural
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
    p.add_argument("--memory", type=memory_gib, metavar="GIB",
                   help="memory one chunk may use, in GiB (default: half the free GPU memory; on the CPU a quarter "
                        "of the RAM, at most 8)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="complete an interrupted run in its folder with its own settings, redoing only missing chunks")
    p.add_argument("--trust", action="store_true",
                   help="with --resume: allow a run whose model loads code (a model .py file, a package class, a "
                        "TorchScript archive, --trust-checkpoint)")
    p.add_argument("--distributed", type=process_count, metavar="N",
                   help="run as N processes on this machine (wraps `torchrun --standalone --nproc-per-node N`)")
    add_render_options(p, CHANNELS_DEFAULTS, "channels")
    add_output_options(p, "channels", formats=True)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, io: Output) -> Outcome:
    if args.distributed:
        return torchrun(args)
    if args.resume:
        return resume(args, io)
    if not args.layer:
        raise UserError("{layer} is required (or --resume RUN_DIR to complete an earlier run)", settings=("layer",))
    loaded = load_model_from_args(args)
    for note in loaded.notes:
        io.note(note)
    notes: list[str] = []
    layers = select_layers(loaded.model, loaded.spec.input_shape, args.layer, notes)
    for note in notes + constant_mean_notes(loaded.model, loaded.spec, layers, args.neuron):
        io.note(note)
    config = config_from_args(args, CHANNELS_DEFAULTS)
    formats = parse_formats(args.format)
    ranks, device = join(config.device)
    with ranked(ranks, io) as io:
        config = config.replace(device=device)
        plan = plan_channels(loaded.model, loaded.spec, layers, args.channels, diverse=args.diverse,
                             batch_size=args.batch_size, steps=config.steps, device=config.device,
                             budget_bytes=int(args.memory * 2**30) if args.memory else None) if ranks.main else None
        if args.dry_run:
            return dry_run(args, io, loaded, plan, config, ranks)
        if ranks.main:
            check_out(args.out, args.force)
        data = dataset_from_args(args, loaded.spec, io, "the report shows no real examples or ratios")
        prior = apply_prior(loaded, data, io)
        targets = {"layer": layers, "channels": args.channels, "neuron": args.neuron, "diverse": args.diverse,
                   "batch_size": args.batch_size, "top_k": args.top_k}
        kept = {"repeat": repeat_record(args, loaded, config, targets), "inputs": input_files(args), "prior": prior,
                "formats": formats}  # what --resume needs, in the manifest
        with RunProgress(io, config.steps) as listener:
            done = run_channels(loaded.model, loaded.spec, layers, args.out, channels=args.channels, config=config,
                                neuron=args.neuron, diverse=args.diverse, plan=plan, batch_size=args.batch_size,
                                data=data, top_k=args.top_k, ranks=ranks, listener=listener, formats=formats,
                                provenance=provenance(loaded, kept), force=args.force, repeat=kept, cache_key=loaded.sha256)
        return outcome(done, io, ranks)


def resume(args: argparse.Namespace, io: Output) -> Outcome:
    """--resume RUN_DIR: the run's own model, data and settings (from its manifest); only missing chunks run."""
    manifest = read_manifest(args.resume)
    kept = manifest.get("repeat") if isinstance(manifest.get("repeat"), dict) else {}
    where = f"the run in '{args.resume}'"
    repeat = read_repeat({"repeat": kept.get("repeat")}, where)
    loaded = load_recorded(repeat.load, trust=args.trust, where=where)
    for role, entry in (kept.get("inputs") or {}).items():
        if file_sha256(entry["path"]) != entry["sha256"]:
            raise UserError("{role} '{path}' changed since {where} started; its chunks would not fit together",
                            role=role.replace("_", " "), path=entry["path"], where=where)
    recorded = argparse.Namespace(**{"dataset": None, "images": None, "split": "train", "data_dir": None,
                                     **repeat.data})
    ranks, device = join(manifest["settings"]["device"])
    with ranked(ranks, io) as io:
        data = dataset_from_args(recorded, loaded.spec, io, "the report shows no real examples or ratios")
        apply_prior(loaded, data, io)
        with RunProgress(io, None) as listener:
            done = resume_channels(args.resume, loaded.model, loaded.spec, data=data, ranks=ranks, listener=listener,
                                   provenance=provenance(loaded, kept), formats=kept.get("formats") or ["png"],
                                   cache_key=loaded.sha256, device=device)
        return outcome(done, io, ranks)


@contextlib.contextmanager
def ranked(ranks: Ranks, io: Output):
    """Only rank 0 speaks (errors still reach stderr); the process group is left at the end."""
    try:
        yield io if ranks.main else dataclasses.replace(io, out=Console(quiet=True), err=Console(stderr=True, quiet=True))
    finally:
        ranks.close()


def provenance(loaded, kept: dict) -> Provenance:
    recorded = Provenance.of(loaded, kept["repeat"]["argv"], kept.get("inputs"), prior=kept.get("prior"))
    recorded.repeat = kept["repeat"]
    return recorded


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


def dry_run(args: argparse.Namespace, io: Output, loaded, plan, config, ranks: Ranks) -> Outcome:
    """--dry-run: the plan, and each layer's estimated wall time and memory from a few timed steps (small batches)."""
    if not ranks.main:
        return Outcome()
    RunProgress(io, config.steps).plan(plan)
    def say(row: dict) -> None:  # each layer as it is timed; Ctrl-C ends the dry run here, not one layer's timing
        io.interrupts.check()
        io.err.print(estimate_line(row), markup=False)
    rows = estimate_channels(loaded.model, loaded.spec, plan, config, args.neuron, say)
    total = sum(row["seconds"] for row in rows)
    io.err.print(f"estimate: total {duration(total)} of optimization (without the dataset pass)", markup=False)
    return Outcome(summary={"plan": [{**row, "steps": config.steps, "device": config.device} for row in rows]})


def outcome(done: ChannelsRun, io: Output, ranks: Ranks) -> Outcome:
    if not ranks.main:
        return Outcome()
    summary = {"run": str(done.folder), "status": done.status, "layers": [layer_record(r) for r in done.results]}
    if done.status == "failed":
        io.err.print(f"error: the run failed: the objective became NaN/inf for every image; lower --lr or --tv, or "
                     f"check the model's output for NaN; wrote what there is to {done.folder}", markup=False)
        return Outcome(1, summary)
    if not done.complete:
        io.err.print(f"{done.status} ({io.interrupts.name}): wrote the partial run to {done.folder}; complete it with "
                     f"`introspect channels --resume {done.folder}`", markup=False)
        return Outcome(io.interrupts.exit_code, summary)
    for result in done.results:
        io.out.print(summary_line(result), markup=False)
        health = channels_health(result.layer, result.summary())
        if health is not None:
            io.note(health)
    io.out.print(f"wrote {done.folder}: " + ", ".join(sorted(done.record["files"])), markup=False)
    return finished(io, summary)


def channels_health(layer: str, summary) -> str | None:
    """A line when a layer's live channels did not get far: too few reached the best real image, or (no ratio to
    count) some were not reached at all; None otherwise."""
    advice = "more --steps or a higher --lr usually gets further"
    if summary.share_ratio_at_least_1 is not None and summary.share_ratio_at_least_1 < 0.9:
        return (f"health: {layer}: only {summary.share_ratio_at_least_1:.0%} of live channels reached the best real "
                f"image (ratio >= 1); {advice}")
    if summary.share_ratio_at_least_1 is None and summary.live and summary.not_reached:
        return (f"health: {layer}: {summary.not_reached} of {summary.live} live channels were not reached (at or below "
                f"0, and below their best real image); {advice}")
    return None


def summary_line(result: ChannelsResult) -> str:
    summary = result.summary()
    if summary.live is None:
        return f"{result.layer}: {plural(summary.channels, 'channel')} (no dataset: no ratios){summary.failed_note}"
    share = "n/a" if summary.share_ratio_at_least_1 is None else f"{summary.share_ratio_at_least_1:.0%}"
    median = "n/a" if summary.median_ratio is None else f"{summary.median_ratio:.2f}"
    return (f"{result.layer}: {plural(summary.channels, 'channel')}, {summary.live} live, {summary.dead} dead, "
            f"{summary.rare} rarely active, {summary.not_reached} not reached; "
            f"ratio >= 1.0 for {share} of the others, median {median}{summary.failed_note}")
