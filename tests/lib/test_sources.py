"""Any model: torchvision (random init, small sizes), user files, TorchScript, safe loading."""
import json
import re

import pytest
import torch
from torch import nn

from helpers import hook_count
from introspect.channels import visualize_channels, CHANNELS_DEFAULTS
from introspect.engine import RenderConfig
from introspect.models import ModelSpec
from introspect.params import ImageConfig, image_for
from introspect.errors import UserError
from introspect.models.sources import MetaOverrides, load_model
from introspect.objectives import class_logits
from introspect.params import FFTImage, image_generators, frequency_scale
from introspect.records import save_run

def small_state(small_net_file):
    return load_model(f"{small_net_file}:SmallNet", meta=MetaOverrides(size=28)).model.state_dict()


def test_torchvision_nested_layer_random_init():
    loaded = load_model("torchvision:resnet18", meta=MetaOverrides(size=32))
    assert loaded.random_weights and loaded.spec.input_shape == (3, 32, 32)
    assert len(loaded.spec.class_names) == 1000 and loaded.spec.mean == (0.485, 0.456, 0.406)
    result = visualize_channels(loaded.model, loaded.spec, "layer3.1.conv2", [0, 5], CHANNELS_DEFAULTS.replace(steps=2))
    assert result.images.shape == (2, 3, 32, 32)
    assert hook_count(loaded.model) == 0


def test_random_weights_are_the_same_in_every_load_and_leave_the_global_rng_alone(small_net_file):
    """Before, each process drew its own: a --resume of a torchvision:NAME run without weights was refused ("the
    model's weights differ"), torchrun's ranks optimized different models, explore measured another one."""
    from introspect.channel_runs import model_digest

    for source in ("torchvision:squeezenet1_1", f"{small_net_file}:SmallNet"):
        digests = []
        for seed in (1, 2):
            torch.manual_seed(seed)
            loaded = load_model(source, meta=MetaOverrides(size=28))
            assert loaded.random_weights
            digests.append(model_digest(loaded.model))
            after = torch.rand(1)
            torch.manual_seed(seed)
            assert torch.equal(after, torch.rand(1)), "loading drew from the global RNG"
        assert digests[0] == digests[1], source


def test_torchvision_s_published_weights_file_gets_the_model_torchvision_builds_for_it():
    """googlenet and inception_v3 built without weights take their input as it is (transform_input=False); their
    published weights expect it turned into [-1, 1], which torchvision sets only when it loads them itself. Before,
    the file passed with --checkpoint (as the offline error advises) silently met the wrong input."""
    from torchvision.models import get_model_weights

    from introspect.models.sources import built_for_published, published_weights

    enum = get_model_weights("googlenet")  # its file: googlenet-1378be20.pth
    published, other = "1378be20" + "0" * 56, "f" * 64
    assert published_weights(enum, published) is enum.IMAGENET1K_V1 and published_weights(enum, other) is None
    model = nn.Module()
    model.transform_input = False
    assert built_for_published(model, enum, other, "googlenet") is None and model.transform_input is False
    note = built_for_published(model, enum, published, "googlenet")
    assert model.transform_input is True and "weights IMAGENET1K_V1: built with transform_input=True" in note
    assert built_for_published(nn.Linear(1, 1), enum, published, "googlenet") is None  # a model without the switch


@pytest.mark.slow
def test_googlenet_from_its_published_file_runs_with_transform_input(tmp_path, monkeypatch):
    """The same through load_model: the file's digest made torchvision's (no download in tests)."""
    from torchvision.models import googlenet

    from introspect.models import checkpoint

    torch.save(googlenet(weights=None, init_weights=False).state_dict(), tmp_path / "googlenet.pth")
    monkeypatch.setattr(checkpoint, "file_sha256", lambda _path: "1378be20" + "0" * 56)
    loaded = load_model("torchvision:googlenet", checkpoint=tmp_path / "googlenet.pth", meta=MetaOverrides(size=64))
    assert loaded.model.transform_input is True and any("transform_input=True" in n for n in loaded.notes)


def test_torchvision_unknown_name_and_weights():
    with pytest.raises(UserError, match="closest: resnet18"):
        load_model("torchvision:resnet81")
    with pytest.raises(UserError, match="unknown weights"):
        load_model("torchvision:resnet18", weights="NOPE")


