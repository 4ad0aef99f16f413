"""Small helpers shared by the tests."""
import subprocess
import sys

from torch import nn


def hook_count(model: nn.Module) -> int:
    """Forward, forward-pre and backward hooks left on any module of ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


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


def zoo_model(name: str):
    """A model of the conformance zoo (tests/zoo/models.py + tests/assets/zoo), loaded as a user would:
    its file, its checkpoint and the metadata flags of its manifest entry."""
    import json
    from pathlib import Path

    from introspect import MetaOverrides, load_model

    here = Path(__file__).resolve().parent
    entry = json.loads((here / "assets" / "zoo" / "manifest.json").read_text())[name]
    logits = entry["logits"]
    meta = MetaOverrides(input_shape=tuple(entry["input_shape"]), mean=tuple(entry["mean"]), std=tuple(entry["std"]),
                         logits_layer=logits.get("layer"),
                         logits_output=None if logits.get("output") is None else str(logits["output"]))
    return load_model(f"{here / 'zoo' / 'models.py'}:{entry['class']}", here / "assets" / "zoo" / f"{name}.pt", meta=meta)
