"""Any model: built-in names, torchvision architectures, a class in the user's .py file, TorchScript.

Metadata (input shape, normalization, class names, logits layer) comes from
the checkpoint's spec, a torchvision weights enum's meta (even with random or
file weights), or the user's flags, in that order; what is missing is one
clear error naming the flag.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import importlib.util
import re
import sys
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.nn.parameter import is_lazy

from ..capture import HookRegistry
from ..layers import DRY_BATCH, frozen, model_device, rng_kept
from ..errors import Message, UserError
from ..normalize import Normalize
from ..objectives import needs_leak
from ..outputs import POSITIONS, class_values, describe_kind, value_kind
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
    logits_position: str | None = None  # how a spatial map of logits (B, K, H, W) becomes (B, K): mean, center, max
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
    if meta.size is not None and meta.input_shape is not None and tuple(meta.input_shape[-2:]) != (meta.size,) * 2:
        raise UserError("{size} {size_given} and {input_shape} {shape_given} disagree; give one of them",
                        settings=("size", "input_shape"), size_given=meta.size,
                        shape_given=",".join(map(str, meta.input_shape)))
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
    if meta.logits_position is not None and meta.logits_position not in POSITIONS:
        raise UserError("{logits_position} '{given}' is unknown; choose {choices}", settings=("logits_position",),
                        given=meta.logits_position, choices=", ".join(POSITIONS))
    loaded = _apply_overrides(loaded, meta)
    if loaded.spec.logits is not None and not loaded.scripted:
        detect_output(loaded, meta)
    elif loaded.spec.logits is not None and loaded.spec.output_kind is None and loaded.spec.num_classes == 1:
        loaded.spec = loaded.spec.replace(output_kind="sigmoid logits")  # a TorchScript output is logits: one, a sigmoid's
        loaded.notes.append(f"output: {describe_kind('sigmoid logits')}")
    channels = loaded.spec.image_shape[0]
    if loaded.spec.is_image and channels not in (1, 3):
        loaded.notes.append(f"the model takes {channels}-channel images: pictures show "
                            + ("channel 1 as red and 2 as green" if channels == 2 else
                               f"channels 1-3 as RGB (not {'4' if channels == 4 else f'4-{channels}'})")
                            + "; images.npz holds every channel")
    if meta.logits_position is not None and loaded.spec.logits_position is None:
        raise UserError("{logits_position} applies to a spatial map of logits (batch, classes, H, W); this model's "
                        "logits are not one", settings=("logits_position",))
    return loaded


#: The final ops of a classifier that turn logits into probabilities, by what fx sees.
FINAL_MODULES = {nn.Softmax: "softmax", nn.Sigmoid: "sigmoid", nn.LogSoftmax: "log-softmax"}
FINAL_CALLS = {torch.softmax: "softmax", F.softmax: "softmax", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
               torch.log_softmax: "log-softmax", F.log_softmax: "log-softmax"}
FINAL_METHODS = {"softmax": "softmax", "sigmoid": "sigmoid", "log_softmax": "log-softmax"}
#: ``final_op``'s kind prefix for a forward that ends in an activation (a ReLU...): scores, not probabilities.
ACTIVATED = "activated:"
#: Layers whose output (through reshapes) as the model's is its logits: a layer computes no probabilities.
RAW_LAYERS = (nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Ops that only reshape: a module's output seen through them still holds the same values, one per class.
RESHAPES = {"flatten", "view", "reshape", "squeeze"}


def final_op(model: nn.Module, where: str) -> tuple[str, str | None] | None:
    """(kind, layer) when torch.fx sees the model's output at ``where`` ("" or ":KEY") come from a final softmax,
    sigmoid or log_softmax — ``layer`` the module whose output goes into it (through reshapes only), else None;
    ("logits", None) when it is a Linear's or conv's own output (through reshapes); (ACTIVATED + the activation,
    layer) when it ends in another activation, such as a ReLU (scores, whatever values they take: a ReLU'd head in
    [0, 1] is no sigmoid's); None when the forward does not trace or ends otherwise."""
    graph = fx_graph(model)
    if isinstance(graph, str):  # a forward fx cannot trace: the values decide
        return None
    modules = dict(model.named_modules())
    output = next((n for n in graph.nodes if n.op == "output"), None)
    if output is None or not output.args:
        return None
    node = output.args[0]
    if where.startswith(":"):
        key = where[1:]
        if isinstance(node, (tuple, list)) and key.lstrip("-").isdigit() and -len(node) <= int(key) < len(node):
            node = node[int(key)]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            return None
    if not isinstance(node, torch.fx.Node):
        return None
    node = _through_reshapes(node)  # a final op's values seen through reshapes are still its own
    kind = None
    if node.op == "call_module":
        kind = FINAL_MODULES.get(type(modules.get(node.target)))
    elif node.op == "call_function":
        kind = FINAL_CALLS.get(node.target)
    elif node.op == "call_method":
        kind = FINAL_METHODS.get(node.target)
    if kind is None:
        source = node
        if source.op == "call_module" and isinstance(modules.get(source.target), RAW_LAYERS):
            return "logits", None  # a layer's own output: logits, whatever values an untrained one gives
        activation = _activation_of(source, modules)
        if activation is None:
            return None
        # Scores through a ReLU (or another activation): not probabilities, whatever values they take
        before = _through_reshapes(source.args[0] if source.args else None)
        single = isinstance(before, torch.fx.Node) and before.op == "call_module" and len(before.users) == 1
        return f"{ACTIVATED}{activation}", before.target if single else None
    source = _through_reshapes(node.args[0] if node.args else None)
    if isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1:
        return kind, source.target
    return kind, None


def _activation_of(node: torch.fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """The activation (``objectives.ACTIVATION_FUNCTIONS``' name) a module or call node applies, else None."""
    if node.op == "call_module":
        step = _module_step(node.target, modules.get(node.target))
    else:
        step = _call_step(node)
    return step.activation if step is not None else None


@torch.no_grad()
def _made_by(model: nn.Module, inputs: torch.Tensor) -> tuple[str, None] | None:
    """``final_op``'s answer from a forward on DRY_BATCH of ``inputs`` where fx cannot trace one, from the module that
    gave the model's output (itself, or a view of it, unchanged since): (kind, None) for a final softmax, sigmoid or
    log-softmax module, ("logits", None) for a Linear or conv, (ACTIVATED + its activation, None) for another
    activation module; the last of them to give it (an in-place ReLU after its conv); else None."""
    kinds = (*RAW_LAYERS, *FINAL_MODULES, *ACTIVATION_MODULES)
    made: list[tuple[nn.Module, torch.Tensor, int]] = []  # each kept alive for the pass: no storage is reused

    def record(module, _inputs, output):
        if isinstance(output, torch.Tensor):
            made.append((module, output, output._version))

    handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, kinds)]
    try:
        with frozen(model), rng_kept(inputs.device):
            output = model(inputs[:DRY_BATCH])
    except Exception:  # noqa: BLE001 - the user's model: the values decide, as before
        return None
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(output, torch.Tensor):
        return None
    same = [(module, tensor, version) for module, tensor, version in made if tensor.numel() == output.numel()
            and tensor.untyped_storage().data_ptr() == output.untyped_storage().data_ptr()]
    if not same or same[-1][1]._version != same[-1][2]:  # none, or changed in place after (an out.sigmoid_())
        return None
    module = same[-1][0]
    if type(module) in FINAL_MODULES:
        return FINAL_MODULES[type(module)], None
    if isinstance(module, RAW_LAYERS):
        return "logits", None
    step = _module_step("", module)
    return (f"{ACTIVATED}{step.activation}", None) if step is not None and step.activation else None


