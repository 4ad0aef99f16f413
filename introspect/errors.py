"""Bad input, said so that both a notebook and the command line can act on it.

A message is a plain-string template whose ``{name}`` fields are filled from data, never by
f-string syntax: ``settings`` lists the settings it concerns (``str()`` spells them as the
library's argument names, the CLI as its flags through one table of its own) and keyword
values fill the rest::

    UserError("cannot create the runs folder '{root}'; choose another with {out}", settings=("out",), root=root)

Only declared names are filled, in one pass: any other brace, and any brace inside a value,
prints as it is. ``{name!r}`` fills in the value's repr. Where the setting is chosen at run time
(a row of the settings table), ``about="tv"`` names it and the template says ``{setting}``.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(!r)?\}")

#: How the library spells a setting where that differs from the setting's name itself.
PYTHON_NAMES = {"layers_command": "introspect.describe_layers(model, input_shape)"}


def fields(template: str) -> list[str]:
    """The names a template's ``{name}`` fields refer to, in order (for checks of the templates)."""
    return [m[1] for m in _FIELD.finditer(template)]


class Message(str):
    """Text whose settings read as Python names; :meth:`render` spells them otherwise (as flags)."""

    template: str
    settings: tuple[str, ...]
    values: dict[str, object]

    def __new__(cls, template: str, *, settings: Iterable[str] = (), about: str | None = None,
                **values: object) -> "Message":
        settings = tuple(settings) + ((about,) if about else ())
        both = set(settings) & set(values)
        if both:
            raise TypeError(f"{sorted(both)} named both as a setting and as a value")
        if about:
            template = template.replace("{setting}", "{" + about + "}")
        message = super().__new__(cls, _fill(template, settings, values, PYTHON_NAMES))
        message.template, message.settings, message.values = template, settings, values
        return message

    def render(self, names: Mapping[str, str]) -> str:
        """The text with each setting spelled as ``names`` says (as its Python name where not named)."""
        return _fill(self.template, self.settings, self.values, {**PYTHON_NAMES, **names})

    def __reduce__(self):
        return _message, (self.template, self.settings, self.values)


def _message(template: str, settings: tuple[str, ...], values: dict[str, object]) -> Message:
    return Message(template, settings=settings, **values)


def _fill(template: str, settings: tuple[str, ...], values: Mapping[str, object], names: Mapping[str, str]) -> str:
    def field(match: re.Match) -> str:
        name, as_repr = match[1], match[2]
        if name in values:
            return repr(values[name]) if as_repr else str(values[name])
        if name in settings:
            return names.get(name, name)
        return match[0]

    return _FIELD.sub(field, template)


class UserError(ValueError):
    """Bad input from the user: the message says what is wrong and how to fix it (CLI: exit 2).

    ``UserError("{size} must be at least 8, got {value}", settings=("size",), value=value)``."""

    def __init__(self, template: str | Message, *, settings: Iterable[str] = (), about: str | None = None,
                 **values: object) -> None:
        self.message = (template if isinstance(template, Message)
                        else Message(template, settings=settings, about=about, **values))
        super().__init__(str(self.message))

    @property
    def settings(self) -> tuple[str, ...]:
        """The settings the message concerns, in order."""
        return self.message.settings

    def __reduce__(self):
        return UserError, (self.message,)
