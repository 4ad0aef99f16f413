import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from helpers import hook_count, tiny_dataset
from introspect.channel_runs import RunListener, run_channels
from introspect.channels import (CHANNELS_DEFAULTS, DATA_COMPONENTS, data_subspace, dataset_examples, median_pairwise,
                                 parse_channel_list, spread_starts, visualize_channels)
from introspect.data import load_dataset
from introspect.errors import UserError
from introspect.hooks import HookRegistry
from introspect.layers import select_layers
from introspect.objectives import diversity

FAST = CHANNELS_DEFAULTS.replace(steps=5)


def test_chunked_and_unchunked_agree(tiny_model, tiny_spec):
    whole = visualize_channels(tiny_model, tiny_spec, "conv2", list(range(6)), FAST, batch_size=6)
    chunked = visualize_channels(tiny_model, tiny_spec, "conv2", list(range(6)), FAST, batch_size=4)
    assert len(chunked.renders) == 2 and len(whole.renders) == 1
    torch.testing.assert_close(whole.images, chunked.images, atol=1e-4, rtol=0)
    torch.testing.assert_close(whole.activations, chunked.activations, atol=1e-4, rtol=1e-4)


def test_diversity_groups_never_split(tiny_model, tiny_spec):
    result = visualize_channels(tiny_model, tiny_spec, "conv1", [0, 1, 2], FAST, diverse=3, batch_size=4)
    assert result.batch_size == 3  # rounded down to whole groups
    assert result.images.shape[0] == 9
    assert not torch.equal(result.images[0], result.images[1])


def test_diversity_objective_prefers_different_images():
    same = {"l": torch.ones(2, 3, 4, 4)}
    different = {"l": torch.stack([torch.ones(3, 4, 4), torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0))])}
    assert (diversity("l", 2)(different) > diversity("l", 2)(same)).all()


def test_early_exit_computes_nothing_after_target(tiny_model, tiny_spec):
    def explode(*_):
        raise AssertionError("fc1 ran")

    handle = tiny_model.fc1.register_forward_pre_hook(explode)
    try:
        visualize_channels(tiny_model, tiny_spec, "conv2", [0, 1], FAST)
        dataset_examples(tiny_model, tiny_spec, "conv2", tiny_dataset())
    finally:
        handle.remove()


def test_topk_equals_brute_force(tiny_model, tiny_spec):
    data = tiny_dataset()
    stats = dataset_examples(tiny_model, tiny_spec, "conv2", data, k=3)
    x = (data.pixels() - tiny_spec.mean[0]) / tiny_spec.std[0]
    with torch.no_grad():
        acts = torch.relu(tiny_model.conv2(torch.relu(tiny_model.conv1(x)))).mean((2, 3))  # (N, C)
    for c in range(acts.shape[1]):
        best = torch.sort(acts[:, c], descending=True).values[:3]
        torch.testing.assert_close(stats.top_values[c], best)
        torch.testing.assert_close(acts[stats.top_indices[c], c], best)  # the indices point at those values (ties allowed)
        if best[0] > best[1]:
            assert stats.top_indices[c, 0] == acts[:, c].argmax()
    torch.testing.assert_close(stats.max_value, acts.max(0).values)


def test_examples_cached_by_checkpoint(tiny_model, tiny_spec, tmp_path):
    data = tiny_dataset()
    first = dataset_examples(tiny_model, tiny_spec, "fc1", data, k=2, cache_key="ab" * 32)
    files = list((tmp_path / "cache" / "examples").glob("*.npz"))
    assert len(files) == 1
    with torch.no_grad():
        tiny_model.fc1.weight.zero_()  # a recompute would now give other numbers
    second = dataset_examples(tiny_model, tiny_spec, "fc1", data, k=2, cache_key="ab" * 32)
    assert torch.equal(first.top_indices, second.top_indices) and torch.equal(first.max_value, second.max_value)


def test_dataset_digest_is_its_content():
    data = tiny_dataset()
    same = tiny_dataset()
    assert data.digest() == same.digest() and len(data.digest()) == 64
    assert tiny_dataset(seed=1).digest() != data.digest()
    relabelled = tiny_dataset()
    relabelled.labels[0] = 9
    assert relabelled.digest() != data.digest()
    data.images.zero_()
    assert data.digest() == same.digest()  # computed once per object


def test_examples_cache_follows_the_dataset_content(tiny_model, tiny_spec):
    first = dataset_examples(tiny_model, tiny_spec, "fc1", tiny_dataset(seed=0), k=2, cache_key="ab" * 32)
    replaced = tiny_dataset(seed=1)  # same name, split, count and source; other images
    second = dataset_examples(tiny_model, tiny_spec, "fc1", replaced, k=2, cache_key="ab" * 32)
    fresh = dataset_examples(tiny_model, tiny_spec, "fc1", replaced, k=2)
    assert not torch.equal(first.max_value, second.max_value)
    assert torch.equal(second.max_value, fresh.max_value) and torch.equal(second.top_indices, fresh.top_indices)


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"garbage" * 10, lambda b: b""])
def test_unreadable_cache_entry_is_recomputed_and_rewritten(tiny_model, tiny_spec, tmp_path, damage):
    data = tiny_dataset()
    first = dataset_examples(tiny_model, tiny_spec, "conv1", data, k=2, cache_key="ab" * 32)
    (entry,) = (tmp_path / "cache" / "examples").glob("*.npz")
    entry.write_bytes(damage(entry.read_bytes()))
    second = dataset_examples(tiny_model, tiny_spec, "conv1", data, k=2, cache_key="ab" * 32)
    assert len(second.notes) == 1 and "could not be read" in second.notes[0] and "recomputed" in second.notes[0]
    assert torch.equal(first.top_indices, second.top_indices)
    third = dataset_examples(tiny_model, tiny_spec, "conv1", data, k=2, cache_key="ab" * 32)
    assert third.notes == [] and torch.equal(third.max_value, first.max_value)  # rewritten, readable again


