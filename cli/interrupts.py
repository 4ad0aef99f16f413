"""SIGINT and SIGTERM: stop at a safe point, save what was done, never leave a half-written file.

Before a run has anything to save a signal stops it at once (KeyboardInterrupt).
While it optimizes, the first signal only sets a flag that the step callback
checks, so the current step finishes; a further signal stops at once. While
files are written, signals wait until the writing is done.
"""
from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupts:
    """Installed for the duration of one command (``with Interrupts() as interrupts``)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._mode = "raise"  # "raise", "step" (flag, checked per step) or "defer" (while writing)
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "Interrupts":
        for signum in EXIT_CODES:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _frame) -> None:
        first = self.received is None
        if first:
            self.received = signum
        if self._mode == "raise" or (self._mode == "step" and not first):
            raise KeyboardInterrupt

    @property
    def exit_code(self) -> int:
        """130 after SIGINT, 143 after SIGTERM."""
        return EXIT_CODES.get(self.received, 130)

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else "SIGINT"

    def check(self) -> None:
        """Called after each step or batch: stop here if a signal came."""
        if self.received is not None:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def stepping(self) -> Iterator[None]:
        """Work whose partial results can be saved: a signal stops it at the next :meth:`check`."""
        with self._in_mode("step"):
            yield

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Writing files: signals wait until the block is done."""
        with self._in_mode("defer"):
            yield

    @contextlib.contextmanager
    def _in_mode(self, mode: str) -> Iterator[None]:
        previous, self._mode = self._mode, mode
        try:
            yield
        finally:
            self._mode = previous
