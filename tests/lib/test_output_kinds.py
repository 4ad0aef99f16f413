"""Output kinds (issue #20): logits, softmax, independent sigmoids, spatial maps of logits — detected at load,
used by the class objective and shown truthfully; a constructor that sets weights is not "random"."""
import json

import pytest
import torch

from introspect import MetaOverrides, load_model, visualize_classes
from introspect.engine import RenderConfig
from introspect.layers import DRY_BATCH
from introspect.outputs import as_logits, class_values, probabilities, value_kind
from introspect_cli.main import main

from helpers import hook_count

MODELS = '''
import torch
import torch.nn.functional as F
from torch import nn


class OneSigmoid(nn.Module):  # one output through a visible sigmoid
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 1)

    def forward(self, x):
        return torch.sigmoid(self.fc(x.flatten(1)))


class SigmoidModule(nn.Module):  # three labels through an nn.Sigmoid module
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 3)
        self.act = nn.Sigmoid()

    def forward(self, x):
        return self.act(self.fc(x.flatten(1)))


class OpaqueSigmoid(nn.Module):  # data-dependent control flow: fx cannot trace it, the values decide
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        if x.sum() > -1e9:
            return torch.sigmoid(self.fc(x.flatten(1)) * 0.1)
        return x


class OpaqueSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 4)

    def forward(self, x):
        if x.sum() > -1e9:
            return torch.softmax(self.fc(x.flatten(1)), 1)
        return x


class VisibleSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 4)

    def forward(self, x):
        return torch.softmax(self.fc(x.flatten(1)), dim=1)


class Map(nn.Module):  # fully convolutional: (B, 2, H - 4, W - 4)
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 5)

    def forward(self, x):
        return self.conv(x)


class Fixed(nn.Module):  # the constructor sets every weight: trained weights in the model's code
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 3)
        with torch.no_grad():
            self.fc.weight.copy_(torch.linspace(-1, 1, 192).view(3, 64))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x.flatten(1))


class OneLogit(nn.Module):  # a binary classifier trained with BCEWithLogitsLoss: one raw logit, no sigmoid in it
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 1)
        with torch.no_grad():
            self.fc.bias.fill_(-3.0)  # its values out of [0, 1]: never read as probabilities

    def forward(self, x):
        return self.fc(x.flatten(1))


class OneLogitSqueezed(OneLogit):  # its output (batch,): the logits named by --logits-layer fc
    def forward(self, x):
        return super().forward(x).squeeze(1)


class SmallLinear(nn.Module):  # untrained, every value in [0, 1]: still a Linear's own output, logits
    def __init__(self, width=4):
        super().__init__()
        self.fc = nn.Linear(64, width)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.fill_(0.5)

    def forward(self, x):
        return self.fc(x.flatten(1)).flatten(1)


class SmallOneLinear(SmallLinear):
    def __init__(self):
        super().__init__(1)


class ReluHead(nn.Module):  # SqueezeNet's head: conv, ReLU, global pool; untrained, every value lands in [0, 1)
    def __init__(self):
        super().__init__()
        self.classifier = nn.Sequential(nn.Conv2d(1, 10, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        with torch.no_grad():
            self.classifier[0].weight.normal_(0, 0.01, generator=torch.Generator().manual_seed(0))
            self.classifier[0].bias.zero_()

    def forward(self, x):
        return torch.flatten(self.classifier(x), 1)


class SmallHead(nn.Module):  # a Linear whose every value lies in (0, 1)
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 4)
        with torch.no_grad():
            self.fc.weight.mul_(0.01)
            self.fc.bias.fill_(0.5)


class ReluLast(SmallHead):  # scores through a final F.relu, every value in (0, 1): no sigmoid's probabilities
    def forward(self, x):
        return F.relu(self.fc(x.flatten(1)))


class ReluModuleLast(ReluLast):  # the same through an nn.ReLU module, flattened after it
    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.fc(x.flatten(1))).flatten(1)


class OpaqueSmallLogits(SmallHead):  # fx cannot trace it; a Linear's own output, every value in (0, 1)
    def forward(self, x):
        if x.sum() > -1e9:
            x = x * 1.0
        return self.fc(x.flatten(1))


class OpaqueReluLast(OpaqueSmallLogits):  # ... through an in-place nn.ReLU module after it
    def __init__(self):
        super().__init__()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(super().forward(x))


class OpaqueSigmoidModule(OpaqueSmallLogits):  # an nn.Sigmoid module last, untraceable: probabilities
    def __init__(self):
        super().__init__()
        self.act = nn.Sigmoid()

    def forward(self, x):
        return self.act(super().forward(x))


class OpaqueSigmoidInPlace(OpaqueSmallLogits):  # its Linear's output made probabilities in place
    def forward(self, x):
        return super().forward(x).sigmoid_()


class SigmoidReshaped(nn.Module):  # three labels through torch.sigmoid, then a reshape
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        return torch.sigmoid(self.fc(x.flatten(1))).view(-1, 3)


class LeakyLast(ReluLast):  # a leaky ReLU never holds a score flat: no advice to work before it
    def forward(self, x):
        return F.leaky_relu(self.fc(x.flatten(1)), 0.1)
'''


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "kinds.py"
    path.write_text(MODELS)
    return path


