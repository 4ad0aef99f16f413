"""Classes: the verdict on each final image (logit, probability, runner-up, margin) and --candidates."""
from dataclasses import replace

import pytest
import torch

from introspect.classes import (CANDIDATE_STRIDE, OBJECTIVES, class_scores, format_probability, logits_of,
                                verdicts, visualize_classes)
from introspect.engine import RenderConfig
from introspect.errors import UserError
from introspect.params import without_prior

CONFIG = RenderConfig(steps=4)


def test_runner_up_is_never_the_target_and_margins_are_logit_differences(shipped_mnist):
    model, spec = shipped_mnist.model, shipped_mnist.spec
    result = visualize_classes(model, spec, None, CONFIG)
    logits = class_scores(model, spec, result.images)
    for i, label in enumerate(result.labels):
        others = logits[i].clone()
        others[label] = float("-inf")
        runner = result.runner_up[i]
        assert runner != label and runner == int(others.argmax())
        assert result.runner_up_names[i] == spec.class_names[runner]
        assert float(result.margins[i]) == pytest.approx(float(logits[i, label] - logits[i, runner]), abs=1e-5)
        assert float(result.logits[i]) == pytest.approx(float(logits[i, label]), abs=1e-5)
        assert float(result.runner_up_logits[i]) == pytest.approx(float(logits[i, runner]), abs=1e-5)
        probabilities = torch.softmax(logits[i], 0)
        assert float(result.runner_up_probabilities[i]) == pytest.approx(float(probabilities[runner]), abs=1e-6)
    assert result.candidates == 1 and result.chosen == [0] * 10


def test_candidates_1_renders_exactly_the_images_of_a_run_without_it(shipped_mnist):
    model, spec = shipped_mnist.model, shipped_mnist.spec
    plain = visualize_classes(model, spec, [2, 5, 9], CONFIG)
    one = visualize_classes(model, spec, [2, 5, 9], CONFIG, candidates=1)
    direct = CONFIG.render(model, OBJECTIVES["confidence"](logits_of(spec), [2, 5, 9]), spec, [2, 5, 9])  # the old path
    assert torch.equal(plain.images, one.images) and torch.equal(plain.images, direct.images)
    assert torch.equal(plain.render.history, direct.history)


def test_candidates_keep_the_largest_margin_of_each_class(shipped_mnist):
    """Each candidate rendered on its own gives the same margins (up to the floating-point effect of a
    larger batch on the model's kernels) and the kept image is the one with the largest."""
    model, spec = shipped_mnist.model, shipped_mnist.spec
    labels = list(range(10))
    result = visualize_classes(model, spec, None, CONFIG.replace(snapshots=(2,)), candidates=3)
    assert result.candidate_margins.shape == (3, 10)
    assert result.chosen == result.candidate_margins.argmax(0).tolist()
    assert set(result.chosen) != {0}, "the test needs a class whose first candidate was not kept"
    alone_images, alone_margins = [], []
    for j in range(3):
        alone = CONFIG.render(model, OBJECTIVES["confidence"](logits_of(spec), labels), spec,
                              [c + j * CANDIDATE_STRIDE for c in labels])
        alone_images.append(alone.images)
        alone_margins.append(verdicts(class_scores(model, spec, alone.images), labels).margins)
    alone_margins = torch.stack(alone_margins)
    assert torch.allclose(alone_margins, result.candidate_margins, atol=1e-4)
    assert alone_margins.argmax(0).tolist() == result.chosen
    for i, j in enumerate(result.chosen):
        assert torch.allclose(result.images[i], alone_images[j][i], atol=1e-4)
        assert float(result.margins[i]) == pytest.approx(float(result.candidate_margins[j, i]))
    # everything about the render describes the kept candidates, one column per class
    assert result.render.history.shape == (4, 10) and result.render.values.shape == (10,)
    assert result.render.snapshots[2].shape == (10, 1, 28, 28)


def test_stopped_candidates_map_to_their_class(shipped_mnist, monkeypatch):
    model, spec = shipped_mnist.model, shipped_mnist.spec
    render = RenderConfig.render

    def stopping(self, *args, **kwargs):  # report candidate 1 of every class as stopped
        result = render(self, *args, **kwargs)
        result.stopped = [3 + i for i in range(3)]
        return result

    monkeypatch.setattr(RenderConfig, "render", stopping)
    result = visualize_classes(model, spec, [0, 6, 7], CONFIG, candidates=2)
    assert result.render.stopped == [i for i, j in enumerate(result.chosen) if j == 1]
    not_kept = result.chosen.count(0)
    assert any(f"{not_kept} candidate(s) not kept" in n for n in result.render.notes) == (not_kept > 0)