def test_cache_entry_of_other_shape_is_recomputed(tiny_model, tiny_spec, tmp_path):
    data = tiny_dataset()
    stats = dataset_examples(tiny_model, tiny_spec, "conv1", data, k=2, cache_key="ab" * 32)
    (entry,) = (tmp_path / "cache" / "examples").glob("*.npz")
    stats.top_indices = stats.top_indices + len(data)  # parses, but points past the dataset
    stats.save(entry)
    again = dataset_examples(tiny_model, tiny_spec, "conv1", data, k=2, cache_key="ab" * 32)
    assert "do not fit" in again.notes[0] and bool((again.top_indices < len(data)).all())


def test_cache_folder_that_is_a_file_means_no_caching(tiny_model, tiny_spec, tmp_path, monkeypatch):
    (tmp_path / "cache-file").write_text("x")
    monkeypatch.setenv("INTROSPECT_CACHE", str(tmp_path / "cache-file"))
    stats = dataset_examples(tiny_model, tiny_spec, "conv1", tiny_dataset(), k=2, cache_key="ab" * 32)
    assert len(stats.notes) == 1 and "not cached" in stats.notes[0] and "Not a directory" in stats.notes[0]
    assert torch.equal(stats.max_value, dataset_examples(tiny_model, tiny_spec, "conv1", tiny_dataset(), k=2).max_value)
    assert (tmp_path / "cache-file").read_text() == "x"


def test_full_cache_disk_means_no_caching_and_no_partial_file(tiny_model, tiny_spec, tmp_path, monkeypatch):
    import errno

    def full(path, **arrays):
        Path(path).write_bytes(b"PK partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("introspect.channels.np.savez_compressed", full)
    stats = dataset_examples(tiny_model, tiny_spec, "conv1", tiny_dataset(), k=2, cache_key="ab" * 32)
    assert len(stats.notes) == 1 and "No space left on device" in stats.notes[0]
    assert list((tmp_path / "cache" / "examples").iterdir()) == []


class Notes(RunListener):
    """The notes a channels run tells its caller (the CLI prints them as `note:` lines)."""

    def __init__(self) -> None:
        self.notes = []

    def note(self, text: str) -> None:
        self.notes.append(text)


def test_channels_run_survives_a_damaged_cache(tmp_path, shipped_mnist):
    model, spec = shipped_mnist.model, shipped_mnist.spec
    args = dict(channels=[0], config=CHANNELS_DEFAULTS.replace(steps=1), top_k=2, data=load_dataset("mnist", "train"),
                cache_key=shipped_mnist.sha256)  # what `introspect channels --layer conv1 --channels 0 --steps 1 --top-k 2` runs
    assert run_channels(model, spec, ["conv1"], tmp_path / "a", **args).complete
    (entry,) = (tmp_path / "cache" / "examples").glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    listener = Notes()
    assert run_channels(model, spec, ["conv1"], tmp_path / "b", listener=listener, **args).complete
    notes = [note for note in listener.notes if note.startswith("the cache entry")]
    assert len(notes) == 1 and "recomputed it" in notes[0]
    assert np.array_equal(np.load(tmp_path / "a" / "images.npz")["examples"], np.load(tmp_path / "b" / "images.npz")["examples"])


def test_constructed_dead_channel_is_reported_dead(tiny_model, tiny_spec):
    with torch.no_grad():
        tiny_model.conv1.weight[3].zero_()
        tiny_model.conv1.bias[3] = -1.0  # relu(conv1)[3] is 0 for every image
    data = tiny_dataset()
    stats = dataset_examples(tiny_model, tiny_spec, "conv1", data)
    result = visualize_channels(tiny_model, tiny_spec, "conv1", [2, 3], FAST, examples=stats)
    assert result.dead.tolist() == [False, True]
    assert torch.isnan(result.ratio[1]) and not torch.isnan(result.ratio[0])
    assert hook_count(tiny_model) == 0


def test_a_raw_signed_output_is_not_called_dead(tiny_model, tiny_spec):
    """A channel never positive on a real image is dead after a ReLU, but not where the layer is measured raw (a
    logit, or a conv before a tanh): a signed output below zero says nothing about whether it is used."""
    from dataclasses import replace

    with torch.no_grad():
        tiny_model.conv1.weight[3].zero_()
        tiny_model.conv1.bias[3] = -1.0  # conv1[3] is -1 for every image
    data = tiny_dataset()
    relu, raw = tiny_spec, replace(tiny_spec, activations={"conv2": "relu", "fc1": "relu"})
    assert raw.activation("conv1") == "identity"
    verdicts = {}
    for name, spec in (("relu", relu), ("raw", raw)):
        stats = dataset_examples(tiny_model, spec, "conv1", data)
        result = visualize_channels(tiny_model, spec, "conv1", [2, 3], FAST, examples=stats)
        verdicts[name] = (result.dead.tolist(), result.rare.tolist(), stats.live[3].item())
    assert verdicts["relu"] == ([False, True], [False, False], False)
    assert verdicts["raw"] == ([False, False], [False, False], True)


@pytest.mark.parametrize("activation", ["leaky_relu", "leaky_relu:0.2", "elu", "tanh", "sigmoid"])
def test_signed_activations_are_never_dead_and_beating_every_real_image_is_reaching(tiny_model, tiny_spec, activation):
    """A LeakyReLU's or ELU's channel below 0 on every image was called DEAD while a PReLU's, the same function, was
    live: each passes its values on. On such a signed output a channel whose optimized image beat every real one was
    greyed out as "not reached" (the optimization had done its job)."""
    with torch.no_grad():
        tiny_model.conv1.weight[3].abs_().mul_(0.1)
        tiny_model.conv1.bias[3] = -2.0  # below 0 on every image, and following the input
    spec = replace(tiny_spec, activations={**tiny_spec.activations, "conv1": activation})
    stats = dataset_examples(tiny_model, spec, "conv1", tiny_dataset())
    assert not stats.judged and bool(stats.live.all())
    result = visualize_channels(tiny_model, spec, "conv1", [3], FAST, examples=stats)
    assert not result.dead[0] and not result.rare[0]
    best, real = float(result.best[0]), float(stats.max_value[3])
    assert (real <= 0 if activation != "sigmoid" else real > 0) and best >= real
    assert not result.not_reached[0] and result.summary().not_reached == 0


@pytest.mark.parametrize("activation", ["hardswish", "silu", "gelu"])
def test_beating_every_real_image_below_zero_is_reaching_after_a_judged_activation(tiny_model, tiny_spec, activation):
    """A Hardswish's (SiLU's, GELU's) map can average below 0 on every image while being positive somewhere: live,
    judged by its sign. Its optimized image that beat every real image was still "not reached" (best <= 0), while
    the same tensor named by its block (measured raw) was reached."""
    with torch.no_grad():
        tiny_model.conv1.weight[3] = 0.2
        tiny_model.conv1.bias[3] = -3.0  # mostly closed: each map averages below 0, positive in its brightest places
    spec = replace(tiny_spec, activations={**tiny_spec.activations, "conv1": activation})
    stats = dataset_examples(tiny_model, spec, "conv1", tiny_dataset())
    assert stats.judged and bool(stats.live[3]) and float(stats.max_value[3]) < 0
    result = visualize_channels(tiny_model, spec, "conv1", [3], FAST, examples=stats)
    assert float(stats.max_value[3]) < float(result.best[0]) <= 0  # beat them all, still below 0
    assert not result.not_reached[0] and result.summary().not_reached == 0


def test_a_dead_channel_is_not_also_counted_as_not_reached(tiny_model, tiny_spec):
    """"6 live, 2 dead, 3 not reached" had one live channel not reached: the dead were counted twice."""
    with torch.no_grad():
        tiny_model.conv1.weight[3].zero_()
        tiny_model.conv1.bias[3] = -1.0
    stats = dataset_examples(tiny_model, tiny_spec, "conv1", tiny_dataset())
    result = visualize_channels(tiny_model, tiny_spec, "conv1", [2, 3], FAST, examples=stats)
    assert result.dead.tolist() == [False, True] and float(result.best[1]) <= 0
    assert not result.not_reached[1] and result.summary().dead == 1


@pytest.mark.parametrize("text,expected", [("0-3,7", [0, 1, 2, 3, 7]), ("5", [5]), ("2,2,1", [2, 1])])
def test_parse_channel_list(text, expected):
    assert parse_channel_list(text, 10) == expected


@pytest.mark.parametrize("text,message", [("5-3", "start is after the end"), ("a,b", "not N or N-M"),
                                          ("-1", "not N or N-M"), ("3,", "empty item"), ("10", "out of range"),
                                          ("", "empty channel list"), (" ", "empty channel list")])
def test_parse_channel_list_errors(text, message):
    with pytest.raises(UserError, match=message):
        parse_channel_list(text, 10)


def test_inplace_relu_model_same_values_with_and_without_early_exit():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 3), nn.ReLU(inplace=True))
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad(), HookRegistry(model, ["0"], early_exit=True) as hooks:
        early = hooks.run(x)["0"]
    with torch.no_grad(), HookRegistry(model, ["0"], early_exit=False) as hooks:
        full = hooks.run(x)["0"]
    assert torch.equal(early, full) and (full < 0).any()  # the pre-ReLU values survived the in-place ReLU


