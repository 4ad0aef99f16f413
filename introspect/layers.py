"""Hookable layers: list them by dotted named_modules() path, resolve names, measure output shapes."""
from __future__ import annotations

import contextlib
import difflib
import math
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .errors import UserError


def is_scripted(module: nn.Module) -> bool:
    """A TorchScript module: it takes no forward hooks, and its submodules run inside compiled code."""
    return isinstance(module, torch.jit.ScriptModule)


#: Why a TorchScript module inside a Python model is a leaf that cannot be hooked (one line).
SCRIPTED_NOTE = ("TorchScript modules take no forward hooks: they are listed as leaves, not hooked; hook their Python "
                 "parent or the model's output instead")


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every submodule by its dotted path (the root module excluded). A TorchScript module inside a Python
    model is a leaf: its own submodules run inside compiled code, out of reach of hooks."""
    layers: dict[str, nn.Module] = {}
    scripted: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(prefix + ".") for prefix in scripted):
            continue
        layers[name] = module
        if is_scripted(module):
            scripted.append(name)
    return layers


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The module at dotted path ``name`` ("" is the model itself), or a UserError naming the closest matches."""
    if name == "":
        return model
    layers = named_layers(model)
    if name in layers:
        if is_scripted(layers[name]):
            raise UserError("layer '{name}' is a TorchScript module, which takes no forward hooks; hook its Python "
                            "parent or the model's output instead (see {layers_command})",
                            settings=("layers_command",), name=name)
        return layers[name]
    close = difflib.get_close_matches(name, list(layers), n=3, cutoff=0.5)
    hint = f"closest: {', '.join(close)}; " if close else ""
    raise UserError("unknown layer '{name}' ({hint}see {layers_command} for them all)",
                    settings=("layers_command",), name=name, hint=hint)


def not_a_tensor(layer: str, returns: str) -> UserError:
    """The error for a layer whose output is not one tensor (an nn.MultiheadAttention's tuple): nothing to hook."""
    return UserError("layer '{layer}' returns {returns}, not one tensor: it has no channels to hook; hook one of its "
                     "submodules, or the module its output goes to (see {layers_command})",
                     settings=("layers_command",), layer=layer, returns=returns)


def not_per_image(layer: str, shape: tuple[int, ...], batch: int) -> UserError:
    """The error for a layer whose output has no row per input image: a table computed from no input (Swin V2's
    position-bias MLP), windows folded into the batch, a sequence-first (S, B, D) output."""
    return UserError("layer '{layer}' gives an output of shape {shape} for {batch} input image(s): not one row per "
                     "image, so it has no channels of an image to hook; hook a layer whose output keeps the batch "
                     "first (see {layers_command})", settings=("layers_command",), layer=layer, shape=shape, batch=batch)


def not_from_input(layer: str) -> UserError:
    """The error for a layer whose output no gradient leads back from to the input images (a table computed from
    the model's own buffers, a detached tensor): no image can change it."""
    return UserError("layer '{layer}' does not depend on the input images (no gradient leads from its output back to "
                     "them: a table computed from the model's own weights, or a detached tensor), so no image can "
                     "change it; hook a layer computed from the input (see {layers_command})",
                     settings=("layers_command",), layer=layer)


class StopForward(Exception):
    """Raised inside a hook to end a forward pass early, once the wanted outputs are recorded."""


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    output_shape: tuple[int, ...] | None  # without the batch dimension; None if never called or not a tensor
    units: int | None  # channels of a conv map, features of a vector, units of a token sequence (N, D)
    calls: int  # how often the module ran in one forward pass (>1: a reused module)
    inplace: bool = False  # an in-place module (e.g. ReLU(inplace=True)) overwrites its input
    finished: int | None = None  # when its first call ended, counted over all modules (None: never called)
    returns: str | None = None  # the type of an output that is not a tensor ("tuple"): no channels to hook
    from_input: bool | None = None  # its output depends on the input (None: not checked, see describe_layers)

    @property
    def depth(self) -> int:
        return self.name.count(".")

    @property
    def channel(self) -> str:
        """What one of its channels is, as channel objectives and reports measure it."""
        if self.output_shape is None:
            return ""
        return {1: "a unit", 2: "a unit, mean over tokens", 3: "a map, spatial mean"}.get(len(self.output_shape), "")


#: Modules whose (B, C, L) output is channels along a signal (a Conv1d's), not a token sequence (B, N, D):
#: seen as a one-row map (B, C, 1, L), so a channel is C's map, as for images.
SIGNAL_MODULES = (nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d, nn.InstanceNorm1d, nn.MaxPool1d, nn.AvgPool1d,
                  nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)


def _is_permute(module: nn.Module) -> bool:
    """torchvision.ops.misc.Permute, known by its class name so that torchvision need not be imported."""
    return type(module).__name__ == "Permute"


