import copy
import pickle
import re

import pytest
import torch

from introspect.errors import UserError
from introspect.models import BUILTIN_MODELS, ModelSpec, load_checkpoint, load_model, save_checkpoint
from introspect.models.spec import PRIOR_FIELDS


def test_checkpoint_round_trip_weights_only(tmp_path, tiny_model, tiny_spec):
    spec = tiny_spec.replace(spectrum=[[float(i + j) for j in range(15)] for i in range(28)])  # H x (W//2+1)
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny_model, spec)
    raw = torch.load(path, weights_only=True)  # must not need full unpickling
    assert set(raw) == {"state_dict", "spec"}
    loaded = load_checkpoint(path)
    assert loaded.spec == spec
    assert isinstance(loaded.spec.spectrum, tuple) and loaded.spec.spectrum[1][:2] == (1.0, 2.0)
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)
    assert len(loaded.sha256) == 64


def test_spec_dict_is_plain_types(tiny_spec):
    data = tiny_spec.to_dict()
    assert isinstance(data["class_names"], list) and isinstance(data["input_shape"], list)
    assert ModelSpec.from_dict(data) == tiny_spec


@pytest.mark.parametrize("name", list(BUILTIN_MODELS))
def test_builtin_models_ship_with_spec(name):
    loaded = load_model(name)
    assert loaded.spec.input_shape == (1, 28, 28)
    assert loaded.spec.logits_layer == "fc2"
    assert loaded.spec.num_classes == 10
    assert loaded.spec.spectrum is not None
    assert not loaded.model.training


def test_unknown_model_lists_names():
    with pytest.raises(UserError, match="mnist, fashion-mnist"):
        load_model("resnet")


