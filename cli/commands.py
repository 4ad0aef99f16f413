"""The subcommands: argument definitions and thin handlers over the public API."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from introspect.data import DATASETS, load_dataset
from introspect.errors import UserError
from introspect.layers import describe_layers
from introspect.models import ARCHITECTURES, BUILTIN_MODELS, ModelSpec, file_sha256, save_checkpoint
from introspect.params import mean_spectrum
from introspect.runs import read_record
from introspect.training import TRAINING_RECIPES, evaluate, train

from . import activations_cmd, channels_cmd, classes_cmd
from .common import add_model_options, command_line, load_model_from_args, model_label, positive_int, progress


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
                       description="Repeat the command recorded in a run folder's run.json, into a new folder, reading "
                                   "the files it read (checked against their recorded sha256).")
    p.add_argument("record", metavar="RUN_JSON", help="a run.json written by classes, channels or activations")
    p.add_argument("--out", metavar="DIR", help="run folder for the repeat (default: a new numbered one)")
    p.add_argument("--force", action="store_true", help="allow --out to overwrite an earlier run")
    p.add_argument("--trust", action="store_true",
                   help="allow a run that loads code (a model .py file, a TorchScript archive, --trust-checkpoint)")
    p.add_argument("--allow-changed", action="store_true",
                   help="rerun even if a file the run read has changed since (different results)")
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


@dataclass(frozen=True)
class RerunRequest:
    """What `rerun` hands back to main: the command line to run next."""

    argv: list[str]


RERUNNABLE = ("classes", "channels", "activations")
FILE_OPTIONS = {"--checkpoint": "checkpoint", "--image": "image", "--class-names": "class_names"}


def run_rerun(args: argparse.Namespace, out: Console, err: Console) -> RerunRequest:
    """Check a recorded command (files, digests, code it would load) and hand it back to run into a new folder."""
    record = read_record(args.record)
    argv = record.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise UserError(f"'{args.record}' records no command to repeat")
    if argv[0] not in RERUNNABLE:
        raise UserError(f"'{args.record}' records `introspect {argv[0]}`; rerun repeats {', '.join(RERUNNABLE)} runs only")
    parser = args.command_parsers[argv[0]]
    try:
        parser.parse_args(argv[1:])
    except Exception as exc:  # noqa: BLE001 - UsageError: the recorded line does not parse (abbreviations included)
        raise UserError(f"the command recorded in '{args.record}' does not parse: {exc}") from None
    inputs = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}
    command, code = _recorded_command(argv, parser, inputs, record.get("cwd"), args.record)
    if code and not args.trust:
        raise UserError(f"this run loads code ({'; '.join(code)}), which runs with your permissions; "
                        "rerun it only if you trust those files: add --trust")
    for role, entry in inputs.items():
        path, recorded = Path(entry["path"]), entry["sha256"]
        if not path.is_file():
            raise UserError(f"the run read {role.replace('_', ' ')} '{path}', which is missing now")
        if file_sha256(path) != recorded:
            if not args.allow_changed:
                raise UserError(f"{role.replace('_', ' ')} '{path}' changed since the run (its sha256 differs from "
                                "run.json's): the results would differ; add --allow-changed to rerun with it as it is now")
            err.print(f"note: {role.replace('_', ' ')} '{path}' changed since the run; using it as it is now", markup=False)
    if args.out is not None:
        command += ["--out", args.out] + (["--force"] if args.force else [])
    command += [flag for flag in ("--quiet", "--json", "--progress") if getattr(args, flag[2:]) and flag not in command]
    err.print(f"rerun: {command_line(command)}", markup=False)
    for role, entry in inputs.items():
        err.print(f"rerun: loads {role.replace('_', ' ')} {entry['path']} (sha256 {entry['sha256'][:16]}…)", markup=False)
    return RerunRequest(command)


def _recorded_command(argv: list[str], parser: argparse.ArgumentParser, inputs: dict, cwd: str | None,
                      source: str) -> tuple[list[str], list[str]]:
    """The recorded command without --out/--force, its files replaced by the recorded absolute paths,
    and the code-loading parts it names (a model file, a TorchScript archive, --trust-checkpoint)."""
    actions = parser._option_string_actions  # noqa: SLF001 - which options take a value
    command, code, tokens = [argv[0]], [], list(argv[1:])
    while tokens:
        token = tokens.pop(0)
        option, _, attached = token.partition("=")
        action = actions.get(option)
        takes_value = action is not None and action.nargs != 0
        value = attached if attached or "=" in token else (tokens.pop(0) if takes_value and tokens else None)
        if option in ("--out", "--force"):
            continue
        if option == "--trust-checkpoint":
            code.append("--trust-checkpoint: the checkpoint is unpickled")
        if option in FILE_OPTIONS:
            value = _recorded_path(FILE_OPTIONS[option], value, inputs, cwd, source)
        elif option == "--model" and ":" in value and value.rsplit(":", 1)[0].endswith(".py"):
            value = _recorded_path("model_file", value.rsplit(":", 1)[0], inputs, cwd, source) + ":" + value.rsplit(":", 1)[1]
            code.append(f"the model file {value.rsplit(':', 1)[0]} is imported")
        elif option == "--model" and value not in BUILTIN_MODELS and not value.startswith("torchvision:"):
            value = _recorded_path("model_file", value, inputs, cwd, source)
            code.append(f"the TorchScript archive {value} is loaded")
        elif option == "--data-dir" and cwd:
            value = str(Path(cwd) / value)
        command += [option] if value is None else [option, value]
    return command, code


def _recorded_path(role: str, value: str, inputs: dict, cwd: str | None, source: str) -> str:
    if role in inputs:
        return inputs[role]["path"]
    raise UserError(f"'{source}' names {role.replace('_', ' ')} '{value}' but records no path and digest for it "
                    "(written by an older introspect): run the command again by hand")