@pytest.mark.parametrize("candidates", [0, -1, True, 2.5, "3"])
def test_bad_candidates_are_refused(shipped_mnist, candidates):
    with pytest.raises(UserError, match="candidates"):
        visualize_classes(shipped_mnist.model, shipped_mnist.spec, [1], CONFIG, candidates=candidates)


def test_probabilities_are_written_honestly():
    assert format_probability(1.0) == "p=1.000" and format_probability(0.0) == "p=0.000"
    assert format_probability(0.9996) == "p>0.999" and format_probability(0.99949) == "p=0.999"
    assert format_probability(0.0004) == "p<0.001" and format_probability(0.5) == "p=0.500"


def test_titles_say_logit_probability_and_runner_up(shipped_mnist):
    result = visualize_classes(shipped_mnist.model, shipped_mnist.spec, [7], CONFIG)
    name, verdict, runner = result.titles[0].split("\n")
    assert name == "7" and verdict.startswith(f"logit {float(result.logits[0]):.1f}  p")
    assert runner.startswith(f"next: {result.runner_up_names[0]} (p") and "$" not in result.titles[0]
    near_zero = replace(result, logits=torch.tensor([-0.04]))  # a random head's logit rounds to zero, unsigned
    assert near_zero.titles[0].split("\n")[1].startswith("logit 0.0  p")


def test_settings_name_the_data_terms_and_parametrization_only_where_they_applied(shipped_mnist):
    from introspect import CLASSES_DEFAULTS

    config = CLASSES_DEFAULTS.replace(steps=1, pull=10.0)
    with_prior = visualize_classes(shipped_mnist.model, shipped_mnist.spec, [3], config)
    # no prior, and mean/std that say nothing about the pixels (the defaults 0 and 1): no data terms
    bare = without_prior(shipped_mnist.spec).replace(mean=(0.0,), std=(1.0,))
    without = visualize_classes(shipped_mnist.model, bare, [3], config)
    assert "pull 10" in with_prior.settings and "pull" not in without.settings
    assert "ink 50" in with_prior.settings and "ink" not in without.settings
    assert "param basis" in with_prior.settings and "param fft" in without.settings
    assert "start grey (auto)" in without.settings and without.config.transforms == config.transforms


def test_without_data_the_prior_comes_from_the_normalization(shipped_mnist):
    """No data, no stored prior: the start is the normalization mean, the ink term uses the level mean and std
    imply, the transforms zoom and rotate more; the run's config says so."""
    from introspect import CLASSES_DEFAULTS
    from introspect.classes import NO_DATA_TRANSFORMS

    result = visualize_classes(shipped_mnist.model, without_prior(shipped_mnist.spec), [3],
                               CLASSES_DEFAULTS.replace(steps=1))
    assert "start normalization mean (auto)" in result.settings and "ink 50" in result.settings
    assert "param fft" in result.settings and result.config.transforms == NO_DATA_TRANSFORMS
    assert abs(float(result.images.mean()) - 0.1307) < 0.02  # one step from the mean: still near it


def test_kept_candidates_prefer_the_ones_the_model_names():
    """The highest score per class, among the candidates the model names where it names any; ties and NaN: the first."""
    from introspect.classes import kept_candidates

    score = torch.tensor([[1.0, 5.0, float("nan")], [3.0, 2.0, 1.0], [3.0, 4.0, 0.5]])
    assert kept_candidates(score).tolist() == [1, 0, 1]
    named = torch.tensor([[True, False, False], [False, True, False], [True, False, False]])
    assert kept_candidates(score, named).tolist() == [2, 1, 1]


