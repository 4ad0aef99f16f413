"""What the CLI shows: consoles, progress (bars on a terminal, lines elsewhere), library text spelled with flags."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from introspect.errors import Message
from introspect.runs import RunFolder

from .interrupts import Interrupts
from .options import FLAGS


def say(text: str) -> str:
    """A library message or note as the CLI shows it: settings spelled as flags (plain text as it is)."""
    return text.render(FLAGS) if isinstance(text, Message) else text


@dataclass
class Output:
    """A command's consoles: ``out`` (results; silent under --json), ``err`` (notes; silent under --quiet)."""

    out: Console
    err: Console
    interrupts: Interrupts
    args: argparse.Namespace

    def note(self, text: str) -> None:
        self.err.print(f"note: {say(text)}", markup=False, highlight=False)

    def progress(self):
        return progress(self.err, self.args)


@dataclass
class Outcome:
    """What a command hands back to main: its exit code, its --json summary, or a command to run next."""

    code: int = 0
    summary: dict = field(default_factory=dict)
    rerun: list[str] | None = None


class LineProgress:
    """Progress as plain lines ("classes: step 3/128"), for --progress when stderr is not a terminal:
    one line per step or batch, which logs keep and scripts can wait for."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.tasks: dict[int, dict] = {}

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def add_task(self, description: str, total: int | None = None, unit: str = "", **_fields) -> int:
        self.tasks[len(self.tasks)] = {"description": description, "total": total, "completed": 0, "unit": unit}
        return len(self.tasks) - 1

    def update(self, task: int, completed: int | None = None, total: int | None = None, **_fields) -> None:
        state = self.tasks[task]
        if total is not None:
            state["total"] = total
        if completed is not None and completed != state["completed"]:
            state["completed"] = completed
            unit = f"{state['unit']} " if state["unit"] else ""
            self.console.print(f"{state['description']}: {unit}{completed}/{state['total'] or '?'}", markup=False,
                               highlight=False)
            self.console.file.flush()


def progress(console: Console, args: argparse.Namespace) -> Progress | LineProgress:
    """Progress on stderr: bars on a terminal; with --progress elsewhere, one line per step; never with --quiet."""
    if args.progress and not args.quiet and not console.is_terminal:
        return LineProgress(console)
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}", markup=False), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False, disable=args.quiet or not console.is_terminal,
    )


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def written(run: RunFolder) -> str:
    """'wrote runs/x: report.png, images.npz, ...' for the summary line."""
    return f"wrote {run.path}: " + ", ".join(sorted(run.files))
