import pytest
import torch

from introspect.engine import RenderConfig, render
from introspect.hooks import frozen
from introspect.models import ModelSpec
from introspect.objectives import channel, class_logits
from introspect.params import TRANSFORMS, FFTImage, PixelImage, frequency_scale, image_generators, seed_entropy
from introspect.transforms import TransformConfig, apply_affine, random_affine_params

from helpers import hook_count

FAST = RenderConfig(steps=6)


def run(model, spec, config=FAST, keys=(0, 1, 2), objective=None):
    objective = objective or class_logits("fc2", keys)
    return config.render(model, objective, spec, list(keys))


def test_images_in_range_and_shape(tiny_model, tiny_spec):
    result = run(tiny_model, tiny_spec)
    assert result.images.shape == (3, 1, 28, 28)
    assert 0 <= result.images.min() and result.images.max() <= 1
    assert result.history.shape == (6, 3)
    assert result.steps_done == 6 and result.interrupted_at is None


def test_model_left_exactly_as_it_was(tiny_model, tiny_spec):
    tiny_model.train()
    tiny_model.fc1.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    flags = [p.requires_grad for p in tiny_model.parameters()]
    rng = torch.get_rng_state()
    run(tiny_model, tiny_spec)
    assert tiny_model.training and all(m.training for m in tiny_model.modules())
    assert [p.requires_grad for p in tiny_model.parameters()] == flags
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in tiny_model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    assert hook_count(tiny_model) == 0


def test_eval_mode_during_run(tiny_model, tiny_spec):
    seen = []
    handle = tiny_model.conv1.register_forward_pre_hook(lambda m, i: seen.append(tiny_model.training))
    tiny_model.train()
    try:
        run(tiny_model, tiny_spec)
    finally:
        handle.remove()
    assert seen and not any(seen)


def test_hooks_removed_after_failure(tiny_model, tiny_spec):
    def fail(step, total, values):
        if step == 2:
            raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        render(tiny_model, class_logits("fc2", [0]), spec=tiny_spec, keys=[0], steps=6, on_step=fail)
    assert hook_count(tiny_model) == 0
    assert all(p.requires_grad for p in tiny_model.parameters())


def test_objective_increases(tiny_model, tiny_spec):
    result = run(tiny_model, tiny_spec, RenderConfig(steps=30, transforms=TransformConfig(jitter=0, scale=0, rotate=0)))
    assert (result.history[-1] > result.history[0]).all()


def test_same_seed_same_images_other_seed_differs(tiny_model, tiny_spec):
    a, b = run(tiny_model, tiny_spec), run(tiny_model, tiny_spec)
    assert torch.equal(a.images, b.images)
    c = run(tiny_model, tiny_spec, FAST.replace(seed=1))
    assert not torch.equal(a.images, c.images)


def test_batching_does_not_change_an_image(tiny_model, tiny_spec):
    together = run(tiny_model, tiny_spec, keys=(0, 1, 2))
    alone = run(tiny_model, tiny_spec, keys=(1,))
    torch.testing.assert_close(together.images[1:2], alone.images, atol=1e-5, rtol=0)


def test_non_finite_objective_stops_only_that_image(tiny_model, tiny_spec):
    base = class_logits("fc2", [0, 1])
    from introspect.objectives import Objective

    def poisoned(acts):
        values = base(acts)
        return torch.stack([values[0], values[1] * float("nan")])

    result = run(tiny_model, tiny_spec, keys=(0, 1), objective=Objective(poisoned, ["fc2"], "poisoned"))
    assert result.stopped == [1]
    assert torch.isfinite(result.images).all()


def test_interrupt_returns_partial_result(tiny_model, tiny_spec):
    def interrupt(step, total, values):
        if step == 3:
            raise KeyboardInterrupt

    result = render(tiny_model, class_logits("fc2", [0]), spec=tiny_spec, keys=[0], steps=20, on_step=interrupt)
    assert result.interrupted_at == 3 and result.images.shape == (1, 1, 28, 28)
    assert hook_count(tiny_model) == 0


def test_frozen_restores_on_error(tiny_model):
    tiny_model.train()
    with pytest.raises(ValueError):
        with frozen(tiny_model):
            assert not tiny_model.training
            assert not any(p.requires_grad for p in tiny_model.parameters())
            raise ValueError
    assert tiny_model.training and all(p.requires_grad for p in tiny_model.parameters())