def _load(models, name, size=8, **meta):
    return load_model(f"{models}:{name}", meta=MetaOverrides(input_shape=(1, size, size), **meta))


def test_value_rules():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 3.0, -2.0]])
    assert value_kind(logits) is None
    assert value_kind(torch.softmax(logits, 1)) == "softmax"
    assert value_kind(torch.log_softmax(logits, 1)) == "log-softmax"
    assert value_kind(torch.sigmoid(logits)) == "sigmoid"
    assert value_kind(torch.sigmoid(logits[:, :1])) == "sigmoid"  # one output in [0, 1]
    assert value_kind(torch.relu(logits) / 10) is None  # exact zeros in [0, 1]: a ReLU'd head, never a sigmoid's
    p = torch.sigmoid(logits)
    assert torch.allclose(as_logits(p, "sigmoid"), logits, atol=1e-4)
    assert torch.allclose(probabilities(as_logits(p, "sigmoid"), "sigmoid"), p, atol=1e-6)
    assert torch.allclose(probabilities(as_logits(torch.softmax(logits, 1), "softmax"), "softmax"), torch.softmax(logits, 1))
    grid = torch.arange(2 * 2 * 3 * 3, dtype=torch.float).view(2, 2, 3, 3)
    assert class_values(grid, "mean").shape == (2, 2) and torch.equal(class_values(grid, "center"), grid[:, :, 1, 1])
    assert torch.equal(class_values(grid, "max"), grid[:, :, 2, 2]) and class_values(grid).shape == (2, 18)


@pytest.mark.parametrize("name, layer, kind", [("OneSigmoid", "fc", "sigmoid logits"), ("SigmoidModule", "fc", "sigmoid logits"),
                                               ("SigmoidReshaped", "fc", "sigmoid logits"),
                                               ("VisibleSoftmax", "fc", "logits"), ("OpaqueSigmoid", "", "sigmoid"),
                                               ("OpaqueSoftmax", "", "softmax"), ("Fixed", "", "logits"),
                                               ("ReluHead", "", "logits"), ("SmallLinear", "", "logits"),
                                               ("SmallOneLinear", "", "sigmoid logits")])
def test_detected_kind_and_where_the_objective_reads(models, name, layer, kind):
    loaded = _load(models, name)
    assert (loaded.spec.logits_layer, loaded.spec.output_kind) == (layer, kind)


@pytest.mark.parametrize("name, largest", [("SmallLinear", DRY_BATCH), ("VisibleSoftmax", DRY_BATCH),
                                           ("OpaqueSoftmax", 16)])
def test_only_a_kind_left_to_the_values_runs_a_batch_of_images(models, name, largest):
    """Where fx sees what the output is, loading runs no forward of more than DRY_BATCH images (the kind check ran
    16: a second of a ResNet-50's start-up on a CPU); where the values decide, it still looks at 16."""
    seen = []
    handle = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: seen.append(args[0].shape[0]) if isinstance(module, torch.nn.Linear) else None)
    try:
        _load(models, name)
    finally:
        handle.remove()
    assert seen and max(seen) == largest


@pytest.mark.parametrize("name, kind, note", [("OpaqueSmallLogits", "logits", False), ("OpaqueReluLast", "logits", True),
                                              ("OpaqueSigmoid", "sigmoid", False), ("OpaqueSigmoidModule", "sigmoid", False),
                                              ("OpaqueSigmoidInPlace", "sigmoid", False)])
def test_where_fx_cannot_trace_the_module_that_made_the_output_decides(models, name, kind, note):
    """An untraceable model's Linear head whose logits lie in (0, 1) was read as sigmoid probabilities ("p (sigmoid)"
    of raw logits, the objective log(z / (1 - z))): the output is that Linear's own, so it is logits, as where fx
    traces. Values still decide where no module made it (a sigmoid call)."""
    loaded = _load(models, name)
    assert (loaded.spec.logits_layer, loaded.spec.output_kind) == ("", kind)
    assert any("scores through relu" in str(n) for n in loaded.notes) == note
    assert hook_count(loaded.model) == 0