def test_channels_run_of_every_layer_writes_every_page(tmp_path, shipped_mnist):
    out = tmp_path / "run"
    model, spec = shipped_mnist.model, shipped_mnist.spec
    layers = select_layers(model, spec.input_shape, "all")
    done = run_channels(model, spec, layers, out, channels="0-1", config=CHANNELS_DEFAULTS.replace(steps=2),
                        data=load_dataset("mnist", "train"), formats=("png", "pdf"))
    assert done.complete
    for name in ("index.png", "report.png", "report.pdf", "images.npz", "run.json", "index.html", "site/index.html",
                 "report-conv1.png", "report-conv2.png", "report-fc1.png", "report-fc2.png"):
        assert (out / name).stat().st_size > 0, name
    data = np.load(out / "images.npz")
    assert data["images"].shape == (8, 1, 28, 28) and data["examples"].shape == (8, 5)
    assert data["ratio"].shape == (8,) and data["dead"].dtype == bool
    assert list(data["layers"][:2]) == ["conv1", "conv1"]
    record = json.loads((out / "run.json").read_text())
    assert [l["layer"] for l in record["layers"]] == ["conv1", "conv2", "fc1", "fc2"]
    assert record["dataset"]["name"] == "mnist"


DATA_STYLE = CHANNELS_DEFAULTS.replace(image=replace(CHANNELS_DEFAULTS.image, style="data"))


def test_data_style_starts_at_the_top_example_and_beats_it(shipped_mnist):
    model, spec = shipped_mnist.model, shipped_mnist.spec
    data = load_dataset("mnist", "train")
    examples = dataset_examples(model, spec, "conv2", data, k=2)
    channels = [0, 1]
    start = visualize_channels(model, spec, "conv2", channels, DATA_STYLE.replace(steps=1), examples=examples,
                               dataset=data)
    top = data.pixels(examples.top_indices[channels, 0])
    assert (start.images - top).abs().mean() < 0.05  # one step from the top example
    result = visualize_channels(model, spec, "conv2", channels, DATA_STYLE.replace(steps=48), examples=examples,
                                dataset=data)
    assert result.renders[0].param == "pixel" and "near_data" in result.renders[0].objective
    assert bool((result.activations > start.activations).all())  # near the data: tests/system/test_channels_quality.py