def test_user_file_with_wrapped_dataparallel_checkpoint(small_net_file, tmp_path):
    state = {f"module.{k}": v for k, v in small_state(small_net_file).items()}
    torch.save({"model": state, "epoch": 3}, tmp_path / "small.pt")
    loaded = load_model(f"{small_net_file}:SmallNet", checkpoint=tmp_path / "small.pt",
                        meta=MetaOverrides(size=28, mean=(0.5,), std=(0.5,)))
    result = visualize_channels(loaded.model, loaded.spec, "block2.0", config=CHANNELS_DEFAULTS.replace(steps=2))
    out = save_run(result, tmp_path / "run", loaded=loaded)
    record = json.loads((out / "run.json").read_text())
    assert record["layers"][0]["layer"] == "block2.0" and len(record["layers"][0]["channels"]) == 6
    assert record["model"]["random_weights"] is False


def test_shape_mismatch_names_first_key(small_net_file, tmp_path):
    state = small_state(small_net_file)
    state["head.weight"] = torch.zeros(5, 6)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="head.weight"):
        load_model(f"{small_net_file}:SmallNet", checkpoint=tmp_path / "bad.pt", meta=MetaOverrides(size=28))


class Payload:
    """Stands for arbitrary pickled objects: weights_only refuses them."""

    ran = False

    def __reduce__(self):
        return (Payload._mark, ())

    @staticmethod
    def _mark():
        Payload.ran = True
        return "marked"


def test_weights_only_refusal_and_trust(small_net_file, tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": small_state(small_net_file), "extra": Payload()}, path)
    Payload.ran = False
    with pytest.raises(UserError, match="trust_checkpoint"):
        load_model(f"{small_net_file}:SmallNet", checkpoint=path, meta=MetaOverrides(size=28))
    assert not Payload.ran  # nothing in the file ran
    loaded = load_model(f"{small_net_file}:SmallNet", checkpoint=path, trust_checkpoint=True, meta=MetaOverrides(size=28))
    assert Payload.ran and not loaded.random_weights


def test_wrong_size_for_fixed_input_model():
    with pytest.raises(UserError, match=re.escape("does not run on input of shape (1, 32, 32)")):
        load_model("mnist", meta=MetaOverrides(size=32))


def test_decorrelated_colour_for_rgb_only():
    def spec(channels):
        return ModelSpec("s", "user", (channels, 16, 16), (0.5,) * channels, (0.5,) * channels, "", ("a",))

    rgb = image_for(spec(3), ImageConfig(), [0, 1], seed=0)
    gray = image_for(spec(1), ImageConfig(), [0], seed=0)
    assert rgb.mixing is not None and rgb.mixing.shape == (3, 3)
    assert gray.mixing is None
    with pytest.raises(ValueError, match="3 channels"):
        FFTImage((1, 16, 16), image_generators(0, [0]), frequency_scale(16, 16, 1.0), decorrelate=True)


def test_train_mode_model_runs_in_eval_and_says_so():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Dropout(), nn.Linear(4 * 14 * 14, 3))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    spec = ModelSpec("s", "user", (3, 16, 16), (0.5,) * 3, (0.5,) * 3, "4", ("a", "b", "c"))
    result = RenderConfig(steps=3).render(model, class_logits("4", [0, 1]), spec, [0, 1])
    assert any("train mode" in note for note in result.notes)
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # BatchNorm running stats untouched


def test_class_names_must_match_the_logits_width(small_net_file):
    model = f"{small_net_file}:SmallNet"
    assert load_model(model, meta=MetaOverrides(size=28, class_names=("a", "b", "c"))).spec.class_names == ("a", "b", "c")
    with pytest.raises(UserError, match="class_names has 2 names, but the model has 3 classes"):
        load_model(model, meta=MetaOverrides(size=28, class_names=("a", "b")))
    with pytest.raises(UserError, match="class_names has 3 names, but the model has 4 classes"):  # a map: one per channel
        load_model(model, meta=MetaOverrides(size=28, class_names=("a", "b", "c"), logits_layer="block1.0"))  # 4 x 28 x 28
    with pytest.raises(UserError, match="class_names has 3 names, but the model has 1000 classes"):
        load_model("torchvision:resnet18", meta=MetaOverrides(size=32, class_names=("a", "b", "c")))


