"""`introspect rerun`: repeat a recorded run into a new folder, reading the files it read."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from introspect.errors import UserError
from introspect.models import BUILTIN_MODELS, file_sha256
from introspect.folders import read_record
from introspect.repeat import Repeat, read_repeat

from ..options import resolve_device
from ..output import Outcome, Output


def register(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--device", help="where the repeat computes: auto, cpu or cuda[:N] (default: the recorded "
                                    "command's, else auto)")
    p.set_defaults(run=run)



FILE_OPTIONS = {"--checkpoint": "checkpoint", "--image": "image", "--class-names": "class_names", "--images": "images"}


def run(args: argparse.Namespace, io: Output) -> Outcome:
    """Check a recorded command (files, digests, code it would load) and hand it back to run into a new folder."""
    record = read_record(args.record)
    repeat = read_repeat(record, f"'{args.record}'")
    argv = repeat.argv or command_of(repeat)
    if any(a == "--resume" or a.startswith("--resume=") or a == "--distributed" or a.startswith("--distributed=")
           for a in argv):
        raise UserError("{record} records a command that continues or launches other runs (--resume, --distributed); "
                        "rerun repeats single runs only", record=f"'{args.record}'")
    if repeat.command == "channels":
        argv, dropped = _without_snapshots(argv)
        if dropped:
            io.err.print("note: the recorded --snapshots is left out: a channels run never kept snapshots, and its "
                         "command no longer takes them", markup=False)
    parser = args.command_parsers[repeat.command]
    try:
        parsed = parser.parse_args(argv[1:])
    except Exception as exc:  # noqa: BLE001 - UsageError: the recorded line does not parse (abbreviations included)
        raise UserError("the command recorded in {record} does not parse: {exc}", record=f"'{args.record}'",
                        exc=exc) from None
    pinned = pinned_settings(parsed, repeat)
    if pinned:
        io.err.print(f"note: the defaults changed since this run; keeping its settings: {shlex.join(pinned)}", markup=False)
        argv = [*argv, *pinned]
    inputs = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}
    command, code = _recorded_command(argv, parser, inputs, record.get("cwd"), args.record)
    if code and not args.trust:
        raise UserError(f"this run loads code ({'; '.join(code)}), which runs with your permissions; "
                        "rerun it only if you trust those files: add --trust")
    for role, entry in inputs.items():
        path, recorded = Path(entry["path"]), entry["sha256"]
        if not (path.is_dir() if role == "images" else path.is_file()):
            raise UserError(f"the run read {role.replace('_', ' ')} '{path}', which is missing now")
        if file_sha256(path) != recorded:
            if not args.allow_changed:
                raise UserError(f"{role.replace('_', ' ')} '{path}' changed since the run (its sha256 differs from "
                                "run.json's): the results would differ; add --allow-changed to rerun with it as it is now")
            io.err.print(f"note: {role.replace('_', ' ')} '{path}' changed since the run; using it as it is now", markup=False)
            moved = _picture_moved(record, parsed, path) if role == "images" else None
            if moved:
                io.err.print(f"warning: {moved}", markup=False)
    if args.device is not None:
        command += ["--device", str(resolve_device(args.device))]
    if args.out is not None:
        command += ["--out", args.out] + (["--force"] if args.force else [])
    command += [flag for flag in ("--quiet", "--json", "--progress") if getattr(args, flag[2:]) and flag not in command]
    io.err.print(f"rerun: {shlex.join(['introspect', *command])}", markup=False)
    for role, entry in inputs.items():
        io.err.print(f"rerun: loads {role.replace('_', ' ')} {entry['path']} (sha256 {entry['sha256'][:16]}…)", markup=False)
    return Outcome(rerun=command)


def _picture_moved(record: dict, parsed: argparse.Namespace, folder: Path) -> str | None:
    """For an activations run of ``--images DIR --index N`` whose folder changed: which picture the run read (index N
    may now be another one: pictures added, removed or unreadable before it shift it), else None."""
    recorded = (record.get("input") or {}).get("file") if isinstance(record.get("input"), dict) else None
    index = getattr(parsed, "index", None)
    if not isinstance(recorded, str) or index is None:
        return None
    return (f"the run read '{recorded}' as --index {index} of '{folder}'; with the folder changed, index {index} may "
            "now be another picture (the new run's input names its file)")


def _without_snapshots(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without its --snapshots option (and value), which channels runs once took and ignored."""
    kept, skip, dropped = [], False, False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--snapshots":
            skip = dropped = True
        elif arg.startswith("--snapshots="):
            dropped = True
        else:
            kept.append(arg)
    return kept, dropped


def pinned_settings(parsed: argparse.Namespace, repeat: Repeat) -> list[str]:
    """Options that give the recorded command the settings its run used (the settings table's), where the
    command alone would give others: today's defaults may differ from the run's (a run from before the ink
    term had none). The device is not pinned: a run repeats on the machine at hand."""
    flags = []
    for name, value in repeat.setting_values().items():
        now = getattr(parsed, name, None)
        if name == "device" or now is None:
            continue
        if isinstance(value, tuple):  # snapshots
            if tuple(sorted(set(now))) != value:
                flags += [f"--{name}", ",".join(map(str, value))] if value else []
        elif isinstance(value, bool):
            flags += [f"--{name}"] if value and not now else []
        elif now != value:
            flags += [f"--{name}", str(value)]
    return flags


def command_of(repeat: Repeat) -> list[str]:
    """The command line of a run recorded without one (saved from a notebook): its model, targets and data;
    its settings are pinned afterwards like any run's."""
    load, targets, data = repeat.load or {}, repeat.targets, repeat.data
    argv = [repeat.command]
    if load.get("checkpoint"):
        argv += ["--checkpoint", str(load["checkpoint"])]
    elif load.get("source"):
        argv += ["--model", str(load["source"])]
    for key in ("classes", "layer", "channels"):
        if targets.get(key) is not None:
            value = targets[key]
            argv += [f"--{key}", ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    for key in ("objective", "candidates", "diverse", "batch_size", "top_k"):
        if targets.get(key) is not None:
            argv += [f"--{key.replace('_', '-')}", str(targets[key])]
    argv += ["--neuron"] if targets.get("neuron") else []
    for key in ("dataset", "split"):
        if data.get(key) is not None:
            argv += [f"--{key}", str(data[key])]
    return argv


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
        elif option == "--model" and "model_file" in inputs and value not in BUILTIN_MODELS:
            value = _recorded_path("model_file", value, inputs, cwd, source)
            code.append(f"the TorchScript archive {value} is loaded")
        elif option == "--model" and ":" in value and not value.startswith("torchvision:"):
            code.append(f"the installed module {value.rsplit(':', 1)[0]} is imported")
        elif option == "--data-dir" and cwd:
            value = str(Path(cwd) / value)
        command += [option] if value is None else [option, value]
    return command, code


def _recorded_path(role: str, value: str, inputs: dict, cwd: str | None, source: str) -> str:
    if role in inputs:
        return inputs[role]["path"]
    if role == "images" and cwd:  # recorded before image folders had a digest: where the run was started
        return str(Path(cwd) / value)
    raise UserError(f"'{source}' names {role.replace('_', ' ')} '{value}' but records no path and digest for it "
                    "(written by an older introspect): run the command again by hand")
