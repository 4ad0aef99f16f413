"""`introspect classes`: the input each class likes most, as a saved report."""
from __future__ import annotations

import argparse
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from rich.console import Console

import introspect
from introspect.api import OBJECTIVES, ClassesResult, visualize_classes
from introspect.engine import RenderConfig
from introspect.errors import UserError
from introspect.report import figure, save_figure, save_gif, to_uint8

from .common import (add_model_options, command_line, int_list, load_model_from_args, positive_float, positive_int,
                     prepare_out_dir, progress, resolve_device, write_json)

FORMATS = ("png", "pdf", "svg", "jpg")
DEFAULTS = RenderConfig()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classes", help="the input each class likes most (activation maximization of class logits)",
                       description="Optimize one image per class, all in one batch, to maximize the class's logit; "
                                   "writes report.png, images.npz and run.json into a run folder.")
    add_model_options(p)
    p.add_argument("--classes", metavar="LIST", help="comma-separated class indices or names, e.g. 0,3,7 or sneaker,bag (default: all)")
    add_render_options(p)
    p.add_argument("--objective", default="logit", choices=list(OBJECTIVES),
                   help="logit: the class's logit; blog: the original -10*logsoftmax[target]+sum(logsoftmax) (default: logit)")
    add_output_options(p, "classes")
    p.set_defaults(run=run_classes)


def add_render_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimization")
    g.add_argument("--steps", type=positive_int, default=DEFAULTS.steps, help=f"optimization steps (default: {DEFAULTS.steps})")
    g.add_argument("--lr", type=positive_float, default=DEFAULTS.lr, help=f"Adam learning rate (default: {DEFAULTS.lr})")
    g.add_argument("--seed", type=int, default=DEFAULTS.seed, help=f"random seed (default: {DEFAULTS.seed})")
    g.add_argument("--param", default=DEFAULTS.parametrization, choices=["fft", "pixel"],
                   help=f"image parametrization (default: {DEFAULTS.parametrization})")
    g.add_argument("--tv", type=float, default=DEFAULTS.tv, help=f"total-variation penalty weight (default: {DEFAULTS.tv})")
    g.add_argument("--l2", type=float, default=DEFAULTS.l2, help=f"L2 penalty weight (default: {DEFAULTS.l2})")
    g.add_argument("--blur", type=float, default=DEFAULTS.blur, help=f"blur penalty weight (default: {DEFAULTS.blur})")
    g.add_argument("--snapshots", type=int_list, default=(), metavar="STEPS",
                   help="steps at which to keep the images, e.g. 8,32,128: adds an evolution strip and evolution.gif (default: none)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")


def add_output_options(p: argparse.ArgumentParser, prefix: str) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", help=f"run folder (default: a new runs/{prefix}-NNN)")
    g.add_argument("--force", action="store_true", help="allow --out to overwrite an earlier run")
    g.add_argument("--format", default="png", metavar="LIST",
                   help=f"report formats besides png, comma-separated from {','.join(FORMATS)} (default: png)")


def config_from_args(args: argparse.Namespace) -> RenderConfig:
    for name in ("tv", "l2", "blur"):
        value = getattr(args, name)
        if not (value >= 0 and value != float("inf")):
            raise UserError(f"--{name} must be a finite number >= 0, got {value}")
    bad = [s for s in args.snapshots if not 1 <= s <= args.steps]
    if bad:
        raise UserError(f"--snapshots {bad[0]} is outside 1-{args.steps} (the run's --steps)")
    return DEFAULTS.replace(steps=args.steps, lr=args.lr, seed=args.seed, parametrization=args.param,
                            tv=args.tv, l2=args.l2, blur=args.blur, snapshots=tuple(sorted(set(args.snapshots))),
                            device=str(resolve_device(args.device)))


def parse_formats(text: str) -> list[str]:
    formats = [f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"unknown --format '{unknown[0]}'; choose from {', '.join(FORMATS)}")
    return ["png"] + [f for f in dict.fromkeys(formats) if f != "png"]


def run_classes(args: argparse.Namespace, out: Console, err: Console) -> int:
    loaded = load_model_from_args(args)
    classes = [c for c in args.classes.split(",") if c.strip()] if args.classes else None
    config = config_from_args(args)
    formats = parse_formats(args.format)
    folder = prepare_out_dir(args.out, "classes", args.force)
    started = time.time()
    with progress(err) as bar:
        task = bar.add_task("classes", total=config.steps, info="")
        result = visualize_classes(
            loaded.model, loaded.spec, classes, config, args.objective,
            callback=lambda step, total, values: bar.update(task, completed=step, info=f"mean objective {values.mean():.2f}"),
        )
    write_classes_run(folder, result, loaded, formats, args, time.time() - started)
    status = result.render.interrupted_at
    if status is not None:
        err.print(f"interrupted at step {status}: wrote the partial run to {folder}", markup=False)
        return 130
    lowest = int(result.probabilities.argmin())
    out.print(f"wrote {folder}/report.png ({len(result.labels)} classes, {config.steps} steps); "
              f"lowest probability {result.probabilities[lowest]:.3f} ({result.class_names[lowest]})", markup=False)
    return 0


def run_record(loaded, args: argparse.Namespace, config: RenderConfig, seconds: float, render) -> dict:
    """What every run.json holds: model, settings, versions, status and the exact command."""
    import torch
    import torchvision

    return {
        "command": command_line(args.argv),
        "argv": args.argv,
        "model": {"name": loaded.spec.name, "source": loaded.source, "checkpoint_sha256": loaded.sha256},
        "settings": asdict(config),
        "seed": config.seed,
        "status": "complete" if render.interrupted_at is None else f"interrupted at step {render.interrupted_at}",
        "steps_done": render.steps_done,
        "stopped_non_finite": render.stopped,
        "seconds": round(seconds, 3),
        "versions": {"introspect": introspect.__version__, "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "numpy": np.__version__, "python": platform.python_version()},
    }


def write_classes_run(folder: Path, result: ClassesResult, loaded, formats: list[str], args: argparse.Namespace,
                      seconds: float) -> None:
    arrays = {"images": to_uint8(result.images), "labels": np.asarray(result.labels),
              "scores": result.logits.numpy(), "probabilities": result.probabilities.numpy()}
    if result.render.snapshots:
        steps = sorted(result.render.snapshots)
        arrays["snapshots"] = np.stack([to_uint8(result.render.snapshots[s]) for s in steps])
        arrays["snapshot_steps"] = np.asarray(steps)
    np.savez_compressed(folder / "images.npz", **arrays)
    fig = figure(result)
    for fmt in formats:
        save_figure(fig, folder / f"report.{fmt}")
    if result.render.snapshots:
        steps = sorted(result.render.snapshots)
        save_gif([result.render.snapshots[s] for s in steps] + [result.images], folder / "evolution.gif")
    record = run_record(loaded, args, result.config, seconds, result.render)
    record.update({
        "command_name": "classes",
        "objective": result.objective,
        "images": [
            {"class": label, "name": name, "logit": float(logit), "probability": float(p)}
            for label, name, logit, p in zip(result.labels, result.class_names, result.logits, result.probabilities)
        ],
        "history": result.render.history.tolist(),
        "files": sorted(p.name for p in folder.iterdir()) + ["run.json"],
    })
    write_json(folder / "run.json", record)
