"""sha256 of the images the default classes, channels and activations runs write, to compare the same
machine before and after a change that must not change the pictures (float bytes differ across CPUs:
compare only digests printed on one machine).

    python benchmarks/digests.py            # prints one line per run
"""
import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np

from introspect_cli.main import main

SEVEN = Path(__file__).resolve().parent.parent / "examples" / "seven.png"
RUNS = {
    "classes": (["classes", "--seed", "0"], "images.npz"),
    "channels": (["channels", "--layer", "conv1,conv2", "--seed", "0"], "images.npz"),
    "activations": (["activations", "--image", str(SEVEN)], "activations.npz"),
}


def digest(path: Path) -> str:
    sha = hashlib.sha256()
    with np.load(path) as arrays:
        for key in sorted(arrays.files):
            sha.update(key.encode())
            sha.update(np.ascontiguousarray(arrays[key]).tobytes())
    return sha.hexdigest()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        for name, (argv, filename) in RUNS.items():
            folder = Path(scratch) / name
            if main([*argv, "--out", str(folder), "--quiet"]) != 0:
                sys.exit(f"{name} failed")
            print(f"{name}: {digest(folder / filename)}", flush=True)
