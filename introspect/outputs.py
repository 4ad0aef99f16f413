"""What a model's output holds: logits, softmax or sigmoid probabilities, or a spatial map of logits.

The kind (``ModelSpec.output_kind``) says what the values at ``spec.logits`` are and so how a class objective
reads them and how probabilities are shown:

- ``None`` / "logits": logits of one softmax over the classes (p = softmax of them);
- "sigmoid logits": the values before independent sigmoids (multi-label, or one output; p = sigmoid per unit);
- "softmax": softmax probabilities whose logits are out of reach (the objective uses log p, p the values);
- "log-softmax": log-probabilities (the objective uses them as logits, p = their exp);
- "sigmoid": sigmoid probabilities whose logits are out of reach (the objective uses log(p / (1 - p))).

A spatial map (B, K, H, W) of logits (a fully-convolutional classifier) is reduced to (B, K) over its
positions as ``ModelSpec.logits_position`` says: "mean", "center" or "max".
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import Message

KINDS = ("logits", "sigmoid logits", "softmax", "log-softmax", "sigmoid")
POSITIONS = ("mean", "center", "max")
#: Kinds whose values are probabilities of independent sigmoids, one per unit.
SIGMOID_KINDS = ("sigmoid logits", "sigmoid")
#: The smallest probability (and its distance from 1) turned back into a logit: float32 holds no more.
EPSILON = 1e-7


def class_values(output: torch.Tensor, position: str | None = None) -> torch.Tensor:
    """(B, classes) from the tensor at ``spec.logits``: a spatial map (B, K, H, W) reduced over its positions by
    ``position`` (mean, center or max), anything else flattened after the batch dimension."""
    if position is None or output.ndim != 4:
        return output.flatten(1)
    if position == "mean":
        return output.mean(dim=(2, 3))
    if position == "center":
        return output[:, :, output.shape[2] // 2, output.shape[3] // 2]
    if position == "max":
        return output.amax(dim=(2, 3))
    raise ValueError(f"unknown logits position {position!r}; choose {', '.join(POSITIONS)}")


def as_logits(values: torch.Tensor, kind: str | None) -> torch.Tensor:
    """Values of ``kind`` on the logit scale: probabilities turned back into (log-softmax or sigmoid) logits."""
    if kind == "softmax":
        return values.clamp(min=EPSILON).log()
    if kind == "sigmoid":
        p = values.clamp(EPSILON, 1 - EPSILON)
        return p.log() - (-p).log1p()
    return values


def probabilities(scores: torch.Tensor, kind: str | None) -> torch.Tensor:
    """Probabilities (B, classes) from scores on the logit scale (``as_logits``): a sigmoid per unit for sigmoid
    kinds, else one softmax over the classes (for softmax outputs: the model's own values, renormalized)."""
    scores = scores.float()
    return torch.sigmoid(scores) if kind in SIGMOID_KINDS else torch.softmax(scores, 1)


def log_probability(scores: torch.Tensor, picked: torch.Tensor, kind: str | None) -> torch.Tensor:
    """(B, 1) the log-probability of each row's ``picked`` class from scores on the logit scale; another class's
    non-finite score counts as absent (its probability 0), and a non-finite picked score gives a non-finite result."""
    if kind in SIGMOID_KINDS:
        return F.logsigmoid(scores.gather(1, picked))
    return F.log_softmax(_absent_if_not_finite(scores), 1).gather(1, picked)


def _absent_if_not_finite(scores: torch.Tensor) -> torch.Tensor:
    """Scores with NaN and +-inf made -inf: a class of probability 0 in a softmax (one op, run every step)."""
    return scores.nan_to_num(nan=float("-inf"), posinf=float("-inf"), neginf=float("-inf"))


def probability_label(kind: str | None) -> str:
    """How tiles name a probability: "p" (softmax over logits), "p (sigmoid)" or "p (softmax)" (the model's own)."""
    if kind in SIGMOID_KINDS:
        return "p (sigmoid)"
    if kind in ("softmax", "log-softmax"):
        return "p (softmax)"
    return "p"


def kind_warning(kind: str | None) -> Message | None:
    """One line for the report when the class objective cannot reach the model's logits, else None."""
    if kind == "softmax":
        return Message("warning: the output is softmax probabilities and the logits before it are out of reach: the "
                       "class objective uses log p; pass {logits_layer} NAME (the layer before the softmax)",
                       settings=("logits_layer",))
    if kind == "sigmoid":
        return Message("warning: the output is sigmoid probabilities and the logits before it are out of reach: the "
                       "class objective uses log(p/(1-p)), flat where p saturates; pass {logits_layer} NAME (before "
                       "the sigmoid)", settings=("logits_layer",))
    if kind == "log-softmax":
        return Message("warning: the output is log-softmax: the class objective uses log-probabilities as logits; "
                       "pass {logits_layer} NAME (the layer before it) for the logits", settings=("logits_layer",))
    return None


def describe_kind(kind: str | None, position: str | None = None) -> str:
    """The output kind in words, for settings lines and run.json: "logits (softmax)", "sigmoid logits", ..."""
    text = {None: "logits (softmax over them)", "logits": "logits (softmax over them)",
            "sigmoid logits": "logits of independent sigmoids", "softmax": "softmax probabilities",
            "log-softmax": "log-softmax", "sigmoid": "sigmoid probabilities"}[kind]
    return text + (f", a spatial map reduced by its {position}" if position else "")


@torch.no_grad()
def output_kind(output: torch.Tensor) -> str | None:
    """'softmax probabilities' or 'log-softmax' when each row of (N, classes) ``output`` sums like one, else None."""
    kind = value_kind(output)
    return {"softmax": "softmax probabilities", "log-softmax": "log-softmax"}.get(kind)


@torch.no_grad()
def value_kind(output: torch.Tensor) -> str | None:
    """The kind (N, classes) values look like: "softmax" (rows in [0, 1] summing to 1, more than one class),
    "log-softmax" (rows whose exp sums to 1), "sigmoid" (all in [0, 1], rows not summing to 1, none exactly 0:
    a float32 sigmoid reaches 0 only below a logit of -88, a ReLU'd head such as SqueezeNet's, untrained, at
    once), else None."""
    output = output.float()
    if output.numel() == 0 or not bool(torch.isfinite(output).all()):
        return None
    ones = torch.ones(len(output), device=output.device)
    within = bool(((output >= 0) & (output <= 1)).all())
    if output.shape[1] > 1 and within and torch.allclose(output.sum(1), ones, atol=1e-3):
        return "softmax"
    if output.shape[1] > 1 and torch.allclose(output.exp().sum(1), ones, atol=1e-3):
        return "log-softmax"
    if within and not bool((output == 0).any()):
        return "sigmoid"
    return None


def pick(output: object, key: str) -> torch.Tensor:
    """The tensor at ``key`` in a model's output: "" for a plain tensor, an index ("2") into a tuple or
    list, a key of a dict, or an attribute of a namedtuple or dataclass (e.g. a ModelOutput)."""
    if key == "":
        if isinstance(output, torch.Tensor):
            return output
        raise KeyError(f"the model's output is {describe(output)}, not one tensor")
    if isinstance(output, (tuple, list)) and not hasattr(output, "_fields") and key.lstrip("-").isdigit():
        index = int(key)
        if -len(output) <= index < len(output):
            return _tensor(output[index], key, output)
        raise KeyError(f"item {index} is not in the model's output, {describe(output)}")
    if isinstance(output, dict) and key in output:
        return _tensor(output[key], key, output)
    if hasattr(output, key) and not isinstance(output, torch.Tensor):
        return _tensor(getattr(output, key), key, output)
    if hasattr(output, "_fields") and key.isdigit() and int(key) < len(output):
        return _tensor(output[int(key)], key, output)
    raise KeyError(f"'{key}' is not in the model's output, {describe(output)}")


def _tensor(value: object, key: str, output: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise KeyError(f"'{key}' of the model's output is {describe(value)}, not a tensor ({describe(output)})")
    return value


def describe(output: object) -> str:
    """A short description of a model's output: 'a tensor (1, 10)', 'a tuple of 3: 0: (1, 4), 1: ...'."""
    if isinstance(output, torch.Tensor):
        return f"a tensor {tuple(output.shape)}"
    if hasattr(output, "_fields"):
        items = [(name, getattr(output, name)) for name in output._fields]
    elif isinstance(output, dict):
        items = list(output.items())
    elif isinstance(output, (tuple, list)):
        items = list(enumerate(output))
    elif hasattr(output, "__dataclass_fields__"):
        items = [(name, getattr(output, name)) for name in output.__dataclass_fields__]
    else:
        return f"a {type(output).__name__}"
    parts = [f"{k}: {tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}" for k, v in items]
    return f"a {type(output).__name__} of {len(items)} ({', '.join(parts)})"