def _to_channels_last(module: nn.Module) -> bool:
    """A Permute module (``_is_permute``) of dims (0, 2, 3, 1): a (B, C, H, W) map made (B, H, W, C), as ConvNeXt's
    blocks do. Its inverse (0, 3, 1, 2) gives a plain map, as any module does."""
    dims = getattr(module, "dims", None) if _is_permute(module) else None
    return isinstance(dims, (list, tuple)) and len(dims) == 4 and [int(d) % 4 for d in dims] == [0, 2, 3, 1]


def _channels_last(module: nn.Module, output: torch.Tensor) -> bool:
    """A (B, H, W, C) map: a Linear, or a plain LayerNorm over one axis, run on channels-last maps (ConvNeXt's and
    Swin's blocks), their features (the last axis) the channels; or a Permute's (0, 2, 3, 1) of a (B, C, H, W) map."""
    if output.ndim != 4:
        return False
    if _to_channels_last(module):
        return True
    if isinstance(module, nn.Linear):
        return output.shape[-1] == module.out_features
    return (type(module) is nn.LayerNorm and len(module.normalized_shape) == 1
            and output.shape[-1] == module.normalized_shape[0])


#: Modules whose output layout their own kind decides, whatever fed them: a plain map (B, C, H, W) from a 2-D
#: convolution, norm or pooling; a signal from a signal module; a Linear's, LayerNorm's or Permute's by their own
#: rule (``_own_layout``). Any other module (an activation, Dropout, an attention or transformer block, a
#: container) gives a followed layout when it keeps the shape of a followed map that fed it.
OWN_LAYOUT_MODULES = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.MaxPool2d,
                      nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.LayerNorm,
                      *SIGNAL_MODULES)


def inherits_layout(module: nn.Module) -> bool:
    """Whether ``module``'s layout can be known only from the modules that ran before it (``Layouts``): any module
    but those of ``OWN_LAYOUT_MODULES`` and Permutes."""
    return not isinstance(module, OWN_LAYOUT_MODULES) and not _is_permute(module)


def _own_layout(module: nn.Module, output: torch.Tensor) -> bool:
    """Whether ``output`` is, by ``module``'s kind alone, a signal (B, C, L) or a channels-last (B, H, W, C) map."""
    return isinstance(module, SIGNAL_MODULES) if output.ndim == 3 else _channels_last(module, output)


class Layouts:
    """Which outputs of a forward pass are signals (B, C, L) or channels-last (B, H, W, C) maps (their rank tells
    which): a signal module's, Linear's, LayerNorm's or Permute's by their own kind and shape (``_own_layout``); any
    other module's when it keeps the shape of a followed map that fed it (an activation between a ConvNeXt block's
    Linears, a Swin block or its attention), and a container's when it returns the very tensor a child gave. A plain
    MLP's (B, F) or a transformer's (B, T, D) through a ReLU stays as it is: no followed map fed it. ``note`` (or
    ``hook``, a forward hook) must see every module that runs before the ones it is asked about, in order."""

    def __init__(self) -> None:
        # id of each signal or channels-last output -> the tensor while it lives, and its shape then
        self._maps: dict[int, tuple[weakref.ref, torch.Size]] = {}

    def _known(self, tensor: object) -> bool:
        known = self._maps.get(id(tensor))
        return known is not None and known[0]() is tensor and known[1] == tensor.shape

    def note(self, module: nn.Module, inputs: tuple, output: object) -> bool:
        """Whether ``output`` of ``module`` is a signal or channels-last map (remembered for the modules it feeds)."""
        if not isinstance(output, torch.Tensor) or output.ndim not in (3, 4):
            return False
        if self._known(output):
            return True  # an in-place module's or a container's output: a tensor already followed
        fed = inputs[0] if inputs else None
        if inherits_layout(module) and isinstance(fed, torch.Tensor) and output.shape == fed.shape:
            mapped = self._known(fed)
        else:
            mapped = _own_layout(module, output)
        if mapped:
            key = id(output)
            self._maps[key] = (weakref.ref(output, lambda _ref: self._maps.pop(key, None)), output.shape)
        return mapped

    def hook(self, module: nn.Module, inputs: tuple, output: object) -> None:
        self.note(module, inputs, output)


def as_map(module: nn.Module, output: object, followed: bool | None = None) -> object:
    """``output`` of ``module`` as the library reads it: a signal (B, C, L) as (B, C, 1, L), a channels-last map
    (B, H, W, C) as (B, C, H, W). ``followed``: whether it is one of them (its rank tells which), as ``Layouts``
    followed it; None: judged from ``module`` alone (a signal module, Linear or LayerNorm; an elementwise module or
    a container then keeps what it is given)."""
    if not isinstance(output, torch.Tensor) or output.ndim not in (3, 4):
        return output
    if followed is None:
        followed = _own_layout(module, output)
    if not followed:
        return output
    return output.unsqueeze(2) if output.ndim == 3 else output.permute(0, 3, 1, 2)


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


