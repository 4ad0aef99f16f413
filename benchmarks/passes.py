"""Dataset passes on the CPU: the batch size and the process's allocator, each way in a fresh process.

    python benchmarks/passes.py [--model fashion-mnist] [--repeats 1]

For each way (batches of 500 images, as before, or ``layers.pass_batch_size``'s; glibc as it starts, or as the CLI
sets it, ``introspect_cli.memory.keep_freed_memory``) a new process times the examples pass of `--layer all`, that
of the deepest layer alone, and `evaluate` on the test split, with the page faults and system time of each. The
allocator setting cannot be undone in a process, hence one process per way. Statistics are the same either way
(``tests/lib/test_channels.py``).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WAYS = {"500 a batch, glibc as it starts": (500, False), "500 a batch, the CLI's allocator": (500, True),
        "pass_batch_size, glibc as it starts": (None, False), "pass_batch_size, the CLI's allocator": (None, True)}


def child(model: str, batch: int | None, keep: bool) -> dict:
    """One way's timings in this process: {pass name: (wall s, system s, page faults)}."""
    sys.path.insert(0, str(ROOT))
    if keep:
        from introspect_cli.memory import keep_freed_memory

        keep_freed_memory()
    from introspect import load_model
    from introspect.channels import examples_pass
    from introspect.data import load_dataset
    from introspect.layers import pass_batch_size, select_layers
    from introspect.training import evaluate

    loaded = load_model(model)
    layers = select_layers(loaded.model, loaded.spec.input_shape, "all")
    train, test = load_dataset(loaded.spec.dataset, "train"), load_dataset(loaded.spec.dataset, "test")
    runs = {f"examples pass, --layer all ({len(layers)})": lambda: examples_pass(loaded.model, loaded.spec, layers, train,
                                                                                  batch_size=batch),
            f"examples pass, {layers[-1]} alone": lambda: examples_pass(loaded.model, loaded.spec, layers[-1:], train,
                                                                         batch_size=batch),
            "evaluate (test split)": lambda: evaluate(loaded.model, loaded.spec, test, batch_size=batch)}
    found = {"batch": batch or pass_batch_size(loaded.model, loaded.spec.input_shape, "cpu", layers), "runs": {}}
    for name, run in runs.items():
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        run()
        after = resource.getrusage(resource.RUSAGE_SELF)
        found["runs"][name] = (time.perf_counter() - start, after.ru_stime - before.ru_stime,
                               after.ru_minflt - before.ru_minflt)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fashion-mnist", help="a built-in model with a dataset (default: fashion-mnist)")
    parser.add_argument("--repeats", type=int, default=1, help="processes per way; medians kept (default 1)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        batch, keep = WAYS[args.child]
        print(json.dumps(child(args.model, batch, keep)))
        return
    results: dict[str, list[dict]] = {way: [] for way in WAYS}
    for _ in range(args.repeats):
        for way in WAYS:  # alternating, each in a fresh process
            done = subprocess.run([sys.executable, __file__, "--model", args.model, "--child", way], check=True,
                                  capture_output=True, text=True)
            results[way].append(json.loads(done.stdout.splitlines()[-1]))
    print(f"{args.model}, {args.repeats} process(es) per way, medians; wall s / system s / page faults")
    for way, found in results.items():
        print(f"{way} (batch {found[0]['batch']}):")
        for name in found[0]["runs"]:
            wall, system, faults = (statistics.median(f["runs"][name][i] for f in found) for i in range(3))
            print(f"  {name:<36} {wall:6.2f} s  {system:6.2f} s  {faults:>12,.0f}")


if __name__ == "__main__":
    main()
