"""Transforms: shape-keeping random affine resamples (shared with training's augmentation) and normalization."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from introspect.models import ModelSpec
from introspect.params import TRANSFORMS, image_generators
from introspect.transforms import (Normalize, RandomAffine, TransformConfig, affine, affine_grid, apply_affine,
                                   random_affine_params)


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



@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 3), channels=st.sampled_from([1, 3]), height=st.integers(4, 40), width=st.integers(4, 40),
       jitter=st.integers(0, 6), scale=st.floats(0, 0.5), rotate=st.floats(0, 45),
       draws=st.lists(st.floats(-1, 0.999), min_size=4, max_size=4))
def test_transforms_keep_shape_and_range_property(batch, channels, height, width, jitter, scale, rotate, draws):
    images = torch.rand(batch, channels, height, width)
    out = apply_affine(images, torch.tensor([draws] * batch), TransformConfig(jitter=jitter, scale=scale, rotate=rotate))
    assert out.shape == images.shape
    assert out.min() >= 0 and out.max() <= 1 + 1e-6


def test_random_affine_draws_per_image_from_its_key():
    images = torch.rand(2, 1, 16, 16)
    one = RandomAffine.for_keys(TransformConfig(), seed=0, keys=[4, 9])(images)
    again = RandomAffine(TransformConfig(), image_generators(0, [4, 9], TRANSFORMS))(images)
    torch.testing.assert_close(one, again)
    assert torch.equal(RandomAffine.for_keys(TransformConfig(jitter=0, scale=0, rotate=0), 0, [1])(images), images)


def test_training_augmentation_is_the_same_affine():
    from introspect.training import random_affine

    images = torch.rand(3, 1, 28, 28)
    augmented = random_affine(images, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    angle = (torch.rand(3, generator=generator) * 2 - 1) * torch.pi / 18
    zoom = torch.empty(3).uniform_(0.9, 1.1, generator=generator)
    offset = (torch.rand(3, 2, generator=generator) * 2 - 1) * 0.2
    torch.testing.assert_close(augmented, affine(images, angle, zoom, offset[:, 0], offset[:, 1]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [(28, 28), (32, 48), (1, 64), (64, 1), (2, 3)])
def test_affine_grid_is_torchs(size, dtype):
    """The sampling grids written out elementwise are F.affine_grid's (corners not aligned), square or not, one row
    or one column: to the last bit on the machine where it was written (its CPU kernel adds in this order), within
    rounding on any other, whose matmul may fuse the multiply and add."""
    theta = (torch.randn(9, 2, 3, generator=torch.Generator().manual_seed(1)) * 0.7).to(dtype)
    expected = torch.nn.functional.affine_grid(theta, [9, 1, *size], align_corners=False)
    grid = affine_grid(theta, *size)
    assert grid.shape == expected.shape and grid.dtype == dtype and grid.is_contiguous()
    torch.testing.assert_close(grid, expected, rtol=0, atol=4 * torch.finfo(dtype).eps)


def test_normalize_uses_the_spec():
    spec = ModelSpec("s", "user", (3, 2, 2), (0.1, 0.2, 0.3), (0.5, 0.5, 2.0), "", ("a",))
    x = torch.rand(1, 3, 2, 2)
    expected = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.5, 2.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(Normalize.of(spec)(x), expected)


def assert_per_step_affine(config: TransformConfig, seed: int, keys: list[int], images: torch.Tensor, steps: int):
    """RandomAffine's output at each of ``steps`` steps is exactly one draw and one affine_grid per step."""
    transform = RandomAffine.for_keys(config, seed, keys)
    generators = image_generators(seed, keys, TRANSFORMS)
    for _ in range(steps):
        expected = apply_affine(images, random_affine_params(generators), config)
        assert torch.equal(transform(images), expected)


def test_random_affine_draws_in_blocks_are_its_per_step_draws():
    """RandomAffine takes a block of steps' draws at once: step s still gets each image's s-th draw."""
    assert_per_step_affine(TransformConfig(), 3, [0, 5], torch.rand(2, 1, 12, 12), RandomAffine.BLOCK + 3)


@pytest.mark.parametrize("grid_bytes", [RandomAffine.GRID_BYTES, 2 * 12 * 12 * 2 * 4 * 5, 1])
def test_random_affine_block_grids_are_its_per_step_grids(grid_bytes, monkeypatch):
    """The sampling grids made for many steps at once (all the block's, 5 steps' or one step's at a time) give the
    very bytes of one affine_grid per step."""
    monkeypatch.setattr(RandomAffine, "GRID_BYTES", grid_bytes)
    assert_per_step_affine(TransformConfig(jitter=3, scale=0.2, rotate=30), 1, [2, 7], torch.rand(2, 3, 12, 12),
                           RandomAffine.BLOCK + 7)


def test_random_affine_noise_is_each_images_own_and_leaves_the_affine_draws_alone():
    """Noise: added after the affine, drawn per image (a batch of one gives the same noise), of the given size;
    the affine draws are those of a run without noise."""
    images = torch.rand(3, 1, 16, 16)
    plain = RandomAffine.for_keys(TransformConfig(), 0, [4, 9, 11])(images)
    noisy = RandomAffine.for_keys(TransformConfig(noise=0.5), 0, [4, 9, 11])(images)
    alone = RandomAffine.for_keys(TransformConfig(noise=0.5), 0, [9])(images[1:2])
    torch.testing.assert_close(noisy[1:2], alone)
    assert abs(float((noisy - plain).std()) - 0.5) < 0.05
    still = RandomAffine.for_keys(TransformConfig(jitter=0, scale=0, rotate=0, noise=0.5), 0, [1])(images[:1])
    assert 0.4 < float((still - images[:1]).std()) < 0.6


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (3, 1, 1, 64)], ids=["image", "signal"])
def test_draws_and_noise_reach_the_device_once_per_block(shape):
    """On a GPU each copy from the host waits for the device: the random affine's draws (matrices, or a signal's
    shifts) and the input noise are copied once per block of steps, not every step."""
    from helpers import HostTraffic

    affine = RandomAffine.for_keys(TransformConfig(noise=0.1), 0, [0, 1, 2])
    images = torch.rand(shape)
    with HostTraffic() as counted:
        for _ in range(2 * RandomAffine.BLOCK):
            affine(images)
    assert counted.count == 2 + 2  # two blocks of draws, two of noise
