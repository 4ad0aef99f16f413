"""Forward hooks on exactly the layers a computation needs, always removed; a frozen model meanwhile.

``HookRegistry`` (defined in ``capture``, which needs no model spec) records named layers' outputs;
``Probe`` adds what every look inside a model needs (eval mode, no weight gradients, the model's
normalization) and ``record`` does one such look.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn

from . import devices
from .capture import HookRegistry, is_output  # noqa: F401 - hooks' public names
from .layers import frozen
from .models.spec import ModelSpec
from .transforms import Normalize


class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose backward, for an image whose gradient through this ReLU is all zero (every unit
    it reaches is closed), lets through the gradient that would open closed units (lucid's
    "redirected ReLU"): an image that starts or falls where the model is dead can still move.
    Its output is a tensor of its own (not the module's, passed on): later modules may change it in place."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        normal = grad * (x > 0)
        dead = normal.flatten(1).abs().amax(1) == 0
        if devices.host_reads_free(grad.device) and not bool(dead.any()):  # else no read: the where below is exact
            return normal
        redirected = grad * ((x > 0) | (grad < 0))  # grad of the loss < 0: raising x helps
        return torch.where(dead.view(-1, *[1] * (grad.ndim - 1)), redirected, normal)


def _redirect(_module, inputs, _output):
    return _RedirectedReLU.apply(inputs[0])


@contextlib.contextmanager
def redirected_relus(model: nn.Module) -> Iterator[int]:
    """Every nn.ReLU module of ``model`` computes ``_RedirectedReLU`` for the duration (in-place ReLUs
    run out of place meanwhile); hooks removed and ``inplace`` flags restored afterwards. Functional
    relu calls in a forward cannot be reached. Yields how many modules were redirected."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    handles = []
    with out_of_place(relus):
        try:
            for m in relus:
                handles.append(m.register_forward_hook(_redirect))
            yield len(relus)
        finally:
            for handle in handles:
                handle.remove()


@contextlib.contextmanager
def out_of_place(modules: Iterable[nn.Module]) -> Iterator[None]:
    """``modules`` (each with an ``inplace`` flag) run out of place for the duration, the flags restored afterwards."""
    flags = [(m, m.inplace) for m in modules]
    try:
        for m, _ in flags:
            m.inplace = False
        yield
    finally:
        for m, flag in flags:
            m.inplace = flag


def inplace_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` with an ``inplace`` flag (ReLU, SiLU, Hardswish, LeakyReLU, ELU, dropouts...)."""
    return [m for m in model.modules()
            if isinstance(getattr(m, "inplace", None), bool) and not isinstance(m, torch.jit.ScriptModule)]


class Probe:
    """A frozen model with hooks on ``layers``: call it with pixel-space images (N, C, H, W) in [0, 1]
    to get {layer: output}. Each layer is recorded at its measuring point: the output of ``spec.tap(layer)``
    (a BatchNorm that follows it, say), to which ``spec.activation(layer)`` applies. Gradients flow to the
    images unless the caller disables them; ``clone``: see HookRegistry (without it, in-place modules run out of
    place meanwhile)."""

    def __init__(self, model: nn.Module, spec: ModelSpec, layers: Sequence[str], device: torch.device | str = "cpu",
                 early_exit: bool = True, clone: bool = True, reduce=None) -> None:
        self.model, self.layers, self.early_exit, self.clone = model, list(layers), early_exit, clone
        self.reduce = reduce  # HookRegistry's: a summary of each layer's output recorded instead of it (by tap name)
        self.taps = {layer: spec.tap(layer) for layer in self.layers}
        self.normalize = Normalize.of(spec, device)
        self.device = torch.device(device)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "Probe":
        self._stack.enter_context(frozen(self.model))
        if not self.clone:  # the recorded tensors are those the forward goes on with: nothing may change them
            # (an in-place SiLU after a recorded BatchNorm made it silu(x), and silu was applied again)
            self._stack.enter_context(out_of_place(inplace_modules(self.model)))
        self.hooks = self._stack.enter_context(HookRegistry(self.model, list(self.taps.values()), self.early_exit,
                                                                  self.clone, self.reduce))
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()

    def __call__(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.hooks.run(self.normalize(pixels.to(self.device)))
        return {layer: outputs[tap] for layer, tap in self.taps.items()}


@torch.no_grad()
def record(model: nn.Module, spec: ModelSpec, images: torch.Tensor, layers: Sequence[str],
           device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """``layers``' outputs for pixel-space ``images`` in one no-grad forward pass that stops after the last of them."""
    with Probe(model, spec, layers, device) as probe:
        return probe(images)
