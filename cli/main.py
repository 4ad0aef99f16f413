"""Entry point: `introspect <command>`. main(argv) returns the exit code.

Exit codes: 0 success, 1 runtime failure, 2 bad input, 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback

from rich.console import Console

import introspect
from introspect.errors import UserError

from . import commands

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


EXAMPLES = """examples (the default model is the built-in MNIST net; each run writes a new runs/<command>-NNN folder):
  introspect classes                                  the input each digit likes most -> runs/classes-001/report.png
  introspect channels --layer conv2 --channels 0-15   what conv2's channels respond to, with real top examples
  introspect activations --image my_digit.png         what each layer sees for one image, and a saliency map
  introspect layers --model torchvision:resnet18      hookable layers of any model
  introspect COMMAND --help                           every option, with its default
"""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line naming the command and pointing to --help (exit 2)."""

    def error(self, message: str) -> None:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
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
        g.add_argument("--progress", action="store_true", help="show progress bars even when stderr is not a terminal")
        g.add_argument("--debug", action="store_true", help="show full tracebacks of runtime failures")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return int(exc.code or 0)
    args.argv = argv
    args.summary = {}
    errors = Console(stderr=True, soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True, quiet=args.quiet)
    out = Console(soft_wrap=True, quiet=args.json)
    try:
        code = args.run(args, out, err) or EXIT_OK
    except UserError as exc:
        errors.print(f"introspect {args.command}: error: {exc}", markup=False, highlight=False)
        code = EXIT_USAGE
        args.summary = {"error": str(exc)}
    except KeyboardInterrupt:
        errors.print("introspect: interrupted", markup=False)
        code = EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - one line unless --debug
        if args.debug:
            traceback.print_exc()
        else:
            first = str(exc).splitlines()[0] if str(exc) else ""
            errors.print(f"introspect {args.command}: failed: {type(exc).__name__}: {first} "
                         "(rerun with --debug for the traceback)", markup=False, highlight=False)
        code = EXIT_FAILURE
        args.summary = {"error": f"{type(exc).__name__}: {exc}"}
    if args.json:
        print(json.dumps({"command": args.command, "exit_code": code, **args.summary}, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
