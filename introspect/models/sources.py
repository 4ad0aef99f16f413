"""Any model: built-in names, torchvision architectures, a class in the user's .py file, TorchScript.

Metadata (input shape, normalization, class names, logits layer) comes from
the checkpoint's spec, a torchvision weights enum's meta (even with random or
file weights), or the user's flags, in that order; what is missing is one
clear error naming the flag.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ..capture import HookRegistry
from ..errors import Message, UserError
from ..outputs import output_kind
from .checkpoint import file_sha256, is_torchscript, load_checkpoint, load_state, load_weights, read_checkpoint, unwrap_state_dict
from .registry import BUILTIN_MODELS, LoadedModel, builtin_checkpoint_path
from .spec import PRIOR_FIELDS, ModelSpec, image_shape


@dataclass(frozen=True)
class MetaOverrides:
    """Metadata given by the user (CLI flags); None means 'not given'."""

    size: int | None = None
    input_shape: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_names: tuple[str, ...] | None = None
    logits_layer: str | None = None
    logits_output: str | None = None  # an index of a tuple output, a key of a dict, an attribute
    forward_args: tuple[tuple[str, object], ...] = ()  # keyword arguments every forward call gets (name, value)


class ForwardArgs(nn.Module):
    """A TorchScript model whose forward takes keyword arguments besides the input, called with them."""

    def __init__(self, model: nn.Module, arguments: dict[str, object]) -> None:
        super().__init__()
        self.model, self.arguments = model, dict(arguments)

    def forward(self, inputs: torch.Tensor) -> object:
        return self.model(inputs, **self.arguments)


def with_forward_args(model: nn.Module, arguments: tuple[tuple[str, object], ...]) -> nn.Module:
    """``model`` whose every forward call gets ``arguments`` as keyword arguments: a forward pre-hook on a
    Python module (its layer names unchanged), a ``ForwardArgs`` wrapper around a TorchScript one."""
    if not arguments:
        return model
    extra = dict(arguments)
    if isinstance(model, torch.jit.ScriptModule):
        return ForwardArgs(model, extra)

    def add_arguments(_module, args, kwargs):
        return args, {**extra, **kwargs}

    model.register_forward_pre_hook(add_arguments, with_kwargs=True)
    return model


def load_model(source: str = "mnist", checkpoint: str | Path | None = None, *, weights: str | None = None,
               trust_checkpoint: bool = False, meta: MetaOverrides = MetaOverrides()) -> LoadedModel:
    """The one way in: load the model named by ``source`` — a built-in name, ``torchvision:NAME``,
    ``file.py:ClassName`` or a TorchScript archive — with its spec. ``checkpoint`` holds its weights
    (or an introspect checkpoint), ``weights`` names torchvision's; ``meta`` overrides metadata."""
    if weights is not None and not source.startswith("torchvision:"):
        raise UserError("{weights} only applies to {model} torchvision:NAME; use {checkpoint} for other models",
                        settings=("weights", "model", "checkpoint"))
    if meta.std is not None and any(s <= 0 for s in meta.std):
        raise UserError("{std} values must be above 0", settings=("std",))
    if source.startswith("torchvision:"):
        loaded = _torchvision(source.split(":", 1)[1], checkpoint, weights, trust_checkpoint, meta)
        loaded.model = with_forward_args(loaded.model, meta.forward_args)
    elif ":" in source and source.rsplit(":", 1)[0].endswith(".py"):
        path, class_name = source.rsplit(":", 1)
        loaded = _python_file(Path(path), class_name, checkpoint, trust_checkpoint, meta)
    elif source in BUILTIN_MODELS:
        loaded = _builtin(source, checkpoint, trust_checkpoint)
        loaded.model = with_forward_args(loaded.model, meta.forward_args)
    elif Path(source).is_file():
        loaded = _torchscript(Path(source), meta)
    elif ":" in source:
        module_name, class_name = source.rsplit(":", 1)
        loaded = _package_class(module_name, class_name, checkpoint, trust_checkpoint, meta)
    else:
        raise UserError("unknown model '{source}'; use a built-in name ({builtin}), torchvision:NAME, "
                        "path/to/file.py:ClassName, package.module:ClassName, or a TorchScript file",
                        source=source, builtin=", ".join(BUILTIN_MODELS))
    loaded = _apply_overrides(loaded, meta)
    if loaded.spec.logits is not None and loaded.spec.logits_layer == "":
        warning = output_kind_warning(loaded.model, loaded.spec)
        if warning:
            loaded.notes.append(warning)
    return loaded


