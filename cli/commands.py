"""The subcommands: argument definitions and thin handlers over the public API."""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from introspect.data import DATASETS, load_dataset
from introspect.errors import UserError
from introspect.layers import describe_layers
from introspect.models import ARCHITECTURES, ModelSpec, save_checkpoint
from introspect.params import mean_spectrum
from introspect.training import TRAINING_RECIPES, evaluate, train

from . import activations_cmd, channels_cmd, classes_cmd
from .common import add_model_options, load_model_from_args, model_label, positive_int, progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("layers", help="list the hookable layers of a model with their output shapes",
                       description="List every hookable layer (dotted named_modules path) with its type, output shape and unit count.")
    add_model_options(p)
    p.set_defaults(run=run_layers)

    p = sub.add_parser("train", help="train the built-in architecture on a dataset and write a checkpoint",
                       description="Train a built-in architecture reproducibly and write an introspect checkpoint.")
    p.add_argument("--dataset", default="mnist", choices=list(DATASETS), help="training data (default: mnist)")
    p.add_argument("--arch", default="mnist-net", choices=list(ARCHITECTURES),
                   help="architecture: mnist-net is the pytorch/examples Net, lenet a LeNet-5 (default: mnist-net)")
    p.add_argument("--epochs", type=positive_int,
                   help="passes over the data (default: " +
                        ", ".join(f"{r.epochs} for {n}" for n, r in TRAINING_RECIPES.items()) + ")")
    p.add_argument("--seed", type=int, default=1, help="random seed for shuffling, augmentation and dropout (default: 1)")
    p.add_argument("--data-dir", metavar="DIR", help="where datasets are stored or downloaded (default: the user cache)")
    p.add_argument("--out", required=True, metavar="PATH", help="checkpoint file to write")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--max-batches", type=positive_int, help=argparse.SUPPRESS)  # tests: cap each epoch
    p.set_defaults(run=run_train)

    p = sub.add_parser("evaluate", help="held-out accuracy and confusion matrix",
                       description="Print a model's accuracy on a held-out split and its confusion matrix.")
    add_model_options(p)
    p.add_argument("--dataset", choices=list(DATASETS), help="dataset (default: the model's training dataset)")
    p.add_argument("--split", default="test", choices=["train", "test"], help="which split (default: test)")
    p.add_argument("--data-dir", metavar="DIR", help="where datasets are stored or downloaded (default: the user cache)")
    p.set_defaults(run=run_evaluate)

    p = sub.add_parser("rerun", help="repeat a run from its run.json",
                       description="Repeat the command recorded in a run folder's run.json, into a new folder.")
    p.add_argument("record", metavar="RUN_JSON", help="a run.json written by classes, channels or activations")
    p.add_argument("--out", metavar="DIR", help="run folder for the repeat (default: a new numbered one)")
    p.add_argument("--force", action="store_true", help="allow --out to overwrite an earlier run")
    p.set_defaults(run=run_rerun)

    classes_cmd.register(sub)
    channels_cmd.register(sub)
    activations_cmd.register(sub)


def run_layers(args: argparse.Namespace, out: Console, err: Console) -> int:
    loaded = load_model_from_args(args, err)
    infos = describe_layers(loaded.model, loaded.spec.input_shape)
    table = Table(title=f"{model_label(loaded)}: hookable layers (input {tuple(loaded.spec.input_shape)})")
    for column in ("layer", "type", "output shape", "channels/units"):
        table.add_column(column, no_wrap=True)
    rows = []
    for info in infos:
        shape = "×".join(map(str, info.output_shape)) if info.output_shape else "not called"
        units = "" if info.units is None else str(info.units)
        name = "  " * info.depth + info.name + (" (logits)" if info.name == loaded.spec.logits_layer else "")
        rows.append((name, info.type, shape, units))
        table.add_row(*rows[-1])
    widths = [max(len(r[i]) for r in rows + [("layer", "type", "output shape", "channels/units")]) for i in range(4)]
    for column, width in zip(table.columns, widths):
        column.min_width = width  # never cut a layer name: it is what users copy
    out.print(table, width=max(out.width, sum(widths) + 14))
    args.summary = {"model": loaded.spec.name, "input_shape": list(loaded.spec.input_shape),
                    "logits_layer": loaded.spec.logits_layer,
                    "layers": [{"name": i.name, "type": i.type, "output_shape": list(i.output_shape or []),
                                "units": i.units, "calls": i.calls} for i in infos]}
    if loaded.spec.logits_layer == "":
        out.print("logits: the model's output", markup=False)
    reused = [i.name for i in infos if i.calls > 1]
    if reused:
        err.print(f"warning: {', '.join(reused)} run more than once per forward pass; a hook records the last call",
                  markup=False)
    inplace = [i.name for i in infos if i.inplace]
    if inplace:
        err.print(f"warning: in-place modules ({', '.join(inplace[:5])}{', ...' if len(inplace) > 5 else ''}) overwrite "
                  "their input; introspect copies hooked outputs so they stay intact", markup=False)
    return 0


