"""`introspect layers`: the hookable layers of a model, as a tree in execution order."""
from __future__ import annotations

import argparse

from rich.text import Text
from rich.table import Table

from introspect.engine import on_device
from introspect.layers import SCRIPTED_NOTE, describe_layers, reused_note
from introspect.outputs import describe_kind
from introspect.records import Provenance

from ..options import add_device, add_model_options, load_model_from_args, resolve_device
from ..output import Outcome, Output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("layers", help="list the hookable layers of a model with their output shapes",
                       description="List every hookable layer (dotted named_modules path) with its type, output shape and unit count.")
    add_model_options(p)
    add_device(p, "where the dry pass runs")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, io: Output) -> Outcome:
    device = resolve_device(args.device)
    loaded = load_model_from_args(args)
    for note in loaded.notes:
        io.note(note)
    with on_device(loaded.model, str(device)) as model:
        infos = describe_layers(model, loaded.spec.input_shape, device)
    table = Table(title=Text(f"{Provenance.of(loaded).label}: hookable layers (input {tuple(loaded.spec.input_shape)})"))
    header = ("layer", "type", "output shape", "channels/units", "a channel is", "measured at")
    for column in header:
        table.add_column(column, no_wrap=True)
    rows = []
    signal = not loaded.spec.is_image  # a 1-D input's maps are kept as one-row maps (C, 1, L): shown as (C, L)
    for info in infos:
        along = signal and info.output_shape is not None and len(info.output_shape) == 3 and info.output_shape[1] == 1
        shown = (info.output_shape[0], info.output_shape[2]) if along else info.output_shape
        shape = ("×".join(map(str, shown)) if shown
                 else "not hookable" if info.type.startswith("TorchScript")
                 else f"{info.returns}, not a tensor" if info.returns else "not called")
        units = "" if info.units is None else str(info.units)
        name = "  " * info.depth + info.name + (" (logits)" if info.name == loaded.spec.logits else "")
        channel = "a signal, mean along it" if along else info.channel
        rows.append((name, info.type, shape, units, channel, _measured_at(loaded.spec, info)))
        table.add_row(*map(Text, rows[-1]))  # layer names are the model's: [bold] prints as it is
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for column, width in zip(table.columns, widths):
        column.min_width = width  # never cut a layer name: it is what users copy
    # Whole columns however narrow the console (a pipe's is 80 wide): rich caps a print's width at the console's
    # and then collapses columns to nothing; a line wider than the terminal wraps, and nothing is lost.
    needed, width = sum(widths) + 3 * len(widths) + 1, io.out.width  # padding of 1 each side, borders
    io.out.width = max(width, needed)
    try:
        io.out.print(table)
    finally:
        io.out.width = width
    logits = loaded.spec.logits
    io.out.print("logits: " + ("unknown (name them with --logits-layer or --logits-output to visualize classes)"
                               if logits is None else "the model's output" if logits == "" else
                               f"item {logits[1:]} of the model's output" if logits.startswith(":") else logits)
                 + ("" if logits is None else f"; output: {describe_kind(loaded.spec.output_kind, loaded.spec.logits_position)}"),
                 markup=False)
    scripted = [i.name for i in infos if i.type.startswith("TorchScript")]
    if scripted:
        io.err.print(f"note: {', '.join(scripted)}: {SCRIPTED_NOTE}", markup=False)
    for note in reused_note({i.name: i.calls for i in infos}):
        io.err.print(f"warning: {note}", markup=False)
    inplace = [i.name for i in infos if i.inplace]
    if inplace:
        io.err.print(f"warning: in-place modules ({', '.join(inplace[:5])}{', ...' if len(inplace) > 5 else ''}) "
                     "overwrite their input; introspect copies hooked outputs so they stay intact", markup=False)
    return Outcome(summary={"model": loaded.spec.name, "input_shape": list(loaded.spec.input_shape),
                            "logits": loaded.spec.logits, "device": str(device),
                            "output_kind": loaded.spec.output_kind or ("logits" if loaded.spec.logits is not None else None),
                            "logits_position": loaded.spec.logits_position,
                            "layers": [{"name": i.name, "type": i.type, "output_shape": list(i.output_shape or []),
                                        "units": i.units, "calls": i.calls,
                                        "measured_at": _measured_at(loaded.spec, i) or None} for i in infos]})


def _measured_at(spec, info) -> str:
    """Where a layer's channels are measured, as `introspect channels` measures them: "conv1 → bn1 → relu",
    "layer1.0 → relu", "fc (raw output)"; "" for a module with no tensor output (nothing to measure)."""
    return spec.measured_at(info.name) if info.output_shape else ""