def test_refuses_pickle_that_needs_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("open('pwned', 'w').write('x')",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": Evil(), "spec": {}}, handle, protocol=2)
    with pytest.raises(UserError, match="cannot be loaded safely"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_truncated_and_empty_checkpoints(tmp_path, tiny_model, tiny_spec):
    good = tmp_path / "good.pt"
    save_checkpoint(good, tiny_model, tiny_spec)
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(UserError, match="corrupt or truncated"):
        load_checkpoint(truncated)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        load_checkpoint(empty)
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_shape_mismatch_names_the_key(tmp_path, tiny_model, tiny_spec):
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny_model, tiny_spec.replace(class_names=[str(i) for i in range(5)]))
    with pytest.raises(UserError, match="fc2.weight"):
        load_checkpoint(path)


REFUSED = [
    ({"input_shape": [1, 1, 28, 28]}, "input_shape must be (C, H, W), (C, L) or (L,): positive whole numbers, got (1, 1, 28, 28)"),
    ({"input_shape": [1, 0, 28]}, "input_shape must be (C, H, W), (C, L) or (L,): positive"),
    ({"input_shape": [1.5, 28, 28]}, "input_shape must be (C, H, W), (C, L) or (L,): positive"),
    ({"input_shape": None}, "input_shape must be a list, got None"),
    ({"mean": [0.1, 0.2]}, "mean must hold one finite number per input channel (1), got (0.1, 0.2)"),
    ({"mean": [float("inf")]}, "mean must hold one finite number"),
    ({"std": []}, "std must hold one finite number per input channel (1), got ()"),
    ({"std": ["1"]}, "std must hold one finite number"),
    ({"std": [0.0]}, "std must be > 0 for every channel, got (0.0,)"),
    ({"std": [-0.5]}, "std must be > 0 for every channel"),
    ({"class_names": []}, "class_names must hold at least one name"),
    ({"class_names": [1, 2]}, "class_names must hold at least one name (strings)"),
    ({"activations": {"conv1": "swish"}}, "activations names unknown function 'swish' for layer 'conv1'; known: relu, relu6, hardswish"),
    ({"activations": ["relu"]}, "activations must map layers to function names"),
    ({"spectrum": [[1.0, 2.0]]}, "spectrum must be 28 x 15"),
    ({"spectrum": "abc"}, "spectrum must be a list of rows of numbers"),
    ({"logits_layer": 5}, "logits_layer must be a string or None"),
]


@pytest.mark.parametrize("change,message", REFUSED)
def test_invalid_spec_is_refused_naming_the_field(tiny_spec, change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ModelSpec.from_dict({**tiny_spec.to_dict(), **change})


@pytest.mark.parametrize("change,message", REFUSED)
def test_replace_refuses_a_bad_value_as_from_dict_does(tiny_spec, change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        tiny_spec.replace(**change)


def _error(make):
    with pytest.raises(ValueError) as info:
        make()
    return str(info.value)


def test_replace_matches_the_from_dict_route_on_a_spec_with_a_prior():
    spec = load_model("mnist").spec
    assert spec.image_basis is not None and spec.spectrum is not None
    data = spec.to_dict()
    good = [{"name": "x"}, {"class_names": list("abcdefghij")}, {"input_shape": [1, 28, 28]},
            {"activations": {"fc1": "relu"}}, {"measure": {"conv1": ["relu"]}}, {"ink_level": 1},
            {"spectrum": [[1] * 15] * 28}, {"image_mean": [[[0.5] * 7] * 7]}, dict.fromkeys(PRIOR_FIELDS),
            {"image_basis": data["image_basis"][:3], "basis_mean": [0] * 784}, {"logits_layer": None, "class_names": []}]
    for change in good:
        assert spec.replace(**change) == ModelSpec.from_dict({**data, **change}), change
    bad = [{"input_shape": [1, 14, 14]}, {"input_shape": [3, 28, 28]}, {"image_mean": [[[2.0]]]},
           {"image_support": [[[0.5]], [[0.5]]]}, {"image_basis": None}, {"basis_mean": [1.0]},
           {"image_basis": [[float("nan")] * 784]}, {"spectrum": [[0.0] * 15] * 28}, {"ink_level": 0},
           {"logits_layer": "fc2", "class_names": []}, {"std": [0.0], "name": 5}, {"colour": 1}]
    for change in bad:
        expected = _error(lambda: ModelSpec.from_dict({**data, **change}))
        assert _error(lambda: spec.replace(**change)) == expected, change


def test_replace_does_not_walk_the_stored_prior():
    """A replace costs what the change costs (issue #24): the prior it keeps is neither copied nor checked."""
    class Untouchable(tuple):
        def __iter__(self):
            raise AssertionError("the stored prior was walked")

    spec = copy.copy(load_model("mnist").spec)
    object.__setattr__(spec, "image_basis", Untouchable(spec.image_basis))
    assert spec.replace(name="x").image_basis is spec.image_basis


def test_spec_validates_when_built_directly_too(tiny_spec):
    with pytest.raises(ValueError, match="std must be > 0"):
        ModelSpec(name="x", architecture="y", input_shape=(3, 8, 8), mean=(0.5,) * 3, std=(1.0, 0.0, 1.0),
                  logits_layer="", class_names=("a",))
    with pytest.raises(ValueError, match="missing spec fields: input_shape"):
        ModelSpec.from_dict({k: v for k, v in tiny_spec.to_dict().items() if k != "input_shape"})
    with pytest.raises(ValueError, match="must be a mapping"):
        ModelSpec.from_dict([1, 2])


def test_checkpoint_with_invalid_spec_is_a_user_error(tmp_path, tiny_model, tiny_spec):
    path = tmp_path / "x.pt"
    torch.save({"state_dict": tiny_model.state_dict(), "spec": {**tiny_spec.to_dict(), "std": [0.0]}}, path)
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"checkpoint '{path}' has an invalid spec: std must be > 0 for every channel, got (0.0,)"


def test_a_replaced_spec_has_dicts_of_its_own(tiny_spec):
    """Changing one spec's activations, measure or taps dict never changes another's (from_dict made new ones)."""
    spec = tiny_spec.replace(taps={"conv1": "conv1"}, measure={"conv1": ("relu",)})
    copy = spec.replace(name="copy")
    for key in ("activations", "measure", "taps"):
        assert getattr(copy, key) == getattr(spec, key) and getattr(copy, key) is not getattr(spec, key)
