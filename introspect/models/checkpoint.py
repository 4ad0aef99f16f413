"""The checkpoint format and safe loading of weights.

A checkpoint is one file holding ``{"state_dict": ..., "spec": {...}}`` with plain
types only, so it loads with ``torch.load(weights_only=True)`` and carries its own
class names, normalization and dataset. Other files are read as state dicts.
"""
from __future__ import annotations

import hashlib
import pickle
import sys
import types
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from .registry import ARCHITECTURES, LoadedModel
from .spec import ModelSpec


def save_checkpoint(path: str | Path, model: nn.Module, spec: ModelSpec) -> None:
    """Write ``model``'s weights and ``spec`` in the introspect checkpoint format."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "spec": spec.to_dict()}, Path(path))


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes; of a folder, of every file below it (relative path and content), so a
    picture replaced in an image folder changes it."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\0".encode())
        return digest.hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path: str | Path, trust: bool = False, main: object = None) -> object:
    """torch.load with ``weights_only=True``: a file that needs full unpickling (which can run
    code) is refused unless ``trust`` is set. Missing, empty and corrupt files are UserErrors.
    ``main``: the user's model module, where classes pickled from ``__main__`` are found (a model saved whole
    by the training script that defined it)."""
    path = Path(path)
    if not path.is_file():
        raise UserError("checkpoint '{path}' does not exist (or is not a file)", path=path)
    if path.stat().st_size == 0:
        raise UserError("checkpoint '{path}' is empty", path=path)
    if is_torchscript(path):
        raise UserError("'{path}' is a TorchScript archive (a whole model), not a checkpoint: pass it as {model} FILE, "
                        "without {checkpoint}", settings=("model", "checkpoint"), path=path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _looks_like_pickle(path):
            raise UserError("checkpoint '{path}' is corrupt or truncated (not a PyTorch file)", path=path) from exc
        if not trust:
            raise UserError("checkpoint '{path}' cannot be loaded safely: it needs full unpickling, which can run code "
                            "({reason}); if you trust its source, add {trust_checkpoint}",
                            settings=("trust_checkpoint",), path=path, reason=_refusal(exc)) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0].split(". ")[0] if str(exc) else type(exc).__name__
        raise UserError("checkpoint '{path}' is corrupt or truncated ({reason})", path=path, reason=reason) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_pickle_with_main(main))
    except Exception as exc:  # noqa: BLE001 - arbitrary unpickling can fail in any way
        raise UserError("checkpoint '{path}' could not be unpickled: {kind}: {exc}",
                        path=path, kind=type(exc).__name__, exc=exc) from exc


def _pickle_with_main(main: object):
    """The pickle module, its Unpickler finding a name of ``__main__`` that this process's __main__ lacks in
    ``main`` (None: pickle itself)."""
    if main is None:
        return pickle

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if module == "__main__" and hasattr(main, name) and not hasattr(sys.modules["__main__"], name):
                return getattr(main, name)
            return super().find_class(module, name)

    return types.SimpleNamespace(**{**vars(pickle), "Unpickler": Unpickler})


def _refusal(exc: Exception) -> str:
    """What weights_only refused, in a few words: torch's message is a page of advice with terminal escapes
    ("Unsupported global: GLOBAL my_models.Net was not an allowed global ..." holds the object that needs code)."""
    import re

    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if found:
        return f"it holds {found.group(1)}, not only tensors"
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:120]


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive (torch.jit.save): a zip with compiled code, not only pickled tensors."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())


def _looks_like_pickle(path: Path) -> bool:
    """A torch.save zip archive or a raw pickle (protocol 2+ starts with 0x80)."""
    import zipfile

    with open(path, "rb") as handle:
        first = handle.read(1)
    return zipfile.is_zipfile(path) or first == b"\x80"


def unwrap_state_dict(payload: object, path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict inside common wrappers: {"state_dict"|"model"|"model_state_dict": ...},
    a pickled module, and DataParallel's "module." prefixes."""
    for _ in range(3):
        if isinstance(payload, nn.Module):
            payload = payload.state_dict()
        if isinstance(payload, dict):
            for key in ("state_dict", "model_state_dict", "model"):
                if key in payload and isinstance(payload[key], (dict, nn.Module)):
                    payload = payload[key]
                    break
            else:
                break
    if not isinstance(payload, dict) or not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise UserError("checkpoint '{path}' holds no state dict (a mapping of parameter names to tensors)", path=path)
    if all(k.startswith("module.") for k in payload):
        payload = {k[len("module."):]: v for k, v in payload.items()}
    return payload