def test_activations_are_found_in_sequentials_and_traced_forwards():
    """What the next layer receives: nn.Sequential neighbours, functional calls and modules called in
    forward; a forward torch.fx cannot trace keeps what nn.Sequential shows."""
    import torch.nn.functional as F
    from torch import nn

    from introspect.models.sources import find_activations

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2, self.act = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.SiLU()
            self.block = nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2), nn.GELU())
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            x = self.act(self.conv2(F.relu(self.conv1(x))))
            return self.fc(self.block(x).mean((2, 3)))

    class Branchy(Functional):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent: torch.fx cannot trace this
                x = F.relu(self.conv1(x))
            return self.fc(self.block(self.conv2(x)).mean((2, 3)))

    assert find_activations(Functional()) == {"conv1": "relu", "conv2": "silu", "block.0": "gelu", "block.1": "gelu"}
    assert find_activations(Branchy()) == {"block.0": "gelu", "block.1": "gelu"}


def test_googlenet_builds_without_torchvision_s_initialization_warning(recwarn):
    """torchvision warns on every GoogLeNet/Inception build that its default initialization may change; a user
    saw it on every command. The weights are those torchvision builds today, under the fixed seed as ever."""
    first = load_model("torchvision:googlenet")
    assert not [w for w in recwarn if "weight initialization" in str(w.message)]
    assert torch.equal(first.model.conv1.conv.weight, load_model("torchvision:googlenet").model.conv1.conv.weight)


SIBLING_BLOCKS = """from torch import nn


def conv_bn_relu(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())
"""

SIBLING_NET = """from torch import nn

from blocks_for_introspect_test import conv_bn_relu


class SiblingNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = conv_bn_relu(1, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.block(x).mean((2, 3)))
"""


@pytest.fixture
def sibling_net_file(tmp_path, monkeypatch):
    """A user's model file that imports a module beside it (a project of several files), not on sys.path."""
    import sys

    (tmp_path / "blocks_for_introspect_test.py").write_text(SIBLING_BLOCKS)
    (tmp_path / "sibling_net.py").write_text(SIBLING_NET)
    for name in ("blocks_for_introspect_test", "sibling_net"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))  # whatever the load leaves there goes with the test
    yield tmp_path / "sibling_net.py"
    for name in ("blocks_for_introspect_test", "sibling_net"):
        sys.modules.pop(name, None)


def test_a_user_file_imports_the_modules_beside_it(sibling_net_file):
    import sys

    loaded = load_model(f"{sibling_net_file}:SiblingNet", meta=MetaOverrides(size=8))
    assert loaded.spec.measured_at("block.0") == "block.0 → block.1 → block.2"
    assert str(sibling_net_file.parent) not in sys.path  # only while the file ran


def test_a_model_pickled_whole_loads_with_trust(sibling_net_file, tmp_path):
    """torch.save(model) in the user's project pickles the class by its module name ("sibling_net")."""
    import importlib
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        user_class = importlib.import_module("sibling_net").SiblingNet
    finally:
        sys.path.remove(str(tmp_path))
    torch.manual_seed(3)
    whole = user_class()
    torch.save(whole, tmp_path / "whole.pt")
    for name in ("blocks_for_introspect_test", "sibling_net"):
        sys.modules.pop(name)  # a fresh process: the user's modules are not imported
    loaded = load_model(f"{sibling_net_file}:SiblingNet", checkpoint=tmp_path / "whole.pt", trust_checkpoint=True,
                        meta=MetaOverrides(size=8))
    assert torch.equal(loaded.model.fc.weight, whole.fc.weight) and not loaded.random_weights


HALF_NET = """import torch
from torch import nn


class HalfNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 3)
        self.half()

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))
"""


def test_a_half_precision_model_runs_in_float32_and_says_so(tmp_path):
    """Its layers refused the float32 images ("Input type (float) and bias type (c10::Half) should be the same")."""
    (tmp_path / "half_net.py").write_text(HALF_NET)
    loaded = load_model(f"{tmp_path / 'half_net.py'}:HalfNet", meta=MetaOverrides(size=8))
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert any("weights are float16: run in float32" in str(note) for note in loaded.notes)
    assert loaded.random_weights  # the check for weights set by the constructor compared like with like
    result = visualize_channels(loaded.model, loaded.spec, "conv", [0], CHANNELS_DEFAULTS.replace(steps=2))
    assert bool(torch.isfinite(result.images).all())


def test_size_finds_the_channels_of_a_scripted_first_conv():
    """A model wrapping a TorchScript part: --size found "no conv layer" in it."""
    import warnings

    from introspect.models.sources import first_conv_channels

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        scripted = torch.jit.script(conv)
        traced = torch.jit.trace(conv, torch.zeros(1, 3, 8, 8))
    for part in (scripted, traced):
        assert first_conv_channels(nn.Sequential(part, nn.Flatten())) == 3


