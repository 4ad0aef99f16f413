"""How to repeat a run: the one record of it a run folder keeps (``Repeat``: command, the model's load
arguments — source, checkpoint, torchvision weights, trust flag, metadata overrides —, data, settings,
targets), read by one function for rerun, explore and resume (``read_repeat``, which also reads what
older versions wrote), and the model loaded again from it (``load_recorded``) with the code that runs.

A run.json or manifest is a file people send each other: loading a model from one never imports a
Python file, a package class or a TorchScript archive, nor unpickles a checkpoint, unless the caller
says it trusts the folder.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from .engine import RenderConfig
from .errors import UserError
from .models import MetaOverrides, load_model
from .models.registry import BUILTIN_MODELS, LoadedModel
from .settings import table


def _json_exact(value: object) -> bool:
    """Whether ``value`` comes back from JSON as it went in: the same types, finite floats, text keys."""
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(map(_json_exact, value))
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_exact(v) for k, v in value.items())
    return False


def _same(a: object, b: object) -> bool:
    """Equal and of the same types all the way down (so a tuple is not a list, 1 not 1.0 or True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (set, frozenset)):
        return a == b
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def record_forward_args(arguments: Sequence[tuple[str, object]]) -> list[list]:
    """The forward arguments as run.json keeps them, so that a rerun passes the very same values: [name, value]
    where JSON gives the value back as it is, else [name, {"literal": repr}] (tuples, bytes, sets, complex
    numbers, inf, NaN), read back by ``forward_args_of``. A value no Python literal repeats (a tensor, a
    container holding NaN) is refused: a UserError naming the fix."""
    recorded = []
    for name, value in arguments:
        if _json_exact(value):
            recorded.append([name, value])
            continue
        text = repr(value)
        if isinstance(value, float):  # inf, -inf, nan: float() reads them back, literal_eval does not
            text = f"float('{value}')"
        if _read_literal(text, _NOTHING) is _NOTHING or not _same(_read_literal(text, _NOTHING), value):
            raise UserError("the forward argument {name} = {value} cannot be recorded so that a rerun repeats it; give "
                            "{forward_arg} a number, text, True/False/None or a tuple, list, dict or set of them",
                            settings=("forward_arg",), name=name, value=text[:80])
        recorded.append([name, {"literal": text}])
    return recorded


_NOTHING = object()


def _read_literal(text: str, default: object) -> object:
    """``text`` as ast.literal_eval reads it, or float('inf'/'-inf'/'nan'); ``default`` when it is neither."""
    import ast

    if text in ("float('inf')", "float('-inf')", "float('nan')"):
        return float(text[7:-2])
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return default


def forward_args_of(recorded: object, where: str = "the run") -> tuple[tuple[str, object], ...]:
    """The forward arguments ``record_forward_args`` wrote, as (name, value) pairs; a UserError when malformed."""
    if not isinstance(recorded, list):
        recorded = []
    pairs = []
    for item in recorded:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise UserError("{where} records a forward argument that is not [name, value]: {item}", where=where,
                            item=str(item)[:80])
        name, value = item
        if isinstance(value, dict) and set(value) == {"literal"} and isinstance(value["literal"], str):
            value = _read_literal(value["literal"], _NOTHING)
            if value is _NOTHING:
                raise UserError("{where} records the forward argument {name} as {text}, which is not a Python "
                                "literal", where=where, name=name, text=item[1]["literal"][:80])
        pairs.append((name, value))
    return tuple(pairs)


def code_loaded_by(load: dict) -> list[str]:
    """What loading ``load`` would run: a model file imported, a package imported, a TorchScript archive
    loaded, a checkpoint unpickled (empty: only built-in or torchvision code and plain weights)."""
    source = str(load.get("source") or "mnist")
    code = []
    if ":" in source and source.rsplit(":", 1)[0].endswith(".py"):
        code.append(f"the model file {source.rsplit(':', 1)[0]} is imported")
    elif source not in BUILTIN_MODELS and not source.startswith("torchvision:"):
        code.append(f"the installed module {source.rsplit(':', 1)[0]} is imported" if ":" in source
                    else f"the TorchScript archive {source} is loaded")
    if load.get("trust_checkpoint"):
        code.append("the checkpoint is unpickled")
    return code