def run_train(args: argparse.Namespace, out: Console, err: Console) -> int:
    target = Path(args.out)
    if target.is_dir():
        raise UserError(f"--out '{target}' is a folder; name the checkpoint file to write")
    if target.exists() and not args.force:
        raise UserError(f"--out '{target}' exists; choose another path or add --force to overwrite it")
    if not target.parent.exists():
        raise UserError(f"folder '{target.parent}' does not exist; create it first")
    recipe = TRAINING_RECIPES[args.dataset]
    epochs = args.epochs or recipe.epochs
    data = load_dataset(args.dataset, "train", args.data_dir)
    err.print(f"data: {data.source}", markup=False)
    info = DATASETS[args.dataset]
    architecture = ARCHITECTURES[args.arch]
    spec = ModelSpec(name=target.stem, architecture=args.arch, input_shape=(1, 28, 28), mean=info.mean, std=info.std,
                     logits_layer=architecture.logits_layer, class_names=info.class_names, dataset=args.dataset,
                     activations=dict(architecture.activations),
                     spectrum=tuple(map(tuple, mean_spectrum(data.pixels()).tolist())))
    model = architecture.build(spec)
    with progress(err, args) as bar:
        task = bar.add_task("training", total=None, info="")
        train(model, spec, data, epochs=epochs, seed=args.seed, lr=recipe.lr, gamma=recipe.gamma,
              augment=recipe.augment, max_batches=args.max_batches,
              on_batch=lambda done, total: bar.update(task, completed=done, total=total),
              on_epoch=lambda s: bar.update(task, info=f"epoch {s.epoch}: loss {s.loss:.3f}, train acc {s.accuracy:.3f}"))
    partial = target.with_name(target.name + ".partial")
    save_checkpoint(partial, model, spec)
    partial.replace(target)
    out.print(f"wrote {target} ({epochs} epochs on {len(data)} images, seed {args.seed})", markup=False)
    args.summary = {"checkpoint": str(target), "epochs": epochs, "seed": args.seed, "images": len(data),
                    "data_source": data.source}
    return 0


def run_evaluate(args: argparse.Namespace, out: Console, err: Console) -> int:
    loaded = load_model_from_args(args, err, hooks=False)
    name = args.dataset or loaded.spec.dataset
    if name is None:
        raise UserError("this checkpoint names no dataset; pass --dataset")
    data = load_dataset(name, args.split, args.data_dir)
    err.print(f"data: {data.source}", markup=False)
    if tuple(data.images.shape[1:]) != tuple(loaded.spec.input_shape):
        raise UserError(f"{name} images are {tuple(data.images.shape[1:])}, the model takes "
                        f"{tuple(loaded.spec.input_shape)}; choose a matching --dataset")
    if data.class_names != loaded.spec.class_names:
        err.print(f"note: the dataset's classes differ from the model's ({', '.join(loaded.spec.class_names)})", markup=False)
    result = evaluate(loaded.model, loaded.spec, data)
    names = loaded.spec.class_names
    table = Table(title=f"confusion matrix ({name} {args.split}, rows: true, columns: predicted)")
    table.add_column("true")
    for n in names:
        table.add_column(n[:8], justify="right")
    for i, n in enumerate(names):
        table.add_row(n, *[(f"[bold]{v}[/]" if i == j else str(v)) if v else "·" for j, v in enumerate(result.confusion[i].tolist())])
    out.print(table)
    out.print(f"accuracy: {result.accuracy:.2%} on {result.count} images of {name} ({args.split})", markup=False)
    args.summary = {"model": loaded.spec.name, "dataset": name, "split": args.split, "data_source": data.source,
                    "accuracy": result.accuracy, "count": result.count, "confusion": result.confusion.tolist()}
    return 0


def run_rerun(args: argparse.Namespace, out: Console, err: Console) -> int:
    import json

    from .main import main

    path = Path(args.record)
    if path.is_dir():
        path = path / "run.json"
    try:
        record = json.loads(path.read_text())
        argv = list(record["argv"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"'{path}' is not a readable run.json with the recorded command ({exc})") from exc
    if not argv or argv[0] == "rerun":
        raise UserError(f"'{path}' records no command to repeat")
    kept, skip = [], False
    for item in argv:  # the original --out holds the original run: never write over it
        if skip:
            skip = False
        elif item == "--out":
            skip = True
        elif not (item.startswith("--out=") or item == "--force"):
            kept.append(item)
    if args.out:
        kept += ["--out", args.out] + (["--force"] if args.force else [])
    for flag in ("--quiet", "--json", "--progress"):
        if getattr(args, flag[2:]) and flag not in kept:
            kept.append(flag)
    err.print(f"rerun: introspect {' '.join(kept)}", markup=False)
    args.json = False  # the repeated command prints its own summary
    return main(kept)