def _through_reshapes(node):
    """The node whose values ``node`` holds, through flatten, view, reshape and squeeze."""
    while isinstance(node, torch.fx.Node) and (
            (node.op == "call_method" and node.target in RESHAPES)
            or (node.op == "call_function" and node.target is torch.flatten)):
        node = node.args[0]
    return node


@torch.no_grad()
def detect_output(loaded: LoadedModel, meta: MetaOverrides = MetaOverrides(), inputs: torch.Tensor | None = None) -> None:
    """Set ``loaded.spec``'s output kind (``introspect.outputs``) and the reduction of a spatial map of logits,
    from the final op torch.fx sees (its input's layer becomes the logits: the class objective then works before
    the softmax or sigmoid) or else from the values of a dry forward on ``inputs`` (normalized; default: 16
    seeded random images, DRY_BATCH of them where only the output's shape is wanted): rows in [0, 1] summing to 1
    are softmax, all in [0, 1] otherwise sigmoid. A spec that already says its kind, or names its logits layer, keeps it; one logit is a sigmoid's (a binary classifier's).
    Adds a note saying what was found."""
    spec, model = loaded.spec, loaded.model
    if inputs is None:
        generator = torch.Generator().manual_seed(0)
        inputs = Normalize.of(spec)(torch.rand(16, *spec.image_shape, generator=generator))  # a 1-D signal's too
    changes: dict = {}
    if spec.output_kind is None and spec.logits_layer:  # a named logits layer: before a final sigmoid?
        found = final_op(model, "")
        if found is not None and found == ("sigmoid", spec.logits_layer):
            changes = {"output_kind": "sigmoid logits"}
    elif spec.output_kind is None and spec.logits_layer == "":
        found = final_op(model, spec.logits)
        if found is None and spec.logits == "":  # fx cannot trace (or sees no final op): the module that made it
            found = _made_by(model, inputs)
        if found is not None and found[0].startswith(ACTIVATED):
            changes = {"output_kind": "logits"}
            activation, layer = found[0].removeprefix(ACTIVATED), found[1]
            loaded.notes.append(Message("the model's output is its scores through {activation}: read as logits (a softmax "
                                        "over them), not as probabilities", activation=activation))
            if layer is not None and needs_leak(activation):
                loaded.notes.append(Message("a class whose score {activation} holds at its flat part gets no gradient "
                                            "there: pass {logits_layer} {layer} to raise the scores before it",
                                            settings=("logits_layer",), activation=activation, layer=layer))
        elif found is not None and found[1] is not None:
            kind, layer = found
            changes = {"logits_layer": layer, "logits_output": None,
                       "output_kind": "sigmoid logits" if kind == "sigmoid" else "logits"}
            loaded.notes.append(f"the model's output is {kind} of layer {layer}'s output: the class objective works on "
                                f"{layer} (before the {kind})")
        elif found is not None:
            changes = {"output_kind": found[0]}
    where = changes.get("logits_layer", spec.logits)
    by_values = spec.output_kind is None and "output_kind" not in changes and not spec.logits_layer
    # Only the values' kind needs the whole batch: the output's shape alone decides the rest (a map, one logit).
    with HookRegistry(model.eval(), [where]) as hooks:
        output = hooks.run(inputs if by_values else inputs[:DRY_BATCH])[where]
    if output.ndim == 4 and spec.logits_position is None:
        changes["logits_position"] = meta.logits_position or "mean"
    values = class_values(output, changes.get("logits_position", spec.logits_position))
    if by_values:
        changes["output_kind"] = value_kind(values.float()) or "logits"
    if spec.output_kind is None and changes.get("output_kind", "logits") == "logits" and values.shape[1] == 1:
        changes["output_kind"] = "sigmoid logits"  # one logit (a binary classifier's): a softmax of one is always 1
    if not changes:
        return
    loaded.spec = spec = spec.replace(**changes)
    if spec.output_kind in (None, "logits", "sigmoid logits") and (
            spec.output_kind == "sigmoid logits" or spec.logits_position is not None):
        loaded.notes.append(f"output: {describe_kind(spec.output_kind, spec.logits_position)}"
                            + (f" ({tuple(output.shape[1:])} per image)" if output.ndim == 4 else ""))
    if spec.output_kind in ("softmax", "log-softmax", "sigmoid"):
        why = ("a probability saturates near 0 and 1 in float32, where a class stops gaining" if spec.output_kind == "sigmoid"
               else "raising a class there can mean pushing others down")  # independent sigmoids push none down
        loaded.notes.append(Message("the model's output looks like {kind}, not logits: {why}; pass {logits_layer} NAME "
                                    "(the layer before the {op}) to use the logits", settings=("logits_layer",),
                                    kind=describe_kind(spec.output_kind), why=why, op=spec.output_kind))


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
        with seeded():
            model = _quietly_built(get_model, name, chosen)
        spec = spec.replace(**measuring_fields(model, spec.input_shape))
    except (OSError, RuntimeError, ValueError) as exc:  # a download that failed, typically offline
        raise UserError("could not get torchvision weights {info}: {reason} — offline, download them elsewhere and pass "
                        "the file with {checkpoint}",
                        settings=("checkpoint",), info=info, reason=str(exc).splitlines()[0]) from exc
    random_weights = chosen is None and checkpoint is None
    sha = None
    source = f"torchvision:{name}" + (f" weights {chosen}" if chosen else "")
    notes = []
    if checkpoint is not None:
        sha, source = load_weights(model, checkpoint, trust), f"torchvision:{name} + {checkpoint}"
        notes = [note for note in [built_for_published(model, enum, sha, name)] if note]
    loaded = LoadedModel(model.eval(), spec, source, sha, random_weights=random_weights)
    loaded.notes.extend(notes)
    if random_weights:
        loaded.notes.append(Message("{name} has random weights (no {weights} or {checkpoint}): results show the untrained network",
                                    settings=("weights", "checkpoint"), name=name))
    return loaded