@pytest.mark.parametrize("config", [TransformConfig(), TransformConfig(jitter=5, scale=0.3, rotate=45),
                                    TransformConfig(jitter=0, scale=0, rotate=0)])
@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (3, 3, 32, 48)])
def test_transforms_keep_shape_and_range(config, shape):
    images = torch.rand(shape)
    out = apply_affine(images, random_affine_params(image_generators(0, range(shape[0]))), config)
    assert out.shape == images.shape
    assert out.min() >= 0 and out.max() <= 1


def test_identity_transform_is_identity():
    images = torch.rand(2, 1, 28, 28)
    draws = torch.zeros(2, 4)
    torch.testing.assert_close(apply_affine(images, draws, TransformConfig()), images, atol=1e-5, rtol=0)


@pytest.mark.parametrize("param", ["fft", "pixel"])
def test_parametrizations_in_unit_range(param):
    gens = image_generators(0, [0, 1])
    module = (FFTImage((1, 28, 28), gens, frequency_scale(28, 28, 1.0)) if param == "fft"
              else PixelImage((1, 28, 28), gens))
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(1000)
    image = module()
    assert image.shape == (2, 1, 28, 28) and 0 <= image.min() and image.max() <= 1


def test_objective_arithmetic():
    acts = {"conv2": torch.arange(2 * 3 * 2 * 2, dtype=torch.float).view(2, 3, 2, 2)}
    combined = 0.5 * channel("conv2", 1) + channel("conv2", 2) - channel("conv2", 0)
    expected = 0.5 * acts["conv2"][:, 1].mean((1, 2)) + acts["conv2"][:, 2].mean((1, 2)) - acts["conv2"][:, 0].mean((1, 2))
    torch.testing.assert_close(combined(acts), expected)
    assert combined.layers == ("conv2",)
    only_second = channel("conv2", 1, batch=1)(acts)
    assert only_second[0] == 0 and only_second[1] == acts["conv2"][1, 1].mean()


#: Generator seeds of keys 0 and 7 under the original 32-bit scheme (computed before seeds grew past 32 bits).
ORIGINAL_STREAMS = {
    0: [12750949206108985319, 5883240814030732630],
    1: [7883430198869069541, 18233058305187354009],
    2**32 - 1: [8557400077998867938, 11741669340207635646],
}


@pytest.mark.parametrize("seed", list(ORIGINAL_STREAMS))
def test_in_range_seeds_keep_their_original_streams(seed):
    assert [g.initial_seed() for g in image_generators(seed, [0, 7])] == ORIGINAL_STREAMS[seed]


def test_transform_stream_is_the_original_seed_plus_one_in_32_bits():
    assert [g.initial_seed() for g in image_generators(0, [0, 7], TRANSFORMS)] == ORIGINAL_STREAMS[1]
    assert [g.initial_seed() for g in image_generators(2**32 - 1, [0, 7], TRANSFORMS)] == ORIGINAL_STREAMS[0]


def test_seeds_past_32_bits_and_negative_seeds_do_not_alias():
    seeds = [0, 2**32, -1, 2**64, -(2**32), 2**32 - 1]
    streams = {(s, stream): tuple(g.initial_seed() for g in image_generators(s, [0, 7], stream))
               for s in seeds for stream in (0, TRANSFORMS)}
    assert len(set(streams.values())) == len(streams) - 1  # only 2**32-1's transforms reuse 0's start, as before
    assert streams[(2**32 - 1, TRANSFORMS)] == streams[(0, 0)]
    first = {s: torch.randn(3, generator=image_generators(s, [0])[0]) for s in seeds}
    assert len({tuple(v.tolist()) for v in first.values()}) == len(seeds)


@pytest.mark.parametrize("seed", [2**32, -1, -(2**32), 2**64, -(2**100)])
def test_out_of_range_entropy_never_looks_like_an_in_range_one(seed):
    for stream in (0, TRANSFORMS):
        words = seed_entropy(seed, 5, stream)
        assert words[0] == 5 and words[1] in (1, 2, 3, 4) and words[2] > 0  # [key, tag, |seed|]: never [s, k, 0, 0]


def test_render_differs_for_seeds_that_used_to_alias(tiny_model, tiny_spec):
    config = FAST.replace(steps=2)
    images = {s: run(tiny_model, tiny_spec, config.replace(seed=s), keys=(0,)).images for s in (0, 2**32, -1)}
    assert not torch.equal(images[0], images[2**32]) and not torch.equal(images[0], images[-1])
    assert not torch.equal(images[2**32], images[-1])
