"""Image parametrizations: pixels and FFT in [0, 1], the default image for a spec, per-image seed streams."""
import pytest
import torch

from introspect.models import ModelSpec
from introspect.params import (TRANSFORMS, FFTImage, ImageConfig, PixelImage, frequency_scale, image_for,
                               PRIOR_SIZE, estimate_prior, image_generators, seed_entropy, start_bias, with_prior)


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



def _spec(channels=1, spectrum=None, mean=0.1):
    return ModelSpec("s", "user", (channels, 16, 16), (mean,) * channels, (0.5,) * channels, "", ("a",),
                     spectrum=spectrum)


def test_image_for_follows_the_spec():
    flat = tuple(tuple(1.0 for _ in range(9)) for _ in range(16))
    shaped = image_for(_spec(spectrum=flat), ImageConfig(), [0], seed=0)
    unshaped = image_for(_spec(), ImageConfig(), [0], seed=0)
    assert torch.allclose(shaped.magnitude, torch.ones(16, 9))  # the stored spectrum, normalized
    assert not torch.allclose(unshaped.magnitude, torch.ones(16, 9))  # 1/f without one
    assert isinstance(image_for(_spec(), ImageConfig(parametrization="pixel"), [0], seed=0), PixelImage)
    with pytest.raises(ValueError, match="unknown parametrization"):
        image_for(_spec(), ImageConfig(parametrization="wavelet"), [0], seed=0)


def _centred_blobs(n=200, size=16, seed=0):
    """Dark images with a bright blob near the centre: data with a dark frame, like digits."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centres = size / 2 + torch.randn(n, 2, generator=g)
    d2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    return torch.exp(-d2 / 8).unsqueeze(1).clamp(0, 1)


def test_prior_is_estimated_from_data_and_shapes_the_start():
    data = _centred_blobs()
    spec = with_prior(_spec(mean=0.1), data)
    assert len(spec.spectrum) == 16 and len(spec.spectrum[0]) == 9
    mean, support = torch.tensor(spec.image_mean), torch.tensor(spec.image_support)
    assert mean.shape == support.shape == (1, 16, 16)
    assert torch.allclose(mean, data.mean(0), atol=1e-5)
    assert support.max() == 1 and support[0, 0, 0] < 0.01 < support[0, 8, 8]
    image = image_for(spec, ImageConfig(), [0, 1], seed=0)()
    frame = torch.ones(16, 16, dtype=torch.bool)
    frame[3:-3, 3:-3] = False
    assert image[..., frame].max() < 0.02 and image[..., 8, 8].min() > 0.3  # starts as the mean input
    # a uniform start when asked, and no prior at all with use_prior=False
    assert torch.allclose(image_for(spec, ImageConfig(init_bias=0.0, use_prior=False), [0], seed=0)(),
                          torch.full((1, 1, 16, 16), 0.5), atol=0.05)


def test_without_a_prior_the_start_is_grey():
    assert start_bias(ImageConfig(), _spec(mean=0.13)) == 0.0  # a user's model without data: no dark start
    assert start_bias(ImageConfig(init_bias=1.5), _spec(mean=0.13)) == 1.5


def test_prior_of_large_inputs_is_stored_small_and_resized():
    pixels = torch.rand(20, 3, 64, 48)
    prior = estimate_prior(pixels)
    assert torch.tensor(prior["image_mean"]).shape == (3, PRIOR_SIZE, 24)
    spec = ModelSpec(name="s", architecture="user", input_shape=(3, 64, 48), mean=(0.5,) * 3, std=(0.2,) * 3,
                     logits_layer="", class_names=("a",), **prior)
    assert image_for(spec, ImageConfig(), [0], seed=0)().shape == (1, 3, 64, 48)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="image_mean must be C x h x w"):
        spec.replace(image_mean=[[[0.5]]])
    with pytest.raises(ValueError, match="the images are"):
        with_prior(spec, torch.rand(2, 1, 64, 48))


def test_same_key_same_start_whatever_the_batch():
    alone = image_for(_spec(), ImageConfig(), [7], seed=3)()
    batched = image_for(_spec(), ImageConfig(), [1, 7], seed=3)()
    torch.testing.assert_close(alone[0], batched[1])


def test_prior_of_uint8_images_matches_floats_and_large_inputs_are_sampled(monkeypatch):
    import introspect.params as params

    data = _centred_blobs(n=50)
    as_uint8 = (data * 255).round().to(torch.uint8)
    from_uint8, from_float = estimate_prior(as_uint8), estimate_prior(as_uint8.float() / 255)
    assert from_uint8 == from_float
    monkeypatch.setattr(params, "PRIOR_BUDGET", 16 * 16 * 10)  # room for 10 images of 16 x 16
    sampled = estimate_prior(as_uint8)
    assert sampled != from_uint8  # fewer images went in
    assert sampled == estimate_prior(as_uint8[torch.linspace(0, 49, 10).long()])
