"""Helpers that drive the command line (`introspect ...` in a subprocess), shared by tests/cli."""
import subprocess
import sys


def start_and_wait(argv: list[str], marker: str, **popen) -> tuple[subprocess.Popen, list[str]]:
    """Start `introspect ARGV` in a subprocess and read its stderr until a line starts with ``marker``
    (an event, never a sleep): the process is then known to have reached that point."""
    process = subprocess.Popen([sys.executable, "-m", "introspect_cli.main", *argv], stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True, **popen)
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith(marker):
            return process, lines
    process.wait()
    raise AssertionError(f"never printed {marker!r} (exit {process.returncode}):\n{''.join(lines)}")
