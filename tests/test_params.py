"""Image parametrizations: pixels and FFT in [0, 1], the default image for a spec, per-image seed streams."""
import pytest
import torch

from introspect.models import ModelSpec
from introspect.params import (TRANSFORMS, FFTImage, ImageConfig, PixelImage, frequency_scale, image_for,
                               image_generators, seed_entropy, start_bias)


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


def test_start_is_dark_only_for_dark_data_with_a_spectrum():
    flat = tuple(tuple(1.0 for _ in range(9)) for _ in range(16))
    assert start_bias(ImageConfig(), _spec(mean=0.13, spectrum=flat)) == -5.0
    assert start_bias(ImageConfig(), _spec(mean=0.5, spectrum=flat)) == 0.0
    assert start_bias(ImageConfig(), _spec(mean=0.13)) == 0.0  # a user's model: no luck needed with its ReLUs
    assert start_bias(ImageConfig(init_bias=1.5), _spec(mean=0.13, spectrum=flat)) == 1.5
    assert image_for(_spec(mean=0.1, spectrum=flat), ImageConfig(), [0], seed=0)().mean() < 0.05


def test_same_key_same_start_whatever_the_batch():
    alone = image_for(_spec(), ImageConfig(), [7], seed=3)()
    batched = image_for(_spec(), ImageConfig(), [1, 7], seed=3)()
    torch.testing.assert_close(alone[0], batched[1])
