"""Command-line options: argparse types, the option groups commands share, and how flags become
library values (a LoadedModel, a RenderConfig). FLAGS spells the library's settings as flags."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from introspect.engine import RenderConfig
from introspect.errors import UserError
from introspect.models import BUILTIN_MODELS, LoadedModel, MetaOverrides, file_sha256, load_model
from introspect.repeat import Repeat, record_forward_args
from introspect.settings import get, table

FORMATS = ("png", "pdf", "svg", "jpg")

#: How the CLI spells each setting a library message names (see introspect.errors): the one table.
FLAGS = {name: "--" + name.replace("_", "-") for name in (
    "out", "force", "size", "input_shape", "mean", "std", "class_names", "logits_layer", "logits_output", "logits_position", "model", "checkpoint",
    "weights", "trust_checkpoint", "data_dir", "channels", "diverse", "invert", "frame", "layer", "dataset", "images",
    "trust", "forward_arg", "neuron")}
FLAGS.update({row.name: f"--{row.name}" for row in table(RenderConfig)})  # the settings table's options
FLAGS["layers_command"] = "`introspect layers`"
FLAGS["data"] = "--dataset or --images DIR"


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default="mnist", metavar="SOURCE",
                       help=f"built-in ({', '.join(BUILTIN_MODELS)}), torchvision:NAME, path/to/file.py:ClassName "
                            "(or :function, which builds it), or a TorchScript file (default: mnist)")
    group.add_argument("--checkpoint", metavar="PATH",
                       help="weights: an introspect checkpoint, or a state dict for the --model architecture (default: none)")
    group.add_argument("--weights", metavar="NAME",
                       help="torchvision weights: DEFAULT or an enum name; downloaded by torchvision (default: none)")
    group.add_argument("--trust-checkpoint", action="store_true",
                       help="allow a checkpoint that needs full unpickling (it can run code: only for files you trust)")
    group.add_argument("--size", type=positive_int, metavar="N",
                       help="square input size; channels from the first conv (default: the model's metadata)")
    group.add_argument("--input-shape", type=shape_list, metavar="C,H,W",
                       help="input shape per example: C,H,W for images (e.g. 3,32,32), C,L or L for 1-D signals "
                            "(e.g. 1,1024)")
    group.add_argument("--forward-arg", type=forward_arg, action="append", default=[], metavar="NAME=VALUE",
                       help="a keyword argument for the model's forward, a Python literal (e.g. sample_rate=16000); "
                            "repeatable (default: none)")
    group.add_argument("--mean", type=float_list, metavar="LIST",
                       help="normalization mean, one value or one per channel (default: the model's metadata, else 0)")
    group.add_argument("--std", type=float_list, metavar="LIST",
                       help="normalization std, one value or one per channel (default: the model's metadata, else 1)")
    group.add_argument("--class-names", metavar="FILE", help="text file with one class name per line")
    group.add_argument("--logits-layer", metavar="NAME",
                       help="layer whose output holds the logits (default: the spec's, else the model's output)")
    group.add_argument("--logits-output", metavar="KEY",
                       help="the logits' place in a structured output: an index of a tuple, a key of a dict, an "
                            "attribute (default: the output itself when it is one tensor)")
    group.add_argument("--logits-position", choices=("mean", "center", "max"),
                       help="a spatial map of logits (batch, classes, H, W), from a fully-convolutional classifier: "
                            "each class's score is its mean over the map, its centre or its max (default: mean)")


def load_arguments(args: argparse.Namespace, loaded: LoadedModel) -> dict:
    """load_model's arguments for this command, with absolute paths, for run.json (explore reloads the model)."""
    absolute = lambda path: None if path is None else str(Path(path).resolve())  # noqa: E731
    source = args.model
    if ":" in source and source.rsplit(":", 1)[0].endswith(".py"):
        source = absolute(source.rsplit(":", 1)[0]) + ":" + source.rsplit(":", 1)[1]
    elif source not in BUILTIN_MODELS and Path(source).is_file():
        source = absolute(source)
    meta = {"size": args.size, "input_shape": args.input_shape, "mean": args.mean, "std": args.std,
            "class_names": list(loaded.spec.class_names) if args.class_names else None,
            "logits_layer": args.logits_layer, "logits_output": args.logits_output,
            "logits_position": args.logits_position,
            "forward_args": record_forward_args(getattr(args, "forward_arg", []))}
    return {"source": source, "checkpoint": absolute(args.checkpoint), "weights": args.weights,
            "trust_checkpoint": args.trust_checkpoint, "meta": meta}


