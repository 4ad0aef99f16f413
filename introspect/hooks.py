"""Forward hooks on exactly the layers a computation needs, always removed; a frozen model meanwhile.

``HookRegistry`` records named layers' outputs; ``Probe`` adds what every look inside a
model needs (eval mode, no weight gradients, the model's normalization) and ``record`` does
one such look.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn

from .layers import StopForward, resolve_layer
from .models.spec import ModelSpec
from .outputs import pick
from .transforms import Normalize


def is_output(name: str) -> bool:
    """"" (the model's output) and ":KEY" (a part of it) name no layer: no hook, the forward's result."""
    return name == "" or name.startswith(":")


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no weight gradients for the duration; the caller's flags restored afterwards."""
    modes = {m: m.training for m in model.modules()}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes.items():
            m.training = mode


class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose backward, for an image whose gradient through this ReLU is all zero (every unit
    it reaches is closed), lets through the gradient that would open closed units (lucid's
    "redirected ReLU"): an image that starts or falls where the model is dead can still move."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        normal = grad * (x > 0)
        dead = normal.flatten(1).abs().amax(1) == 0
        if not bool(dead.any()):
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
    flags = [(m, m.inplace) for m in relus]
    handles = []
    try:
        for m in relus:
            m.inplace = False
            handles.append(m.register_forward_hook(_redirect))
        yield len(relus)
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in flags:
            m.inplace = flag


class HookRegistry:
    """Context manager recording the latest output of named layers.

    Only the named layers get hooks, and every handle is removed on exit,
    normal or not. With ``early_exit`` the forward pass stops as soon as all
    named layers have produced their output, so nothing after the deepest
    hooked layer is computed. Outputs that later modules could still overwrite
    in place (an in-place ReLU) are cloned. The name "" stands for the model's
    own output, taken from the forward call's return value without a hook, so
    it also works for TorchScript models; ":KEY" is one part of a structured
    output (an index of a tuple, a key of a dict, an attribute; see ``outputs.pick``).
    ``clone=False`` records the very tensors the forward goes on with, so that gradients with
    respect to them can be taken (a later in-place module then changes what was recorded).
    """

    def __init__(self, model: nn.Module, layers: Iterable[str], early_exit: bool = True, clone: bool = True) -> None:
        self.model = model
        self.names = tuple(dict.fromkeys(layers))
        self.early_exit = early_exit
        self.clone = clone
        self.hooked = tuple(name for name in self.names if not is_output(name))
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> "HookRegistry":
        modules = {name: resolve_layer(self.model, name) for name in self.hooked}
        try:
            for name, module in modules.items():
                self._handles.append(module.register_forward_hook(self._recorder(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _recorder(self, name: str):
        def hook(_module, _inputs, output):
            last = self.early_exit and len(self.hooked) == len(self.names) and len(self.outputs | {name: None}) == len(self.names)
            # Nothing runs after the last wanted layer, so only earlier outputs need a copy
            # to survive in-place operations further on.
            keep = output.clone() if self.clone and isinstance(output, torch.Tensor) and not last else output
            self.outputs[name] = keep
            if last:
                raise StopForward
        return hook

    def run(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward ``inputs`` and return {layer name: output} for the hooked layers."""
        self.outputs = {}
        try:
            result = self.model(inputs)
            for name in self.names:
                if is_output(name):
                    self.outputs[name] = pick(result, name[1:])
        except StopForward:
            pass
        missing = [name for name in self.names if name not in self.outputs]
        if missing:
            raise RuntimeError(f"layer(s) {', '.join(missing)} did not run in the model's forward pass")
        return self.outputs


class Probe:
    """A frozen model with hooks on ``layers``: call it with pixel-space images (N, C, H, W) in [0, 1]
    to get {layer: output}. Gradients flow to the images unless the caller disables them; ``clone``: see
    HookRegistry."""

    def __init__(self, model: nn.Module, spec: ModelSpec, layers: Sequence[str], device: torch.device | str = "cpu",
                 early_exit: bool = True, clone: bool = True) -> None:
        self.model, self.layers, self.early_exit, self.clone = model, list(layers), early_exit, clone
        self.normalize = Normalize.of(spec, device)
        self.device = torch.device(device)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "Probe":
        self._stack.enter_context(frozen(self.model))
        self.hooks = self._stack.enter_context(HookRegistry(self.model, self.layers, self.early_exit, self.clone))
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()

    def __call__(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.hooks.run(self.normalize(pixels.to(self.device)))


@torch.no_grad()
def record(model: nn.Module, spec: ModelSpec, images: torch.Tensor, layers: Sequence[str],
           device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """``layers``' outputs for pixel-space ``images`` in one no-grad forward pass that stops after the last of them."""
    with Probe(model, spec, layers, device) as probe:
        return probe(images)
