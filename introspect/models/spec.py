"""ModelSpec: what the tools need to know about a model besides its weights."""
from __future__ import annotations

import copy
import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from ..objectives import ACTIVATION_FUNCTIONS
from ..outputs import KINDS, POSITIONS

#: The fields that make a spec's image prior (estimated together by ``introspect.params.estimate_prior``).
PRIOR_FIELDS = ("spectrum", "image_mean", "image_support", "ink_level", "image_basis", "basis_mean")


@dataclass(frozen=True)
class ModelSpec:
    """Metadata that lives beside a model's weights.

    ``input_shape`` is what the model takes per example: (C, H, W), (C, L) for 1-D signals (Conv1d) or
    (L,); pixel space [0, 1]. The library works on the canonical ``image_shape`` (C, H, W), a 1-D
    input being one row (C, 1, L), and reshapes to ``input_shape`` at the model (``Normalize``).
    ``mean``/``std`` are the
    per-channel normalization applied after it. ``logits_layer`` is the dotted
    module path whose output holds the class logits (before any softmax).
    ``activations`` maps a layer to the activation function the model applies
    to its output (e.g. {"conv2": "relu"} when forward calls F.relu, which no
    hook can see), so channel reports can show what the next layer receives.
    ``spectrum`` optionally holds the mean Fourier magnitude of real inputs
    (shape H x (W//2+1), as nested lists) used to shape visualizations.
    ``image_mean`` and ``image_support`` (C x h x w nested lists, at most PRIOR_SIZE pixels a side,
    resized to the input when used) are the mean real input and, per pixel, how bright real inputs
    get there (the 95th percentile, scaled so the brightest pixel is 1): with ``spectrum`` they make
    the image prior estimated from the model's data (``introspect.params.estimate_prior``), with
    ``ink_level`` (how bright real inputs' bright parts are) and, for small inputs, the data basis:
    ``image_basis`` (k rows of C*H*W: principal directions of real inputs' logits, each scaled by its
    spread) and ``basis_mean`` (C*H*W: their mean logit).
    ``measure`` maps a layer to the chain of steps its output goes through before anything mixes channels,
    adds a residual or concatenates (module names, or calls such as "F.relu"): {"conv1": ("bn1", "relu")};
    channels are measured at the end of the chain, what the next layer reads. ``taps`` maps such a layer
    to the module whose output is hooked for it (the chain's last module before its final activation,
    which ``activations`` then applies): {"conv1": "bn1"}. A layer in neither is measured at its output.
    ``output_kind`` says what the values at the logits are (``introspect.outputs``: None or "logits",
    "sigmoid logits", "softmax", "log-softmax", "sigmoid") and ``logits_position`` how a spatial map of
    them (B, K, H, W) becomes (B, K) ("mean", "center", "max"; None: flattened).
    ``logits_output`` picks the logits out of a structured output (an index of a
    tuple, a key of a dict, an attribute) when ``logits_layer`` is "". A
    ``logits_layer`` of None means the logits are unknown: layers, channels and
    activations work, class objectives do not.
    """

    name: str
    architecture: str
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    logits_layer: str | None
    class_names: tuple[str, ...]
    dataset: str | None = None
    activations: dict[str, str] | None = None
    spectrum: tuple[tuple[float, ...], ...] | None = field(default=None, repr=False)
    logits_output: str | None = None
    image_mean: tuple[tuple[tuple[float, ...], ...], ...] | None = field(default=None, repr=False)
    image_support: tuple[tuple[tuple[float, ...], ...], ...] | None = field(default=None, repr=False)
    ink_level: float | None = None
    image_basis: tuple[tuple[float, ...], ...] | None = field(default=None, repr=False)
    basis_mean: tuple[float, ...] | None = field(default=None, repr=False)
    measure: dict[str, tuple[str, ...]] | None = None
    taps: dict[str, str] | None = None
    output_kind: str | None = None
    logits_position: str | None = None

    def __post_init__(self) -> None:
        """Refuse a spec the tools cannot use: ValueError naming the field."""
        self._check(None)

    def _check(self, changed: frozenset[str] | None) -> None:
        """Run the checks that read a field in ``changed`` (every check for None), always in this order, so
        the first error is the one a full check would give (the other fields passed it before)."""
        def reads(*names: str) -> bool:
            return changed is None or not changed.isdisjoint(names)

        for name in ("name", "architecture"):
            if reads(name) and not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {_brief(getattr(self, name))}")
        for name in ("logits_layer", "logits_output"):
            if reads(name) and getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string or None, got {_brief(getattr(self, name))}")
        if reads("output_kind") and self.output_kind is not None and self.output_kind not in KINDS:
            raise ValueError(f"output_kind must be one of {', '.join(KINDS)} or None, got {_brief(self.output_kind)}")
        if reads("logits_position") and self.logits_position is not None and self.logits_position not in POSITIONS:
            raise ValueError(f"logits_position must be one of {', '.join(POSITIONS)} or None, "
                             f"got {_brief(self.logits_position)}")
        if reads("dataset") and self.dataset is not None and not isinstance(self.dataset, str):
            raise ValueError(f"dataset must be a string or None, got {_brief(self.dataset)}")
        shape = self.input_shape
        if reads("input_shape") and not (isinstance(shape, tuple) and 1 <= len(shape) <= 3
                                         and all(_is_int(v) and v > 0 for v in shape)):
            raise ValueError(f"input_shape must be (C, H, W), (C, L) or (L,): positive whole numbers, got {_brief(shape)}")
        shape = self.image_shape
        for name in ("mean", "std"):
            values = getattr(self, name)
            if reads(name, "input_shape") and not (isinstance(values, tuple) and len(values) == shape[0]
                    and all(_is_number(v) and math.isfinite(v) for v in values)):
                raise ValueError(f"{name} must hold one finite number per input channel ({shape[0]}), got {_brief(values)}")
        if reads("std") and any(v <= 0 for v in self.std):
            raise ValueError(f"std must be > 0 for every channel, got {_brief(self.std)}")
        if reads("class_names", "logits_layer") and not (
                isinstance(self.class_names, tuple) and (self.class_names or self.logits_layer is None)
                and all(isinstance(n, str) for n in self.class_names)):
            raise ValueError(f"class_names must hold at least one name (strings), got {_brief(self.class_names)}")
        if reads("activations") and self.activations is not None:
            if not isinstance(self.activations, dict):
                raise ValueError(f"activations must map layers to function names, got {_brief(self.activations)}")
            unknown = [(layer, name) for layer, name in self.activations.items() if name not in ACTIVATION_FUNCTIONS]
            if unknown:
                raise ValueError(f"activations names unknown function {unknown[0][1]!r} for layer {unknown[0][0]!r}; "
                                 f"known: {', '.join(ACTIVATION_FUNCTIONS)}")
        if reads("measure") and self.measure is not None and not (isinstance(self.measure, dict) and all(
                isinstance(k, str) and isinstance(v, tuple) and all(isinstance(s, str) for s in v)
                for k, v in self.measure.items())):
            raise ValueError(f"measure must map layers to chains of step names, got {_brief(self.measure)}")
        if reads("taps") and self.taps is not None and not (isinstance(self.taps, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.taps.items())):
            raise ValueError(f"taps must map layers to module names, got {_brief(self.taps)}")
        if reads("spectrum", "input_shape") and self.spectrum is not None:
            rows, cols = shape[1], shape[2] // 2 + 1
            if len(self.spectrum) != rows or any(len(row) != cols for row in self.spectrum):
                raise ValueError(f"spectrum must be {rows} x {cols} (H x W//2+1 of input_shape {shape})")
            if not all(_is_number(v) and math.isfinite(v) and v >= 0 for row in self.spectrum for v in row):
                raise ValueError("spectrum must hold finite magnitudes >= 0")
            if not any(v > 0 for row in self.spectrum for v in row):
                raise ValueError("spectrum is all 0: an image with that spectrum cannot change")
        for name in ("image_mean", "image_support"):
            values = getattr(self, name)
            if values is None or not reads(name, "input_shape"):
                continue
            if not (len(values) == shape[0] and len(values[0]) > 0 and len(values[0][0]) > 0
                    and all(len(plane) == len(values[0]) and all(len(row) == len(values[0][0]) for row in plane)
                            for plane in values)):
                raise ValueError(f"{name} must be C x h x w with C = {shape[0]} (input channels)")
            if not all(0.0 <= v <= 1.0 for plane in values for row in plane for v in row):
                raise ValueError(f"{name} must hold pixel values in [0, 1]")

        if reads("ink_level") and self.ink_level is not None and not (
                _is_number(self.ink_level) and 0 < self.ink_level <= 1):
            raise ValueError(f"ink_level must be a number in (0, 1], got {_brief(self.ink_level)}")
        if reads("image_basis", "basis_mean") and (self.image_basis is None) != (self.basis_mean is None):
            raise ValueError("image_basis and basis_mean come together: give both or neither")
        if reads("image_basis", "basis_mean", "input_shape") and self.image_basis is not None:
            size = shape[0] * shape[1] * shape[2]
            if len(self.basis_mean) != size or not self.image_basis or any(len(row) != size for row in self.image_basis):
                raise ValueError(f"image_basis must be rows of C*H*W = {size} numbers, and basis_mean {size} numbers")
            if not all(math.isfinite(v) for row in (*self.image_basis, self.basis_mean) for v in row):
                raise ValueError("image_basis and basis_mean must hold finite numbers")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The input as the library handles it, (C, H, W): a (C, L) or (L,) input is one row (C, 1, L)."""
        return image_shape(self.input_shape)

    @property
    def is_image(self) -> bool:
        """Whether the input is a picture (C, H, W) with both sides above 1: rotation, inversion and colour apply."""
        return len(self.input_shape) == 3 and min(self.input_shape[1:]) > 1

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def logits(self) -> str | None:
        """Where the logits are, as a HookRegistry name: a layer, "" (the output), ":KEY" (part of it), or None."""
        if self.logits_layer is None:
            return None
        if self.logits_layer == "" and self.logits_output:
            return ":" + self.logits_output
        return self.logits_layer

    def activation(self, layer: str) -> str:
        """The activation the model applies to ``layer``'s output ("identity" when none is known). The logits are
        read at their layer itself (``tap``): an activation found at another module (the layer a block's output is
        measured as) is not theirs."""
        if layer == self.logits and (self.taps or {}).get(layer, layer) != layer:
            return "identity"
        return (self.activations or {}).get(layer, "identity")

    def tap(self, layer: str) -> str:
        """The module whose output is hooked to measure ``layer``'s channels (``layer`` itself unless a
        BatchNorm or the like follows it: see ``measure``)."""
        if layer == self.logits:
            return layer
        return (self.taps or {}).get(layer, layer)

    def measured_at(self, layer: str) -> str:
        """Where ``layer``'s channels are measured, in words: "conv1 → bn1 → relu", "fc2 (raw output)", and for a
        block measured at another module's output "features.0 = features.0.1 → hardswish"."""
        chain = (self.measure or {}).get(layer)
        tap = self.tap(layer)
        if chain is None and tap != layer:
            activation = self.activation(layer)
            return f"{layer} = {tap}" + (f" → {activation}" if activation != "identity" else "")
        if chain is None and self.activation(layer) != "identity":
            chain = (self.activation(layer),)
        if not chain:
            return f"{layer} (raw output)"
        return " → ".join((layer, *chain))

    def normalize(self, device: str = "cpu"):
        """The model's normalization as a transform (``transforms.Normalize``): pass it to ``render`` last."""
        from ..normalize import Normalize

        return Normalize.of(self, device)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only, so checkpoints load with ``weights_only=True``. Every field is a value (no nested
        dataclass), and tuples and dicts are rebuilt below: no deep copy (``asdict``'s took 42 ms for a spec with a
        data prior, this 6.6 ms: ``python -m timeit``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = _to_lists(value)
            elif isinstance(value, dict):
                out[key] = {k: _to_lists(v) for k, v in value.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        """The spec stored as ``to_dict`` wrote it; ValueError naming the field when it is malformed."""
        if not isinstance(data, dict):
            raise ValueError(f"the spec must be a mapping of fields, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown spec fields: {', '.join(sorted(map(str, unknown)))}")
        missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING]
        if missing:
            raise ValueError(f"missing spec fields: {', '.join(missing)}")
        return cls(**_coerced(data))

    def replace(self, **changes: Any) -> "ModelSpec":
        """A copy with ``changes`` (values as ``from_dict`` takes them, refused with the same errors); only
        the checks that read a changed field run, so a copy costs what the change costs, not a pass over a
        stored image prior."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown spec fields: {', '.join(sorted(map(str, unknown)))}")
        values = _coerced(changes)
        spec = copy.copy(self)
        for key, value in values.items():
            object.__setattr__(spec, key, value)
        for key in ("activations", "measure", "taps"):  # the copy's own dicts, as from_dict gives (values: tuples)
            if key not in values and isinstance(getattr(spec, key), dict):
                object.__setattr__(spec, key, dict(getattr(spec, key)))
        spec._check(frozenset(values))
        return spec


def image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of an input declared as (C, H, W), (C, L) or (L,)."""
    shape = tuple(shape)
    if len(shape) == 1:
        return (1, 1, shape[0])
    if len(shape) == 2:
        return (shape[0], 1, shape[1])
    return shape


def _coerced(data: dict[str, Any]) -> dict[str, Any]:
    """``data``'s fields in the types a spec holds (lists as tuples, numbers as floats); ValueError naming
    a field that cannot be."""
    values = dict(data)
    for key in ("input_shape", "mean", "std", "class_names"):
        if key not in values:
            continue
        if not isinstance(values[key], (list, tuple)):
            raise ValueError(f"{key} must be a list, got {_brief(values[key])}")
        values[key] = tuple(values[key])
    if isinstance(values.get("measure"), dict):
        values["measure"] = {str(k): tuple(map(str, v)) if isinstance(v, (list, tuple)) else v
                             for k, v in values["measure"].items()}
    if isinstance(values.get("activations"), dict):
        values["activations"] = {str(k): str(v) for k, v in values["activations"].items()}
    if values.get("spectrum") is not None:
        try:
            values["spectrum"] = tuple(tuple(float(v) for v in row) for row in values["spectrum"])
        except (TypeError, ValueError):
            raise ValueError("spectrum must be a list of rows of numbers") from None
    for key in ("image_mean", "image_support"):
        if values.get(key) is not None:
            try:
                values[key] = tuple(tuple(tuple(float(v) for v in row) for row in plane) for plane in values[key])
            except (TypeError, ValueError):
                raise ValueError(f"{key} must be a list of planes of rows of numbers") from None
    try:
        if values.get("image_basis") is not None:
            values["image_basis"] = tuple(tuple(float(v) for v in row) for row in values["image_basis"])
        if values.get("basis_mean") is not None:
            values["basis_mean"] = tuple(float(v) for v in values["basis_mean"])
    except (TypeError, ValueError):
        raise ValueError("image_basis must be a list of rows of numbers, basis_mean a list of numbers") from None
    return values


def _to_lists(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_to_lists(v) for v in value]
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _brief(value: Any) -> str:
    """repr(value), cut to fit an error line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:76] + " ..."
