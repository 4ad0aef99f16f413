"""Terms computed every step, as autograd Functions with their gradients written out.

Built from tensor ops, total variation, the ink penalty and the class log-probability each leave a
dozen nodes in the autograd graph. Each node costs more than its arithmetic on the small tensors a
step meets. Here each term is one node. Its forward runs without a graph, and its backward uses a
handful of ops. ``python benchmarks/floor.py parts`` measures it: these three terms cost 510 µs of a
class step before and 400-430 µs after, on 10 MNIST images (docs/measured.md); a GPU gets fewer kernel
launches. The values are the same bytes as the tensor-op versions; the gradients are the same
formulas, rounded differently. tests/lib/test_gradients.py checks them with gradcheck. A second
derivative is refused: nothing here takes one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .quality import INK_FLOOR, ink_sums, neighbour_differences
from .quality import total_variation as quality_tv


def _per_image(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B,) values viewed to broadcast against (B, ...) tensors of ``ndim`` dimensions."""
    return values.view(-1, *[1] * (ndim - 1))


class _TotalVariation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images: torch.Tensor, weight: float) -> torch.Tensor:
        across, down = neighbour_differences(images)
        ctx.save_for_backward(down, across)
        ctx.weight = weight
        return -weight * quality_tv(images, "mean", (across, down))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        down, across = ctx.saved_tensors
        shape = list(down.shape)
        shape[-2] += 1
        gradient = down.new_zeros(shape)
        # d|x[i+1] - x[i]| / dx is +sign at i + 1 and -sign at i, over the axis's count of differences (its mean).
        if down.shape[1:].numel():
            signs, share = down.sign(), 1.0 / down[0].numel()
            gradient[..., 1:, :].add_(signs, alpha=share)
            gradient[..., :-1, :].sub_(signs, alpha=share)
        if across.shape[1:].numel():
            signs, share = across.sign(), 1.0 / across[0].numel()
            gradient[..., :, 1:].add_(signs, alpha=share)
            gradient[..., :, :-1].sub_(signs, alpha=share)
        return gradient.mul_(_per_image(grad * -ctx.weight, gradient.ndim)), None


def total_variation(images: torch.Tensor, weight: float) -> torch.Tensor:
    """Minus ``weight`` x each image's mean vertical plus mean horizontal absolute neighbour difference (B,):
    ``-weight * quality.total_variation(images, reduction="mean")`` as one autograd node."""
    return _TotalVariation.apply(images, float(weight))


class _InkShortfall(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images: torch.Tensor, level: float, weight: float) -> torch.Tensor:
        squares, total = ink_sums(images)
        floored = total.clamp(min=INK_FLOOR)
        short = (squares / floored - level).clamp(max=0)
        # clamp passes no gradient at the floor itself, only above it
        ctx.save_for_backward(images, short, squares, floored, total > INK_FLOOR)
        ctx.weight = weight
        return -weight * short.pow(2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        images, short, squares, floored, counted = ctx.saved_tensors
        # value = -w * min(0, S2 / S1 - level)^2 with S2 = sum(x^2), S1 = sum(x) (floored):
        # d value / dx = -2w * short * (2x / S1 - S2 / S1^2 [where S1 is not floored])
        per_square = grad * short * (-2 * ctx.weight) / floored
        per_sum = per_square * squares / floored * counted
        return (images * _per_image(2 * per_square, images.ndim) - _per_image(per_sum, images.ndim)), None, None


def ink_shortfall(images: torch.Tensor, level: float, weight: float) -> torch.Tensor:
    """Minus ``weight`` x the squared shortfall of each image's ink level (sum(x^2) / sum(x)) below ``level`` (B,),
    as one autograd node."""
    return _InkShortfall.apply(images, float(level), float(weight))


class _Confidence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores: torch.Tensor, picked: torch.Tensor, weight: float) -> torch.Tensor:
        # Another class's non-finite score counts as absent: probability 0 (``outputs.log_probability``).
        absent = float("-inf")
        log_p = F.log_softmax(scores.nan_to_num(nan=absent, posinf=absent, neginf=absent), 1)
        target = scores.gather(1, picked)
        ctx.save_for_backward(log_p, picked, torch.isfinite(target))
        ctx.weight, ctx.dtype = weight, scores.dtype
        return (target + weight * log_p.gather(1, picked)).squeeze(1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        log_p, picked, finite = ctx.saved_tensors
        # d/ds_j [s_t + w log p_t] = (1 + w) [j = t] - w p_j; an absent class has p_j = 0, so no gradient (a
        # non-finite picked score is absent from log p too: only its own term's gradient).
        per_image = grad.view(-1, 1).to(log_p.dtype)
        own = per_image * (1 + ctx.weight * finite.to(per_image.dtype))
        gradient = log_p.exp().mul_(per_image * -ctx.weight).scatter_add_(1, picked, own)
        return gradient.to(ctx.dtype), None, None


def confidence(scores: torch.Tensor, picked: torch.Tensor, weight: float) -> torch.Tensor:
    """Each row's picked score plus ``weight`` x its log-softmax probability (B,) from ``scores`` (B, classes)
    on the logit scale and ``picked`` (B, 1), as one autograd node; other classes' non-finite scores count
    as absent."""
    return _Confidence.apply(scores, picked, float(weight))