def _quietly_built(get_model, name: str, weights) -> nn.Module:
    """torchvision's model ``name``, without the FutureWarning GoogLeNet and Inception v3 print on every build
    about their default initialization changing some day (the one they use today is the one built)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The default weight initialization", FutureWarning)
        return get_model(name, weights=weights)


def published_weights(enum, sha: str):
    """The entry of a torchvision weights ``enum`` whose published file has sha256 ``sha``: its URL's file name
    ends in the digest's first hex digits (what torchvision's own hash check reads); None for any other file."""
    for entry in enum:
        digits = re.search(r"-([0-9a-f]{8,})\.[^/]*$", entry.url)
        if digits and sha.startswith(digits[1]):
            return entry
    return None


def built_for_published(model: nn.Module, enum, sha: str, name: str) -> str | None:
    """Build ``model`` as torchvision does for its published weights when the checkpoint is one of those files:
    inception_v3 and googlenet then take ImageNet-normalized input and turn it into the [-1, 1] input their
    weights were trained on (``transform_input``), which torchvision sets only when it loads them itself. A note
    saying so, or None."""
    entry = published_weights(enum, sha)
    if entry is None or getattr(model, "transform_input", None) is not False:
        return None
    model.transform_input = True
    return (f"the checkpoint is torchvision's {name} weights {entry.name}: built with transform_input=True, as "
            "torchvision builds it for them")


def _python_file(path: Path, class_name: str, checkpoint, trust: bool, meta: MetaOverrides) -> LoadedModel:
    """The class in a user's file. Its folder is on sys.path while the file runs, the class is built and its
    checkpoint read, as ``python file.py`` would have it: the file can import the modules beside it, and a model
    pickled whole (``torch.save(model)``, with ``--trust-checkpoint``) finds the module its class came from."""
    if not path.is_file():
        raise UserError("model file '{path}' does not exist", path=path)
    module_name = f"introspect_user_{path.stem}"
    spec_ = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec_)
    sys.modules[module_name] = module
    with _on_path(path.resolve().parent):
        try:
            spec_.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's code can fail in any way
            raise UserError("importing '{path}' failed: {kind}: {exc}", path=path, kind=type(exc).__name__,
                            exc=exc) from exc
        return _from_class(module, f"'{path}'", class_name, f"{path.stem}.{class_name}", f"{path}:{class_name}",
                           checkpoint, trust, meta)


@contextlib.contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    """``folder`` first on sys.path for the duration (unless it is there already)."""
    entry = str(folder)
    if entry in sys.path:
        yield
        return
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)


def _package_class(module_name: str, class_name: str, checkpoint, trust: bool, meta: MetaOverrides) -> LoadedModel:
    """A class of an installed package, built with no arguments: whatever weights its constructor
    loads (some packages ship trained weights; random unless two builds under other seeds agree) unless
    ``checkpoint`` replaces them."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError("cannot import '{module_name}' for {model} {module_name}:{class_name} ({exc}); install the "
                        "package, or give path/to/file.py:ClassName",
                        settings=("model",), module_name=module_name, class_name=class_name, exc=exc) from exc
    return _from_class(module, f"module {module_name}", class_name, f"{module_name}.{class_name}",
                       f"{module_name}:{class_name}", checkpoint, trust, meta)


def _from_class(module, where: str, class_name: str, name: str, source: str, checkpoint, trust: bool,
                meta: MetaOverrides) -> LoadedModel:
    cls = getattr(module, class_name, None)  # an nn.Module class, or a function that builds one (a factory)
    if cls is None or not (inspect.isfunction(cls) or (isinstance(cls, type) and issubclass(cls, nn.Module))):
        names = [n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module)
                 and v.__module__ == module.__name__]
        raise UserError("{where} has no nn.Module class '{class_name}'; it defines: {defined}",
                        where=where, class_name=class_name, defined=", ".join(names) or "none")
    with seeded():  # the build and the dry forward, which draws a lazy layer's (nn.LazyLinear) weights
        try:
            model = cls()
        except TypeError as exc:
            raise UserError("{class_name}() needs arguments ({exc}); give it defaults so it can be built without any",
                            class_name=class_name, exc=exc) from exc
        if not isinstance(model, nn.Module):
            raise UserError("{class_name}() returned a {kind}, not an nn.Module", class_name=class_name,
                            kind=type(model).__name__)
        model = with_forward_args(model, meta.forward_args)
        from_code = checkpoint is None and weights_set_by_constructor(cls, model)
        low = sorted({str(t.dtype).removeprefix("torch.") for t in (*model.parameters(), *model.buffers())
                      if t.is_floating_point() and t.dtype != torch.float32})
        if low:  # images are optimized in float32 (--amp: autocast), which a half model's layers refuse
            model.float()
        # Weights before the dry forward, which may keep what they give (a block fused at its first forward);
        # a lazy layer (nn.LazyLinear) takes them only after it, once that forward gave it its shape.
        lazy = any(map(is_lazy, (*model.parameters(), *model.buffers())))
        sha = None
        if checkpoint is not None and not lazy:
            sha = load_weights(model, checkpoint, trust, main=module)
        spec = _spec_from_flags(model, name, meta)
    if checkpoint is not None and lazy:
        sha = load_weights(model, checkpoint, trust, main=module)
    if checkpoint is not None:
        source = f"{source} + {checkpoint}"
    random_weights = checkpoint is None and not from_code
    loaded = LoadedModel(model.eval(), spec, source, sha, random_weights=random_weights, weights_from_code=from_code)
    if low:
        loaded.notes.append(Message("{class_name}'s weights are {dtypes}: run in float32 ({amp} runs the model in "
                                    "bfloat16)", settings=("amp",), class_name=class_name, dtypes=", ".join(low)))
    first, shape = first_conv_channels(model), spec.input_shape
    if len(shape) == 3 and first is not None and first != shape[0] and shape[-1] == first:
        loaded.notes.append(Message("{class_name}'s first conv takes {first} channels and the input's last "
                                    "dimension is {first}: a model that takes channels-last input (H, W, C) cannot be "
                                    "shown (introspect's images are C, H, W: here {c} channels of {h}×{w})",
                                    class_name=class_name, first=first, c=shape[0], h=shape[1], w=shape[2]))
    untraced = fx_graph(model)
    if isinstance(untraced, str):
        loaded.notes.append(f"torch.fx cannot trace {class_name}'s forward ({untraced}): a layer's channels are measured "
                            "after the BatchNorms and activations that follow it only inside an nn.Sequential that runs "
                            "as a whole, else "
                            "at its raw output (`introspect layers` shows where)")
    if random_weights:
        loaded.notes.append(Message("{class_name} has random weights (no {checkpoint}): results show the untrained network",
                                    settings=("checkpoint",), class_name=class_name))
    elif from_code:
        loaded.notes.append(f"{class_name} has weights from the model's code: its constructor sets them (built under "
                            "two seeds, the same weights; no checkpoint given)")
    return loaded


