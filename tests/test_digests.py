"""The images the CLI writes, pinned by sha256 (first before the engine was rebuilt from parts, issue #9;
re-pinned when issue #11 deliberately changed the defaults: the data prior, the confidence objective, and
again when issue #13 gave class images the data basis and the ink term):
refactoring must not change a single byte. The digests hold for this project's CPU machines (2 threads);
a different CPU's floating-point kernels may legitimately differ."""
import hashlib
from pathlib import Path

import numpy as np

from introspect_cli.main import main

SEVEN = Path(__file__).resolve().parent.parent / "examples" / "seven.png"


def _digest(path: Path, keys: list[str] | None = None) -> str:
    digest = hashlib.sha256()
    with np.load(path) as arrays:
        for key in keys or sorted(arrays.keys()):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


def _images(path: Path) -> str:
    with np.load(path) as arrays:
        return hashlib.sha256(np.ascontiguousarray(arrays["images"]).tobytes()).hexdigest()


def test_classes_seed_0_images_unchanged(tmp_path):
    assert main(["classes", "--seed", "0", "--out", "run", "--quiet"]) == 0
    assert _images(tmp_path / "run" / "images.npz") == "43365f18757867fa50723c1755e2b46f01782d0395f066c4a351999d90007638"


def test_channels_conv1_conv2_seed_0_images_unchanged(tmp_path):
    assert main(["channels", "--layer", "conv1,conv2", "--seed", "0", "--out", "run", "--quiet"]) == 0
    assert _images(tmp_path / "run" / "images.npz") == "b8e7ed2044a787d7762f69b3f8f86d00e551ea0072c8827b2da48430b6fc7d75"


def test_activations_of_the_seven_unchanged(tmp_path):
    assert main(["activations", "--image", str(SEVEN), "--out", "run", "--quiet"]) == 0
    assert _digest(tmp_path / "run" / "activations.npz") == "495854195521d549dcbba056caf0623d8069a3a3db37957499979d9177943bfe"