def load_checkpoint(path: str | Path, payload: object | None = None) -> LoadedModel:
    """Load an introspect checkpoint safely (``weights_only=True``) and rebuild its model.

    ``payload``: the file's contents when the caller has already read them (no second read).
    """
    path = Path(path)
    if payload is None:
        payload = read_checkpoint(path)
    if not isinstance(payload, dict) or "state_dict" not in payload or "spec" not in payload:
        raise UserError("checkpoint '{path}' is not in introspect's format (a dict with 'state_dict' and 'spec'); write "
                        "one with `introspect train` or introspect.models.save_checkpoint", path=path)
    try:
        spec = ModelSpec.from_dict(payload["spec"])
    except (TypeError, ValueError, KeyError) as exc:
        raise UserError("checkpoint '{path}' has an invalid spec: {exc}", path=path, exc=exc) from exc
    if spec.architecture not in ARCHITECTURES:
        raise UserError("checkpoint '{path}' names architecture '{architecture}'; known: {known}",
                        path=path, architecture=spec.architecture, known=", ".join(ARCHITECTURES))
    architecture = ARCHITECTURES[spec.architecture]
    if spec.activations is None:
        spec = spec.replace(activations=dict(architecture.activations))
    model = architecture.build(spec)
    load_state(model, unwrap_state_dict(payload["state_dict"], path), path)
    model.eval()
    return LoadedModel(model=model, spec=spec, source=str(path), sha256=file_sha256(path))


def load_state(model: nn.Module, state: dict, path: str | Path) -> None:
    """Load ``state`` into ``model``; a missing, unexpected or mis-shaped key is a UserError naming it."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        detail = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        near = next((key for key in unexpected if missing and key.endswith("." + missing[0])), None)
        if near is not None:  # under a prefix that other keys do not share: a wrapper with more than the model
            detail += f" (the checkpoint has {near!r}: a wrapper's state dict, holding more than this model)"
        raise UserError("checkpoint '{path}' does not fit the model: {detail}", path=path, detail=detail)
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise UserError("checkpoint '{path}' does not fit the model: '{key}' has shape {shape}, the model expects "
                            "{expected}", path=path, key=key, shape=tuple(state[key].shape), expected=tuple(tensor.shape))
    model.load_state_dict(state)


def load_weights(model: nn.Module, path: str | Path, trust: bool = False, main: object = None) -> str:
    """Load the state dict in ``path`` (any common wrapper) into ``model``; returns the file's sha256. ``main``:
    see ``read_checkpoint``."""
    payload = read_checkpoint(path, trust, main)
    load_state(model, without_shared_prefix(unwrap_state_dict(payload, path), model), path)
    return file_sha256(path)


def without_shared_prefix(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``state`` without the first name all its keys share ("model." of a Lightning module that holds the model,
    "_orig_mod." of a torch.compile'd one) when that, and only that, gives exactly the model's keys."""
    expected = set(model.state_dict())
    if set(state) == expected or not all("." in key for key in state):
        return state
    if len({key.split(".", 1)[0] for key in state}) != 1:
        return state
    stripped = {key.split(".", 1)[1]: value for key, value in state.items()}
    return stripped if set(stripped) == expected else state