#: Global seeds a class is built under to tell weights its constructor sets from random initialization.
PROBE_SEEDS = (0x5EED1, 0x5EED2)
#: The global seed every model is built under: random weights are then the same in every process that loads the
#: model (a --resume, torchrun's ranks, explore's pages, rerun), as the weights digest a resume checks needs.
BUILD_SEED = 0


@contextlib.contextmanager
def seeded() -> Iterator[None]:
    """The global RNG under ``BUILD_SEED`` for the duration (a model's build, and the first forward that
    initializes its lazy layers), its state restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILD_SEED)
        yield


def weights_set_by_constructor(cls: type, model: nn.Module) -> bool:
    """True when building ``cls`` under other global seeds (torch.manual_seed) gives ``model``'s very weights
    (parameters and buffers): its constructor sets or loads them. The global RNG state is restored afterwards.
    A model without parameters or buffers has no weights to be random."""
    state = {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    if not state:
        return True
    with torch.random.fork_rng(devices=[]):
        for seed in PROBE_SEEDS:
            torch.manual_seed(seed)
            try:
                other = cls().state_dict()
            except Exception:  # noqa: BLE001 - it built once; a second build that fails says nothing
                return False
            if set(other) != set(state) or not all(
                    isinstance(other[k], torch.Tensor) and other[k].shape == v.shape and torch.equal(other[k].cpu(), v.cpu())
                    for k, v in state.items()):
                return False
    return True


def _torchscript(path: Path, meta: MetaOverrides) -> LoadedModel:
    if not is_torchscript(path) and _is_introspect_checkpoint(path):
        raise UserError("'{path}' is an introspect checkpoint (its architecture and metadata inside): pass it as "
                        "{checkpoint} FILE, without {model}", settings=("checkpoint", "model"), path=path)
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


def _is_introspect_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a checkpoint ``save_checkpoint`` wrote (read safely: weights only)."""
    try:
        stored = read_checkpoint(path)
    except UserError:
        return False
    return isinstance(stored, dict) and isinstance(stored.get("spec"), dict) and "state_dict" in stored


def first_conv_channels(model: nn.Module) -> int | None:
    """The input channels of the model's first conv: the first to run where torch.fx traces the forward (a module
    defined before the stem reads the stem's output, not the image), else the first defined, a TorchScript one (its
    ``original_name``) included."""
    graph = fx_graph(model)
    if not isinstance(graph, str):
        modules = dict(model.named_modules())
        for node in graph.nodes:
            module = modules.get(node.target) if node.op == "call_module" else None
            if isinstance(module, (nn.Conv2d, nn.Conv1d, nn.Conv3d)):
                return module.in_channels
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv1d, nn.Conv3d)):
            return module.in_channels
        if isinstance(module, torch.jit.ScriptModule) and getattr(module, "original_name", "") in ("Conv1d", "Conv2d", "Conv3d"):
            return int(module.weight.shape[1] * getattr(module, "groups", 1))  # traced: no in_channels, no groups
    return None


#: Activation modules whose function ``objectives.ACTIVATION_FUNCTIONS`` applies to the hooked output before
#: them (so channel objectives keep their pre-activation term): name, or a function of the module to a name.
ACTIVATION_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish", nn.SiLU: "silu", nn.Mish: "mish",
                      nn.GELU: lambda m: "gelu" if m.approximate == "none" else f"gelu:{m.approximate}",
                      nn.LeakyReLU: lambda m: _named("leaky_relu", m.negative_slope, 0.01),
                      nn.ELU: lambda m: _named("elu", m.alpha, 1.0), nn.Tanh: "tanh", nn.Sigmoid: "sigmoid",
                      nn.Softplus: lambda m: _named("softplus", m.beta, 1.0) if m.threshold == 20 else None,
                      nn.Hardsigmoid: "hardsigmoid", nn.SELU: "selu",
                      nn.Hardtanh: lambda m: "hardtanh" if (m.min_val, m.max_val) == (-1.0, 1.0) else None}
#: Modules that keep each channel to itself and change no shape (in eval mode): a channel is measured after them.
#: PReLU's slopes are weights, so it is hooked itself rather than applied as a function.
PASS_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.PReLU)
#: Modules that change nothing in eval mode: passed over, never hooked.
NO_OP_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
#: Activation calls in a forward: the call -> (name, the positional index and keyword of its parameter, default).
ACTIVATION_CALLS = {F.relu: ("relu", None), torch.relu: ("relu", None), torch.relu_: ("relu", None),
                    F.relu6: ("relu6", None), F.hardswish: ("hardswish", None), F.silu: ("silu", None),
                    F.mish: ("mish", None), F.gelu: ("gelu", None),
                    F.leaky_relu: ("leaky_relu", (1, "negative_slope", 0.01)), F.elu: ("elu", (1, "alpha", 1.0)),
                    torch.tanh: ("tanh", None), F.tanh: ("tanh", None), torch.sigmoid: ("sigmoid", None),
                    F.sigmoid: ("sigmoid", None), F.softplus: ("softplus", (1, "beta", 1.0)),
                    F.hardsigmoid: ("hardsigmoid", None), F.selu: ("selu", None)}
ACTIVATION_METHODS = {"relu": "relu", "relu_": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}
#: Clamps that are a ReLU or ReLU6 written out: (min, max) -> the activation.
CLAMPS = {(0, None): "relu", (0, 6): "relu6"}


def _named(name: str, parameter: float, default: float) -> str:
    return name if parameter == default else f"{name}:{parameter:g}"


@dataclass(frozen=True)
class _Step:
    """One step of a layer's output on its way to the next layer: a module (``module`` its name) or a call."""

    label: str  # as the chain shows it: a module's name, or "F.relu", "x*sigmoid(x)"
    activation: str | None = None  # the function it applies (None: a pass-through module)
    module: str | None = None  # the module's name; None for a call
    reused: bool = False  # a module called more than once per forward: its hook sees only its first call