@torch.no_grad()
def output_kind_warning(model: nn.Module, spec: ModelSpec) -> Message | None:
    """A warning when the model's logits (where the spec says) look like probabilities or log-probabilities."""
    generator = torch.Generator().manual_seed(0)
    with HookRegistry(model, [spec.logits]) as hooks:
        logits = hooks.run(torch.rand(2, *spec.input_shape, generator=generator))[spec.logits]
    kind = output_kind(logits.flatten(1).float())
    if kind is None:
        return None
    return Message("the model's output looks like {kind}, not logits: raising a class there can mean pushing others"
                   " down; pass {logits_layer} NAME (the layer before the softmax) to use the logits",
                   settings=("logits_layer",), kind=kind)


def _builtin(name: str, checkpoint, trust: bool) -> LoadedModel:
    if checkpoint is None:
        return load_checkpoint(builtin_checkpoint_path(name))
    payload = read_checkpoint(checkpoint, trust)
    if isinstance(payload, dict) and "spec" in payload:
        return load_checkpoint(checkpoint, payload)
    # Plain weights for the built-in architecture: the built-in's spec and model, these weights.
    loaded = load_checkpoint(builtin_checkpoint_path(name))
    load_state(loaded.model, unwrap_state_dict(payload, checkpoint), checkpoint)  # read once: no load_weights
    return LoadedModel(loaded.model.eval(), loaded.spec, str(checkpoint), file_sha256(checkpoint))


def _torchvision(name: str, checkpoint, weights: str | None, trust: bool, meta: MetaOverrides) -> LoadedModel:
    import torchvision
    from torchvision.models import get_model, get_model_weights, list_models

    available = list_models(module=torchvision.models)
    if name not in available:
        import difflib

        close = difflib.get_close_matches(name, available, n=3)
        hint = f" (closest: {', '.join(close)})" if close else ""
        raise UserError("torchvision has no classification model '{name}'{hint}", name=name, hint=hint)
    if weights is not None and checkpoint is not None:
        raise UserError("give {weights} or {checkpoint}, not both", settings=("weights", "checkpoint"))
    enum = get_model_weights(name)
    chosen = None
    if weights is not None:
        try:
            chosen = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
        except KeyError:
            raise UserError("unknown {weights} '{given}' for {name}; choose DEFAULT or one of: {choices}",
                            settings=("weights",), given=weights, name=name, choices=", ".join(w.name for w in enum)) from None
    info = chosen or enum.DEFAULT
    transform = info.transforms()
    crop = transform.crop_size[0]
    spec = ModelSpec(name=f"torchvision:{name}", architecture=f"torchvision:{name}", input_shape=(3, crop, crop),
                     mean=tuple(transform.mean), std=tuple(transform.std), logits_layer="",
                     class_names=tuple(info.meta["categories"]), dataset=None, activations={})
    try:
        model = get_model(name, weights=chosen)
        spec = spec.replace(activations=find_activations(model))
    except (OSError, RuntimeError, ValueError) as exc:  # a download that failed, typically offline
        raise UserError("could not get torchvision weights {info}: {reason} — offline, download them elsewhere and pass "
                        "the file with {checkpoint}",
                        settings=("checkpoint",), info=info, reason=str(exc).splitlines()[0]) from exc
    random_weights = chosen is None and checkpoint is None
    sha = None
    source = f"torchvision:{name}" + (f" weights {chosen}" if chosen else "")
    if checkpoint is not None:
        sha, source = load_weights(model, checkpoint, trust), f"torchvision:{name} + {checkpoint}"
    loaded = LoadedModel(model.eval(), spec, source, sha, random_weights=random_weights)
    if random_weights:
        loaded.notes.append(Message("{name} has random weights (no {weights} or {checkpoint}): results show the untrained network",
                                    settings=("weights", "checkpoint"), name=name))
    return loaded