def test_diverse_copies_start_far_apart_among_the_top_examples():
    """The strongest example first, then greedily the farthest from those picked; a short pool repeats."""
    pool = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [0.0, 3.0]]).view(4, 1, 1, 2)
    assert spread_starts(pool, 3) == [0, 2, 3]
    assert spread_starts(pool[:2], 3) == [0, 1, 0]
    assert median_pairwise(pool[:3]) == pytest.approx(4.9) and median_pairwise(pool[:1]) == 0.0


@pytest.mark.parametrize("layer, count, diverse, share", [
    ("conv2", 4, 3, None),  # 8 steps leave some copies below the best real image
    ("conv1", 16, 1, 4.0),  # 8 steps leave two single images at 0.97-0.99, lifted by 32 more steps (2 do not)
])
def test_images_below_the_best_real_image_go_on_and_only_they_change(shipped_mnist, monkeypatch, layer, count,
                                                                     diverse, share):
    """``channels.rescued``: an image (single, or a diverse copy) still below its channel's best real image after the
    run takes a stronger image from the extra steps; the images above it keep theirs."""
    import introspect.channels as ch
    from introspect.data import ImageDataset

    model, spec = shipped_mnist.model, shipped_mnist.spec
    full = load_dataset("mnist", "train")
    data = ImageDataset("mnist", "train", full.images[:2000], full.labels[:2000], full.class_names, "2,000 digits")
    examples = dataset_examples(model, spec, layer, data, k=5)
    seen, original = [], ch.rescued
    if share is not None:
        monkeypatch.setattr(ch, "RESCUE_SHARE", share)

    def spy(*args):  # what the run measured (render, values) and what the rescue made of it
        seen.append((args[-2], args[-1], original(*args)))
        return seen[-1][2]

    monkeypatch.setattr(ch, "rescued", spy)
    channels = list(range(count))
    result = visualize_channels(model, spec, layer, channels, DATA_STYLE.replace(steps=8), diverse=diverse,
                                examples=examples, dataset=data)
    (render, before, (_, after)), = seen
    best = examples.max_value[channels].repeat_interleave(diverse)
    low = before < best
    assert bool(low.any()) and bool((~low).any())
    assert torch.equal(result.images[~low], render.images[~low]) and torch.equal(result.activations, after)
    assert bool((after >= before).all()) and bool((after[low] > before[low]).any())



def test_the_rescue_skips_channels_marked_dead_whatever_their_target(tiny_model, tiny_spec):
    """``channels.rescued`` tells dead channels by ``DataStarts.live``, not by their targets: images far below
    their targets stay when their channels are marked dead, and go on when the same channels are marked live."""
    import introspect.channels as ch

    data = tiny_dataset()
    examples = dataset_examples(tiny_model, tiny_spec, "conv1", data, k=2)
    plan = ch.plan_channels(tiny_model, tiny_spec, ["conv1"], [0, 1], batch_size=2, steps=4)["conv1"]
    config = DATA_STYLE.replace(steps=4)
    run = visualize_channels(tiny_model, tiny_spec, "conv1", [0, 1], config, examples=examples, dataset=data,
                             plan=plan)
    far = replace(ch.data_starts(plan, examples, data), best=torch.full((2,), 1e3))  # both images below
    render, values = run.renders[0], run.activations
    for live, rescued in ((False, False), (True, True)):
        starts = replace(far, live=torch.full((2,), live))
        again, _ = ch.rescued(tiny_model, tiny_spec, plan, [0, 1], starts, config, False, render, values)
        assert (again is not render) == rescued

def test_an_image_as_strong_as_the_best_real_image_is_not_rescued(tiny_model, tiny_spec):
    """``channels.rescued`` compares with the best real activation itself (DataStarts.best), not with it recovered
    from the target (DATA_TARGET x best / DATA_TARGET, one float32 step above it for this best): an image exactly
    as strong as the best real image stays."""
    import introspect.channels as ch

    best = torch.tensor(1.3355)
    assert float(ch.DATA_TARGET * best / ch.DATA_TARGET) > float(best)  # the round trip this test is about
    data = tiny_dataset()
    examples = dataset_examples(tiny_model, tiny_spec, "conv1", data, k=2)
    examples = replace(examples, max_value=torch.full(examples.max_value.shape, float(best)))
    plan = ch.plan_channels(tiny_model, tiny_spec, ["conv1"], [0, 1], batch_size=2, steps=4)["conv1"]
    config = DATA_STYLE.replace(steps=4)
    starts = replace(ch.data_starts(plan, examples, data), live=torch.ones(2, dtype=torch.bool))
    run = visualize_channels(tiny_model, tiny_spec, "conv1", [0, 1], config, examples=examples, dataset=data,
                             plan=plan)
    values = best.repeat(2)
    again, after = ch.rescued(tiny_model, tiny_spec, plan, [0, 1], starts, config, False, run.renders[0], values)
    assert again is run.renders[0] and torch.equal(after, values)
    assert torch.equal(starts.best, values) and torch.equal(starts.targets, ch.DATA_TARGET * values)


