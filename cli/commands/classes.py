"""`introspect classes`: the input each class likes most, as a saved report."""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from introspect.classes import (CLASSES_DEFAULTS, MAX_CANDIDATES, NO_DATA_CANDIDATES, NO_DATA_VALUES, OBJECTIVES,
                                default_candidates, format_probability, logits_moved, logits_of, resolve_classes,
                                visualize_classes)
from introspect.errors import UserError
from introspect.folders import check_out, claimed_run
from introspect.outputs import kind_warning, probability_label
from introspect.records import Provenance, classes_image_records, preload, run_status, write_classes

from ..data import add_data_options, apply_prior, planned_prior, prior_data
from ..options import (add_model_options, add_output_options, add_render_options, config_from_args, input_files,
                       load_model_from_args, parse_formats, positive_int, repeat_record)
from ..output import Outcome, Output, mean_info, plural, say, written


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classes", help="the input each class likes most (activation maximization of class logits)",
                       description="Optimize one image per class, all in one batch, to maximize the class's logit; "
                                   "writes report.png, images.npz and run.json into a run folder.")
    add_model_options(p)
    p.add_argument("--classes", metavar="LIST", help="comma-separated class indices, ranges or names, e.g. 0,3,7, 0-9 or sneaker,bag (default: all)")
    add_data_options(p, "to estimate the image prior from when the model carries none")
    add_render_options(p, CLASSES_DEFAULTS, "classes")
    p.add_argument("--objective", default="confidence", choices=list(OBJECTIVES),
                   help="confidence: the class's logit + 10 x its log-probability; logit: the logit alone; blog: the original "
                        "-10*logsoftmax[target]+sum(logsoftmax) (default: confidence)")
    p.add_argument("--candidates", type=positive_int, metavar="N",
                   help="render N images per class in the same batch and keep the one whose target logit leads the "
                        "runner-up class by the most, on the model's own logits (without data: on average over "
                        "random zooms and rotations, or shifts along a 1-D signal) "
                        f"(default: up to {NO_DATA_CANDIDATES} when the prior comes from the model itself (no data; a "
                        f"--mean and --std that can be pixel statistics), fewer as the batch passes "
                        f"{NO_DATA_VALUES:,} input values; else 1)")
    add_output_options(p, "classes", formats=True)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, io: Output) -> Outcome:
    loaded = load_model_from_args(args, hooks=False)
    for note in loaded.notes:
        io.note(note)
    logits_of(loaded.spec)  # before any plan: a model whose logits are unknown cannot do classes
    classes = resolve_classes(loaded.spec, args.classes.split(",")) if args.classes is not None else None
    config = config_from_args(args, CLASSES_DEFAULTS)
    formats = parse_formats(args.format)
    check_out(args.out, args.force)
    if args.candidates is not None and args.candidates > MAX_CANDIDATES:
        raise UserError(f"--candidates {args.candidates} is more than {MAX_CANDIDATES}")
    count = len(classes) if classes else loaded.spec.num_classes
    if args.candidates is None:
        args.candidates = default_candidates(planned_prior(args, loaded, config.image.use_prior), config, count)
    images = count * args.candidates
    each = "" if args.candidates == 1 else f" ({count} class{'es' if count != 1 else ''} × {args.candidates} candidates)"
    io.err.print(f"plan: {plural(images, 'image')}{each} × {config.steps} steps = {images * config.steps:,} image-steps "
                 f"in one batch on {config.device}{' with bfloat16 autocast' if config.amp else ''}", markup=False)
    if args.dry_run:
        return Outcome(summary={"plan": {"images": images, "classes": count, "candidates": args.candidates,
                                         "steps": config.steps, "device": config.device}})
    preload("introspect.report")  # drawn after the optimization: imported meanwhile
    prior = apply_prior(loaded, prior_data(args, loaded, io), io, derive=True, args=args)
    interrupts = io.interrupts
    provenance = Provenance.of(loaded, args.argv, input_files(args), prior=prior)
    provenance.repeat = repeat_record(args, loaded, config, {"classes": args.classes, "objective": args.objective,
                                                             "candidates": args.candidates})
    with claimed_run(args.out, "classes", args.force) as run_folder:
        started = time.time()
        with io.progress() as bar, interrupts.stepping():
            task = bar.add_task("classes", total=config.steps, info="", unit="step")

            def on_step(step: int, total: int, values) -> None:
                bar.update(task, completed=step, **mean_info("mean objective", step, values, ".2f"))
                interrupts.check()

            result = visualize_classes(loaded.model, loaded.spec, classes, config, args.objective, callback=on_step,
                                       candidates=args.candidates)
        for note in result.render.notes:
            io.note(note)
        failure = result.render.failure()
        if failure is not None and not result.render.failed:
            names = ", ".join(result.class_names[index] for index in result.render.stopped)
            io.err.print(f"warning: {say(failure)}: class(es) {names} failed; their optimization stopped there, "
                         f"the other {len(result.labels) - len(result.render.stopped)} went on", markup=False)
        with interrupts.deferred():
            write_classes(run_folder, result, provenance, formats, time.time() - started)
    status = result.render.interrupted_at
    summary = {"run": str(run_folder.path), "status": run_status(status, result.render.failed),
               "candidates": result.candidates, "images": classes_image_records(result),
               "failed_images": len(result.render.stopped)}
    if result.render.failed:
        io.err.print(f"error: the run failed: {say(failure)}; wrote what there is to {run_folder.path}", markup=False)
        return Outcome(1, summary)
    if status is not None:
        io.err.print(f"interrupted at step {status} ({interrupts.name}): wrote the partial run to {run_folder.path}",
                     markup=False)
        return Outcome(interrupts.exit_code, summary)
    lowest = int(result.probabilities.argmin())
    health = classes_health(result, lambda: logits_moved(loaded.model, result))
    if health:
        io.note(health)
    count = len(result.labels)
    best = f" (best of {result.candidates} candidates by {result.kept_by})" if result.candidates > 1 else ""
    kind = {"p (sigmoid)": " (sigmoid)", "p (softmax)": " (softmax)"}.get(probability_label(result.output_kind), "")
    failed = f"; {len(result.render.stopped)} failed (NaN/inf objective)" if result.render.stopped else ""
    lowest_p = format_probability(float(result.probabilities[lowest]), "").lstrip("=")  # as the tile writes it
    io.out.print(f"{count} class{'es' if count != 1 else ''}, {config.steps} steps{best}; lowest probability{kind} "
                 f"{lowest_p} (class {result.class_names[lowest]}){failed}", markup=False)
    warning = kind_warning(result.output_kind)
    if warning:
        io.err.print(say(warning), markup=False)
    io.out.print(written(run_folder), markup=False)
    return finished(io, summary)


