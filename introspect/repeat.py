"""How to load a run's model again, from the arguments a run folder records ("load": the source,
checkpoint, torchvision weights, trust flag and metadata overrides), and which code that would run.

A run.json or manifest is a file people send each other: loading a model from one never imports a
Python file, a package class or a TorchScript archive, nor unpickles a checkpoint, unless the caller
says it trusts the folder.
"""
from __future__ import annotations

from .errors import UserError
from .models import MetaOverrides, load_model
from .models.registry import BUILTIN_MODELS, LoadedModel


def code_loaded_by(load: dict) -> list[str]:
    """What loading ``load`` would run: a model file imported, a package imported, a TorchScript archive
    loaded, a checkpoint unpickled (empty: only built-in or torchvision code and plain weights)."""
    source = str(load.get("source") or "mnist")
    code = []
    if ":" in source and source.rsplit(":", 1)[0].endswith(".py"):
        code.append(f"the model file {source.rsplit(':', 1)[0]} is imported")
    elif source not in BUILTIN_MODELS and not source.startswith("torchvision:"):
        code.append(f"the installed module {source.rsplit(':', 1)[0]} is imported" if ":" in source
                    else f"the TorchScript archive {source} is loaded")
    if load.get("trust_checkpoint"):
        code.append("the checkpoint is unpickled")
    return code


def load_recorded(load: object, *, trust: bool = False, where: str = "the run") -> LoadedModel:
    """The model ``load`` names (a run's recorded load arguments); UserError when it is malformed, or loads
    code and ``trust`` is not given."""
    if not isinstance(load, dict) or not isinstance(load.get("source", "mnist"), str):
        raise UserError("{where} records no load arguments for its model",
                        where=where)
    code = code_loaded_by(load)
    if code and not trust:
        raise UserError("{where} loads code ({value}), which runs with your permissions; continue only if you "
                        "trust those files: add {trust}",
                        settings=("trust",), where=where, value='; '.join(code))
    meta = load.get("meta") if isinstance(load.get("meta"), dict) else {}
    try:
        overrides = MetaOverrides(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta.items()})
    except TypeError as exc:
        raise UserError("{where} records metadata overrides that do not fit ({exc})",
                        where=where, exc=exc) from None
    return load_model(load.get("source") or "mnist", load.get("checkpoint"), weights=load.get("weights"),
                      trust_checkpoint=bool(load.get("trust_checkpoint")), meta=overrides)
