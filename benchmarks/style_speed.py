"""Speed of the channel styles (issue #26's bar: the data style within 1.5x the texture style): whole
`introspect channels` processes on the built-in MNIST net, default steps, its training set as the dataset for both
(so both make the examples pass), --style data and --style texture alternating.

    python benchmarks/style_speed.py [--layer conv2] [--repeats 3] [--model mnist]

One unmeasured run of each first fills the examples cache (as a user's second run finds it). Prints each run's CPU
time (the process's own user + system: steadier than wall time on a shared machine) and wall time, their medians,
and data / texture.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist")
    parser.add_argument("--layer", default="conv2")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    styles = ("data", "texture")
    times: dict[str, dict[str, list[float]]] = {"cpu": {s: [] for s in styles}, "wall": {s: [] for s in styles}}
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.repeats + 1):
            for style in styles:
                command = [sys.executable, "-m", "introspect_cli.main", "channels", "--model", args.model, "--layer",
                           args.layer, "--style", style, "--quiet", "--out", str(Path(scratch) / f"{style}-{i}")]
                cpu, wall = children_cpu(), time.perf_counter()
                subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
                cpu, wall = children_cpu() - cpu, time.perf_counter() - wall
                if i:  # the first round fills the examples cache
                    times["cpu"][style].append(cpu)
                    times["wall"][style].append(wall)
                    print(f"{style:<8} cpu {cpu:7.2f} s  wall {wall:7.2f} s", flush=True)
    for clock, table in times.items():
        medians = {s: statistics.median(t) for s, t in table.items()}
        print(f"{clock:<5} median: data {medians['data']:.2f} s, texture {medians['texture']:.2f} s; "
              f"data / texture {medians['data'] / medians['texture']:.2f}x (bar <= 1.5)")


if __name__ == "__main__":
    main()
