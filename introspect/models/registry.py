"""What introspect knows by name: architectures it can rebuild from a spec, the built-in models,
and LoadedModel, a model together with its spec and provenance."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from torch import nn

from ..errors import UserError
from .mnist_net import LeNet, Net
from .spec import ModelSpec


@dataclass(frozen=True)
class Architecture:
    """How to build a network from its spec, which layer holds its logits, and the
    activation functions its forward applies to layer outputs (invisible to hooks)."""

    build: Callable[[ModelSpec], nn.Module]
    logits_layer: str
    activations: dict[str, str] = field(default_factory=dict)


#: Architecture name (stored in every spec) -> how to build it.
ARCHITECTURES: dict[str, Architecture] = {
    "mnist-net": Architecture(lambda spec: Net(num_classes=spec.num_classes), "fc2",
                              {"conv1": "relu", "conv2": "relu", "fc1": "relu"}),
    "lenet": Architecture(lambda spec: LeNet(num_classes=spec.num_classes), "fc3",
                          {"conv1": "relu", "conv2": "relu", "fc1": "relu", "fc2": "relu"}),
}

#: Built-in model name -> checkpoint file shipped in introspect/models/weights/.
BUILTIN_MODELS: dict[str, str] = {
    "mnist": "mnist.pt",
    "fashion-mnist": "fashion-mnist.pt",
}


@dataclass
class LoadedModel:
    """A model ready to use, its spec, and where it came from (for run records)."""

    model: nn.Module
    spec: ModelSpec
    source: str
    sha256: str | None
    random_weights: bool = False  # no trained weights were loaded: every report says so
    weights_from_code: bool = False  # no checkpoint, but the constructor sets the same weights under any seed
    scripted: bool = False  # a TorchScript archive: no forward hooks on its submodules
    notes: list[str] = field(default_factory=list)


def builtin_checkpoint_path(name: str) -> Path:
    if name not in BUILTIN_MODELS:
        raise UserError("unknown model '{name}'; built-in models: {builtin}", name=name,
                        builtin=", ".join(BUILTIN_MODELS))
    return Path(str(resources.files("introspect.models") / "weights" / BUILTIN_MODELS[name]))
