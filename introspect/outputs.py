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
