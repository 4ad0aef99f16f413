"""`introspect evaluate`: held-out accuracy and the confusion matrix."""
from __future__ import annotations

import argparse

from rich.text import Text
from rich.table import Table

from introspect.data import DATASETS, check_fits, load_dataset
from introspect.errors import UserError
from introspect.training import evaluate

from ..options import add_data_dir, add_device, add_model_options, load_model_from_args, resolve_device
from ..output import Outcome, Output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="held-out accuracy and confusion matrix",
                       description="Print a model's accuracy on a held-out split and its confusion matrix.")
    add_model_options(p)
    p.add_argument("--dataset", choices=list(DATASETS), help="dataset (default: the model's training dataset)")
    p.add_argument("--split", default="test", choices=["train", "test"], help="which split (default: test)")
    add_data_dir(p)
    add_device(p)
    p.set_defaults(run=run)



def run(args: argparse.Namespace, io: Output) -> Outcome:
    device = resolve_device(args.device)
    loaded = load_model_from_args(args, hooks=False)
    for note in loaded.notes:
        io.note(note)
    name = args.dataset or loaded.spec.dataset
    if name is None:
        raise UserError("this checkpoint names no dataset; pass {dataset}", settings=("dataset",))
    data = load_dataset(name, args.split, args.data_dir)
    io.err.print(f"data: {data.source}", markup=False)
    check_fits(data, loaded.spec.image_shape)
    if data.class_names != loaded.spec.class_names:
        io.err.print(f"note: the dataset's classes differ from the model's ({', '.join(loaded.spec.class_names)})", markup=False)
    with io.progress() as bar:
        task = bar.add_task("evaluating", total=len(data), info="")
        result = evaluate(loaded.model, loaded.spec, data, device=device,
                          on_batch=lambda done, total: bar.update(task, completed=done, total=total))
    names = loaded.spec.class_names
    table = Table(title=Text(f"confusion matrix ({name} {args.split}, rows: true, columns: predicted)"))
    table.add_column("true")
    for n in names:
        table.add_column(Text(n[:8]), justify="right")  # class names print as they are
    for i, n in enumerate(names):
        table.add_row(Text(n), *[(f"[bold]{v}[/]" if i == j else str(v)) if v else "·" for j, v in enumerate(result.confusion[i].tolist())])
    io.out.print(table)
    io.out.print(f"accuracy: {result.accuracy:.2%} on {result.count} images of {name} ({args.split})", markup=False)
    return Outcome(summary={"model": loaded.spec.name, "dataset": name, "split": args.split, "data_source": data.source,
                            "accuracy": result.accuracy, "device": str(device), "count": result.count, "confusion": result.confusion.tolist()})
