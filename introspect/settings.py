"""One table of the settings a person can set: each is a dataclass field that carries its name as a
command-line option, its help and its kind, so the CLI's options, their checks, run.json's record of
them and `introspect rerun`'s command are all generated from the field. A new knob is one edit.

``setting(default, name, help, kind)`` declares such a field; ``table(cls)`` lists the settings of a
dataclass (fields of nested dataclasses too, by dotted path); ``get``/``put`` read and replace one by
path; ``from_values`` checks and applies values given by option name; ``to_values`` spells a config's
settings back as option values; ``from_record`` reads a config back from run.json's plain values.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from .errors import UserError

#: Kinds of settings: how a value is read from text and checked.
KINDS = ("count", "positive", "integer", "weight", "steps", "choice", "switch", "device")


def setting(default: Any, name: str, help: str, kind: str, *, choices: Mapping[str, Any] | None = None,
            metavar: str | None = None, only: str | None = None) -> Any:
    """A dataclass field that is a user setting, option ``name``: ``kind`` is one of KINDS; a ``choice``'s
    ``choices`` map the words a user gives to the stored values; ``only`` names the one task it applies to
    ("channels"), where it does not apply to all."""
    if kind not in KINDS:
        raise ValueError(f"unknown setting kind {kind!r}")
    metadata = {"setting": name, "help": help, "kind": kind, "choices": dict(choices or {}), "metavar": metavar,
                "only": only}
    if isinstance(default, (list, dict, set)):
        raise ValueError("settings take immutable defaults (a tuple for a list)")
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Setting:
    """One row of the table: where the value lives (``path``, dotted through nested configs) and how a
    user names, reads and checks it."""

    path: str
    name: str
    help: str
    kind: str
    choices: Mapping[str, Any]
    metavar: str | None
    only: str | None = None  # the one task it applies to, where it does not apply to all

    def word(self, value: Any) -> str | None:
        """A choice's stored value as the word a user gives (None when no word names it)."""
        return next((word for word, stored in self.choices.items() if stored == value), None)


def table(cls: type) -> tuple[Setting, ...]:
    """The settings of dataclass ``cls`` and of the dataclasses its fields hold, in field order."""
    rows = []
    defaults = cls()
    for f in fields(cls):
        value = getattr(defaults, f.name)
        if "setting" in f.metadata:
            m = f.metadata
            rows.append(Setting(f.name, m["setting"], m["help"], m["kind"], m["choices"], m["metavar"], m["only"]))
        elif is_dataclass(value):
            rows += [dataclasses.replace(row, path=f"{f.name}.{row.path}") for row in table(type(value))]
    return tuple(rows)


def get(config: Any, path: str) -> Any:
    for part in path.split("."):
        config = getattr(config, part)
    return config


def put(config: Any, path: str, value: Any) -> Any:
    """``config`` with the value at ``path`` replaced (frozen dataclasses are rebuilt along the path)."""
    head, _, rest = path.partition(".")
    inner = put(getattr(config, head), rest, value) if rest else value
    return dataclasses.replace(config, **{head: inner})


def check(row: Setting, value: Any, steps: int | None = None) -> Any:
    """``value`` for ``row`` as stored, checked; UserError naming the setting otherwise."""
    if row.kind == "choice":
        if value not in row.choices:
            raise UserError("{setting} must be one of {words}, got {value!r}", about=row.name,
                            words=", ".join(row.choices), value=value)
        return row.choices[value]
    if row.kind == "switch":
        return bool(value)
    if row.kind == "device":
        return str(value)
    if row.kind == "steps":
        values = tuple(sorted(set(int(v) for v in value)))
        bad = [v for v in values if steps is not None and not 1 <= v <= steps]
        if bad:
            raise UserError("{setting} {bad} is outside 1-{last} (the run's steps)", about=row.name, bad=bad[0],
                            last=steps)
        return values
    number = float(value) if row.kind in ("positive", "weight") else value
    if row.kind in ("count", "integer") and (isinstance(number, bool) or not isinstance(number, int)):
        raise UserError("{setting} must be a whole number, got {value!r}", about=row.name, value=value)
    finite = isinstance(number, (int, float)) and math.isfinite(number)
    if row.kind == "count" and number < 1:
        raise UserError("{setting} must be at least 1, got {value}", about=row.name, value=value)
    if row.kind == "positive" and not (finite and number > 0):
        raise UserError("{setting} must be a finite number above 0, got {value}", about=row.name, value=value)
    if row.kind == "weight" and not (finite and number >= 0):
        raise UserError("{setting} must be a finite number >= 0, got {value}", about=row.name, value=value)
    return number


def from_values(defaults: Any, values: Mapping[str, Any]) -> Any:
    """``defaults`` with the settings ``values`` names (by setting name; None: keep the default), checked.
    A choice's word maps to its stored value; the word "auto" where it maps to None keeps the default."""
    config = defaults
    rows = table(type(defaults))
    for row in rows:  # steps first: the snapshots are checked against it
        if row.name in values and values[row.name] is not None and row.kind != "steps":
            if row.kind == "choice" and values[row.name] == "auto" and row.choices.get("auto", 0) is None:
                continue
            config = put(config, row.path, check(row, values[row.name]))
    steps = getattr(config, "steps", None)
    for row in rows:
        if row.kind == "steps" and values.get(row.name) is not None:
            config = put(config, row.path, check(row, values[row.name], steps))
    return config


def to_values(config: Any) -> dict[str, Any]:
    """Every setting of ``config`` by setting name, spelled as a user gives it (choices as their words;
    a choice with no word for its value is left out)."""
    values = {}
    for row in table(type(config)):
        value = get(config, row.path)
        if row.kind == "choice":
            value = row.word(value)
            if value is None:
                continue
        values[row.name] = value
    return values


def from_record(cls: type, record: Mapping[str, Any]) -> Any:
    """A ``cls`` config from plain values (``dataclasses.asdict`` of one, from JSON). A field the record lacks
    takes the dataclass's own default: a run recorded before a setting existed did not use it."""
    kwargs = {}
    defaults = cls()
    for f in fields(cls):
        if f.name not in record:
            continue
        value, default = record[f.name], getattr(defaults, f.name)
        if is_dataclass(default) and isinstance(value, Mapping):
            value = from_record(type(default), value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UserError("the recorded settings do not fit ({exc})", exc=exc) from None