#: Images in a dry forward on zeros (``describe_layers``, the loaders' checks): two, so that a forward that needs a
#: batch runs, and one that folds images together (a fixed-size view) shows it.
DRY_BATCH = 2


def describe_layers(model: nn.Module, input_shape: tuple[int, ...], device: torch.device | str = "cpu",
                    stop_after: str | Sequence[str] | None = None, track_input: bool = False) -> list[LayerInfo]:
    """One dry forward pass on DRY_BATCH zero images records each layer's output shape (per image) and call count.

    With ``stop_after`` (a layer or several) the pass ends once they have all run: only
    the layers before are described (in execution order), and nothing after is computed.
    The model runs frozen (``frozen``: eval mode, no weight gradients, the caller's flags restored). With
    ``track_input`` the pass runs with gradients, to record whether each output depends on the input
    (``LayerInfo.from_input``); otherwise without.
    """
    with frozen(model), torch.set_grad_enabled(track_input):  # each module's own mode restored: frozen BatchNorms
        return _describe(model, input_shape, device, stop_after, track_input)


def _describe(model: nn.Module, input_shape: tuple[int, ...], device: torch.device | str,
              stop_after: str | Sequence[str] | None, track_input: bool) -> list[LayerInfo]:
    shapes: dict[str, tuple[int, ...]] = {}
    from_input: dict[str, bool] = {}
    returns: dict[str, str] = {}  # modules whose (first) output is not a tensor: its type
    calls: dict[str, int] = {}
    finished: dict[str, int] = {}
    targets = set() if stop_after is None else {stop_after} if isinstance(stop_after, str) else set(stop_after)
    handles = []
    layouts = Layouts()

    started: dict[str, None] = {}  # modules in the order their forward began (parents before children)

    def starter(name: str):
        def pre_hook(_module, _inputs):
            started.setdefault(name)
        return pre_hook

    def recorder(name: str):
        def hook(module, inputs, output):
            calls[name] = calls.get(name, 0) + 1
            finished.setdefault(name, len(finished))
            followed = layouts.note(module, inputs, output)
            if name not in shapes and name not in returns:  # a module run more than once: its first call
                if isinstance(output, torch.Tensor):
                    shapes[name] = tuple(as_map(module, output, followed).shape[1:])
                    if track_input:
                        from_input[name] = output.requires_grad
                else:
                    returns[name] = type(output).__name__
            if name in targets and targets <= finished.keys():
                raise StopForward
        return hook

    layers = named_layers(model)
    try:
        for name, module in layers.items():
            if is_scripted(module):
                continue  # a leaf that takes no hooks: listed, never hooked
            handles.append(module.register_forward_hook(recorder(name)))
            handles.append(module.register_forward_pre_hook(starter(name)))
        try:
            inputs = torch.zeros((DRY_BATCH, *input_shape), device=device)
            # the model's own forward arguments: see sources. Tracked, a copy: a model may change its input in place
            model(inputs.requires_grad_().clone() if track_input else inputs)
        except StopForward:
            pass
    finally:
        for handle in handles:
            handle.remove()
    infos = []
    # Execution order, then (for a full pass) the modules that never ran.
    ran = [n for n in started if n in calls]
    order = ran if stop_after is not None else ran + [n for n in layers if n not in ran]
    for name in order:
        module = layers[name]
        shape = shapes.get(name)
        units = (shape[-1] if len(shape) == 2 else shape[0]) if shape else None
        kind = f"TorchScript {getattr(module, 'original_name', '')}".strip() if is_scripted(module) else type(module).__name__
        infos.append(LayerInfo(name, kind, shape, units, calls.get(name, 0),
                               bool(getattr(module, "inplace", False)), finished.get(name), returns.get(name),
                               from_input.get(name)))
    return infos


#: A no-grad pass over a dataset on the CPU runs batches whose largest layer output stays within this many bytes.
#: Bigger tensors are handed back to the system when freed, and every batch faults their pages in afresh: the
#: fashion-mnist examples pass of fc2 took 24.0 s at 500 images a batch (12.6 million page faults), 11.5 s at 56
#: in the CLI, whose process keeps freed memory (docs/measured.md, "Dataset passes").
PASS_BYTES = 8 * 2 ** 20