def test_data_subspace_is_the_top_principal_directions_of_the_data():
    from introspect.data import ImageDataset

    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, 28).expand(28, 28).flatten()
    blob = torch.zeros(28, 28)
    blob[10:18, 10:18] = 1
    weights = torch.rand(80, 2, generator=g)
    pixels = 0.2 + 0.3 * weights[:, :1] * ramp + 0.4 * weights[:, 1:] * blob.flatten()
    data = ImageDataset("two", "train", (pixels * 255).round().to(torch.uint8).view(80, 1, 28, 28), torch.zeros(80),
                        ("a",), "two directions")
    mean, components, scale = data_subspace(data)
    assert components.shape == (784, DATA_COMPONENTS)
    torch.testing.assert_close(components.T @ components, torch.eye(DATA_COMPONENTS), atol=1e-4, rtol=0)
    for direction in (ramp, blob.flatten()):  # the two directions the images vary along: in the top two
        assert (direction @ components[:, :2]).pow(2).sum() > 0.99 * direction.pow(2).sum()
    assert scale < 1e-3  # only the rounding to bytes is left outside
    big = ImageDataset("big", "train", torch.zeros(2, 3, 64, 64, dtype=torch.uint8), torch.zeros(2), ("a",), "big")
    assert data_subspace(big) == (None, None, 1.0)


def test_data_style_without_examples_is_the_texture_style_and_says_so(tiny_model, tiny_spec):
    texture = visualize_channels(tiny_model, tiny_spec, "conv1", [0, 1], FAST)
    data = visualize_channels(tiny_model, tiny_spec, "conv1", [0, 1], DATA_STYLE.replace(steps=5))
    torch.testing.assert_close(texture.images, data.images)
    assert any(note.startswith("style data needs real examples") for note in data.renders[0].notes)  # str(): Python names


def test_auto_style_is_data_with_real_examples_and_texture_without(tiny_model, tiny_spec):
    assert CHANNELS_DEFAULTS.image.style == "auto"
    auto = CHANNELS_DEFAULTS.replace(steps=3)
    plain = visualize_channels(tiny_model, tiny_spec, "conv1", [0, 1], auto)
    assert plain.style == "texture"  # no data: texture, and nothing said about the style
    assert not any("style" in str(note) for note in plain.renders[0].notes)
    data = tiny_dataset()
    examples = dataset_examples(tiny_model, tiny_spec, "conv1", data, k=2)
    started = visualize_channels(tiny_model, tiny_spec, "conv1", [0, 1], auto, examples=examples, dataset=data)
    assert started.style == "data" and "near_data" in started.renders[0].objective


def test_data_style_run_channels(tmp_path, shipped_mnist):
    model, spec = shipped_mnist.model, shipped_mnist.spec
    run = run_channels(model, spec, ["conv1"], tmp_path / "a", channels=[0, 1], config=DATA_STYLE.replace(steps=2),
                       top_k=2, data=load_dataset("mnist", "train"))
    assert run.complete
    record = json.loads((tmp_path / "a" / "run.json").read_text())
    assert '"style": "data"' in json.dumps(record) and record["layers"][0]["style"] == "data"


def test_a_chunk_that_runs_out_of_memory_is_halved_and_finishes(tiny_model, tiny_spec, monkeypatch):
    """A fake CUDA out-of-memory error for more than 2 images at once: the 6-image chunk backs off to pieces of
    at most 2 and still gives the chunk's images (each image's randomness comes from its channel)."""
    import introspect.channels as channels_module

    real, sizes = channels_module.visualize_chunk, []

    def small_memory(model, spec, plan, index, *args, **kwargs):
        images = len(channels_module.chunk_channels(plan, index)) * plan.diverse
        sizes.append(images)
        if images > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        return real(model, spec, plan, index, *args, **kwargs)

    whole = visualize_channels(tiny_model, tiny_spec, "conv2", list(range(6)), FAST, batch_size=6)
    monkeypatch.setattr(channels_module, "visualize_chunk", small_memory)
    backed = visualize_channels(tiny_model, tiny_spec, "conv2", list(range(6)), FAST, batch_size=6)
    assert sizes == [6, 3, 1, 2, 3, 1, 2]  # halved, and halved again where still too big
    assert backed.images.shape == whole.images.shape and backed.renders[0].history.shape == (FAST.steps, 6)
    torch.testing.assert_close(backed.images, whole.images, atol=1e-4, rtol=0)
    torch.testing.assert_close(backed.activations, whole.activations, atol=1e-4, rtol=1e-4)


def test_a_data_style_chunk_that_runs_out_of_memory_keeps_its_starts_and_subspace(tiny_model, tiny_spec,
                                                                                   monkeypatch):
    """Backing off splits the data style's starts with the chunk and keeps the data's subspace and scale."""
    import introspect.channels as channels_module

    data = tiny_dataset()
    examples = dataset_examples(tiny_model, tiny_spec, "conv2", data, k=2)
    config = DATA_STYLE.replace(steps=3)
    whole = visualize_channels(tiny_model, tiny_spec, "conv2", list(range(4)), config, batch_size=4,
                               examples=examples, dataset=data)
    real, seen = channels_module.visualize_chunk, []

    def small_memory(model, spec, plan, index, *args, **kwargs):
        starts = args[3] if len(args) > 3 else kwargs.get("starts")
        if len(channels_module.chunk_channels(plan, index)) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        seen.append((len(starts.images), starts.components is not None, starts.scale))
        return real(model, spec, plan, index, *args, **kwargs)

    monkeypatch.setattr(channels_module, "visualize_chunk", small_memory)
    backed = visualize_channels(tiny_model, tiny_spec, "conv2", list(range(4)), config, batch_size=4,
                                examples=examples, dataset=data)
    assert [(n, has) for n, has, _ in seen] == [(2, True), (2, True)] and seen[0][2] == seen[1][2]
    torch.testing.assert_close(backed.images, whole.images, atol=1e-4, rtol=0)


