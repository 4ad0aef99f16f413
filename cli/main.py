"""Entry point: `introspect <command>`. main(argv) returns the exit code.

Exit codes: 0 success, 1 runtime failure, 2 bad input, 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
import traceback

from rich.console import Console

import introspect
from introspect.errors import UserError

from . import commands

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line naming the command and pointing to --help (exit 2)."""

    def error(self, message: str) -> None:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="introspect",
        description="What did my network actually learn? Activation maximization and layer introspection for PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"introspect {introspect.__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks of runtime failures")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return int(exc.code or 0)
    args.argv = argv
    err = Console(stderr=True, soft_wrap=True)
    out = Console(soft_wrap=True)
    try:
        return args.run(args, out, err) or EXIT_OK
    except UserError as exc:
        err.print(f"introspect {args.command}: error: {exc}", markup=False, highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("introspect: interrupted", markup=False)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - one line unless --debug
        if args.debug:
            traceback.print_exc()
        else:
            first = str(exc).splitlines()[0] if str(exc) else ""
            err.print(f"introspect {args.command}: failed: {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
                      markup=False, highlight=False)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