@dataclass(frozen=True)
class MeasuringPoint:
    """Where a layer's channels are measured: ``chain`` (the steps after the layer, as shown), ``tap`` (the module
    hooked) and ``activation`` (applied to the tap's output)."""

    chain: tuple[str, ...]
    tap: str
    activation: str


def _point(layer: str, steps: list[_Step]) -> MeasuringPoint | None:
    """The measuring point after ``steps``: the last hookable module, and an activation after it."""
    tap, activation, kept = layer, "identity", []
    for step in steps:
        if step.module is not None and step.activation is None:  # BatchNorm, PReLU: hook it
            if step.reused:
                break
            tap, activation = step.module, "identity"
        elif activation != "identity":  # a second activation after the first: hook the first if it is a module
            if step.module is None or step.reused or kept[-1].module is None:
                break
            tap, activation = kept[-1].module, step.activation
        else:
            activation = step.activation
        kept.append(step)
    if not kept:
        return None
    return MeasuringPoint(tuple(step.label for step in kept), tap, activation)


def measuring_points(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> dict[str, MeasuringPoint]:
    """{layer: MeasuringPoint} for every module whose output goes, before anything mixes channels, adds a residual
    or concatenates, through BatchNorms, activations (modules or calls, SiLU written out as x*sigmoid(x) too),
    PReLUs, dropouts or identities: a channel report then measures what the next layer reads. Where torch.fx
    traces the forward, its graph says (a step must be the only use of what comes before); where it cannot
    (data-dependent control flow), the modules that follow in an nn.Sequential — one that runs as a whole on
    zeros of ``input_shape``, when given (a forward may call its parts one by one, in another order)."""
    traced = _traced_points(model)
    if traced is not None:
        return traced[0]
    ran = None if input_shape is None else _sequentials_run(model, input_shape)
    found = {}
    for prefix, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential) or (ran is not None and prefix not in ran):
            continue
        children = [(f"{prefix}.{name}" if prefix else name, child) for name, child in parent.named_children()]
        for i, (layer, _) in enumerate(children):
            steps = []
            for name, following in children[i + 1:]:
                step = _module_step(name, following)
                if step is None:
                    break
                if step.label:
                    steps.append(step)
            point = _point(layer, steps)
            if point is not None:
                found[layer] = point
    return found


@torch.no_grad()
def _sequentials_run(model: nn.Module, input_shape: tuple[int, ...]) -> set[str]:
    """The names of the nn.Sequential modules whose own forward runs once in a forward pass on zeros."""
    calls: dict[str, int] = {}
    handles = [m.register_forward_hook(lambda _m, _i, _o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
               for name, m in model.named_modules() if isinstance(m, nn.Sequential)]
    try:
        model(torch.zeros(DRY_BATCH, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return {name for name, count in calls.items() if count == 1}


def _module_step(name: str, module: nn.Module, reused: bool = False) -> _Step | None:
    """The step a module makes (one with an empty label changes nothing), or None where it mixes channels."""
    if isinstance(module, NO_OP_MODULES):
        return _Step("")
    named = ACTIVATION_MODULES.get(type(module))
    if named is not None:
        return _Step(name, named if isinstance(named, str) else named(module), name, reused)
    if isinstance(module, PASS_MODULES):
        return _Step(name, None, name, reused)
    return None


def _call_step(node: torch.fx.Node) -> _Step | None:
    clamp = _clamp_step(node)
    if clamp is not None:
        return clamp
    if node.op == "call_method":
        name = ACTIVATION_METHODS.get(node.target)
        return None if name is None or len(node.args) != 1 or node.kwargs else _Step(f".{node.target}()", name)
    if node.op != "call_function" or node.target not in ACTIVATION_CALLS:
        return None
    name, parameter = ACTIVATION_CALLS[node.target]
    functional = node.target.__module__.startswith("torch.nn") or getattr(F, node.target.__name__, None) is node.target
    label = f"{'F' if functional else 'torch'}.{node.target.__name__}"  # F.softplus is torch._C._nn's own
    if node.target is F.gelu:
        approximate = node.kwargs.get("approximate", "none")
        return _Step(label, "gelu" if approximate == "none" else f"gelu:{approximate}") if isinstance(approximate, str) else None
    if node.target is F.softplus and (node.args[2] if len(node.args) > 2 else node.kwargs.get("threshold", 20)) != 20:
        return None  # another threshold: no function of its own here (the module's path checks it too)
    if parameter is not None:
        index, keyword, default = parameter
        value = node.args[index] if len(node.args) > index else node.kwargs.get(keyword, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        name = _named(name, float(value), default)
    return _Step(label, name)


def _clamp_step(node: torch.fx.Node) -> _Step | None:
    """``x.clamp(min=0)``, ``torch.clamp(x, 0, 6)``, ``x.clamp_min(0)``...: a ReLU (ReLU6) written out; else None."""
    method = node.op == "call_method" and node.target in ("clamp", "clamp_", "clamp_min", "clamp_min_")
    function = node.op == "call_function" and node.target in (torch.clamp, torch.clamp_min)
    if not (method or function) or not node.args:
        return None
    name = node.target if method else node.target.__name__
    bounds = list(node.args[1:]) + [None] * 2
    low = node.kwargs.get("min", bounds[0])
    high = None if "min" in name else node.kwargs.get("max", bounds[1])
    if not all(value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)) for value in (low, high)):
        return None  # a tensor bound: no fixed function
    activation = CLAMPS.get((low, high))
    if activation is None:
        return None
    bound = ", ".join(f"{key}={value:g}" for key, value in (("min", low), ("max", high)) if value is not None)
    return _Step(f".{name}({bound})" if method else f"torch.{name}({bound})", activation)


def _is_sigmoid(node: torch.fx.Node, of: torch.fx.Node) -> bool:
    return (((node.op == "call_function" and node.target in (torch.sigmoid, F.sigmoid))
             or (node.op == "call_method" and node.target == "sigmoid")) and tuple(node.args) == (of,)
            and not node.kwargs)


def _silu_written_out(node: torch.fx.Node) -> torch.fx.Node | None:
    """The product node of ``x * sigmoid(x)`` when ``node`` is x and that is all it is used for."""
    import operator

    users = list(node.users)
    if len(users) != 2:
        return None
    sigmoid = next((u for u in users if _is_sigmoid(u, node)), None)
    product = next((u for u in users if u is not sigmoid), None)
    if (sigmoid is None or list(sigmoid.users) != [product] or product.op != "call_function"
            or product.target not in (operator.mul, torch.mul) or set(product.args) != {node, sigmoid}):
        return None
    return product


#: fx_graph's answers by model, with the modules and modes they were traced in (traced again when those change).
_GRAPHS: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, torch.fx.Graph | str]]" = weakref.WeakKeyDictionary()