def pass_batch_size(model: nn.Module, input_shape: tuple[int, ...], device: torch.device | str = "cpu",
                    stop_after: str | Sequence[str] | None = None, most: int = 500) -> int:
    """Images per batch for a no-grad pass of ``model`` over a dataset (up to the layers ``stop_after``): ``most``
    on a GPU, whose allocator keeps freed memory; on the CPU as many as keep the largest output (and the input)
    within PASS_BYTES, from one dry forward (``describe_layers``: DRY_BATCH images; ``most`` for a model that does not
    run on them: the pass's own batches are what must run)."""
    if torch.device(device).type != "cpu":
        return most
    try:
        with torch.random.fork_rng(devices=[]):  # a model drawing random numbers draws the same in the pass
            described = describe_layers(model, input_shape, device, stop_after)
    except Exception:  # noqa: BLE001 - the user's model; a real fault shows in the pass itself
        return most
    largest = max([math.prod(input_shape)] + [math.prod(info.output_shape) for info in described if info.output_shape])
    return max(1, min(most, PASS_BYTES // (4 * largest)))


#: Layer types whose channels or units ``select_layers(..., "all")`` picks.
HOOKABLE_TYPES = ("Conv1d", "Conv2d", "Conv3d", "Linear", "LazyLinear", "LazyConv2d")


def select_layers(model: nn.Module, input_shape: tuple[int, ...], layers: str | Sequence[str],
                  notes: list[str] | None = None) -> list[str]:
    """Layer names from "all" (every conv or Linear layer that runs on the input, in execution order),
    "a,b" or a list; each must exist. Duplicates are dropped. "all" leaves out layers whose output does not
    depend on the input (Swin V2's position-bias MLPs, computed from the weights alone), saying so in ``notes``;
    ``notes`` also names the chosen layers a forward runs more than once (their first call is measured)."""
    if isinstance(layers, str) and layers.strip() == "all":
        found = [i for i in describe_layers(model, input_shape, track_input=True)
                 if i.type in HOOKABLE_TYPES and i.output_shape]
        names = [i.name for i in found if i.from_input is not False]
        constant = [i.name for i in found if i.from_input is False]
        if constant and notes is not None:
            notes.append(f"'all' leaves out {len(constant)} layer{'s' if len(constant) > 1 else ''} whose output does "
                         f"not depend on the input ({', '.join(constant[:3])}{', ...' if len(constant) > 3 else ''}): "
                         "computed from the model's weights alone, no image changes them")
        if not names:
            raise UserError("'all' found no conv or Linear layers computed from the input; name the layers "
                            "(see {layers_command})", settings=("layers_command",))
        if notes is not None:
            notes.extend(reused_note({i.name: i.calls for i in found if i.name in names}))
        return names
    names = [name.strip() for name in layers.split(",")] if isinstance(layers, str) else list(layers)
    if not names or not all(names):
        raise UserError("the layer list {layers!r} has an empty name; write e.g. conv1,conv2 (see {layers_command})",
                        settings=("layers_command",), layers=layers)
    modules = {name: resolve_layer(model, name) for name in dict.fromkeys(names)}
    if notes is not None:
        notes.extend(reused_note(call_counts(model, input_shape, modules)))
    return list(modules)


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any): where its dry forwards run."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def rng_kept(device: torch.device | str) -> contextlib.AbstractContextManager:
    """Random state put back afterwards, the CPU's and ``device``'s when it is a GPU: a dry forward of a model that
    draws random numbers leaves the run to draw the same."""
    device = torch.device(device)
    cuda = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=cuda)


def call_counts(model: nn.Module, input_shape: tuple[int, ...], modules: dict[str, nn.Module]) -> dict[str, int]:
    """How often each of ``modules`` (by name) runs in one frozen no-grad forward on DRY_BATCH zero images, where the
    model is; {} where that forward fails (the run itself says why) or a module takes no hooks (TorchScript)."""
    calls = dict.fromkeys(modules, 0)
    handles = []
    device = model_device(model)
    try:
        for name, module in modules.items():
            if is_scripted(module):
                return {}
            handles.append(module.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1)))
        with frozen(model), torch.no_grad(), rng_kept(device):
            model(torch.zeros((DRY_BATCH, *input_shape), device=device))
    except Exception:  # noqa: BLE001 - the user's model: nothing to say here about a forward that fails
        return {}
    finally:
        for handle in handles:
            handle.remove()
    return calls


def reused_note(calls: dict[str, int]) -> list[str]:
    """A note naming the layers that run more than once per forward (``calls``: runs by name): hooks, and so every
    measurement and objective, see a reused module's first call only."""
    reused = [f"{name} ({count} times)" for name, count in calls.items() if count > 1]
    if not reused:
        return []
    return [f"{', '.join(reused)} {'runs' if len(reused) == 1 else 'run'} more than once per forward pass: "
            f"{'its' if len(reused) == 1 else 'their'} channels are measured and optimized at the first call only"]
