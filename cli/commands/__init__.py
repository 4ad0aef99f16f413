"""The subcommands, one module each: ``register`` adds its parser, ``run(args, io) -> Outcome`` does the work."""
from __future__ import annotations

import argparse

from . import activations, channels, classes, evaluate, explore, layers, rerun, train

COMMANDS = (layers, train, evaluate, rerun, classes, channels, activations, explore)


def register(sub: argparse._SubParsersAction) -> None:
    for command in COMMANDS:
        command.register(sub)