def data_arguments(args: argparse.Namespace) -> dict:
    """The data flags of this command, paths absolute (for run.json's repeat record)."""
    absolute = lambda path: None if path is None else str(Path(path).resolve())  # noqa: E731
    return {"dataset": getattr(args, "dataset", None), "images": absolute(getattr(args, "images", None)),
            "split": getattr(args, "split", None), "data_dir": absolute(getattr(args, "data_dir", None))}


def repeat_record(args: argparse.Namespace, loaded: LoadedModel, config: RenderConfig | None = None,
                  targets: dict | None = None) -> dict:
    """How to repeat this command's run: run.json's one record of it (``introspect.repeat.Repeat``)."""
    return Repeat(args.command, load_arguments(args, loaded), None if config is None else config.to_record(),
                  dict(targets or {}), data_arguments(args), list(args.argv)).to_record()


def load_model_from_args(args: argparse.Namespace, hooks: bool = True) -> LoadedModel:
    """The model the flags name. ``hooks``: the command needs forward hooks on inner layers,
    which TorchScript models cannot take."""
    class_names = None
    if args.class_names:
        try:
            lines = Path(args.class_names).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read --class-names '{args.class_names}': {exc}") from exc
        class_names = read_class_names(lines, args.class_names)
    meta = MetaOverrides(size=args.size, input_shape=args.input_shape, mean=args.mean, std=args.std,
                         class_names=class_names, logits_layer=args.logits_layer, logits_output=args.logits_output,
                         logits_position=args.logits_position,
                         forward_args=tuple(getattr(args, "forward_arg", [])))
    loaded = load_model(args.model, args.checkpoint, weights=args.weights, trust_checkpoint=args.trust_checkpoint,
                        meta=meta)
    if hooks and loaded.scripted:
        raise UserError(f"{args.command} needs forward hooks on inner layers, which TorchScript submodules cannot take; "
                        "`introspect classes` works on TorchScript, or load the eager model (file.py:ClassName + --checkpoint)")
    if loaded.spec.logits_layer and not loaded.scripted and loaded.spec.logits_layer not in dict(loaded.model.named_modules()):
        raise UserError(f"--logits-layer '{loaded.spec.logits_layer}' is not a layer of the model (see `introspect layers`)")
    return loaded


def read_class_names(lines: list[str], path: str) -> tuple[str, ...]:
    """One class name per line, blank lines at the end dropped; a blank line among the names (every name after it
    would name the next class) or a name given twice (``--classes NAME`` would pick one silently) is refused."""
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise UserError(f"--class-names '{path}' holds no names (one per line)")
    if "" in names:
        raise UserError(f"--class-names '{path}': line {names.index('') + 1} is blank; give every class a name, one per "
                        "line (a blank line would shift every later name to the next class)")
    seen: dict[str, int] = {}
    for number, name in enumerate(names, 1):
        if name in seen:
            raise UserError(f"--class-names '{path}': '{name}' is on lines {seen[name]} and {number}; give each class "
                            "its own name")
        seen[name] = number
    return tuple(names)


def input_files(args: argparse.Namespace) -> dict[str, dict]:
    """Every file (and image folder) the command reads, by role: absolute path and sha256 (for run.json and
    rerun)."""
    paths = {"checkpoint": args.checkpoint, "class_names": args.class_names, "image": getattr(args, "image", None)}
    if ":" in args.model and args.model.rsplit(":", 1)[0].endswith(".py"):
        paths["model_file"] = args.model.rsplit(":", 1)[0]
    elif args.model not in BUILTIN_MODELS and not args.model.startswith("torchvision:") and Path(args.model).is_file():
        paths["model_file"] = args.model  # a TorchScript archive
    folders = {"images": getattr(args, "images", None)}  # an image folder, by the digest of all its files
    return {role: {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}
            for role, path in {**paths, **folders}.items()
            if path is not None and (Path(path).is_file() or (role in folders and Path(path).is_dir()))}