def test_without_data_a_model_reading_pixels_through_a_linear_layer_is_optimized_under_noise(shipped_mnist):
    """No data: a model whose input is first read by a fully connected layer over all of it (an MLP on pixels) gets
    DENSE_NOISE added to what it sees while optimized and when its candidates are judged; a conv net gets none."""
    from torch import nn

    from introspect import CLASSES_DEFAULTS
    from introspect.classes import DENSE_NOISE, NO_DATA_TRANSFORMS, reads_input_densely

    mlp, spec = _dense_mlp(shipped_mnist)
    bare = without_prior(shipped_mnist.spec)
    late = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 26 * 26, 10)).eval()
    assert reads_input_densely(mlp, spec) and not reads_input_densely(late, spec)
    assert not reads_input_densely(shipped_mnist.model, bare)
    config = CLASSES_DEFAULTS.replace(steps=2)
    dense = visualize_classes(mlp, spec, [3], config, candidates=2)
    assert dense.config.transforms.noise == DENSE_NOISE and f"input noise {DENSE_NOISE:g}" in dense.settings
    assert f"with noise {DENSE_NOISE:g}" in dense.settings
    conv = visualize_classes(shipped_mnist.model, bare, [3], config, candidates=2)
    assert conv.config.transforms == NO_DATA_TRANSFORMS and "noise" not in conv.settings


def test_without_data_candidates_are_kept_by_their_margin_under_random_transforms(shipped_mnist):
    """No data: NO_DATA_CANDIDATES per class by default (fewer for larger batches), kept by the mean margin over
    random zooms and rotations (``robust_margins``) among those the model names as they are; an explicit count still
    wins, and data keeps one."""
    from introspect import CLASSES_DEFAULTS
    from introspect.classes import NO_DATA_CANDIDATES, default_candidates, kept_candidates, robust_margins
    from introspect.params import prior_for

    bare = without_prior(shipped_mnist.spec)
    config = CLASSES_DEFAULTS.replace(steps=2)
    result = visualize_classes(shipped_mnist.model, bare, [3, 7], config)
    assert result.candidates == NO_DATA_CANDIDATES and result.robust
    assert "random zooms and rotations" in result.settings
    assert result.candidate_margins.shape == (NO_DATA_CANDIDATES, 2)
    kept = result.chosen
    assert kept == kept_candidates(result.candidate_margins, result.candidate_named).tolist()
    assert result.candidate_named[kept, [0, 1]].tolist() == (result.margins > 0).tolist()
    derived = prior_for(bare, None, derive=True)[0]
    keys = [c + j * CANDIDATE_STRIDE for j in range(NO_DATA_CANDIDATES) for c in (3, 7)]
    again = robust_margins(shipped_mnist.model, derived, result.images, [3, 7], result.config,
                           [keys[j * 2 + i] for i, j in enumerate(kept)])
    assert torch.allclose(again, result.candidate_margins[kept, [0, 1]], atol=1e-4)
    assert visualize_classes(shipped_mnist.model, bare, [3], config, candidates=1).candidates == 1
    assert visualize_classes(shipped_mnist.model, shipped_mnist.spec, [3], config).candidates == 1  # a data prior
    assert default_candidates(derived, config, 1000) == 1  # ImageNet-sized class counts: no extra candidates


def test_kept_by_names_the_transforms_the_input_got(shipped_mnist):
    """Without data an image's candidates are judged under random zooms and rotations; a 1-D signal's only under
    shifts along it (``transforms.along_axis``), and its settings line says so."""
    from torch import nn

    from introspect import CLASSES_DEFAULTS
    from introspect.models import ModelSpec

    config = CLASSES_DEFAULTS.replace(steps=1)
    image = visualize_classes(shipped_mnist.model, without_prior(shipped_mnist.spec), [3], config, candidates=2)
    assert ("(kept: largest mean logit margin over 32 random zooms and rotations, among those the model names as "
            "they are)") in image.settings
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 4, 5, stride=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    spec = ModelSpec(name="signal", architecture="user", input_shape=(1, 64), mean=(0.5,), std=(0.25,),
                     logits_layer="", class_names=("a", "b", "c"))
    signal = visualize_classes(model, spec, [0, 1], config, candidates=2)
    assert signal.robust and "random shifts along the signal" in signal.settings
    assert "rotation" not in signal.settings and "zoom" not in signal.settings


def _dense_mlp(shipped_mnist):
    """A tiny seeded MLP on MNIST's pixels (its first weighted module an nn.Linear over all of them) and a spec
    without a prior whose logits are the Sequential's output."""
    from torch import nn

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    spec = without_prior(shipped_mnist.spec).replace(logits_layer="", activations=None, measure=None, taps=None)
    return mlp, spec


