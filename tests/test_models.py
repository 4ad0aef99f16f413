import pickle

import pytest
import torch

from introspect.errors import UserError
from introspect.models import BUILTIN_MODELS, ModelSpec, load_checkpoint, load_model, save_checkpoint


def test_checkpoint_round_trip_weights_only(tmp_path, tiny_model, tiny_spec):
    spec = tiny_spec.replace(spectrum=[[1.0, 2.0], [3.0, 4.0]])
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny_model, spec)
    raw = torch.load(path, weights_only=True)  # must not need full unpickling
    assert set(raw) == {"state_dict", "spec"}
    loaded = load_checkpoint(path)
    assert loaded.spec == spec
    assert loaded.spec.spectrum == ((1.0, 2.0), (3.0, 4.0))
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
