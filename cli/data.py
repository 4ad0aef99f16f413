"""Data flags shared by the commands that render: --dataset, --images, --split, and the image prior
estimated from that data (see introspect.params.estimate_prior)."""
from __future__ import annotations

import argparse

from introspect.data import DATASETS, ImageDataset, check_fits, load_dataset, load_image_folder
from introspect.errors import UserError
from introspect.models import LoadedModel
from introspect.params import needs_data_prior, prior_for

from .options import add_data_dir
from .output import Output, say


def add_data_options(p: argparse.ArgumentParser, purpose: str) -> None:
    """--dataset, --images, --split and --data-dir; ``purpose`` says what the data is for, in the help."""
    p.add_argument("--dataset", metavar="NAME",
                   help=f"dataset {purpose}: {', '.join(DATASETS)} or none (default: the model's training dataset)")
    p.add_argument("--images", metavar="DIR",
                   help="your own pictures as the dataset (sub-folders are classes; each converted to the model's "
                        "input size and channels as --image is; unreadable files skipped and counted)")
    p.add_argument("--split", default="train", choices=["train", "test"], help="dataset split (default: train)")
    add_data_dir(p)


def dataset_from_args(args: argparse.Namespace, spec, io: Output, missing: str) -> ImageDataset | None:
    """--images, else --dataset, else the model's own dataset; None (with ``missing`` said) without one.
    A dataset named explicitly that cannot be loaded is an error; the model's own is only a note."""
    if args.images is not None:
        if args.dataset is not None:
            raise UserError("give --dataset or --images, not both")
        data = load_image_folder(args.images, spec)
        io.err.print(f"data: {data.source}", markup=False)
        return data
    name = args.dataset or spec.dataset
    if name is None or name == "none":
        io.err.print(f"no dataset: {missing} (pass --dataset or --images DIR)", markup=False)
        return None
    try:
        data = load_dataset(name, args.split, args.data_dir)
    except UserError as exc:
        if args.dataset or args.data_dir:  # asked for explicitly: a real error
            raise
        io.note(f"{say(exc.message)}; {missing}")
        return None
    check_fits(data, spec.image_shape)
    io.err.print(f"data: {data.source}", markup=False)
    return data


def asked_for_data(args: argparse.Namespace) -> bool:
    return args.images is not None or (args.dataset not in (None, "none"))


def apply_prior(loaded: LoadedModel, data: ImageDataset | None, io: Output, derive: bool = False,
                args: argparse.Namespace | None = None) -> str:
    """Give ``loaded`` the image prior ``introspect.params.prior_for`` decides on for ``data`` (``derive``: one
    from the model's normalization when there is no other, for class images); print where it came from and
    return that line for run.json. The start and parametrization ``args`` give win over the prior's: said."""
    loaded.spec, line = prior_for(loaded.spec, data, derive)
    line = say(line)
    given = [f"--{name} {value}" for name, value in (("start", getattr(args, "start", "auto")),
                                                     ("param", getattr(args, "param", None)))
             if value not in (None, "auto")
             and any(a == f"--{name}" or a.startswith(f"--{name}=") for a in getattr(args, "argv", ()))]
    if given and "images start at" in line:  # the derived prior's start and spectrum: the flags chose others
        line += f"; {' and '.join(given)} given: the images start and are made as they say"
    io.err.print(f"prior: {line}", markup=False)
    return line


def planned_prior(args: argparse.Namespace, loaded: LoadedModel, derive: bool):
    """The spec whose prior class images will get, as far as it is known before any data is loaded: the model's
    own when data will be read (``prior_data``), else the one ``prior_for`` gives without data."""
    if asked_for_data(args) or (args.dataset != "none" and needs_data_prior(loaded.spec)):
        return loaded.spec
    return prior_for(loaded.spec, None, derive)[0]


def prior_data(args: argparse.Namespace, loaded: LoadedModel, io: Output) -> ImageDataset | None:
    """The data classes estimate their prior from: what the flags name, else the model's own dataset
    when its prior is incomplete (``needs_data_prior``); None when there is none (said)."""
    if not asked_for_data(args) and (args.dataset == "none" or not needs_data_prior(loaded.spec)):
        return None  # apply_prior says which prior the images use
    return dataset_from_args(args, loaded.spec, io, "class images get no data prior")
