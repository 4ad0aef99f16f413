"""Short reference runs of the built-in model, compared across machines with tolerances.

Float results differ between CPUs and library builds (vector width, thread count, kernel choice), so
the suite never pins their bytes across machines. It keeps the outputs of three short runs (16 steps of
classes, 8 of channels, whose saturating images amplify rounding sooner: few enough that rounding
differences cannot grow into different pictures) in
``tests/assets/reference.npz`` and checks a fresh run against them:

- uint8 images within ``LEVELS`` grey levels for at least ``PIXEL_SHARE`` of the pixels;
- objective values and activations within ``RTOL`` relative (of the array's largest magnitude).

Byte identity is checked where it holds: the same run twice on one machine.

Regenerate the file after a deliberate change of the pictures (and say so in the commit)::

    python tests/reference.py

Print how far runs under simulated other CPUs land from the references (the margins of the tolerances)::

    python tests/reference.py --margins
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "assets" / "reference.npz"
SEVEN = HERE.parent / "examples" / "seven.png"
LEVELS = 2
PIXEL_SHARE = 0.99
RTOL = 1e-3

#: name -> (command line, file in the run folder, arrays compared as images, arrays compared as values)
RUNS = {
    "classes": (["classes", "--steps", "16", "--seed", "0"], "images.npz", ("images",), ("scores", "probabilities")),
    "channels": (["channels", "--layer", "conv1,conv2", "--steps", "8", "--seed", "0", "--dataset", "none"],
                 "images.npz", ("images",), ("scores",)),
    "activations": (["activations", "--image", str(SEVEN)], "activations.npz", (),
                    ("conv1", "conv2", "fc1", "fc2", "probabilities", "saliency")),
}


def run(name: str, folder: Path, env: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Run reference ``name`` with the CLI into ``folder`` (in a fresh process when ``env`` is given: the
    CPU kernel choice and thread count are fixed at torch's start) and return its arrays."""
    argv, filename, _, _ = RUNS[name]
    argv = [*argv, "--out", str(folder), "--quiet"]
    if env is None:
        from introspect_cli.main import main

        assert main(argv) == 0
    else:
        subprocess.run([sys.executable, "-m", "introspect_cli.main", *argv], env={**os.environ, **env}, check=True,
                       stdout=subprocess.DEVNULL)
    with np.load(folder / filename) as arrays:
        return {key: arrays[key] for key in arrays.files}


def differences(name: str, arrays: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> list[str]:
    """What lies outside the tolerances, one line per array (empty: within them)."""
    _, _, images, values = RUNS[name]
    problems = []
    for key in images:
        want, got = reference[f"{name}/{key}"], arrays[key]
        if want.shape != got.shape:
            problems.append(f"{name}/{key}: shape {got.shape}, reference {want.shape}")
            continue
        off = np.abs(want.astype(np.int16) - got.astype(np.int16))
        share = float((off <= LEVELS).mean())
        if share < PIXEL_SHARE:
            problems.append(f"{name}/{key}: {share:.2%} of pixels within {LEVELS} levels (at most {off.max()} off); "
                            f"the bar is {PIXEL_SHARE:.0%}")
    for key in values:
        want, got = reference[f"{name}/{key}"].astype(np.float64), arrays[key].astype(np.float64)
        if want.shape != got.shape:
            problems.append(f"{name}/{key}: shape {got.shape}, reference {want.shape}")
            continue
        scale = max(float(np.abs(want).max()), 1e-12)
        worst = float(np.abs(want - got).max()) / scale
        if not np.isfinite(got).all() or worst > RTOL:
            problems.append(f"{name}/{key}: off by {worst:.2e} of its largest magnitude; the bar is {RTOL:g}")
    return problems


def load_reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as arrays:
        return {key: arrays[key] for key in arrays.files}


def write_reference(folder: Path) -> None:
    """Run every reference run and store the arrays the comparisons use."""
    kept = {}
    for name, (_, _, images, values) in RUNS.items():
        arrays = run(name, folder / name, env={})
        kept.update({f"{name}/{key}": arrays[key] for key in (*images, *values)})
    np.savez_compressed(REFERENCE, **kept)


#: other CPUs simulated: other vector kernels in ATen and oneDNN (its convolutions), another thread count
OTHER_CPUS = {
    "scalar kernels, 1 thread": {"ATEN_CPU_CAPABILITY": "default", "DNNL_MAX_CPU_ISA": "SSE41", "OMP_NUM_THREADS": "1"},
    "avx2 kernels, 2 threads": {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "2"},
}


def margins(folder: Path) -> None:
    """Per simulated CPU and run: the share of pixels within LEVELS levels (and the worst pixel), and the
    largest relative value difference."""
    reference = load_reference()
    for cpu, env in OTHER_CPUS.items():
        for name, (_, _, images, values) in RUNS.items():
            arrays = run(name, folder / cpu.replace(" ", "_") / name, env=env)
            parts = []
            for key in images:
                off = np.abs(reference[f"{name}/{key}"].astype(np.int16) - arrays[key].astype(np.int16))
                parts.append(f"{key} {float((off <= LEVELS).mean()):.2%} within {LEVELS} levels (worst {off.max()})")
            for key in values:
                want = reference[f"{name}/{key}"].astype(np.float64)
                worst = float(np.abs(want - arrays[key]).max()) / max(float(np.abs(want).max()), 1e-12)
                parts.append(f"{key} {worst:.1e}")
            print(f"{cpu}: {name}: " + "; ".join(parts), flush=True)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        if sys.argv[1:] == ["--margins"]:
            margins(Path(scratch))
        else:
            write_reference(Path(scratch))
            print(f"wrote {REFERENCE}")