def test_one_channel_that_does_not_fit_raises(tiny_model, tiny_spec, monkeypatch):
    import introspect.channels as channels_module

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (fake)")

    monkeypatch.setattr(channels_module, "visualize_chunk", no_memory)
    with pytest.raises(torch.OutOfMemoryError):
        visualize_channels(tiny_model, tiny_spec, "conv2", [0, 1], FAST, batch_size=2)


def test_chunks_sized_from_a_measured_peak(tiny_model, tiny_spec):
    """A measured memory per image sizes the chunk within 2x of it; the CPU measures nothing and keeps the plan."""
    from introspect.channels import (MEASURED_HEADROOM, calibrate_plan, measured_bytes_per_image, plan_channels,
                                     sized_from)

    plan = plan_channels(tiny_model, tiny_spec, ["conv2"], budget_bytes=10 << 20)
    layer = plan["conv2"]
    resized = sized_from(layer, per_image=100_000, budget=10 << 20)
    assert resized.chunk == (10 << 20) // int(100_000 * MEASURED_HEADROOM)
    assert 100_000 <= resized.bytes_per_image <= 2 * 100_000
    assert resized.chunk * resized.bytes_per_image <= 10 << 20
    assert sized_from(replace(layer, diverse=3), 100_000, 10 << 20).chunk % 3 == 0
    assert measured_bytes_per_image(tiny_model, tiny_spec, layer, FAST) is None
    assert calibrate_plan(tiny_model, tiny_spec, plan, FAST) == plan


@pytest.mark.parametrize("size, penalty", [(16, "subspace"), (40, "pixel distance")])
def test_data_style_on_rgb_says_which_penalty(size, penalty):
    """RGB pictures of 768 values get the data's principal subspace; of 4,800 (over 3,072) the squared pixel
    distance to the example: the style, its penalty and its words (the report header) say which ran."""
    from introspect.data import ImageDataset
    from introspect.models.spec import ModelSpec
    from introspect.records import layer_record

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    spec = ModelSpec("rgb", "user", (3, size, size), (0.5,) * 3, (0.25,) * 3, "4", ("a", "b"))
    g = torch.Generator().manual_seed(0)
    data = ImageDataset("rgb", "train", (torch.rand(12, 3, size, size, generator=g) * 255).to(torch.uint8),
                        torch.arange(12) % 2, ("a", "b"), "random RGB pictures")
    examples = dataset_examples(model, spec, "0", data, k=2)
    result = visualize_channels(model, spec, "0", [0, 1, 2, 3], CHANNELS_DEFAULTS.replace(steps=3),
                                examples=examples, dataset=data)
    assert result.images.shape == (4, 3, size, size) and torch.isfinite(result.images).all()
    record = layer_record(result)
    assert record["style"] == "data" and record["penalty"] == penalty == result.penalty
    objective = "near_data" if penalty == "subspace" else "accentuate"
    assert result.renders[0].objective.startswith(objective)
    words = "principal components" if penalty == "subspace" else "squared pixel distance to that example (input of 4,800"
    assert words in record["style_detail"] and record["style_detail"].startswith("data style: free pixels")


def _synthetic_cost(monkeypatch, cost):
    """visualize_chunk replaced by steps that each advance a fake clock by ``cost(images)`` (the warm-up step by
    ten times that); returns the clock and the batch sizes run."""
    import introspect.channels as ch
    now, sizes = [0.0], []

    def steps(model, spec, plan, index, config, neuron, on_step):
        images = len(ch.chunk_channels(plan, index)) * plan.diverse
        sizes.append(images)
        for step in range(1, config.steps + 1):
            now[0] += cost(images) * (10 if step == 1 else 1)
            on_step(step, config.steps, None)
        return SimpleNamespace(render=SimpleNamespace(interrupted_at=None))

    monkeypatch.setattr(ch, "visualize_chunk", steps)
    return (lambda: now[0]), sizes


@pytest.mark.parametrize("channels, timed, cost, expected", [
    (64, (4, 16), lambda n: 0.01 + 0.002 * n, 0.01 + 0.002 * 64),  # affine: the line through 4 and 16, exactly
    (64, (4, 16), lambda n: 0.05 - 0.001 * n, 0.05 - 0.001 * 16),  # noise, a falling line: the larger batch's time
    (64, (4, 16), lambda n: 0.003 * n * n, 0.003 * 16 * 16 * 4),  # convex: at most the larger batch scaled up
    (12, (12,), lambda n: 0.01 + 0.002 * n, 0.01 + 0.002 * 12),  # a chunk no larger than 16: timed whole
])
def test_step_estimate_extrapolates_from_small_batches(tiny_model, tiny_spec, monkeypatch, channels, timed, cost,
                                                       expected):
    from introspect.channels import estimate_step, plan_channels
    clock, sizes = _synthetic_cost(monkeypatch, cost)
    plan = plan_channels(tiny_model, tiny_spec, ["conv2"], list(range(channels)), batch_size=64)["conv2"]
    step = estimate_step(tiny_model, tiny_spec, plan, budget=0.0, clock=clock)
    assert sizes == list(timed) and step.timed == timed and step.images == channels
    assert step.extrapolated == (timed != (channels,))
    assert step.seconds == pytest.approx(expected)


def test_step_estimate_keeps_diversity_groups_whole(tiny_model, tiny_spec, monkeypatch):
    from introspect.channels import estimate_step, plan_channels
    clock, sizes = _synthetic_cost(monkeypatch, lambda n: 1.0 + n)
    plan = plan_channels(tiny_model, tiny_spec, ["conv2"], list(range(20)), diverse=3, batch_size=60)["conv2"]
    step = estimate_step(tiny_model, tiny_spec, plan, budget=0.0, clock=clock)
    assert sizes == [3, 15] and step.timed == (3, 15) and step.images == 60
    assert step.seconds == pytest.approx(61.0)


