"""Properties of the library that hold for any input: a render leaves the model and torch's global state
as it found them; channel lists and layer names parse or fail with a UserError, never crash."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import hook_count
from introspect import RenderConfig, visualize_classes
from introspect.channels import parse_channel_list
from introspect.errors import UserError
from introspect.layers import resolve_layer


def test_model_and_global_state_untouched(shipped_mnist):
    model = shipped_mnist.model
    params = {k: v.clone() for k, v in model.state_dict().items()}
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    visualize_classes(model, shipped_mnist.spec, [1, 2], RenderConfig(steps=3))
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert not model.training and hook_count(model) == 0
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 5)), min_size=1, max_size=5))
def test_channel_ranges_property(ranges):
    count = 45
    text = ",".join(f"{lo}-{lo + width}" if width else str(lo) for lo, width in ranges)
    expected = list(dict.fromkeys(c for lo, width in ranges for c in range(lo, lo + width + 1)))
    if max(expected) >= count:
        try:
            parse_channel_list(text, count)
        except UserError:
            return
        raise AssertionError("out-of-range channel accepted")
    assert parse_channel_list(text, count) == expected


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=12))
def test_channel_list_never_crashes(text):
    try:
        channels = parse_channel_list(text, 10)
    except UserError:
        return
    assert channels and all(0 <= c < 10 for c in channels)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._", max_size=16))
def test_layer_names_resolve_or_fail_clearly(name):
    import torchvision

    model = torchvision.models.resnet18(weights=None)
    modules = dict(model.named_modules())
    try:
        module = resolve_layer(model, name)
    except UserError as exc:
        assert name not in modules and exc.settings == ("layers_command",)
        return
    assert module is modules[name]
