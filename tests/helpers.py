"""Small helpers shared by the tests."""
from torch import nn


def hook_count(model: nn.Module) -> int:
    """Forward, forward-pre and backward hooks left on any module of ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