class _SharedDefinedFirst(nn.Module):
    """A conv defined before the stem that feeds it (weights shared across two calls)."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Conv2d(4, 4, 3, padding=1)
        self.stem = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        return self.shared(self.shared(self.stem(x))).mean((2, 3))


def test_size_takes_the_channels_of_the_conv_that_reads_the_input():
    """--size took the first conv defined (4 channels) and refused the model: "does not run on input of shape
    (4, 28, 28)". The first conv to run reads the image."""
    from introspect.models.sources import first_conv_channels

    assert first_conv_channels(_SharedDefinedFirst()) == 1


FACTORY = """from torch import nn


def small_net(width=4):
    return nn.Sequential(nn.Conv2d(1, width, 3), nn.ReLU(), nn.Flatten(), nn.Linear(width * 36, 3))


def not_a_model():
    return 3
"""


def test_a_function_that_builds_the_model_loads_like_a_class(tmp_path):
    """file.py:factory — a factory function, as many projects define their models — was 'no nn.Module class'."""
    (tmp_path / "factory.py").write_text(FACTORY)
    loaded = load_model(f"{tmp_path / 'factory.py'}:small_net", meta=MetaOverrides(size=8))
    assert loaded.spec.measured_at("0") == "0 → 1" and loaded.spec.num_classes == 3 and loaded.random_weights
    with pytest.raises(UserError, match=re.escape("not_a_model() returned a int, not an nn.Module")):
        load_model(f"{tmp_path / 'factory.py'}:not_a_model", meta=MetaOverrides(size=8))


@pytest.mark.parametrize("prefix, wrap", [("model.", lambda s: {"state_dict": s, "epoch": 3, "hyper_parameters": {"lr": 0.1}}),
                                          ("_orig_mod.", lambda s: s)])
def test_a_prefix_every_key_shares_is_dropped_when_that_fits_the_model(small_net_file, tmp_path, prefix, wrap):
    """A Lightning module's checkpoint ("model." before every key) or a torch.compile'd model's ("_orig_mod.")
    did "not fit the model: missing 'block1.0.weight'"."""
    state = small_state(small_net_file)
    torch.save(wrap({prefix + k: v for k, v in state.items()}), tmp_path / "wrapped.pt")
    loaded = load_model(f"{small_net_file}:SmallNet", checkpoint=tmp_path / "wrapped.pt", meta=MetaOverrides(size=28))
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in state.items())


def test_a_wrapper_holding_more_than_the_model_is_named(small_net_file, tmp_path):
    state = {f"model.{k}": v for k, v in small_state(small_net_file).items()} | {"loss.weight": torch.ones(3)}
    torch.save(state, tmp_path / "wrapper.pt")
    with pytest.raises(UserError, match=re.escape("missing 'block1.0.weight' (the checkpoint has 'model.block1.0.weight'")):
        load_model(f"{small_net_file}:SmallNet", checkpoint=tmp_path / "wrapper.pt", meta=MetaOverrides(size=28))


LAZY_NET = """import torch
from torch import nn


class LazyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.LazyLinear(3)  # its in_features known at the first forward

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))
"""


def test_a_lazy_layer_takes_its_checkpoint_weights(tmp_path):
    """It failed with "Can't access the shape of an uninitialized parameter" (exit 1): weights before any forward."""
    (tmp_path / "lazy_net.py").write_text(LAZY_NET)
    trained = load_model(f"{tmp_path / 'lazy_net.py'}:LazyNet", meta=MetaOverrides(size=8)).model
    torch.save(trained.state_dict(), tmp_path / "lazy.pt")
    loaded = load_model(f"{tmp_path / 'lazy_net.py'}:LazyNet", checkpoint=tmp_path / "lazy.pt", meta=MetaOverrides(size=8))
    assert torch.equal(loaded.model.fc.weight, trained.fc.weight) and not loaded.random_weights


MAIN_NET = """from torch import nn


class MainNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))
"""