def finished(io: Output, summary: dict) -> Outcome:
    """A complete run; exit 130/143 all the same if a signal came while it was finishing."""
    if io.interrupts.received:
        io.err.print(f"interrupted ({io.interrupts.name}) after the work was done: the run is complete", markup=False)
        return Outcome(io.interrupts.exit_code, summary)
    return Outcome(0, summary)


def _other_starts(result) -> str:
    """What to start from instead, in words: the uniform starts the run did not use, and free pixels unless it had
    them (``ClassesResult.start`` is "grey (auto)", "dark", the data's mean...; ``parametrization`` "fft", "pixel"...)."""
    used = getattr(result, "start", "").split(" (")[0]
    starts = [name for name in ("grey", "dark") if name != used]
    advice = [f"--start {starts[0]}" + (f" (or {starts[1]})" if len(starts) > 1 else "")]
    if getattr(result, "parametrization", "") != "pixel":
        advice.append("--param pixel")
    return ", or ".join(advice)


#: Class scores closer than this on the final images are "the same": no input moves them apart.
SAME_SCORE = 1e-6


def classes_health(result, moved: Callable[[], torch.Tensor]) -> str | None:
    """A line when an objective did not get far (p < 0.5), saying what to change; None when all did. ``moved``
    gives how far each class logit moved from its start (``classes.logits_moved``), asked only then."""
    weak = [i for i, p in enumerate(result.probabilities.tolist()) if p < 0.5]
    if not weak:
        return None
    distance = moved()
    stuck = [i for i in weak if distance[i] < 0.1]
    lowest = min(weak, key=lambda i: float(result.probabilities[i]))
    text = (f"health: {len(weak)} of {len(result.labels)} classes reached p < 0.5 "
            f"(lowest: {result.class_names[lowest]}, p={result.probabilities[lowest]:.2f}); ")
    # One logit: a NaN margin, no other to compare. Margins of 1e-10 are an untrained net's vanishing activations.
    if bool((distance < 0.1).all()) and bool((result.margins.abs() <= SAME_SCORE).all()):
        same = "the same" if bool((result.margins == 0).all()) else f"the same to within {SAME_SCORE:g}"
        return text + (f"no logit moved and every class scores {same}: the output does not depend on the input (a "
                       "head initialized to zero, as torchvision's untrained ViT, or activations that shrink layer "
                       "by layer in an untrained network?); load trained weights")
    if stuck:
        return text + (f"{len(stuck)} logit(s) barely moved: the starting image may leave the model's units closed; "
                       f"try {_other_starts(result)}")
    return text + "more --steps (or a higher --lr) usually gets further"