@pytest.mark.parametrize("name, advice", [("ReluLast", True), ("ReluModuleLast", True), ("LeakyLast", False)])
def test_scores_through_a_final_activation_are_logits_never_sigmoid_probabilities(models, name, advice):
    loaded = _load(models, name)
    with torch.no_grad():
        values = loaded.model(torch.rand(16, 1, 8, 8))
    assert bool(((values > 0) & (values < 1)).all())  # what a sigmoid would give: the values alone said "sigmoid"
    assert (loaded.spec.logits_layer, loaded.spec.output_kind) == ("", "logits")
    notes = "\n".join(str(note) for note in loaded.notes)
    assert "scores through" in notes and "read as logits" in notes
    assert ("logits_layer fc" in notes) == advice
    result = visualize_classes(loaded.model, loaded.spec, config=RenderConfig(steps=2), candidates=1)
    with torch.no_grad():
        scores = loaded.model((result.images - loaded.spec.mean[0]) / loaded.spec.std[0])
    assert torch.allclose(result.probabilities, torch.softmax(scores, 1).diagonal(), atol=1e-5)
    assert "(sigmoid)" not in result.titles[0]


@pytest.mark.parametrize("name, meta", [("OneLogit", {}), ("OneLogitSqueezed", {"logits_layer": "fc"})])
def test_one_logit_is_a_sigmoids_never_a_softmax_of_one(models, name, meta):
    loaded = _load(models, name, **meta)
    assert loaded.spec.output_kind == "sigmoid logits"
    result = visualize_classes(loaded.model, loaded.spec, config=RenderConfig(steps=2), candidates=1)
    with torch.no_grad():
        logit = loaded.model.fc(((result.images - loaded.spec.mean[0]) / loaded.spec.std[0]).flatten(1))[:, 0]
    assert torch.allclose(result.probabilities, torch.sigmoid(logit), atol=1e-5)  # was 1.000: a softmax of one
    assert "p\u00a0(sigmoid)=" in result.titles[0]


def test_sigmoid_heads_show_sigmoid_probabilities(models):
    loaded = _load(models, "OneSigmoid")
    result = visualize_classes(loaded.model, loaded.spec, config=RenderConfig(steps=2))
    with torch.no_grad():
        expected = loaded.model((result.images - loaded.spec.mean[0]) / loaded.spec.std[0])[:, 0]
    assert torch.allclose(result.probabilities, expected, atol=1e-5)  # the model's own sigmoid, not a softmax of 1
    assert float(result.probabilities[0]) < 0.999
    assert "p\u00a0(sigmoid)=" in result.titles[0] and result.titles[0].split("\n")[1].startswith("logit ")
    from introspect.report import fit  # a tile's narrow title breaks between words, never inside "p (sigmoid)"
    lines = fit(result.titles[0], 1.5, 10).split("\n")
    assert len(lines) > result.titles[0].count("\n") + 1  # it was wrapped
    assert all("p\u00a0(sigmoid)" in line for line in lines if "(sigmoid)" in line)
    assert "independent sigmoids" in result.settings
    multi = _load(models, "SigmoidModule")
    result = visualize_classes(multi.model, multi.spec, config=RenderConfig(steps=2))
    assert all("p\u00a0(sigmoid)" in t for t in result.titles)