def _python_file(path: Path, class_name: str, checkpoint, trust: bool, meta: MetaOverrides) -> LoadedModel:
    if not path.is_file():
        raise UserError("model file '{path}' does not exist", path=path)
    module_name = f"introspect_user_{path.stem}"
    spec_ = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec_)
    sys.modules[module_name] = module
    try:
        spec_.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's code can fail in any way
        raise UserError("importing '{path}' failed: {kind}: {exc}", path=path, kind=type(exc).__name__,
                        exc=exc) from exc
    return _from_class(module, f"'{path}'", class_name, f"{path.stem}.{class_name}", f"{path}:{class_name}",
                       checkpoint, trust, meta)


def _package_class(module_name: str, class_name: str, checkpoint, trust: bool, meta: MetaOverrides) -> LoadedModel:
    """A class of an installed package, built with no arguments: whatever weights its constructor
    loads (some packages ship trained weights) unless ``checkpoint`` replaces them."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError("cannot import '{module_name}' for {model} {module_name}:{class_name} ({exc}); install the "
                        "package, or give path/to/file.py:ClassName",
                        settings=("model",), module_name=module_name, class_name=class_name, exc=exc) from exc
    return _from_class(module, f"module {module_name}", class_name, f"{module_name}.{class_name}",
                       f"{module_name}:{class_name}", checkpoint, trust, meta, weights_by_constructor=True)


def _from_class(module, where: str, class_name: str, name: str, source: str, checkpoint, trust: bool,
                meta: MetaOverrides, weights_by_constructor: bool = False) -> LoadedModel:
    cls = getattr(module, class_name, None)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        names = [n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module)
                 and v.__module__ == module.__name__]
        raise UserError("{where} has no nn.Module class '{class_name}'; it defines: {defined}",
                        where=where, class_name=class_name, defined=", ".join(names) or "none")
    try:
        model = cls()
    except TypeError as exc:
        raise UserError("{class_name}() needs arguments ({exc}); give it defaults so it can be built without any",
                        class_name=class_name, exc=exc) from exc
    model = with_forward_args(model, meta.forward_args)
    sha = None
    if checkpoint is not None:
        sha, source = load_weights(model, checkpoint, trust), f"{source} + {checkpoint}"
    spec = _spec_from_flags(model, name, meta)
    random_weights = checkpoint is None and not weights_by_constructor
    loaded = LoadedModel(model.eval(), spec, source, sha, random_weights=random_weights)
    if random_weights:
        loaded.notes.append(Message("{class_name} has random weights (no {checkpoint}): results show the untrained network",
                                    settings=("checkpoint",), class_name=class_name))
    elif checkpoint is None:
        loaded.notes.append(f"{class_name} has the weights its constructor loads (no checkpoint given)")
    return loaded


def _torchscript(path: Path, meta: MetaOverrides) -> LoadedModel:
    if not is_torchscript(path):
        raise UserError("'{path}' is not a TorchScript archive; for a state dict, name its architecture with {model} "
                        "(torchvision:NAME or file.py:ClassName) and pass the file as {checkpoint}",
                        settings=("model", "checkpoint"), path=path)
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, yet users still ship archives
            model = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise UserError("'{path}' could not be loaded as TorchScript: {reason}",
                        path=path, reason=str(exc).splitlines()[0]) from exc
    if meta.input_shape is None:
        raise UserError("a TorchScript model needs its input shape: pass {input_shape} C,H,W (or C,L / L)",
                        settings=("input_shape",))
    model = with_forward_args(model, meta.forward_args)
    if meta.logits_layer:
        raise UserError("{logits_layer} needs a forward hook, which TorchScript submodules cannot take; a TorchScript "
                        "model's output is its logits", settings=("logits_layer",))
    spec = _spec_from_flags(model, path.stem, meta)
    return LoadedModel(model.eval(), spec, str(path), file_sha256(path), scripted=True)


def first_conv_channels(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv1d, nn.Conv3d)):
            return module.in_channels
    return None


#: Activation modules and calls whose output is what the next layer receives.
ACTIVATION_MODULES = {nn.ReLU: "relu", nn.GELU: "gelu", nn.SiLU: "silu"}
ACTIVATION_CALLS = {F.relu: "relu", torch.relu: "relu", F.gelu: "gelu", F.silu: "silu"}


def find_activations(model: nn.Module) -> dict[str, str]:
    """{layer: activation} for every module whose output goes straight into a ReLU, GELU or SiLU — a
    module that follows it in an nn.Sequential, or, where torch.fx can trace the forward, a module or
    an F.relu/F.gelu/F.silu call that is its only use — so a channel report measures what the next
    layer receives, not the negative pre-activations of a closed unit. Untraceable forwards (data-
    dependent control flow) keep what nn.Sequential shows."""
    found = {}
    for prefix, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (name, _), (_, following) in zip(children, children[1:]):
                if type(following) in ACTIVATION_MODULES:
                    found[f"{prefix}.{name}" if prefix else name] = ACTIVATION_MODULES[type(following)]
    for layer, activation in _traced_activations(model).items():
        found.setdefault(layer, activation)
    return found


def _traced_activations(model: nn.Module) -> dict[str, str]:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - any forward fx cannot trace: fall back to what nn.Sequential shows
        return {}
    modules = dict(model.named_modules())
    found = {}
    for node in graph.nodes:
        if node.op != "call_module" or len(node.users) != 1:
            continue
        (user,) = node.users
        if user.op == "call_function":
            activation = ACTIVATION_CALLS.get(user.target)
        elif user.op == "call_method":
            activation = "relu" if user.target in ("relu", "relu_") else None
        elif user.op == "call_module":
            activation = ACTIVATION_MODULES.get(type(modules.get(user.target)))
        else:
            activation = None
        if activation is not None:
            found[node.target] = activation
    return found


def _spec_from_flags(model: nn.Module, name: str, meta: MetaOverrides) -> ModelSpec:
    """A spec for a model that carries none: input shape, normalization and classes from the flags."""
    if meta.input_shape is not None:
        shape = meta.input_shape
    elif meta.size is not None:
        channels = first_conv_channels(model)
        if channels is None:
            raise UserError("cannot tell the input channels (no conv layer): pass {input_shape} C,H,W instead of {size}",
                            settings=("input_shape", "size"))
        shape = (channels, meta.size, meta.size)
    else:
        raise UserError("{name} carries no input size: pass {size} N (square) or {input_shape} C,H,W",
                        settings=("size", "input_shape"), name=name)
    channels = image_shape(shape)[0]  # (L,) is one channel
    mean = meta.mean or (0.0,) * channels
    std = meta.std or (1.0,) * channels
    output = dry_forward(model.eval(), shape, name)
    spec = ModelSpec(name=name, architecture="user", input_shape=shape, mean=_per_channel(mean, channels, "mean"),
                     std=_per_channel(std, channels, "std"), logits_layer=None, class_names=(),
                     activations=find_activations(model))
    plain = isinstance(output, torch.Tensor) and output.ndim == 2
    if not (plain or meta.logits_layer is not None or meta.logits_output is not None):
        return spec  # logits unknown: layers, channels and activations need none
    layer = meta.logits_layer or ""
    if layer and layer not in dict(model.named_modules()):
        raise UserError("{logits_layer} '{layer}' is not a layer of the model (see {layers_command})",
                        settings=("logits_layer", "layers_command"), layer=layer)
    width = logits_width(model, shape, layer, meta.logits_output if not layer else None)
    return spec.replace(logits_layer=layer, logits_output=None if layer else meta.logits_output,
                        class_names=meta.class_names or tuple(str(i) for i in range(width)))


@torch.no_grad()
def dry_forward(model: nn.Module, shape: tuple[int, ...], name: str, fixed: tuple[int, ...] | None = None) -> object:
    """The model's output on one zero image of ``shape``; a UserError if it does not run. ``fixed``: the
    input shape the model's own metadata gives, which the flags changed (None: the flags gave the shape)."""
    try:
        return model(torch.zeros(1, *shape))
    except Exception as exc:  # noqa: BLE001 - the user's model, the user's shape
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if fixed is None:
            raise UserError("{name} does not run on input of shape {shape}: {reason} (check {size} / {input_shape})",
                            settings=("size", "input_shape"), name=name, shape=shape, reason=reason) from exc
        raise UserError("{name} does not run on input of shape {shape}: {reason}; its input may be fixed at {fixed}",
                        name=name, shape=shape, reason=reason, fixed=fixed) from exc