def load_recorded(load: object, *, trust: bool = False, where: str = "the run") -> LoadedModel:
    """The model ``load`` names (a run's recorded load arguments); UserError when it is malformed, or loads
    code and ``trust`` is not given."""
    if not isinstance(load, dict) or not isinstance(load.get("source", "mnist"), str):
        raise UserError("{where} records no load arguments for its model",
                        where=where)
    code = code_loaded_by(load)
    if code and not trust:
        raise UserError("{where} loads code ({value}), which runs with your permissions; continue only if you "
                        "trust those files: add {trust}",
                        settings=("trust",), where=where, value='; '.join(code))
    meta = load.get("meta") if isinstance(load.get("meta"), dict) else {}
    meta = {k: forward_args_of(v, where) if k == "forward_args" else tuple(v) if isinstance(v, list) else v
            for k, v in meta.items()}
    if meta.get("input_shape") is not None:
        meta.pop("size", None)  # runs recorded before the two were refused together: the input shape won
    try:
        overrides = MetaOverrides(**meta)
    except TypeError as exc:
        raise UserError("{where} records metadata overrides that do not fit ({exc})",
                        where=where, exc=exc) from None
    return load_model(load.get("source") or "mnist", load.get("checkpoint"), weights=load.get("weights"),
                      trust_checkpoint=bool(load.get("trust_checkpoint")), meta=overrides)


REPEATABLE = ("classes", "channels", "activations")


@dataclass
class Repeat:
    """How to repeat a run — the one record of it that run.json (and a channels manifest) keeps: the command,
    the model's load arguments, the data, the settings (``RenderConfig.to_record``), the targets (classes,
    layers, channels...) and, for a run of the CLI, the command line as typed."""

    command: str
    load: dict
    settings: dict | None = None
    targets: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    argv: list[str] | None = None

    def to_record(self) -> dict:
        return asdict(self)

    def setting_values(self) -> dict[str, object]:
        """The recorded settings by option name (see ``introspect.settings``); empty when none were recorded."""
        if self.settings is None:
            return {}
        return RenderConfig.from_record(self.settings).to_values()


#: Keys of a notebook run's recipe (written before run.json kept one "repeat" record) that are targets or data.
_RECIPE_TARGETS = ("classes", "objective", "candidates", "layer", "channels", "diverse", "batch_size", "neuron", "top_k")
_RECIPE_DATA = ("dataset", "split")


def read_repeat(record: object, where: str = "the run") -> Repeat:
    """How to repeat the run ``record`` (a run.json's content), whichever version wrote it: its "repeat"
    record, or the older top-level "argv" and "load" (runs of the CLI) or "recipe" (runs saved from a
    notebook). UserError when it records none, or one that is malformed."""
    if not isinstance(record, dict):
        raise UserError("{where} is not a run record (not a JSON object)", where=where)
    stored = record.get("repeat")
    if stored is not None:
        if not isinstance(stored, dict):
            raise UserError("{where} records a malformed repeat entry", where=where)
        try:
            repeat = Repeat(**{k: v for k, v in stored.items() if k in Repeat.__dataclass_fields__})
        except TypeError as exc:
            raise UserError("{where} records a malformed repeat entry ({exc})", where=where, exc=exc) from None
    elif (isinstance(record.get("argv"), list) and record["argv"]) or isinstance(record.get("load"), dict):
        argv = record.get("argv") if isinstance(record.get("argv"), list) and record["argv"] else None
        load = record.get("load") if isinstance(record.get("load"), dict) else None
        repeat = Repeat(command=str(argv[0] if argv else record.get("command_name")), load=load,
                        settings=record.get("settings"), argv=argv)
    elif isinstance(record.get("recipe"), dict):
        recipe = record["recipe"]
        values = {row.name: recipe[row.name] for row in table(RenderConfig) if recipe.get(row.name) is not None}
        config = RenderConfig().from_values(values)  # a setting the recipe lacks was not used (e.g. ink)
        repeat = Repeat(command=str(recipe.get("command")),
                        load={"source": recipe.get("model") or "mnist", "checkpoint": recipe.get("checkpoint")},
                        settings=config.to_record(),
                        targets={k: recipe[k] for k in _RECIPE_TARGETS if recipe.get(k) is not None},
                        data={k: recipe[k] for k in _RECIPE_DATA if recipe.get(k) is not None})
    else:
        raise UserError("{where} records no way to repeat it", where=where)
    problems = [name for name, ok in (
        ("command", repeat.command in REPEATABLE),
        ("load", repeat.load is None or isinstance(repeat.load, dict)),
        ("settings", repeat.settings is None or isinstance(repeat.settings, dict)),
        ("targets", isinstance(repeat.targets, dict)), ("data", isinstance(repeat.data, dict)),
        ("argv", repeat.argv is None or (isinstance(repeat.argv, list) and all(isinstance(a, str) for a in repeat.argv))),
    ) if not ok]
    if problems:
        raise UserError("{where} records a malformed or unknown {what} (introspect repeats {kinds} runs)",
                        where=where, what=problems[0], kinds=", ".join(REPEATABLE))
    return repeat