def fx_graph(model: nn.Module) -> torch.fx.Graph | str:
    """torch.fx's graph of ``model``'s forward, or why it cannot trace it (the error's first line, shortened). Traced
    once per model while its modules and their train/eval modes stay the same: loading asks several times, and a big
    model's trace takes a while (and runs the forward's Python, side effects included). Other state the forward
    reads (a plain attribute it branches on) is not watched. The graph is shared: read it, do not change it."""
    modules = tuple((name, id(module), module.training) for name, module in model.named_modules())
    try:
        known = _GRAPHS.get(model)
    except TypeError:  # a module that cannot be a key (a dataclass's __eq__ without __hash__): traced every time
        known = None
    if known is not None and known[0] == modules:
        return known[1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # noqa: BLE001 - any reason fx gives up
        first = (str(exc).strip().splitlines() or [""])[0]
        graph = f"{type(exc).__name__}: {first[:100]}" if first else type(exc).__name__
    with contextlib.suppress(TypeError):
        _GRAPHS[model] = (modules, graph)
    return graph


def _traced_points(model: nn.Module) -> tuple[dict[str, MeasuringPoint], dict[torch.fx.Node, str]] | None:
    """The measuring points fx's graph shows, and for each the node its chain ends at (node -> layer); None where fx
    cannot trace the forward."""
    from collections import Counter

    graph = fx_graph(model)
    if isinstance(graph, str):  # a forward fx cannot trace: fall back to what nn.Sequential shows
        return None
    modules = dict(model.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    found, first, ends = {}, set(), {}
    for node in graph.nodes:
        # a module called more than once: its first call, the one its hook records (graph order is run order)
        if node.op != "call_module" or node.target in first:
            continue
        first.add(node.target)
        steps, nodes, current = [], [], node  # each labelled step and the node that makes it
        while True:
            product = _silu_written_out(current)
            if product is not None:
                steps.append(_Step("x*sigmoid(x)", "silu"))
                nodes.append(product)
                current = product
                continue
            if len(current.users) != 1:
                break
            (user,) = current.users
            if not user.args or user.args[0] is not current or current in (*user.args[1:], *user.kwargs.values()):
                break
            if user.op == "call_module":
                step = _module_step(user.target, modules[user.target], calls[user.target] > 1)
                if step is not None and step.module is not None and len(user.args) != 1:
                    step = None
            else:
                step = _call_step(user)
            if step is None:
                break
            if step.label:
                steps.append(step)
                nodes.append(user)
            current = user
        point = _point(node.target, steps)
        if point is not None:
            found[node.target] = point
            ends.setdefault(nodes[len(point.chain) - 1], node.target)
    return found, ends


def measuring_fields(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> dict[str, dict]:
    """The spec fields that say where each layer's channels are measured: activations, measure, taps
    (``input_shape``: see ``measuring_points``; with it, a module whose output is an activation module's,
    ``activation_outputs``, is measured as after that activation: a ReLU's (ReLU6's) as that ReLU again, which changes
    nothing; another's, such as a Hardswish ending a ``Conv2dNormActivation``, at the measuring point whose chain ends
    in it, the same tensor; and a block ending in a ReLU call, ``traced_relu_outputs``, as after that ReLU)."""
    points = measuring_points(model, input_shape)
    activations = {layer: p.activation for layer, p in points.items() if p.activation != "identity"}
    taps = {layer: p.tap for layer, p in points.items() if p.tap != layer}
    if input_shape is not None:
        modules = dict(model.named_modules())
        ends = dict(traced_relu_outputs(model))
        for layer, made_by in activation_outputs(model, input_shape).items():
            kind = IDEMPOTENT_ACTIVATIONS.get(type(modules[made_by]))
            # the measuring points whose chain ends in it (a conv's and its BatchNorm's: the same tap and activation)
            ending = {(point.tap, point.activation) for point in points.values() if point.chain[-1:] == (made_by,)}
            if kind is not None:
                ends[layer] = kind
            elif layer not in points and len(ending) == 1:  # that point's tap, with its activation applied
                (tap, activation), = ending
                activations[layer] = activation
                if tap != layer:
                    taps[layer] = tap
        activations.update({layer: kind for layer, kind in ends.items() if layer not in points})
        for layer, same in traced_aliases(model).items():  # the tensor a measuring chain ends at: measured as there
            if layer not in activations:
                point = points[same]
                if point.activation != "identity":
                    activations[layer] = point.activation
                if point.tap != layer:
                    taps[layer] = point.tap
    return {"activations": activations, "measure": {layer: p.chain for layer, p in points.items()}, "taps": taps}


#: Activation modules that applied again change nothing: a module whose output is one's is measured as after it.
IDEMPOTENT_ACTIVATIONS = {nn.ReLU: "relu", nn.ReLU6: "relu6"}


def relu_outputs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, str]:
    """{module: "relu" or "relu6"} for each module whose output is the very tensor an nn.ReLU or nn.ReLU6 module
    returned (``activation_outputs``): the module itself, or a block or nn.Sequential that ends in one (a ResNet
    ``layer1.0``, a ``Conv2dNormActivation``). Named as a layer, its channels are then judged live or dead as a
    conv's after its ReLU are, rather than as a signed output."""
    modules = dict(model.named_modules())
    return {layer: IDEMPOTENT_ACTIVATIONS[type(modules[made_by])]
            for layer, made_by in activation_outputs(model, input_shape).items()
            if type(modules[made_by]) in IDEMPOTENT_ACTIVATIONS}


def activation_outputs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, str]:
    """{module: the activation module whose output it is} for each module whose output (its first call's, in one
    dry forward on DRY_BATCH zero inputs) is the very tensor an activation module (``ACTIVATION_MODULES``) returned,
    unchanged in place since: the activation itself, or a block or nn.Sequential that ends in one. An activation other
    than a ReLU (ReLU6) that runs more than once is left out: which of its calls made the output, no measuring point
    says. {} where the forward fails (the run itself says why) or the model has no activation module."""
    if not any(type(m) in ACTIVATION_MODULES for m in model.modules()):
        return {}
    made: dict[int, tuple[str, torch.Tensor, int]] = {}  # id of a tensor an activation module returned (every call)
    seen, found = set(), {}  # -> that module, the tensor (kept alive for the pass: no id is reused), its version then
    calls: dict[str, int] = {}

    def recorder(name: str):
        def hook(module, _inputs, output):
            if not isinstance(output, torch.Tensor):
                return
            if type(module) in ACTIVATION_MODULES:
                made[id(output)] = (name, output, output._version)
                calls[name] = calls.get(name, 0) + 1
            if name in seen:
                return
            seen.add(name)
            entry = made.get(id(output))
            if entry is not None and entry[2] == output._version:  # not changed in place since (a `y -= 1`)
                found[name] = entry[0]
        return hook

    handles = [m.register_forward_hook(recorder(name)) for name, m in model.named_modules()
               if name and not isinstance(m, torch.jit.ScriptModule)]
    device = model_device(model)
    try:
        with frozen(model), torch.no_grad(), rng_kept(device):
            model(torch.zeros(DRY_BATCH, *input_shape, device=device))
    except Exception:  # noqa: BLE001 - the user's model: its own run says what fails
        return {}
    finally:
        for handle in handles:
            handle.remove()
    modules = dict(model.named_modules())
    return {layer: made_by for layer, made_by in found.items()
            if calls[made_by] == 1 or type(modules[made_by]) in IDEMPOTENT_ACTIVATIONS}


def traced_relu_outputs(model: nn.Module) -> dict[str, str]:
    """{module: "relu" or "relu6"} for each module fx traces through whose output (its first call's) is a ReLU call's
    own: a block whose forward ends in ``F.relu(x + self.bn(self.conv(x)))``, which no module hook can see
    (``relu_outputs`` follows nn.ReLU modules). A module is judged by the one node of its call that anything after the
    call uses; a call that hands on more than one (a tuple) or ends in anything else is left out. {} where fx cannot
    trace the forward."""
    graph = fx_graph(model)
    if isinstance(graph, str):
        return {}
    modules = dict(model.named_modules())
    found = {}
    for scope, nodes in _handed_on(graph).items():
        kind = _relu_made(nodes[0], modules) if len(nodes) == 1 and nodes[0].op != "call_module" else None
        if kind is not None:
            found[scope] = kind
    return found


def _handed_on(graph: torch.fx.Graph) -> dict[str, list[torch.fx.Node]]:
    """Per module fx traced through (its first call: scopes without "@N"), the nodes of that call anything after it
    uses: its output, one node unless it returns several."""
    handed_on: dict[str, list[torch.fx.Node]] = {}
    for node in graph.nodes:
        for scope in node.meta.get("nn_module_stack", {}):
            if "@" not in scope and any(scope not in user.meta.get("nn_module_stack", {}) for user in node.users):
                handed_on.setdefault(scope, []).append(node)
    return handed_on


def traced_aliases(model: nn.Module) -> dict[str, str]:
    """{module: layer} for each module fx traces through whose output is ``layer``'s own or the tensor where its
    measuring chain ends: DenseNet's ``features`` (its last module's output goes on through F.relu), a block ending in
    ``F.gelu(self.bn(self.conv(x)))``. Named as a layer, it is measured as that layer is: one tensor, one verdict."""
    traced = _traced_points(model)
    if traced is None:
        return {}
    points, ends = traced
    graph = fx_graph(model)
    firsts = {}  # each module's first call: the one its hook records and its measuring point follows
    for node in graph.nodes:
        if node.op == "call_module":
            firsts.setdefault(node.target, node)
    found = {}
    for scope, nodes in _handed_on(graph).items():
        if len(nodes) != 1 or scope in points:
            continue
        node = nodes[0]
        if node in ends:  # where a chain ends
            found[scope] = ends[node]
        elif node.op == "call_module" and node.target in points and firsts[node.target] is node:  # where one starts
            found[scope] = node.target
    return found


#: What keeps a ReLU's output one (nothing below 0, nor above 6 after a ReLU6): pooling and concatenation.
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
         nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
#: Methods that only rearrange values (a channel shuffle's view, transpose, view).
REARRANGING_METHODS = ("view", "reshape", "flatten", "transpose", "permute", "contiguous")
POOL_CALLS = (F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
              F.adaptive_avg_pool1d, F.adaptive_avg_pool2d)


def _relu_made(node: torch.fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """"relu" or "relu6" when ``node``'s values are a ReLU's (ReLU6's) output, applying it again changing nothing: a
    ReLU module or call, a pooling of such, or a concatenation of such (an Inception block's, a SqueezeNet Fire's);
    else None."""
    if node.op == "call_module":
        module = modules.get(node.target)
        if isinstance(module, POOLS) and node.args and isinstance(node.args[0], torch.fx.Node):
            return _relu_made(node.args[0], modules)
        return IDEMPOTENT_ACTIVATIONS.get(type(module))
    if node.op == "call_function" and node.target in POOL_CALLS and node.args and isinstance(node.args[0], torch.fx.Node):
        return _relu_made(node.args[0], modules)
    moved = ((node.op == "call_method" and node.target in REARRANGING_METHODS)
             or (node.op == "call_function" and node.target in (torch.flatten, torch.transpose, torch.permute)))
    if moved and node.args and isinstance(node.args[0], torch.fx.Node):  # ShuffleNet's channel shuffle
        return _relu_made(node.args[0], modules)
    if node.op == "call_function" and node.target in (torch.cat, torch.concat) and node.args:
        parts = node.args[0] if isinstance(node.args[0], (list, tuple)) else ()
        kinds = [_relu_made(part, modules) if isinstance(part, torch.fx.Node) else None for part in parts]
        if not kinds or None in kinds:
            return None
        return "relu6" if set(kinds) == {"relu6"} else "relu"  # a ReLU leaves a ReLU6's output as it is
    step = _call_step(node)
    return step.activation if step is not None and step.activation in IDEMPOTENT_ACTIVATIONS.values() else None


def find_activations(model: nn.Module) -> dict[str, str]:
    """{layer: activation} applied to each layer's hooked output (``spec.tap(layer)``): see ``measuring_points``."""
    return measuring_fields(model)["activations"]


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
                     **measuring_fields(model, shape))
    plain = isinstance(output, torch.Tensor) and output.ndim in (2, 4)  # (batch, classes) or a spatial map of them
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
    """The model's output on two zero images of ``shape`` (a forward that needs a batch runs on them); a UserError if
    it does not run, or if its output has not one row per image: an input of another size that a fixed-size
    ``x.view(-1, N)`` folds into more rows (or fewer) would otherwise fail only after a whole optimization.
    ``fixed``: the input shape the model's own metadata gives, which the flags changed (None: the flags gave it)."""
    try:
        output = model(torch.zeros(DRY_BATCH, *shape))
    except Exception as exc:  # noqa: BLE001 - the user's model, the user's shape
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        first = next((m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))), None)
        if isinstance(exc, TypeError) and "required" in reason and "argument" in reason:
            raise UserError("{name}'s forward needs more than the input: {reason}; give the others with {forward_arg} "
                            "NAME=VALUE", settings=("forward_arg",), name=name, reason=reason) from exc
        embedding = next((n for n, m in model.named_modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))), None)
        if embedding is not None and ("indices" in reason or "Long" in reason):
            raise UserError("{name} takes integer token ids ({layer} is an nn.Embedding), which no input shape fixes: "
                            "introspect optimizes continuous inputs (images, 1-D signals) by their gradient, and token "
                            "ids have none", name=name, layer=embedding) from exc
        if isinstance(first, nn.Conv3d) and fixed is None:
            raise UserError("{name} does not run on input of shape {shape}: its first conv is a Conv3d, which takes "
                            "3-D input (video, volumes); introspect takes images (C,H,W) and 1-D signals (C,L) only",
                            name=name, shape=shape) from exc
        if _runs_one_image(model, shape):
            raise UserError("{name} runs on one image of shape {shape} but not on a batch of {batch} ({reason}): its "
                            "forward folds the batch (a view to a fixed size?); introspect runs images in batches, so "
                            "keep the batch dimension (x.view(x.size(0), -1))", name=name, shape=shape,
                            batch=DRY_BATCH, reason=reason) from exc
        if isinstance(first, nn.Conv1d) and len(shape) == 3 and fixed is None:
            raise UserError("{name} does not run on input of shape {shape}: its first conv is a Conv1d, which takes a "
                            "1-D signal: pass {input_shape} C,L (e.g. {example}) instead of an image's size",
                            settings=("input_shape",), name=name, shape=shape,
                            example=f"{first.in_channels},{shape[-1]}") from exc
        wanted = first_conv_channels(model)  # of the conv that runs first, where fx can tell
        if wanted is not None and "channels" in reason and wanted != shape[0]:
            raise UserError("{name}'s first conv takes {wanted}-channel input, not {given}: pass {input_shape} "
                            "{example}", settings=("input_shape",), name=name, wanted=wanted, given=shape[0],
                            example=",".join(map(str, (wanted, *shape[1:])))) from exc
        if "too small" in reason or "greater than actual input size" in reason:
            own = "" if fixed is None else f" (its own input is {','.join(map(str, fixed))})"
            raise UserError("{name} does not run on input of shape {shape}: too small for its layers ({reason}); give a "
                            "larger {size}{own}", settings=("size",), name=name, shape=shape, reason=reason,
                            own=own) from exc
        if fixed is None:
            raise UserError("{name} does not run on input of shape {shape}: {reason} (check {size} / {input_shape})",
                            settings=("size", "input_shape"), name=name, shape=shape, reason=reason) from exc
        raise UserError("{name} does not run on input of shape {shape}: {reason}; its input may be fixed at {fixed}",
                        name=name, shape=shape, reason=reason, fixed=fixed) from exc
    # Checked where the output is taken as (batch, classes) or a map of them; another (a sequence-first (T, B, K),
    # a structure) has its logits named by the flags, and its layers' rows are checked where they are hooked.
    rows = output.shape[0] if isinstance(output, torch.Tensor) and output.ndim in (2, 4) else DRY_BATCH
    if rows != DRY_BATCH and fixed is None:
        raise UserError("{name} gives {rows} output rows for {batch} input images of shape {shape}, not one per "
                        "image (check {size} / {input_shape})", settings=("size", "input_shape"), name=name,
                        rows=rows, batch=DRY_BATCH, shape=shape)
    if rows != DRY_BATCH:
        raise UserError("{name} gives {rows} output rows for {batch} input images of shape {shape}, not one per "
                        "image; its input may be fixed at {fixed}", name=name, rows=rows, batch=DRY_BATCH,
                        shape=shape, fixed=fixed)
    return output