@pytest.mark.parametrize("dense", [False, True], ids=["conv", "mlp"])
def test_a_no_data_run_repeats_from_the_config_it_records(shipped_mnist, dense):
    """The config a no-data run records (NO_DATA_TRANSFORMS, with DENSE_NOISE for a model reading pixels densely)
    is still a run without data: run again with it, the same candidates, the same robust choice, the same images."""
    from introspect import CLASSES_DEFAULTS
    from introspect.classes import DENSE_NOISE, NO_DATA_CANDIDATES, NO_DATA_TRANSFORMS, default_candidates
    from introspect.params import prior_for

    model, spec = _dense_mlp(shipped_mnist) if dense else (shipped_mnist.model, without_prior(shipped_mnist.spec))
    config = CLASSES_DEFAULTS.replace(steps=2)
    first = visualize_classes(model, spec, [3, 7], config)
    assert first.config.transforms.noise == (DENSE_NOISE if dense else 0.0)
    assert replace(first.config.transforms, noise=0.0) == NO_DATA_TRANSFORMS
    derived = prior_for(spec, None, derive=True)[0]
    assert default_candidates(derived, first.config, 2) == default_candidates(derived, config, 2) == NO_DATA_CANDIDATES
    again = visualize_classes(model, spec, [3, 7], first.config)
    assert again.config == first.config  # kept as recorded, noise included
    assert (again.candidates, again.robust, again.chosen) == (first.candidates, first.robust, first.chosen)
    assert first.robust and torch.equal(again.images, first.images)
    assert torch.equal(again.candidate_margins, first.candidate_margins)


def test_logits_moved_starts_from_the_prior_a_run_given_data_rendered_with(shipped_mnist):
    """A notebook run given ``data`` starts from that data's prior: logits_moved rebuilds that start, so at a
    learning rate too small to move the images nothing moved (a start rebuilt from the spec alone would differ)."""
    from introspect import CLASSES_DEFAULTS
    from introspect.classes import logits_moved

    mlp, spec = _dense_mlp(shipped_mnist)
    data = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)) ** 4
    still = visualize_classes(mlp, spec, [3, 7], CLASSES_DEFAULTS.replace(steps=2, lr=1e-9), data=data)
    assert still.spec.image_mean is not None  # the data's prior
    assert float(logits_moved(mlp, still).max()) < 1e-4


def test_logits_moved_tells_a_head_that_ignores_the_input(shipped_mnist):
    """How far each kept image's class logit moved from its rebuilt start: 0 for a head initialized to zero (its
    objective history still moves with the prior's terms), clearly more for a model whose logits answer."""
    from introspect import CLASSES_DEFAULTS
    from introspect.classes import logits_moved

    mlp, spec = _dense_mlp(shipped_mnist)
    config = CLASSES_DEFAULTS.replace(steps=8)
    answering = visualize_classes(mlp, spec, [3, 7], config, candidates=2)
    assert float(logits_moved(mlp, answering).max()) > 0.1
    with torch.no_grad():
        mlp[-1].weight.zero_()
        mlp[-1].bias.zero_()
    constant = visualize_classes(mlp, spec, [3, 7], config, candidates=2)
    assert (constant.render.history[-1] - constant.render.history[0]).abs().max() > 0.1  # the prior's terms move
    assert torch.equal(logits_moved(mlp, constant), torch.zeros(2))


def test_class_ranges_are_taken_and_an_unknown_name_among_many_names_the_closest():
    """Before, '0-2' was an unknown class name, and the error listed all 1,000 names of an ImageNet model."""
    from introspect.classes import resolve_classes
    from introspect.models.spec import ModelSpec

    names = tuple(f"class {i}" for i in range(990)) + ("tench", "goldfish", "great white shark") + tuple(
        f"other {i}" for i in range(7))
    spec = ModelSpec(name="many", architecture="many", input_shape=(3, 8, 8), mean=(0.0,) * 3, std=(1.0,) * 3,
                     logits_layer="", class_names=names, dataset=None, activations={})
    assert resolve_classes(spec, ["0-2", "990", " 5 - 6 ", "goldfish"]) == [0, 1, 2, 990, 5, 6, 991]
    with pytest.raises(UserError, match="out of range: this model has classes 0-999"):
        resolve_classes(spec, ["998-1000"])
    with pytest.raises(UserError, match="the start is after the end"):
        resolve_classes(spec, ["3-1"])
    with pytest.raises(UserError) as error:
        resolve_classes(spec, ["goldfsh"])
    assert str(error.value) == ("unknown class 'goldfsh'; closest: goldfish; this model has 1000 classes: give an index "
                                "0-999 or a name")
