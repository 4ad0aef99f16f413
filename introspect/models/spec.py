"""ModelSpec: what the tools need to know about a model besides its weights."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """Metadata that lives beside a model's weights.

    ``input_shape`` is (C, H, W) in pixel space [0, 1]; ``mean``/``std`` are the
    per-channel normalization applied after it. ``logits_layer`` is the dotted
    module path whose output holds the class logits (before any softmax).
    ``activations`` maps a layer to the activation function the model applies
    to its output (e.g. {"conv2": "relu"} when forward calls F.relu, which no
    hook can see), so channel reports can show what the next layer receives.
    ``spectrum`` optionally holds the mean Fourier magnitude of real inputs
    (shape H x (W//2+1), as nested lists) used to shape visualizations.
    """

    name: str
    architecture: str
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    logits_layer: str
    class_names: tuple[str, ...]
    dataset: str | None = None
    activations: dict[str, str] | None = None
    spectrum: tuple[tuple[float, ...], ...] | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only, so checkpoints load with ``weights_only=True``."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = _to_lists(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown spec fields: {', '.join(sorted(unknown))}")
        values = dict(data)
        for key in ("input_shape", "mean", "std", "class_names"):
            values[key] = tuple(values[key])
        if values.get("activations") is not None:
            values["activations"] = {str(k): str(v) for k, v in values["activations"].items()}
        if values.get("spectrum") is not None:
            values["spectrum"] = tuple(tuple(float(v) for v in row) for row in values["spectrum"])
        return cls(**values)

    def replace(self, **changes: Any) -> "ModelSpec":
        return ModelSpec.from_dict({**self.to_dict(), **changes})


def _to_lists(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_to_lists(v) for v in value]
    return value