@torch.no_grad()
def _runs_one_image(model: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether ``model`` runs on one zero image of ``shape`` (after failing on a batch: it folds the batch)."""
    try:
        model(torch.zeros(1, *shape))
    except Exception:  # noqa: BLE001 - the user's model: failing here too says the shape is what is wrong
        return False
    return True


def _per_channel(values: tuple[float, ...], channels: int, setting: str) -> tuple[float, ...]:
    """One value per input channel from one or ``channels`` values of ``setting`` (mean or std)."""
    if len(values) == 1:
        return values * channels
    if len(values) == channels:
        return values
    given = "one channel (give one value)" if channels == 1 else f"{channels} channels (give 1 or {channels} values)"
    if setting == "mean":
        raise UserError("{mean} has {count} values; the input has {given}", settings=("mean",), count=len(values),
                        given=given)
    raise UserError("{std} has {count} values; the input has {given}", settings=("std",), count=len(values), given=given)


#: An input this many times smaller than the model's own (on a side) gets a note.
SMALL_INPUT = 4


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
        own, given = spec.input_shape[-2:], tuple(shape)[-2:]
        if len(shape) == 3 and len(spec.input_shape) == 3 and any(g * SMALL_INPUT < o for g, o in zip(given, own)):
            loaded.notes.append(f"{spec.name} was made for {own[0]}×{own[1]} inputs: at {given[0]}×{given[1]} its "
                                "deeper layers see maps of a pixel or two, and what they respond to there says little "
                                "of what they do at its own size")
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
    output (its part ``output_key``) when ``layer`` is "" — on one dry forward (DRY_BATCH images); K for a map
    (batch, K, H, W)."""
    where = layer or (":" + output_key if output_key else "")
    try:
        with HookRegistry(model, [where]) as hooks:
            output = hooks.run(torch.zeros(DRY_BATCH, *input_shape))[where]
    except KeyError as exc:  # a part of the output that is not there
        raise UserError("{logits_output} '{output_key}': {reason}",
                        settings=("logits_output",), output_key=output_key, reason=exc.args[0]) from None
    if output.ndim < 2:
        raise UserError("the logits have shape {shape}, not (batch, classes); name them with {logits_layer} or "
                        "{logits_output}", settings=("logits_layer", "logits_output"),
                        shape=tuple(output.shape))
    values = class_values(output, "mean" if output.ndim == 4 else None)  # a spatial map: one class per channel
    if values.shape[1] == 0:
        raise UserError("the model's logits have shape {shape}: it scores no classes; name the logits with "
                        "{logits_layer} or {logits_output}", settings=("logits_layer", "logits_output"),
                        shape=tuple(output.shape))
    return values.shape[1]
