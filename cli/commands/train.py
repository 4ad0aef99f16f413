"""`introspect train`: train a built-in architecture reproducibly and write a checkpoint."""
from __future__ import annotations

import argparse
from pathlib import Path

from introspect.data import DATASETS, load_dataset
from introspect.errors import UserError
from introspect.models import ARCHITECTURES, ModelSpec, save_checkpoint
from introspect.params import estimate_prior
from introspect.training import TRAINING_RECIPES, train

from ..options import add_data_dir, add_device, positive_int, resolve_device
from ..output import Outcome, Output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the built-in architecture on a dataset and write a checkpoint",
                       description="Train a built-in architecture reproducibly and write an introspect checkpoint.")
    p.add_argument("--dataset", default="mnist", choices=list(DATASETS), help="training data (default: mnist)")
    p.add_argument("--arch", default="mnist-net", choices=list(ARCHITECTURES),
                   help="architecture: mnist-net is the pytorch/examples Net, lenet a LeNet-5 (default: mnist-net)")
    p.add_argument("--epochs", type=positive_int,
                   help="passes over the data (default: " +
                        ", ".join(f"{r.epochs} for {n}" for n, r in TRAINING_RECIPES.items()) + ")")
    p.add_argument("--seed", type=int, default=1, help="random seed for shuffling, augmentation and dropout (default: 1)")
    add_data_dir(p)
    p.add_argument("--out", required=True, metavar="PATH", help="checkpoint file to write")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_device(p, "where it trains")
    p.add_argument("--max-batches", type=positive_int, help=argparse.SUPPRESS)  # tests: cap each epoch
    p.set_defaults(run=run)



def run(args: argparse.Namespace, io: Output) -> Outcome:
    target = Path(args.out)
    if target.is_dir():
        raise UserError(f"--out '{target}' is a folder; name the checkpoint file to write")
    if target.exists() and not args.force:
        raise UserError(f"--out '{target}' exists; choose another path or add --force to overwrite it")
    if not target.parent.exists():
        raise UserError(f"folder '{target.parent}' does not exist; create it first")
    partial = target.with_name(target.name + ".partial")
    try:  # written before training, not only after it: a folder that cannot take the file would lose the training
        partial.touch()
        partial.unlink()
    except OSError as exc:
        raise UserError(f"cannot write --out '{target}' ({exc.strerror or exc}); choose another path") from None
    device = resolve_device(args.device)
    recipe = TRAINING_RECIPES[args.dataset]
    epochs = args.epochs or recipe.epochs
    data = load_dataset(args.dataset, "train", args.data_dir)
    io.err.print(f"data: {data.source}", markup=False)
    info = DATASETS[args.dataset]
    architecture = ARCHITECTURES[args.arch]
    spec = ModelSpec(name=target.stem, architecture=args.arch, input_shape=(1, 28, 28), mean=info.mean, std=info.std,
                     logits_layer=architecture.logits_layer, class_names=info.class_names, dataset=args.dataset,
                     activations=dict(architecture.activations),
                     **estimate_prior(data.pixels()))
    model = architecture.build(spec)
    with io.progress() as bar:
        task = bar.add_task("training", total=None, info="")
        train(model, spec, data, epochs=epochs, seed=args.seed, lr=recipe.lr, gamma=recipe.gamma,
              augment=recipe.augment, max_batches=args.max_batches, device=device,
              on_batch=lambda done, total: bar.update(task, completed=done, total=total),
              on_epoch=lambda s: bar.update(task, info=f"epoch {s.epoch}: loss {s.loss:.3f}, train acc {s.accuracy:.3f}"))
    save_checkpoint(partial, model, spec)
    partial.replace(target)
    io.out.print(f"wrote {target} ({epochs} epochs on {len(data)} images, seed {args.seed})", markup=False)
    return Outcome(summary={"checkpoint": str(target), "epochs": epochs, "seed": args.seed, "images": len(data),
                            "data_source": data.source, "device": str(device)})
