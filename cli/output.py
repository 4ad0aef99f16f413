"""What the CLI shows: consoles, progress (bars on a terminal, lines elsewhere), library text spelled with flags."""
from __future__ import annotations

import argparse
import time
import contextlib
from dataclasses import dataclass, field

import torch

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from introspect.channel_runs import RunListener
from introspect.channels import ChannelsPlan
from introspect import devices
from introspect.errors import Message
from introspect.folders import RunFolder

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
    """Progress as plain lines on stderr ("classes: step 3/128"), where stderr is not a terminal (notebooks,
    CI, nohup, logs): by default a line every ``PERIOD_S`` seconds or every 10% of a task, and at its end;
    with --progress one line per step or batch, which scripts can wait for."""

    PERIOD_S = 10.0

    def __init__(self, console: Console, every_step: bool = False) -> None:
        self.console = console
        self.every_step = every_step
        self.tasks: dict[int, dict] = {}

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def add_task(self, description: str, total: int | None = None, unit: str = "", **_fields) -> int:
        self.tasks[len(self.tasks)] = {"description": description, "total": total, "completed": 0, "unit": unit,
                                       "shown": 0, "at": time.monotonic(), "first": None}
        return len(self.tasks) - 1

    def start_task(self, task: int) -> None:
        """Rich's counterpart; a line's time estimate starts at its task's first update anyway."""

    def update(self, task: int, completed: int | None = None, total: int | None = None, **_fields) -> None:
        state = self.tasks[task]
        if total is not None:
            state["total"] = total
        if completed is None or completed == state["completed"]:
            return
        state["completed"] = completed
        now, total = time.monotonic(), state["total"]
        if state["first"] is None:  # the rate counts from here: not the wait before, not the first step's warm-up
            state["first"] = (now, completed)
        tenth = total and completed * 10 // total > state["shown"] * 10 // total
        if not (self.every_step or tenth or completed == total or now - state["at"] >= self.PERIOD_S):
            return
        state["shown"], state["at"] = completed, now
        unit = f"{state['unit']} " if state["unit"] else ""
        eta = ""
        since, before = state["first"]
        if not self.every_step and total and before < completed < total:
            left = (now - since) / (completed - before) * (total - completed)
            eta = f", about {duration(left)} left"
        self.console.print(f"{state['description']}: {unit}{completed}/{total or '?'}{eta}", markup=False,
                           highlight=False)
        self.console.file.flush()


def progress(console: Console, args: argparse.Namespace) -> Progress | LineProgress:
    """Progress on stderr, never with --quiet: bars on a terminal; elsewhere lines (every 10 s or 10%, or every
    step with --progress)."""
    if not args.quiet and not console.is_terminal:
        return LineProgress(console, every_step=args.progress)
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}", markup=False), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False, disable=args.quiet,
    )


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def written(run: RunFolder) -> str:
    """'wrote runs/x: report.png, images.npz, ...' for the summary line."""
    return f"wrote {run.path}: " + ", ".join(sorted(run.files))


def duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def estimate_line(row: dict) -> str:
    """A dry run's estimate for one layer (a row of ``estimate_channels``), saying when its step time was
    extrapolated from small batches rather than timed on the chunk itself."""
    *some, last = map(str, row["timed_images"])
    sizes = f"{', '.join(some)} and {last}" if some else last
    timed = f" (extrapolated from steps of {sizes} images)" if row["extrapolated"] else ""
    return (f"estimate: {row['layer']}: {row['seconds_per_step']:.3g} s per step of {row['chunk_images']} image(s)"
            f"{timed} -> {duration(row['seconds'])}; about {row['memory_bytes'] / 2**20:,.0f} MiB per chunk")


class RunProgress(RunListener):
    """The run's events as bars (a terminal) or lines (--progress), its notes as `note:` lines; signals stop it
    after the current step while it optimizes and wait while it writes."""

    def __init__(self, io: Output, steps: int | None) -> None:
        self.io, self.steps = io, steps
        self.stack = contextlib.ExitStack()
        self.bar = None
        self.tasks: dict[str, int] = {}
        self.overall = None
        self.position: dict[int, int] = {}
        self.offsets: dict[int, int] = {}

    def __enter__(self) -> "RunProgress":
        self.stack.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stack.__exit__(*exc_info)

    def plan(self, plan: ChannelsPlan) -> None:
        self.steps = plan.steps
        for layer in plan.layers:
            self.io.err.print(f"plan: {layer.layer}: {plural(layer.images, 'image')} × {plan.steps} steps = "
                              f"{layer.images * plan.steps:,} image-steps, {layer.chunks} chunk(s) of up to "
                              f"{layer.chunk} on {plan.device}", markup=False)

    def examples(self, done: int, total: int) -> None:
        if "examples" not in self.tasks:
            self.bar = self.bar or self.stack.enter_context(self.io.progress())
            self.tasks["examples"] = self.bar.add_task("examples", total=total, info="", unit="image")
        self.bar.update(self.tasks["examples"], completed=done, total=total)
        self.io.interrupts.check()

    def started(self, items, steps: int) -> None:
        self.stack.enter_context(self.io.interrupts.stepping())
        self.bar = self.bar or self.stack.enter_context(self.io.progress())
        if not isinstance(self.bar, LineProgress) and len(items) > 1:
            self.overall = self.bar.add_task("all layers", total=steps * len(items), info="", unit="step")
        for position, item in enumerate(items):
            if item.layer not in self.tasks:
                count = sum(1 for i in items if i.layer == item.layer)
                self.tasks[item.layer] = self.bar.add_task(f"{item.layer}: optimizing", total=steps * count, info="",
                                                           unit="step", start=False)  # its clock: from its first step
            self.offsets[item.id] = steps * sum(1 for i in items[:position] if i.layer == item.layer)
            self.position[item.id] = position

    def step(self, item, step: int, values: torch.Tensor) -> None:
        if step == 1 and self.offsets[item.id] == 0:
            self.bar.start_task(self.tasks[item.layer])
        self.bar.update(self.tasks[item.layer], completed=self.offsets[item.id] + step,
                        **mean_info("mean activation", step, values, ".3g"))
        if self.overall is not None:
            self.bar.update(self.overall, completed=self.steps * self.position[item.id] + step)
        self.io.interrupts.check()

    def note(self, text: str) -> None:
        self.io.note(text)

    def writing(self):
        return self.io.interrupts.deferred()


#: On a GPU the progress line reads the images' mean value back every this many steps: each read waits for the
#: device (on the CPU it costs nothing, and is read every step).
READ_EVERY = 16


def mean_info(label: str, step: int, values: torch.Tensor, spec: str) -> dict[str, str]:
    """The progress line's "info" field: ``label`` and the mean of ``values``; {} (the last one stays) on the
    steps a GPU run does not read it."""
    if not devices.host_reads_free(values.device) and step % READ_EVERY:
        return {}
    return {"info": f"{label} {values.mean():{spec}}"}
