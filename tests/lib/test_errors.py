"""UserError messages: settings named as data (checked in every call of the library's source), values
filled in safely, settings spelled as Python names by str() and as flags by the CLI."""
from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

import introspect
from cli.options import FLAGS
from cli.output import say
from introspect.errors import Message, UserError, fields

LIBRARY = Path(introspect.__file__).parent


def message_calls() -> list[tuple[str, ast.Call]]:
    """Every ``UserError(...)`` and ``Message(...)`` call in the library (errors.py itself only forwards
    them), with where it is."""
    calls = []
    for path in sorted(set(LIBRARY.rglob("*.py")) - {LIBRARY / "errors.py"}):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("UserError", "Message"):
                calls.append((f"{path.relative_to(LIBRARY.parent)}:{node.lineno}", node))
    return calls


def declared(call: ast.Call) -> tuple[str | None, list[str], set[str]]:
    """A call's template (None unless a plain string), its settings (literal strings only) and its value names."""
    template = call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else None
    settings, values = [], set()
    for keyword in call.keywords:
        if keyword.arg == "settings":
            assert isinstance(keyword.value, ast.Tuple), "settings= is a tuple of strings written out"
            settings = [element.value for element in keyword.value.elts if isinstance(element, ast.Constant)]
            assert len(settings) == len(keyword.value.elts), "settings= is a tuple of strings written out"
        elif keyword.arg == "about":  # a setting chosen at run time: the template's {setting}
            values.add("setting")
        elif keyword.arg is not None:
            values.add(keyword.arg)
    return template, settings, values


def test_the_library_has_messages_to_check():
    assert len(message_calls()) > 50


@pytest.mark.parametrize("where,call", message_calls(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_message_is_a_template_whose_fields_are_declared(where, call):
    template, settings, values = declared(call)
    assert template is not None and isinstance(template, str), \
        f"{where}: the message is a plain string template (no f-string: values go in as keywords)"
    used = set(fields(template))
    assert used <= set(settings) | values, f"{where}: {sorted(used - set(settings) - values)} not declared"
    assert set(settings) | values <= used, f"{where}: {sorted(set(settings) | values - used)} not in the message"


def test_every_setting_a_message_names_is_a_flag_of_the_cli():
    named = {s: where for where, call in message_calls() for s in declared(call)[1]}
    assert named, "no settings found: the scan is broken"
    missing = {s: where for s, where in named.items() if s not in FLAGS}
    assert not missing, f"settings without a flag in cli.options.FLAGS: {missing}"


def test_settings_read_as_python_names_and_as_flags_in_the_cli():
    error = UserError("cannot create the runs folder '{root}'; choose another with {out}", settings=("out",), root="/x")
    assert str(error) == "cannot create the runs folder '/x'; choose another with out"
    assert error.settings == ("out",)
    assert say(error.message) == "cannot create the runs folder '/x'; choose another with --out"
    assert "introspect.describe_layers" in str(UserError("see {layers_command}", settings=("layers_command",)))


def test_a_setting_chosen_at_run_time_reads_as_its_flag():
    from introspect.engine import RenderConfig
    from introspect.settings import table

    error = UserError("{setting} must be at least 1, got {value}", about="steps", value=0)
    assert str(error) == "steps must be at least 1, got 0" and error.settings == ("steps",)
    assert say(error.message) == "--steps must be at least 1, got 0"
    assert {row.name for row in table(RenderConfig)} <= set(FLAGS)


def test_literal_braces_and_braces_in_values_print_as_they_are():
    error = UserError("{out} '{path}' holds {{x}} and {unknown} and a lone { brace", settings=("out",), path="/t/{out}{x}")
    assert str(error) == "out '/t/{out}{x}' holds {{x}} and {unknown} and a lone { brace"
    assert say(error.message) == "--out '/t/{out}{x}' holds {{x}} and {unknown} and a lone { brace"
    assert str(UserError("plain text {x} with {out}")) == "plain text {x} with {out}"  # nothing declared: nothing filled
    assert str(UserError("got {value!r}", value="a{b}")) == "got 'a{b}'"


def test_a_name_is_a_setting_or_a_value_not_both():
    with pytest.raises(TypeError, match="both"):
        Message("{out}", settings=("out",), out="x")


def test_errors_survive_pickling():
    error = pickle.loads(pickle.dumps(UserError("{size} is {value}", settings=("size",), value=3)))
    assert str(error) == "size is 3" and say(error.message) == "--size is 3" and error.settings == ("size",)