def test_a_model_pickled_whole_by_the_script_that_defined_it_loads_with_trust(tmp_path, monkeypatch):
    """torch.save(model) in a training script pickles the class as __main__.MainNet: unpickling failed with
    "Can't get attribute 'MainNet' on <module '__main__'>"; the model file's class stands in."""
    import sys

    (tmp_path / "main_net.py").write_text(MAIN_NET)
    source = f"{tmp_path / 'main_net.py'}:MainNet"
    script_model = load_model(source, meta=MetaOverrides(size=8)).model
    cls = type(script_model)
    monkeypatch.setattr(cls, "__module__", "__main__")  # as the training script defined it
    with monkeypatch.context() as scripted:
        scripted.setattr(sys.modules["__main__"], "MainNet", cls, raising=False)
        torch.save(script_model, tmp_path / "whole.pt")
    loaded = load_model(source, checkpoint=tmp_path / "whole.pt", trust_checkpoint=True, meta=MetaOverrides(size=8))
    assert torch.equal(loaded.model.fc.weight, script_model.fc.weight)


CHANNELS_LAST = """from torch import nn


class ChannelsLastInput(nn.Module):  # takes (B, H, W, 3), as a Keras port does
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.conv(x.permute(0, 3, 1, 2)).mean((2, 3)))
"""


def test_a_model_that_takes_channels_last_input_is_named(tmp_path, small_net_file):
    """--input-shape 8,8,3 ran (the model permutes it) and showed 8-channel 8x3 images without a word."""
    (tmp_path / "nhwc.py").write_text(CHANNELS_LAST)
    loaded = load_model(f"{tmp_path / 'nhwc.py'}:ChannelsLastInput", meta=MetaOverrides(input_shape=(8, 8, 3)))
    assert any("takes channels-last input (H, W, C) cannot be shown" in str(note) for note in loaded.notes)
    plain = load_model(f"{small_net_file}:SmallNet", meta=MetaOverrides(input_shape=(1, 8, 8)))
    assert not any("channels-last" in str(note) for note in plain.notes)


def test_a_lazy_layer_s_random_weights_are_the_same_in_every_load_too(tmp_path):
    """Its weights are drawn at the dry forward, after the build: they came from the global generator, so an
    untrained lazy model differed between a run and its --resume, or torchrun's ranks."""
    (tmp_path / "lazy_net.py").write_text(LAZY_NET)
    weights = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        weights.append(load_model(f"{tmp_path / 'lazy_net.py'}:LazyNet", meta=MetaOverrides(size=8)).model.fc.weight)
        after = torch.rand(1)
        torch.manual_seed(seed)
        assert torch.equal(after, torch.rand(1)), "loading drew from the global RNG"
    assert torch.equal(weights[0], weights[1])


FUSING_NET = """import torch
from torch import nn


class FusingNet(nn.Module):  # keeps a tensor its weights give at its first eval forward, as fused blocks do
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 3)
        self.fused = None

    def forward(self, x):
        if self.fused is None and not self.training:
            self.fused = self.conv.weight.detach() * 2
        return self.fc(torch.nn.functional.conv2d(x, self.fused, self.conv.bias).mean((2, 3)))
"""


def test_a_model_that_keeps_what_its_first_forward_computed_keeps_it_from_the_checkpoint(tmp_path):
    """The checkpoint went in after the dry forward (for lazy layers): the fused tensor kept the random weights."""
    (tmp_path / "fusing.py").write_text(FUSING_NET)
    source = f"{tmp_path / 'fusing.py'}:FusingNet"
    trained = load_model(source, meta=MetaOverrides(size=8)).model
    trained.conv.weight.data += 1
    torch.save(trained.state_dict(), tmp_path / "fusing.pt")
    loaded = load_model(source, checkpoint=tmp_path / "fusing.pt", meta=MetaOverrides(size=8))
    assert torch.equal(loaded.model.fused, trained.conv.weight * 2) and loaded.source.endswith("fusing.pt")


class _CountsTraces(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.traces = nn.Conv2d(1, 2, 3), 0

    def forward(self, x):
        self.traces += 1  # runs at every torch.fx trace
        return self.conv(x).mean((2, 3))


def test_a_model_is_traced_once_while_its_modules_stay():
    """Loading traced a model with torch.fx four times (measuring points, the final op, the note, the first conv):
    a big model's trace takes a while, and runs the forward's Python each time."""
    from introspect.models.sources import fx_graph

    model = _CountsTraces()
    graph = fx_graph(model)
    assert fx_graph(model) is graph and model.traces == 1
    model.conv = nn.Conv2d(1, 3, 3)  # another module: traced again
    assert fx_graph(model) is not graph and model.traces == 2
    model.eval()  # another mode (a forward may branch on it): traced again
    assert model.traces == 2 and fx_graph(model) is fx_graph(model) and model.traces == 3
