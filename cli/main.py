"""Entry point: `introspect <command>`. main(argv) returns the exit code.

Exit codes: 0 success, 1 runtime failure, 2 bad input, 130 interrupted (SIGINT), 143 terminated (SIGTERM).
Only the standard library is imported before the signal handlers are in place, so a
Ctrl-C during start-up is one line, not a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import traceback

from .interrupts import Interrupts
from .memory import keep_freed_memory

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


EXAMPLES = """examples (the default model is the built-in MNIST net; each run writes a new runs/<command>-NNN folder):
  introspect classes                                  the input each digit likes most -> runs/classes-001/report.png
  introspect channels --layer conv2 --channels 0-15   what conv2's channels respond to, with real top examples
  introspect activations --image my_digit.png         what each layer sees for one image, and a saliency map
  introspect layers --model torchvision:resnet18      hookable layers of any model
  introspect COMMAND --help                           every option, with its default
"""


class UsageError(Exception):
    """A command line that does not parse: the message is argparse's one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with no abbreviated options, whose usage errors are one line naming the command."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--ou` is not `--out`: recorded commands mean what they say
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:
        raise UsageError(f"{self.prog}: error: {message} (see `{self.prog} --help`)")


@contextlib.contextmanager
def _signals() -> Interrupts:
    """Interrupt handling for this call; signals can only be caught on the main thread."""
    interrupts = Interrupts()
    if threading.current_thread() is threading.main_thread():
        with interrupts:
            yield interrupts
    else:
        yield interrupts


def build_parser() -> argparse.ArgumentParser:
    import introspect

    from . import commands

    parser = OneLineParser(
        prog="introspect",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
        description="What did my network actually learn? Activation maximization and layer introspection for PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"introspect {introspect.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.register(sub)
    for command in sub.choices.values():
        g = command.add_argument_group("scripting")
        g.add_argument("--quiet", action="store_true", help="print nothing on stderr but errors (no notes, plans or progress)")
        g.add_argument("--json", action="store_true", help="print a machine-readable JSON summary on stdout")
        g.add_argument("--progress", action="store_true",
                       help="show progress even when stderr is not a terminal: one line per step or batch")
        g.add_argument("--debug", action="store_true", help="show full tracebacks of runtime failures")
    parser.set_defaults(command_parsers=sub.choices)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    keep_freed_memory()
    with _signals() as interrupts:
        try:
            return _run(argv, interrupts)
        except KeyboardInterrupt:
            print(f"introspect: interrupted ({interrupts.name})", file=sys.stderr)
            return interrupts.exit_code


def _run(argv: list[str], interrupts: Interrupts) -> int:
    parser = build_parser()
    while True:
        try:
            args = parser.parse_args(argv)
        except UsageError as exc:
            print(exc, file=sys.stderr)
            return EXIT_USAGE
        except SystemExit as exc:  # --help or --version
            return int(exc.code or 0)
        args.argv = argv
        outcome = _dispatch(args, interrupts)
        if outcome.rerun is None:
            break
        argv = outcome.rerun  # the repeated command prints its own summary
    if args.json:
        print(json.dumps({"command": args.command, "exit_code": outcome.code, **outcome.summary}, default=str))
    return outcome.code


def _dispatch(args: argparse.Namespace, interrupts: Interrupts):
    """Run the command's handler and turn failures into one line and an exit code. Anything the
    command (or a user's model) prints on stdout goes to stderr under --json, so stdout stays one
    JSON document."""
    from rich.console import Console

    from introspect.errors import UserError

    from .output import Outcome, Output, say

    errors = Console(stderr=True, soft_wrap=True)
    io = Output(out=Console(soft_wrap=True, quiet=args.json), err=Console(stderr=True, soft_wrap=True, quiet=args.quiet),
                interrupts=interrupts, args=args)
    redirect = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    try:
        with redirect:
            return args.run(args, io)
    except UserError as exc:
        message = say(exc.message)
        errors.print(f"introspect {args.command}: error: {message}", markup=False, highlight=False)
        return Outcome(EXIT_USAGE, {"error": message})
    except KeyboardInterrupt:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - one line unless --debug; SystemExit: a model's sys.exit
        if isinstance(exc, SystemExit) and isinstance(exc.__context__, BrokenPipeError):
            return Outcome(EXIT_FAILURE, {"error": "stdout closed"})  # `| head`: rich ended the printing; say nothing
        if args.debug:
            traceback.print_exc()
        elif isinstance(exc, SystemExit):
            errors.print(f"introspect {args.command}: failed: the model's code called sys.exit({exc.code!r}) "
                         "(rerun with --debug for the traceback)", markup=False, highlight=False)
        else:
            first = str(exc).splitlines()[0] if str(exc) else ""
            errors.print(f"introspect {args.command}: failed: {type(exc).__name__}: {first} "
                         "(rerun with --debug for the traceback)", markup=False, highlight=False)
        return Outcome(EXIT_FAILURE, {"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    sys.exit(main())
