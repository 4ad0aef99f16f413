"""`introspect rerun`: repeat a recorded run into a new folder, reading the files it read."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from introspect.errors import UserError
from introspect.models import BUILTIN_MODELS, file_sha256
from introspect.folders import read_record

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
    p.set_defaults(run=run)



RERUNNABLE = ("classes", "channels", "activations")
FILE_OPTIONS = {"--checkpoint": "checkpoint", "--image": "image", "--class-names": "class_names"}


def run(args: argparse.Namespace, io: Output) -> Outcome:
    """Check a recorded command (files, digests, code it would load) and hand it back to run into a new folder."""
    record = read_record(args.record)
    argv = record.get("argv") or argv_from_recipe(record.get("recipe"))
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise UserError(f"'{args.record}' records no command to repeat")
    if argv[0] not in RERUNNABLE:
        raise UserError(f"'{args.record}' records `introspect {argv[0]}`; rerun repeats {', '.join(RERUNNABLE)} runs only")
    if any(a == "--resume" or a.startswith("--resume=") or a == "--distributed" or a.startswith("--distributed=")
           for a in argv):
        raise UserError(f"'{args.record}' records a command that continues or launches other runs (--resume, "
                        "--distributed); rerun repeats single runs only")
    parser = args.command_parsers[argv[0]]
    try:
        parsed = parser.parse_args(argv[1:])
    except Exception as exc:  # noqa: BLE001 - UsageError: the recorded line does not parse (abbreviations included)
        raise UserError(f"the command recorded in '{args.record}' does not parse: {exc}") from None
    pinned = changed_defaults(argv[0], parsed, record.get("settings"))
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
        if not path.is_file():
            raise UserError(f"the run read {role.replace('_', ' ')} '{path}', which is missing now")
        if file_sha256(path) != recorded:
            if not args.allow_changed:
                raise UserError(f"{role.replace('_', ' ')} '{path}' changed since the run (its sha256 differs from "
                                "run.json's): the results would differ; add --allow-changed to rerun with it as it is now")
            io.err.print(f"note: {role.replace('_', ' ')} '{path}' changed since the run; using it as it is now", markup=False)
    if args.out is not None:
        command += ["--out", args.out] + (["--force"] if args.force else [])
    command += [flag for flag in ("--quiet", "--json", "--progress") if getattr(args, flag[2:]) and flag not in command]
    io.err.print(f"rerun: {shlex.join(['introspect', *command])}", markup=False)
    for role, entry in inputs.items():
        io.err.print(f"rerun: loads {role.replace('_', ' ')} {entry['path']} (sha256 {entry['sha256'][:16]}…)", markup=False)
    return Outcome(rerun=command)


#: Optimization settings a classes/channels run records (run.json "settings") that its flags can set.
PINNABLE = ("steps", "lr", "tv", "pull", "ink", "l2", "blur")


def changed_defaults(command: str, parsed: argparse.Namespace, settings: object) -> list[str]:
    """Flags that give a recorded classes/channels command the settings its run used, where today's
    defaults differ (a run from before the ink term had none)."""
    if command not in ("classes", "channels") or not isinstance(settings, dict):
        return []
    recorded = {key: settings.get(key, 0.0 if key == "ink" else None) for key in PINNABLE}
    image = settings.get("image") if isinstance(settings.get("image"), dict) else {}
    recorded["param"] = image.get("parametrization")
    flags = []
    for key, value in recorded.items():
        if value is not None and hasattr(parsed, key) and getattr(parsed, key) != value:
            flags += [f"--{key}", str(value)]
    return flags


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
    raise UserError(f"'{source}' names {role.replace('_', ' ')} '{value}' but records no path and digest for it "
                    "(written by an older introspect): run the command again by hand")


def argv_from_recipe(recipe: dict | None) -> list[str] | None:
    """The command line of a run written from Python (introspect.records.recipe), or None."""
    if not isinstance(recipe, dict) or recipe.get("command") not in ("classes", "channels"):
        return None
    argv = [recipe["command"]]
    argv += ["--model", recipe["model"]] if "model" in recipe else ["--checkpoint", recipe["checkpoint"]]
    for key in ("steps", "lr", "seed", "param", "start", "tv", "pull", "ink", "l2", "blur", "device", "objective", "candidates",
                "diverse", "batch_size", "dataset", "split", "top_k"):
        if recipe.get(key) is not None:
            argv += [f"--{key.replace('_', '-')}", str(recipe[key])]
    for key in ("snapshots", "classes", "layer", "channels"):
        if recipe.get(key):
            argv += [f"--{key}", ",".join(map(str, recipe[key]))]
    argv += [flag for flag in ("--amp", "--neuron") if recipe.get(flag[2:])]
    if "ink" not in recipe:  # written before the ink term existed: the run had none
        argv += ["--ink", "0"]
    return argv