def shape_list(text: str) -> tuple[int, ...]:
    """--input-shape: C,H,W (an image), C,L (a 1-D signal with channels) or L."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not C,H,W, C,L or L (whole numbers)") from None
    if not 1 <= len(values) <= 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not C,H,W, C,L or L (one to three whole numbers above 0)")
    return values


def forward_arg(text: str) -> tuple[str, object]:
    """--forward-arg NAME=VALUE: a keyword argument for the model's forward, VALUE a Python literal
    (ast.literal_eval: 16000, 0.5, 'text', True, None, (1, 2), ...)."""
    import ast

    name, equals, value = text.partition("=")
    name = name.strip()
    if not equals or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=VALUE (e.g. sample_rate=16000)")
    try:
        return name, ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError(f"'{value}' is not a Python literal (a number, 'quoted text', True, None, "
                                         "a tuple ...)") from None


def float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers") from None
    if not all(v == v and abs(v) != float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"'{text}' holds a NaN or infinite value")
    return values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


#: The most memory --memory may name, in GiB: far beyond any machine, short of overflowing a byte count.
MAX_MEMORY_GIB = 1e6


def memory_gib(text: str) -> float:
    """--memory: GiB above 0 and at most MAX_MEMORY_GIB."""
    value = positive_float(text)
    if value > MAX_MEMORY_GIB:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_MEMORY_GIB:g} GiB, got {text}")
    return value


def process_count(text: str) -> int:
    """--distributed: processes, at most one per CUDA device (with CUDA) or per CPU core (without)."""
    import os

    value = positive_int(text)
    if torch.cuda.is_available():
        limit, what = torch.cuda.device_count(), "CUDA devices"
    else:
        limit, what = os.cpu_count() or 1, "CPU cores"
    if value > limit:
        raise argparse.ArgumentTypeError(f"must be at most {limit} (this machine's {what}), got {value}")
    return value



def int_list(text: str) -> tuple[int, ...]:
    """'8,32,128' -> (8, 32, 128)."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of whole numbers") from None


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available; an explicit device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"unknown device '{name}'; use auto, cpu or cuda[:N]") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name} asked for, but no CUDA GPU is available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type != "cpu":
        raise UserError(f"unsupported device '{name}'; use auto, cpu or cuda[:N]")
    return device


#: How an option of each kind of setting (introspect.settings.KINDS) is read from its text.
SETTING_TYPES = {"count": positive_int, "positive": positive_float, "integer": int, "weight": float,
                 "steps": int_list, "device": str}


def add_render_options(p: argparse.ArgumentParser, defaults: RenderConfig, command: str) -> None:
    """One option per row of the settings table (introspect.settings) that applies to ``command``, its default
    and help from ``defaults``."""
    g = p.add_argument_group("optimization")
    for row in table(RenderConfig):
        if row.only not in (None, command):
            continue
        default = get(defaults, row.path)
        if row.kind == "switch":
            g.add_argument(f"--{row.name}", action="store_true", help=f"{row.help} (default: {'on' if default else 'off'})")
            continue
        if row.kind == "choice":
            default = row.word(default)
            g.add_argument(f"--{row.name}", default=default, choices=list(row.choices),
                           help=f"{row.help} (default: {default})")
            continue
        if row.kind == "device":
            default = "auto"
        shown = "none" if default == () else f"{default:g}" if isinstance(default, float) else default
        g.add_argument(f"--{row.name}", type=SETTING_TYPES[row.kind], default=default, metavar=row.metavar,
                       help=f"{row.help} (default: {shown})")
    g.add_argument("--dry-run", action="store_true", help="print the plan (images, steps, chunks, device) and stop")


def add_output_options(p: argparse.ArgumentParser, prefix: str, formats: bool) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", help=f"run folder (default: a new runs/{prefix}-NNN)")
    g.add_argument("--force", action="store_true", help="allow --out to overwrite an earlier run")
    if formats:
        g.add_argument("--format", default="png", metavar="LIST",
                       help=f"report formats, comma-separated from {','.join(FORMATS)}; png is always written (default: png)")


def config_from_args(args: argparse.Namespace, defaults: RenderConfig) -> RenderConfig:
    """``defaults`` with the settings the options give, checked by the library (a device resolved first)."""
    values = {row.name: getattr(args, row.name, None) for row in table(RenderConfig)}
    values["device"] = str(resolve_device(args.device))
    return defaults.from_values(values)


def parse_formats(text: str) -> list[str]:
    formats = [f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"unknown --format '{unknown[0]}'; choose from {', '.join(FORMATS)}")
    return ["png"] + [f for f in dict.fromkeys(formats) if f != "png"]


def add_device(parser: argparse.ArgumentParser, what: str = "where it computes") -> None:
    """--device for the commands whose options are not generated from the settings table."""
    parser.add_argument("--device", default="auto", help=f"{what}: auto, cpu or cuda[:N] (default: auto)")


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR", help="where datasets are stored or downloaded (default: the user cache)")
