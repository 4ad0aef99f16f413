"""Named layers' outputs recorded by forward hooks that are always removed. Below ``hooks`` (it needs
no model spec), so ``models`` can measure a model's logits without importing upward."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from .layers import (Layouts, StopForward, as_map, inherits_layout, is_scripted, named_layers, not_a_tensor,
                     not_from_input, not_per_image, resolve_layer)
from .outputs import describe, pick


def is_output(name: str) -> bool:
    """"" (the model's output) and ":KEY" (a part of it) name no layer: no hook, the forward's result."""
    return name == "" or name.startswith(":")


class HookRegistry:
    """Context manager recording the output of named layers (of a module run more than once per forward, its first
    call's, the one ``layers.describe_layers`` describes, whether the pass stops early or not).

    Only the named layers get hooks (and, where one's layout its kind does not decide, every module, to follow
    signals and channels-last maps: see ``layers.Layouts``), and every handle is removed on exit,
    normal or not. With ``early_exit`` the forward pass stops as soon as all
    named layers have produced their output, so nothing after the deepest
    hooked layer is computed. Outputs that later modules could still overwrite
    in place (an in-place ReLU) are cloned. The name "" stands for the model's
    own output, taken from the forward call's return value without a hook, so
    it also works for TorchScript models; ":KEY" is one part of a structured
    output (an index of a tuple, a key of a dict, an attribute; see ``outputs.pick``).
    ``clone=False`` records the very tensors the forward goes on with, so that gradients with
    respect to them can be taken (a later in-place module then changes what was recorded).
    ``reduce(name, output)``: what is recorded for a hooked layer instead of its output, computed in the hook
    (before any later module runs, so nothing needs a copy): a summary far smaller than the output.
    """

    def __init__(self, model: nn.Module, layers: Iterable[str], early_exit: bool = True, clone: bool = True,
                 reduce: Callable[[str, torch.Tensor], object] | None = None) -> None:
        self.model = model
        self.names = tuple(dict.fromkeys(layers))
        self.early_exit = early_exit
        self.clone = clone
        self.reduce = reduce
        self.hooked = tuple(name for name in self.names if not is_output(name))
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list = []
        self._layouts: Layouts | None = None
        self._batch = 0  # images in the pass being run: each hooked output must have a row per image
        self._tracks_input = False  # the pass's input carries gradients: each hooked output must too

    def __enter__(self) -> "HookRegistry":
        modules = {name: resolve_layer(self.model, name) for name in self.hooked}
        # A module whose layout its kind does not decide (an activation, a block, a container) has that of the map
        # that fed it: follow the layouts through every module that runs (only then: a conv's or norm's is its own).
        self._layouts = Layouts() if any(map(inherits_layout, modules.values())) else None
        try:
            if self._layouts is not None:
                for name, module in named_layers(self.model).items():
                    if name not in modules and not is_scripted(module):
                        self._handles.append(module.register_forward_hook(self._layouts.hook))
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
        def hook(module, inputs, output):
            followed = self._layouts.note(module, inputs, output) if self._layouts is not None else None
            if name in self.outputs:
                return  # a module run more than once per forward: its first call is the one recorded, as described
            if not isinstance(output, torch.Tensor):
                raise not_a_tensor(name, describe(output))
            if output.ndim == 0 or output.shape[0] != self._batch:
                raise not_per_image(name, tuple(output.shape), self._batch)
            if self._tracks_input and not output.requires_grad:  # one image: the shape above cannot tell
                raise not_from_input(name)
            # a signal's channels as one-row maps, a channels-last map's as (B, C, H, W)
            output = as_map(module, output, followed)
            last = self.early_exit and len(self.hooked) == len(self.names) and len(self.outputs | {name: None}) == len(self.names)
            # Nothing runs after the last wanted layer, so only earlier outputs need a copy
            # to survive in-place operations further on.
            if self.reduce is not None:
                keep = self.reduce(name, output)
            else:
                keep = output.clone() if self.clone and isinstance(output, torch.Tensor) and not last else output
            self.outputs[name] = keep
            if last:
                raise StopForward
        return hook

    def run(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward ``inputs`` and return {layer name: output} for the hooked layers."""
        self.outputs, self._batch = {}, len(inputs)
        self._tracks_input = inputs.requires_grad and torch.is_grad_enabled()
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
