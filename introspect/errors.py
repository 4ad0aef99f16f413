"""Bad input, said so that both a notebook and the command line can act on it.

A message names the settings it concerns as ``{placeholders}`` (``{size}``, ``{data_dir}``):
``str()`` spells them as the library's argument names; the CLI spells them as its flags
(``--size``) through one table of its own.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")

#: How the library spells a setting where that differs from the placeholder itself.
PYTHON_NAMES = {"layers_command": "introspect.describe_layers(model, input_shape)"}


class Message(str):
    """Text whose ``{setting}`` placeholders read as Python names; :meth:`render` spells them otherwise."""

    template: str

    def __new__(cls, template: str) -> "Message":
        message = super().__new__(cls, render(template, PYTHON_NAMES))
        message.template = template
        return message

    @property
    def settings(self) -> tuple[str, ...]:
        """The settings the message concerns, in order."""
        return tuple(dict.fromkeys(_PLACEHOLDER.findall(self.template)))

    def render(self, names: Mapping[str, str]) -> str:
        return render(self.template, names)


def render(template: str, names: Mapping[str, str]) -> str:
    """Replace each ``{setting}`` by ``names[setting]`` (the setting itself when not named)."""
    return _PLACEHOLDER.sub(lambda m: names.get(m[1], PYTHON_NAMES.get(m[1], m[1])), template)


class UserError(ValueError):
    """Bad input from the user: the message says what is wrong and how to fix it (CLI: exit 2)."""

    def __init__(self, message: str) -> None:
        self.message = message if isinstance(message, Message) else Message(message)
        super().__init__(str(self.message))

    @property
    def settings(self) -> tuple[str, ...]:
        return self.message.settings
