"""Hookable layers: list them by dotted named_modules() path, resolve names, measure output shapes."""
from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch import nn

from .errors import UserError


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every submodule by its dotted path (the root module excluded)."""
    return {name: module for name, module in model.named_modules() if name}


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The module at dotted path ``name`` ("" is the model itself), or a UserError naming the closest matches."""
    if name == "":
        return model
    layers = named_layers(model)
    if name in layers:
        return layers[name]
    close = difflib.get_close_matches(name, list(layers), n=3, cutoff=0.5)
    hint = f"closest: {', '.join(close)}; " if close else ""
    raise UserError(f"unknown layer '{name}' ({hint}see {{layers_command}} for them all)")


class StopForward(Exception):
    """Raised inside a hook to end a forward pass early, once the wanted outputs are recorded."""


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    output_shape: tuple[int, ...] | None  # without the batch dimension; None if never called
    units: int | None  # channels of a conv map, features of a vector
    calls: int  # how often the module ran in one forward pass (>1: a reused module)
    inplace: bool = False  # an in-place module (e.g. ReLU(inplace=True)) overwrites its input

    @property
    def depth(self) -> int:
        return self.name.count(".")


@torch.no_grad()
def describe_layers(model: nn.Module, input_shape: tuple[int, ...], device: torch.device | str = "cpu",
                    stop_after: str | None = None) -> list[LayerInfo]:
    """One dry forward pass on zeros records each layer's output shape and call count.

    With ``stop_after`` the pass ends once that layer has run: only the layers
    before it are described (in execution order), and nothing after it is computed.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}
    handles = []

    started: dict[str, None] = {}  # modules in the order their forward began (parents before children)

    def starter(name: str):
        def pre_hook(_module, _inputs):
            started.setdefault(name)
        return pre_hook

    def recorder(name: str):
        def hook(_module, _inputs, output):
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor):
                shapes[name] = tuple(output.shape[1:])
            if name == stop_after:
                raise StopForward
        return hook

    layers = named_layers(model)
    was_training = model.training
    try:
        for name, module in layers.items():
            handles.append(module.register_forward_hook(recorder(name)))
            handles.append(module.register_forward_pre_hook(starter(name)))
        model.eval()
        try:
            model(torch.zeros((1, *input_shape), device=device))
        except StopForward:
            pass
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    infos = []
    # Execution order, then (for a full pass) the modules that never ran.
    ran = [n for n in started if n in shapes]
    order = ran if stop_after is not None else ran + [n for n in layers if n not in ran]
    for name in order:
        module = layers[name]
        shape = shapes.get(name)
        units = shape[0] if shape else None
        infos.append(LayerInfo(name, type(module).__name__, shape, units, calls.get(name, 0),
                               bool(getattr(module, "inplace", False))))
    return infos
