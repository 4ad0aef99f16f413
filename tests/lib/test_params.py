"""Image parametrizations: pixels and FFT in [0, 1], the default image for a spec, per-image seed streams."""
import pytest
import torch

from introspect.errors import UserError
from introspect.models import ModelSpec
from introspect.params import (BASIS_VARIANCE, TRANSFORMS, BasisImage, FFTImage, ImageConfig, PixelImage, estimate_basis,
                               frequency_scale, image_for, ink_level, parametrization_of, PRIOR_SIZE, estimate_prior,
                               image_generators, model_prior, prior_for, seed_entropy, start_bias, with_prior,
                               without_prior)


@pytest.mark.parametrize("param", ["fft", "pixel", "basis"])
def test_parametrizations_in_unit_range(param):
    gens = image_generators(0, [0, 1])
    module = (FFTImage((1, 28, 28), gens, frequency_scale(28, 28, 1.0)) if param == "fft"
              else BasisImage((1, 28, 28), gens, torch.randn(5, 784)) if param == "basis"
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


def test_model_prior_follows_the_normalization_and_only_a_possible_one():
    """Pixels in [0, 1] with mean m have std at most sqrt(m(1-m)); the ink level is (s^2 + m^2) / m."""
    spec = ModelSpec("s", "user", (1, 28, 28), (0.1307,), (0.3081,), "", ("a",))
    derived = model_prior(spec)
    assert derived.image_mean == (((0.1307,),),) and derived.spectrum is None and derived.image_basis is None
    assert derived.ink_level == pytest.approx((0.3081 ** 2 + 0.1307 ** 2) / 0.1307)
    assert torch.allclose(start_bias(ImageConfig(), derived), torch.tensor(-1.8948), atol=1e-3)  # logit(0.1307)
    rgb = ModelSpec("s", "user", (3, 8, 8), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "", ("a",))
    assert model_prior(rgb).ink_level == pytest.approx(0.563, abs=0.001)  # channels averaged
    for mean, std in ((0.0, 1.0), (0.5, 0.6), (1.0, 0.1), (-0.2, 0.1)):  # defaults, or no [0, 1] pixels have them
        assert model_prior(spec.replace(mean=(mean,), std=(std,))) is None
    assert prior_for(spec, None)[0] is spec and str(prior_for(spec, None)[1]).startswith("none")
    source = str(prior_for(spec, None, derive=True)[1])
    assert source.startswith("from the model itself") and "data" in source
    assert prior_for(derived, None, derive=True)[0] is derived


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


def test_data_basis_holds_the_main_directions_of_the_data_logits():
    data = _centred_blobs(n=300)
    basis, mean = estimate_basis(data)
    logits = torch.logit(data.flatten(1).double().clamp(0.01, 0.99))
    torch.testing.assert_close(mean, logits.mean(0).float())
    scales = basis.norm(dim=1)
    assert (scales[:-1] >= scales[1:] - 1e-5).all()  # the commonest way of varying first
    directions = (basis / scales[:, None]).double()
    torch.testing.assert_close(directions @ directions.T, torch.eye(len(basis), dtype=torch.float64), atol=1e-4, rtol=0)
    centred = logits - logits.mean(0)
    kept = (centred @ directions.T).pow(2).sum() / centred.pow(2).sum()
    assert kept >= BASIS_VARIANCE  # the fewest directions that explain that share
    fewer = (centred @ directions[:-1].T).pow(2).sum() / centred.pow(2).sum()
    assert fewer < BASIS_VARIANCE


def test_basis_images_start_at_the_data_mean_logit_and_stay_in_its_directions():
    data = _centred_blobs(n=300)
    spec = with_prior(_spec(mean=0.1), data)
    assert spec.image_basis is not None and len(spec.basis_mean) == 256
    config = ImageConfig(parametrization="basis", use_support=False, init_std=0.0)
    module = image_for(spec, config, [0, 1], seed=0)
    assert isinstance(module, BasisImage) and parametrization_of(config, spec) == "basis"
    start = torch.sigmoid(torch.tensor(spec.basis_mean).view(1, 16, 16))
    torch.testing.assert_close(module(), start.expand(2, 1, 16, 16))
    with torch.no_grad():
        module.coefficients.normal_(0, 0.05)  # a move short of saturating the sigmoid
    moved = torch.logit(module().flatten(1).double()) - torch.tensor(spec.basis_mean).double()
    basis = torch.tensor(spec.image_basis).double()
    residual = moved - moved @ torch.linalg.pinv(basis) @ basis
    assert residual.norm() < 1e-3 * moved.norm()  # nowhere outside the data's directions (float32 rounding aside)
    # no basis (no prior, or a prior of inputs over PRIOR_SIZE): the FFT image instead
    assert isinstance(image_for(without_prior(spec), config, [0], seed=0), FFTImage)
    assert isinstance(image_for(spec, ImageConfig(parametrization="basis", use_prior=False), [0], seed=0), FFTImage)
    assert estimate_prior(torch.rand(4, 3, 40, 40))["image_basis"] is None  # more than BASIS_VALUES values
    assert estimate_prior(torch.rand(4, 1, 40, 40))["image_basis"] is not None


def test_data_that_does_not_vary_gives_no_basis_and_flat_data_no_prior():
    same = _centred_blobs(n=1).expand(5, 1, 16, 16)
    prior = estimate_prior(same)
    assert prior["image_basis"] is None and prior["basis_mean"] is None and prior["ink_level"] > 0
    spec = with_prior(_spec(mean=0.1), same)  # a valid spec: FFT, as the data gives no basis
    assert isinstance(image_for(spec, ImageConfig(parametrization="basis"), [0], seed=0), FFTImage)
    for flat in (torch.zeros(3, 1, 16, 16), torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1, 1).expand(3, 1, 16, 16)):
        with pytest.raises(UserError, match="no prior can be estimated from data that does not vary"):
            estimate_prior(flat)  # a spectrum of zeros would hold every image still


def test_ink_level_is_the_brightness_of_the_bright_part():
    ink = torch.zeros(2, 1, 8, 8)
    ink[0, 0, 2:5, 2:5] = 0.8
    ink[1, 0, 1:7, 3] = 0.6
    assert ink_level(ink) == pytest.approx(0.7)
    assert with_prior(_spec(mean=0.1), _centred_blobs()).ink_level == pytest.approx(ink_level(_centred_blobs()))


def test_spec_refuses_a_malformed_basis():
    spec = with_prior(_spec(mean=0.1), _centred_blobs())
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="give both or neither"):
        spec.replace(basis_mean=None)
    with pytest.raises(ValueError, match="rows of C\\*H\\*W = 256"):
        spec.replace(image_basis=[[0.0] * 255])
    with pytest.raises(ValueError, match="finite"):
        spec.replace(basis_mean=[float("nan")] * 256)
    with pytest.raises(ValueError, match="ink_level"):
        spec.replace(ink_level=0.0)