def _per_channel(values: tuple[float, ...], channels: int, setting: str) -> tuple[float, ...]:
    """One value per input channel from one or ``channels`` values of ``setting`` (mean or std)."""
    if len(values) == 1:
        return values * channels
    if len(values) == channels:
        return values
    if setting == "mean":
        raise UserError("{mean} has {count} values; the input has {channels} channels (give 1 or {channels})",
                        settings=("mean",), count=len(values), channels=channels)
    raise UserError("{std} has {count} values; the input has {channels} channels (give 1 or {channels})",
                    settings=("std",), count=len(values), channels=channels)


def _apply_overrides(loaded: LoadedModel, meta: MetaOverrides) -> LoadedModel:
    """Flags win over metadata from files and enums; the spec is checked against one dry forward."""
    spec = loaded.spec
    changes = {}
    if meta.input_shape is not None:
        changes["input_shape"] = meta.input_shape
    elif meta.size is not None:
        changes["input_shape"] = (spec.input_shape[0], meta.size, meta.size)
    shape = changes.get("input_shape", spec.input_shape)
    if "input_shape" in changes:
        dry_forward(loaded.model, shape, spec.name, fixed=spec.input_shape)
        if tuple(shape) != tuple(spec.input_shape):
            changes.update(dict.fromkeys(PRIOR_FIELDS))  # measured on inputs of the old shape
    if meta.mean is not None:
        changes["mean"] = _per_channel(meta.mean, image_shape(shape)[0], "mean")
    if meta.std is not None:
        changes["std"] = _per_channel(meta.std, image_shape(shape)[0], "std")
    if meta.class_names is not None:
        changes["class_names"] = meta.class_names
    if meta.logits_layer is not None:
        changes["logits_layer"] = meta.logits_layer
    if meta.logits_output is not None:
        changes["logits_output"] = meta.logits_output
        changes.setdefault("logits_layer", "")
    if changes:
        try:
            spec = spec.replace(**changes)
        except ValueError as exc:
            raise UserError("{name}'s metadata with these flags is invalid: {exc}", name=spec.name, exc=exc) from exc
    if meta.class_names is not None and spec.logits is not None and (
            not spec.logits_layer or spec.logits_layer in dict(loaded.model.named_modules())):
        width = logits_width(loaded.model, spec.input_shape, spec.logits_layer, spec.logits_output)
        if width != spec.num_classes:
            raise UserError("{class_names} has {num_classes} names, but the model has {width} classes (the width of its "
                            "logits); give one name per class",
                            settings=("class_names",), num_classes=spec.num_classes, width=width)
    loaded.spec = spec
    return loaded


@torch.no_grad()
def logits_width(model: nn.Module, input_shape: tuple[int, ...], layer: str, output_key: str | None = None) -> int:
    """How many classes the model scores: the width of its logits — ``layer``'s output, or the model's
    output (its part ``output_key``) when ``layer`` is "" — on one dry forward."""
    where = layer or (":" + output_key if output_key else "")
    try:
        with HookRegistry(model, [where]) as hooks:
            output = hooks.run(torch.zeros(1, *input_shape))[where]
    except KeyError as exc:  # a part of the output that is not there
        raise UserError("{logits_output} '{output_key}': {reason}",
                        settings=("logits_output",), output_key=output_key, reason=exc.args[0]) from None
    if output.ndim < 2:
        raise UserError("the logits have shape {shape}, not (batch, classes); name them with {logits_layer} or "
                        "{logits_output}", settings=("logits_layer", "logits_output"),
                        shape=tuple(output.shape))
    if output.flatten(1).shape[1] == 0:
        raise UserError("the model's logits have shape {shape}: it scores no classes; name the logits with "
                        "{logits_layer} or {logits_output}", settings=("logits_layer", "logits_output"),
                        shape=tuple(output.shape))
    return output.flatten(1).shape[1]