@pytest.mark.parametrize("budget, timed, expected", [
    # affordable: 64 timed; then 100 (the chunk) is not, and the line from 16 to 64 is capped at 64's time scaled up
    (13 * (0.01 + 0.002 * 64) + 1e-9, (4, 16, 64), (0.01 + 0.002 * 64 + 0.0001 * 64 ** 2) * 100 / 64),
    (13 * (0.01 + 0.002 * 64) - 1e-9, (4, 16), None),  # predicted over the budget: extrapolated from 16
    (1e9, (4, 16, 64, 100), 0.01 + 0.002 * 100 + 0.0001 * 100 ** 2),  # up to the chunk itself, timed whole
])
def test_step_estimate_times_larger_batches_within_its_budget(tiny_model, tiny_spec, monkeypatch, budget, timed,
                                                              expected):
    """A larger batch is timed while its timing is predicted to fit the budget (the last one's wall time, a warm-up
    at 10 steps + 3 steps, scaled by the line's step time there): it sees the cost per image the small ones miss
    (here a quadratic term)."""
    from introspect.channels import estimate_step, plan_channels
    cost = lambda n: 0.01 + 0.002 * n + (0.0001 * n * n if n > 16 else 0)  # noqa: E731
    clock, sizes = _synthetic_cost(monkeypatch, cost)
    plan = plan_channels(tiny_model, tiny_spec, ["fc1"], list(range(100)), batch_size=128)["fc1"]
    step = estimate_step(tiny_model, tiny_spec, plan, budget=budget, clock=clock)
    assert step.timed == timed == tuple(sizes) and step.extrapolated == (timed[-1] != 100)
    assert step.seconds == pytest.approx(expected if expected is not None else 0.01 + 0.002 * 100)


def test_the_examples_pass_summarizes_in_parts_with_the_same_values(tiny_model, tiny_spec, monkeypatch):
    """On the CPU a layer's output is summarized a few images at a time (no batch-sized activated copy): every
    statistic is what the whole batch at once gives, for maps and vectors alike."""
    import introspect.channels as channels
    from introspect.channels import dataset_examples_many

    data = tiny_dataset(n=24)
    whole = dataset_examples_many(tiny_model, tiny_spec, ["conv1", "conv2", "fc1"], data, k=3, batch_size=12)
    monkeypatch.setattr(channels, "SUMMARY_BYTES", 1)  # one image at a time
    parts = dataset_examples_many(tiny_model, tiny_spec, ["conv1", "conv2", "fc1"], data, k=3, batch_size=12)
    for layer in ("conv1", "conv2", "fc1"):
        for name in ("top_indices", "top_values", "max_value", "peak", "active", "histogram"):
            assert torch.equal(getattr(whole[layer], name), getattr(parts[layer], name)), (layer, name)



def test_the_examples_pass_settles_rows_in_any_grouping_with_the_same_statistics(tiny_model, tiny_spec, monkeypatch):
    """Each layer's statistics are folded in SETTLE_ROWS images at a time, whatever the forward batch: a batch
    of 5 settled every batch, every 3 batches or once at the end gives what one batch of all the images gives."""
    import introspect.channels as channels

    data = tiny_dataset(n=23)
    layers = ["conv1", "conv2", "fc1"]
    whole = channels.examples_pass(tiny_model, tiny_spec, layers, data, k=3, batch_size=23)
    for rows, held in ((1, 2 ** 30), (15, 2 ** 30), (10 ** 6, 2 ** 30), (10 ** 6, 1)):  # held: SETTLE_BYTES
        monkeypatch.setattr(channels, "SETTLE_ROWS", rows)
        monkeypatch.setattr(channels, "SETTLE_BYTES", held)
        grouped = channels.examples_pass(tiny_model, tiny_spec, layers, data, k=3, batch_size=5)
        for layer in layers:
            for name in ("top_indices", "active", "histogram"):
                assert torch.equal(getattr(whole[layer], name), getattr(grouped[layer], name)), (rows, layer, name)
            for name in ("top_values", "max_value", "peak"):
                torch.testing.assert_close(getattr(whole[layer], name), getattr(grouped[layer], name))


def test_a_cpu_pass_batch_keeps_the_largest_output_within_its_bytes(tiny_model, tiny_spec, monkeypatch):
    """Freed tensors above glibc's thresholds go back to the system and each batch faults them in again: on the
    CPU the pass batch holds the largest layer output to PASS_BYTES; elsewhere it is the most allowed."""
    import introspect.layers as layers
    from introspect.layers import describe_layers, pass_batch_size

    largest = max(math.prod(info.output_shape) for info in describe_layers(tiny_model, tiny_spec.input_shape)
                  if info.output_shape) * 4
    monkeypatch.setattr(layers, "PASS_BYTES", 10 * largest + 1)
    assert pass_batch_size(tiny_model, tiny_spec.input_shape, "cpu") == 10
    assert pass_batch_size(tiny_model, tiny_spec.input_shape, "cpu", most=4) == 4
    monkeypatch.setattr(layers, "PASS_BYTES", 1)
    assert pass_batch_size(tiny_model, tiny_spec.input_shape, "cpu") == 1
    assert pass_batch_size(tiny_model, tiny_spec.input_shape, "cuda") == 500  # no forward on a device not here


def test_the_pass_batch_s_dry_forward_leaves_the_random_state_as_it_was():
    """A model that draws random numbers in its forward (noise in eval mode) draws the same in the pass after it."""
    from introspect.layers import pass_batch_size

    class Noisy(nn.Module):
        def forward(self, x):
            return x + torch.rand_like(x)

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    pass_batch_size(Noisy(), (1, 4, 4), "cpu")
    assert torch.equal(torch.rand(3), expected)


