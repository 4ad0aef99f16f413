"""The signal tests under load: run them ROUNDS times while busy processes keep every core at 100%.

    python benchmarks/signal_soak.py --rounds 20

The tests wait for events (a "step N/M" line on stderr, a marker the model prints), never for
time, so they must pass every round however slow the machine is.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/cli/test_signals.py", "tests/cli/test_interrupt_and_reproducibility.py::test_sigint_writes_partial_run"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="test rounds (default: 20)")
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 2,
                        help="busy processes running beside the tests (default: one per core)")
    args = parser.parse_args()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burners)]
    passed = 0
    try:
        for round_ in range(1, args.rounds + 1):
            started = time.time()
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                                    cwd=ROOT, capture_output=True, text=True)
            passed += result.returncode == 0
            last = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
            print(f"round {round_}: {'pass' if result.returncode == 0 else 'FAIL'} in {time.time() - started:.0f} s: {last}",
                  flush=True)
            if result.returncode:
                print(result.stdout[-3000:], flush=True)
    finally:
        for burner in burners:
            burner.kill()
    print(f"{passed}/{args.rounds} rounds passed with {args.burners} busy processes beside them")
    return 0 if passed == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
