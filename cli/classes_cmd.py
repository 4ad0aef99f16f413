"""`introspect classes`: the input each class likes most, as a saved report."""
from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console

from introspect.api import CLASSES_DEFAULTS, OBJECTIVES, ClassesResult, resolve_classes, visualize_classes
from introspect.report import figure, save_figure, save_gif, to_uint8
from introspect.runs import RunFolder, check_out

from .common import (add_model_options, add_output_options, add_render_options, claim_out_dir, config_from_args,
                     load_model_from_args, model_label, parse_formats, plural, progress, run_record, run_status,
                     written)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classes", help="the input each class likes most (activation maximization of class logits)",
                       description="Optimize one image per class, all in one batch, to maximize the class's logit; "
                                   "writes report.png, images.npz and run.json into a run folder.")
    add_model_options(p)
    p.add_argument("--classes", metavar="LIST", help="comma-separated class indices or names, e.g. 0,3,7 or sneaker,bag (default: all)")
    add_render_options(p, CLASSES_DEFAULTS)
    p.add_argument("--objective", default="logit", choices=list(OBJECTIVES),
                   help="logit: the class's logit; blog: the original -10*logsoftmax[target]+sum(logsoftmax) (default: logit)")
    add_output_options(p, "classes", formats=True)
    p.set_defaults(run=run_classes)


def run_classes(args: argparse.Namespace, out: Console, err: Console) -> int:
    loaded = load_model_from_args(args, err, hooks=False)
    classes = resolve_classes(loaded.spec, args.classes.split(",")) if args.classes is not None else None
    config = config_from_args(args, CLASSES_DEFAULTS)
    formats = parse_formats(args.format)
    check_out(args.out, args.force)
    count = len(classes) if classes else loaded.spec.num_classes
    err.print(f"plan: {plural(count, 'image')} × {config.steps} steps = {count * config.steps:,} image-steps in one batch "
              f"on {config.device}{' with bfloat16 autocast' if config.amp else ''}", markup=False)
    if args.dry_run:
        args.summary = {"plan": {"images": count, "steps": config.steps, "device": config.device}}
        return 0
    interrupts = args.interrupts
    run = claim_out_dir(args, "classes")
    try:
        started = time.time()
        with progress(err, args) as bar, interrupts.stepping():
            task = bar.add_task("classes", total=config.steps, info="", unit="step")

            def on_step(step: int, total: int, values) -> None:
                bar.update(task, completed=step, info=f"mean objective {values.mean():.2f}")
                interrupts.check()

            result = visualize_classes(loaded.model, loaded.spec, classes, config, args.objective, callback=on_step)
        for note in result.render.notes:
            err.print(f"note: {note}", markup=False)
        for index in result.render.stopped:
            err.print(f"warning: class {result.class_names[index]}: the objective became NaN/inf; its optimization "
                      "stopped there, the others went on", markup=False)
        with interrupts.deferred():
            write_classes_run(run, result, loaded, formats, args, time.time() - started)
    except BaseException:
        run.abandon()
        raise
    status = result.render.interrupted_at
    args.summary = {"run": str(run.path), "status": run_status(status),
                    "images": [{"class": c, "name": n, "probability": float(p), "logit": float(l)} for c, n, p, l
                               in zip(result.labels, result.class_names, result.probabilities, result.logits)]}
    if status is not None:
        err.print(f"interrupted at step {status} ({interrupts.name}): wrote the partial run to {run.path}", markup=False)
        return interrupts.exit_code
    lowest = int(result.probabilities.argmin())
    if result.probabilities[lowest] < 0.5:
        err.print(f"note: class {result.class_names[lowest]} reached only p={result.probabilities[lowest]:.2f}; "
                  "more --steps (or a higher --lr) usually gets further", markup=False)
    count = len(result.labels)
    out.print(f"{count} class{'es' if count != 1 else ''}, "
              f"{config.steps} steps; lowest probability {result.probabilities[lowest]:.3f} "
              f"(class {result.class_names[lowest]})", markup=False)
    out.print(written(run), markup=False)
    if interrupts.received:
        err.print(f"interrupted ({interrupts.name}) after the work was done: the run is complete", markup=False)
        return interrupts.exit_code
    return 0


def write_classes_run(run: RunFolder, result: ClassesResult, loaded, formats: list[str], args: argparse.Namespace,
                      seconds: float) -> None:
    arrays = {"images": to_uint8(result.images), "labels": np.asarray(result.labels),
              "scores": result.logits.numpy(), "probabilities": result.probabilities.numpy()}
    if result.render.snapshots:
        steps = sorted(result.render.snapshots)
        arrays["snapshots"] = np.stack([to_uint8(result.render.snapshots[s]) for s in steps])
        arrays["snapshot_steps"] = np.asarray(steps)
    with run.file("images.npz") as path:
        np.savez_compressed(path, **arrays)
    result.model_name = model_label(loaded)
    fig = figure(result)
    for fmt in formats:
        with run.file(f"report.{fmt}") as path:
            save_figure(fig, path)
    if result.render.snapshots:
        steps = sorted(result.render.snapshots)
        with run.file("evolution.gif") as path:
            save_gif([result.render.snapshots[s] for s in steps] + [result.images], path)
    record = run_record(loaded, args, result.config, seconds, run_status(result.render.interrupted_at),
                        result.render.steps_done)
    record.update({
        "stopped_non_finite": [result.labels[i] for i in result.render.stopped],
        "command_name": "classes",
        "objective": result.objective,
        "images": [
            {"class": label, "name": name, "logit": float(logit), "probability": float(p)}
            for label, name, logit, p in zip(result.labels, result.class_names, result.logits, result.probabilities)
        ],
        "history": result.render.history.tolist(),
    })
    run.finish(record)