def test_a_layer_whose_output_is_a_tuple_is_refused_as_such():
    """It said the LSTM "does not run in the model's forward pass"."""
    from helpers import recurrent
    from introspect.channels import plan_channels

    model, spec = recurrent()
    with pytest.raises(UserError, match="layer 'lstm' returns a tuple, not one tensor"):
        plan_channels(model, spec, ["lstm"], steps=2)


def test_the_examples_pass_keeps_k_examples_when_its_first_rows_or_shard_hold_fewer(tiny_model, tiny_spec, monkeypatch):
    """Merging kept as many examples as its first part held: k above the first settled rows (SETTLE_ROWS, or a
    batch) or above a shard's images gave fewer than k, and the cache then refused the entry every time."""
    import introspect.channels as channels

    data = tiny_dataset(n=23)
    whole = channels.examples_pass(tiny_model, tiny_spec, ["fc1"], data, k=10, batch_size=23)["fc1"]
    monkeypatch.setattr(channels, "SETTLE_ROWS", 4)
    settled = channels.examples_pass(tiny_model, tiny_spec, ["fc1"], data, k=10, batch_size=5)["fc1"]
    shards = [channels.examples_pass(tiny_model, tiny_spec, ["fc1"], data, k=10, batch_size=5, shard=(r, 4))["fc1"]
              for r in range(4)]
    merged = shards[0]
    for shard in shards[1:]:
        merged = merged.merge(shard, 10)
    for stats in (settled, merged):
        assert tuple(stats.top_indices.shape) == (128, 10)
        assert torch.equal(stats.top_indices, whole.top_indices)


@pytest.mark.parametrize("kind", ["normal", "few values", "zero rows", "infinities", "nan", "nan among ties"])
def test_top_k_takes_the_same_examples_as_sorting_whole_rows(kind):
    """``_top`` picks its candidates with topk and sorts only those: ties (a dead channel's zeros, repeated
    values) still go to the lower index, and rows with NaN fall back to the whole sort, which puts NaN first."""
    from introspect.channels import _top

    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        rows, length = (int(torch.randint(1, n, (1,), generator=generator)) for n in (9, 40))
        k = int(torch.randint(1, 8, (1,), generator=generator))
        values = torch.randn(rows, length, generator=generator)
        if kind == "few values":
            values = values.round().clamp(-1, 1)
        elif kind == "zero rows":
            values = values.relu()
            values[::2] = 0
        elif kind == "infinities":
            values[values.abs() > 1] *= math.inf
        elif kind == "nan":
            values[values > 1.2] = math.nan
        elif kind == "nan among ties":  # a mostly-zero ReLU channel: zeros tied at the k-th fill a NaN's place
            values = values.relu() * (values > 1.0)
            values[values > 1.5] = math.nan
        indices = (torch.arange(length) * 3 + 7).expand(rows, -1)
        order = values.argsort(stable=True, dim=1, descending=True)[:, :k]
        expected_values, expected_indices = values.gather(1, order), indices.gather(1, order)
        got_values, got_indices = _top(values, indices, k, ascending=True)
        assert torch.equal(got_indices, expected_indices)
        torch.testing.assert_close(got_values, expected_values, equal_nan=True, rtol=0, atol=0)
    assert _top(values, indices, 0, ascending=True)[0].shape == (len(values), 0)


@pytest.mark.parametrize("parts", ["whole batches", "parts of 3 images"])
@pytest.mark.parametrize("layout", ["contiguous", "channels last", "height and width swapped", "cropped"])
def test_conv_summaries_are_the_channel_values_bit_for_bit_whatever_the_memory_layout(layout, parts, monkeypatch):
    """The examples pass reduces conv maps into preallocated rows, a part of SUMMARY_BYTES at a time: the same bytes
    as ``channel_values`` (the spatial mean after the activation) for maps laid out in memory any way a model leaves
    them, NaN and inf included, however the batches split into parts (7 images: 3 + 3 + 1)."""
    from introspect import channels
    from introspect.channels import examples_pass
    from introspect.models import ModelSpec
    from introspect.channels import channel_values

    class Mapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 6, 3, padding=2)
            self.out = nn.Identity()

        def forward(self, x):
            y = self.conv(x)
            bright = (x[:, 0, 14, 14] > 0.6).view(-1, 1, 1)  # some images: a NaN in channel 1, an inf in channel 3
            y = torch.stack([torch.where(bright & (c == 1), math.nan, torch.where(bright & (c == 3), math.inf, y[:, c]))
                             for c in range(y.shape[1])], 1)
            y = {"contiguous": y, "channels last": y.contiguous(memory_format=torch.channels_last),
                 "height and width swapped": y.transpose(2, 3).contiguous().transpose(2, 3),
                 "cropped": y[:, :, 1:-1, 1:-1]}[layout]
            return self.out(y)

    if parts == "parts of 3 images":
        monkeypatch.setattr(channels, "SUMMARY_BYTES", 3 * 6 * 30 * 30 * 4)
    torch.manual_seed(0)
    model, data = Mapped().eval(), tiny_dataset(n=20)
    spec = ModelSpec(name="mapped", architecture="mapped", input_shape=(1, 28, 28), mean=(0.0,), std=(1.0,),
                     logits_layer=None, class_names=(), activations={"out": "relu"})
    stats = examples_pass(model, spec, ["out"], data, k=20, batch_size=7)["out"]
    with torch.no_grad():
        values = channel_values(model(data.pixels()), "relu")
    assert values[:, 1].isnan().any() and values[:, 3].isinf().any() and values[:, 0].isfinite().all()
    exact = dict(rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(stats.top_values, values.T.gather(1, stats.top_indices), **exact)
    torch.testing.assert_close(stats.max_value, values.amax(0), **exact)