def test_probabilities_without_logits_warn_in_the_report(models, tmp_path, capsys):
    loaded = _load(models, "OpaqueSoftmax")
    result = visualize_classes(loaded.model, loaded.spec, config=RenderConfig(steps=2))
    assert result.titles[0].split("\n")[1].startswith("p\u00a0(softmax)=")  # no "logit": there is none to show
    assert "warning: the output is softmax probabilities" in result.settings.split("\n")[1]
    assert main(["classes", "--model", f"{models}:OpaqueSigmoid", "--input-shape", "1,8,8", "--steps", "2",
                 "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr()
    assert "lowest probability (sigmoid)" in out.out and "warning: the output is sigmoid probabilities" in out.err
    record = json.loads((tmp_path / "c" / "run.json").read_text())
    assert record["output_kind"] == "sigmoid" and record["model"]["output_kind"] == "sigmoid"


def test_a_spatial_map_is_reduced_never_flattened(models, tmp_path):
    loaded = _load(models, "Map", size=16)
    assert loaded.spec.num_classes == 2 and loaded.spec.logits_position == "mean"
    for position in ("center", "max"):
        spec = _load(models, "Map", size=16, logits_position=position).spec
        assert spec.logits_position == position and spec.num_classes == 2
    result = visualize_classes(loaded.model, loaded.spec, config=RenderConfig(steps=2))
    assert len(result.labels) == 2 and "spatial map reduced by its mean" in result.settings
    assert main(["classes", "--model", f"{models}:Map", "--size", "16", "--logits-position", "max", "--steps", "2",
                 "--out", str(tmp_path / "c")]) == 0
    record = json.loads((tmp_path / "c" / "run.json").read_text())
    assert len(record["images"]) == 2 and record["logits_position"] == "max"
    assert main(["classes", "--model", f"{models}:Fixed", "--input-shape", "1,8,8", "--logits-position", "max",
                 "--out", str(tmp_path / "d")]) == 2  # not a map: refused, naming the flag


def test_weights_set_by_the_constructor_are_not_random(models, tmp_path):
    fixed = _load(models, "Fixed")
    assert not fixed.random_weights and fixed.weights_from_code
    assert any("weights from the model's code" in str(n) for n in fixed.notes)
    again = _load(models, "Map", size=16)
    assert again.random_weights and not again.weights_from_code
    assert main(["classes", "--model", f"{models}:Fixed", "--input-shape", "1,8,8", "--steps", "2",
                 "--out", str(tmp_path / "c")]) == 0
    record = json.loads((tmp_path / "c" / "run.json").read_text())
    assert record["model"]["random_weights"] is False and record["model"]["weights"] == "from the model's code"


def test_building_three_times_leaves_the_global_rng_alone(models):
    """The model is built under a fixed seed, then twice under others (``weights_set_by_constructor``): each with
    the global generator's state restored, so the caller's random numbers go on as if nothing was built."""
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    _load(models, "Fixed")
    assert torch.equal(torch.rand(3), expected)


def test_layers_takes_device(models, capsys):
    assert main(["layers", "--model", f"{models}:Map", "--size", "16", "--device", "cpu", "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["device"] == "cpu" and summary["logits_position"] == "mean"
    assert main(["layers", "--device", "tpu", "--quiet"]) == 2


def test_a_torchscript_archive_s_one_logit_is_a_sigmoids_too(models, tmp_path):
    """A TorchScript archive's output is its logits (no detection: fx cannot trace it); with one of them the class
    tile read 'p=1.000', a softmax of one, as a file's class did before."""
    import warnings

    model = _load(models, "OneLogit").model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        torch.jit.save(torch.jit.trace(model, torch.zeros(1, 1, 8, 8)), tmp_path / "one.pt")
    loaded = load_model(str(tmp_path / "one.pt"), meta=MetaOverrides(input_shape=(1, 8, 8)))
    assert loaded.scripted and loaded.spec.output_kind == "sigmoid logits"
    result = visualize_classes(loaded.model, loaded.spec, config=RenderConfig(steps=2), candidates=1)
    assert float(result.probabilities[0]) < 1 and "p\u00a0(sigmoid)=" in result.titles[0]


def test_the_note_on_probabilities_gives_the_reason_of_their_kind(models):
    """Sigmoid probabilities were told that raising a class "can mean pushing others down": softmax reasoning, where
    independent sigmoids push none down. Theirs is saturation."""
    sigmoid = " ".join(map(str, _load(models, "OpaqueSigmoid").notes))
    softmax = " ".join(map(str, _load(models, "OpaqueSoftmax").notes))
    assert "saturates near 0 and 1" in sigmoid and "pushing others down" not in sigmoid
    assert "pushing others down" in softmax


def test_a_heads_bars_drawn_after_its_sigmoid_are_not_called_the_logits(models):
    """activations titled the bars of ``fc → torch.sigmoid`` "(the logits)" while drawing the sigmoid's values."""
    from introspect.activations import inspect_image
    from introspect.pictures import ImageInput
    from introspect.report import activations_figures

    loaded = _load(models, "OneSigmoid")
    image = ImageInput(pixels=torch.rand(1, 8, 8), source="test", conversion=())
    result = inspect_image(loaded.model, loaded.spec, image, ["fc"])
    assert result.activations["fc"] == "sigmoid"
    texts = [t.get_text() for fig in activations_figures(result, logits_layer=loaded.spec.logits) for t in fig.texts]
    title = next(t for t in texts if t.startswith(result.label("fc")))
    assert "(the classes' scores)" in title and "(the logits)" not in title


def test_an_input_far_below_the_models_own_size_gets_a_note():
    """`--size 8` on a 224 px model ran without a word while its last stages saw 1×1 maps."""
    small = load_model("torchvision:resnet18", meta=MetaOverrides(size=32))
    assert any("made for 224×224 inputs: at 32×32" in str(note) for note in small.notes)
    fair = load_model("torchvision:resnet18", meta=MetaOverrides(size=64))
    assert not any("made for" in str(note) for note in fair.notes)
