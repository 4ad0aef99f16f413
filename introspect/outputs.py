"""What a model's output holds: logits, or probabilities that a class objective must not use."""
from __future__ import annotations

import torch


@torch.no_grad()
def output_kind(output: torch.Tensor) -> str | None:
    """'softmax probabilities' or 'log-softmax' when each row of (N, classes) ``output`` sums like one, else None."""
    output = output.float()
    ones = torch.ones(len(output), device=output.device)
    if torch.allclose(output.sum(1), ones, atol=1e-3) and bool((output >= 0).all()):
        return "softmax probabilities"
    if torch.allclose(output.exp().sum(1), ones, atol=1e-3):
        return "log-softmax"
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
