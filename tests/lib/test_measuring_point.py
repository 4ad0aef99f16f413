"""Channels are measured where the next layer reads: after the BatchNorms, activations, dropouts and identities
that follow a layer, up to what mixes channels, adds a residual or concatenates (introspect.models.sources)."""
import warnings

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from helpers import hook_count, tiny_dataset, zoo_model

ZOO = ["actnet", "bnresnet", "dictnet", "fashion-mnist-judge-mlp", "fashion-mnist-judge-vgg", "functionalnet", "mlp",
       "mnist-judge-mlp", "mnist-judge-vgg", "multihead", "seqcnn", "seqcnn-closed", "tinyvit"]


def _steps_in_chain(node: torch.fx.Node, modules: dict) -> bool:
    """A node that keeps channels apart (a BatchNorm, an activation, a no-op): not a reader of its input."""
    from introspect.models import sources

    if node.op == "call_module":
        module = modules[node.target]
        return isinstance(module, (*sources.PASS_MODULES, *sources.NO_OP_MODULES)) or type(module) in sources.ACTIVATION_MODULES
    if node.op == "call_function":
        return node.target in sources.ACTIVATION_CALLS
    return node.op == "call_method" and node.target in sources.ACTIVATION_METHODS


def _read_by_next_layers(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every tensor that an op mixing channels (a conv, a Linear, a pool, an add, a concatenation ...) reads, in one
    forward pass: a torch.fx interpreter where the forward traces, forward pre-hooks on the modules elsewhere."""
    read: list[torch.Tensor] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001
        traced = None
    if traced is None:
        from introspect.models import sources

        hooks = [m.register_forward_pre_hook(lambda _m, inputs: read.extend(i for i in inputs if torch.is_tensor(i)))
                 for m in model.modules() if not list(m.children())
                 and not isinstance(m, (*sources.PASS_MODULES, *sources.NO_OP_MODULES))
                 and type(m) not in sources.ACTIVATION_MODULES]
        try:
            model(x)
        finally:
            for h in hooks:
                h.remove()
        return read
    modules = dict(traced.named_modules())

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            if n.op in ("call_module", "call_function", "call_method") and not _steps_in_chain(n, modules):
                args, kwargs = self.fetch_args_kwargs_from_env(n)
                read.extend(a for a in (*args, *kwargs.values()) if torch.is_tensor(a))
                read.extend(t for a in args if isinstance(a, (list, tuple)) for t in a if torch.is_tensor(t))
            return super().run_node(n)

    Recorder(traced).run(x)
    return read


@torch.no_grad()
def _check_model(model: nn.Module, spec, layer_types=(nn.Conv2d, nn.Linear)) -> int:
    """Each conv (and Linear) layer's measured values are what some later op reads; returns how many layers."""
    from introspect.hooks import Probe
    from introspect.objectives import ACTIVATION_FUNCTIONS

    model.eval()
    x = torch.rand(2, *spec.input_shape, generator=torch.Generator().manual_seed(0))
    normalized = spec.normalize()(x)
    read = _read_by_next_layers(model, normalized)
    from introspect.layers import describe_layers

    ran = {i.name for i in describe_layers(model, spec.input_shape) if i.output_shape}
    layers = [name for name, m in model.named_modules() if isinstance(m, layer_types) and name in ran]
    checked = 0
    with Probe(model, spec, layers, early_exit=False) as probe:
        outputs = probe(x)
    for layer in layers:
        measured = ACTIVATION_FUNCTIONS[spec.activation(layer)](outputs[layer])
        if layer == spec.logits or layer == spec.logits_layer:
            continue
        same = [t for t in read if t.shape == measured.shape and torch.allclose(t, measured, atol=1e-5, rtol=1e-4)]
        if not same and not _is_head(model, layer):
            pytest.fail(f"{layer}: measured at {spec.measured_at(layer)}, which no later layer reads")
        checked += bool(same)
    return checked


def _is_head(model: nn.Module, layer: str) -> bool:
    """A layer whose output leaves the model (no later layer reads it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            graph = torch.fx.symbolic_trace(model).graph
        except Exception:  # noqa: BLE001
            return False
    node = next((n for n in graph.nodes if n.op == "call_module" and n.target == layer), None)
    seen, todo = set(), [node] if node is not None else []
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "output":
            continue
        users = list(n.users)
        if any(u.op != "output" for u in users) and n is not node:
            if not (n.op == "call_function" and getattr(n.target, "__name__", "") in ("softmax",)):
                return False
        todo.extend(u for u in users if u.op != "output")
        if n is node and all(u.op == "output" for u in users):
            return True
    return node is not None


@pytest.mark.parametrize("name", ZOO)
def test_zoo_layers_are_measured_where_the_next_layer_reads(name):
    loaded = zoo_model(name)
    assert _check_model(loaded.model, loaded.spec) > 0


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_layers_are_measured_where_the_next_layer_reads(name):
    from introspect import load_model

    loaded = load_model(f"torchvision:{name}")
    torch.manual_seed(0)
    for module in loaded.model.modules():  # random BatchNorm statistics, so that a BatchNorm changes values
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    spec = loaded.spec
    assert _check_model(loaded.model, spec, (nn.Conv2d,)) > 10
    if name == "resnet18":
        assert spec.measured_at("conv1") == "conv1 → bn1 → relu"
        assert spec.measured_at("layer1.0.conv1") == "layer1.0.conv1 → layer1.0.bn1 → layer1.0.relu"
        assert spec.measured_at("layer1.0.conv2") == "layer1.0.conv2 → layer1.0.bn2"  # before the residual
        assert spec.tap("layer1.0.conv1") == "layer1.0.bn1" and spec.activation("layer1.0.conv1") == "relu"
        assert spec.measured_at("fc") == "fc (raw output)"
    else:
        assert spec.measured_at("features.0.0") == "features.0.0 → features.0.1 → features.0.2"
        assert spec.activation("features.0.0") == "hardswish"


def test_activations_are_recognized_as_modules_and_calls():
    import torch.nn.functional as F

    from introspect.models.sources import measuring_points

    class Acts(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(2, 2, 1) for _ in range(12))
            self.relu6, self.hswish, self.leaky, self.elu = nn.ReLU6(), nn.Hardswish(), nn.LeakyReLU(0.2), nn.ELU()
            self.mish, self.prelu, self.bn = nn.Mish(), nn.PReLU(2), nn.BatchNorm2d(2)

        def forward(self, x):
            c = self.convs
            x = self.relu6(c[0](x))
            x = self.hswish(c[1](x))
            x = self.leaky(c[2](x))
            x = self.elu(c[3](x))
            x = self.mish(c[4](x))
            x = self.prelu(c[5](x))
            y = c[6](x)
            x = y * torch.sigmoid(y)
            x = F.leaky_relu(c[7](x), 0.1)
            x = F.hardswish(F.dropout(c[8](x), 0.5, False))
            x = F.elu(c[9](x), alpha=0.5)
            x = F.relu(self.bn(c[10](x)))
            return c[11](x) + x

    points = measuring_points(Acts())
    found = {layer: (p.chain, p.tap, p.activation) for layer, p in points.items() if layer.startswith("convs")}
    assert found["convs.0"] == (("relu6",), "convs.0", "relu6")
    assert found["convs.1"] == (("hswish",), "convs.1", "hardswish")
    assert found["convs.2"] == (("leaky",), "convs.2", "leaky_relu:0.2")
    assert found["convs.3"] == (("elu",), "convs.3", "elu")
    assert found["convs.4"] == (("mish",), "convs.4", "mish")
    assert found["convs.5"] == (("prelu",), "prelu", "identity")  # its slopes are weights: hooked itself
    assert found["convs.6"] == (("x*sigmoid(x)",), "convs.6", "silu")
    assert found["convs.7"] == (("F.leaky_relu",), "convs.7", "leaky_relu:0.1")
    assert "convs.8" not in found  # F.dropout: where a call's training flag is not known, stop
    assert found["convs.9"] == (("F.elu",), "convs.9", "elu:0.5")
    assert found["convs.10"] == (("bn", "F.relu"), "bn", "relu")
    assert "convs.11" not in found  # a residual add follows: its raw output


def test_activation_functions_and_their_leak():
    from introspect.objectives import ACTIVATION_FUNCTIONS, channel

    x = torch.linspace(-50, 50, 1001)
    for name in ("relu", "relu6", "hardswish", "gelu", "silu", "mish", "leaky_relu", "elu", "leaky_relu:0.2", "elu:0.5",
                 "gelu:tanh", "tanh"):
        y = ACTIVATION_FUNCTIONS[name](x)
        assert torch.equal(y > 0, x > 0), name  # "active" (output above 0) is the same as an open unit
    assert bool((ACTIVATION_FUNCTIONS["sigmoid"](x) > 0).all())  # never 0: no channel is judged by its sign after it
    assert bool((ACTIVATION_FUNCTIONS["softplus:2"](x) > 0).all())  # nor after softplus
    assert "leaky_relu:nope" not in ACTIVATION_FUNCTIONS and "softsign" not in ACTIVATION_FUNCTIONS
    closed = {"out": torch.full((1, 1, 2, 2), -10.0, requires_grad=True)}
    for name, leaks in (("relu", True), ("hardswish", True), ("leaky_relu", False)):
        value = channel("out", 0, activation=name)(closed)
        (grad,) = torch.autograd.grad(value.sum(), closed["out"])
        assert bool((grad != 0).all()), name
        assert (name, leaks) and True


class LeNetTanh(nn.Module):
    """LeNet-5 as taught: tanh after each layer (a call, a module), a sigmoid gate, average pooling."""

    def __init__(self):
        super().__init__()
        self.c1, self.c3 = nn.Conv2d(1, 3, 5, padding=2), nn.Conv2d(3, 4, 5)
        self.act, self.gate = nn.Tanh(), nn.Sigmoid()
        self.f5, self.out = nn.Linear(4 * 5 * 5, 6), nn.Linear(6, 10)

    def forward(self, x):
        x = F.avg_pool2d(torch.tanh(self.c1(x)), 2)
        x = F.avg_pool2d(self.act(self.c3(x)), 2)
        return self.out(self.gate(self.f5(x.flatten(1))).tanh())


def test_tanh_and_sigmoid_are_measured_after_and_never_judged_dead():
    """A LeNet's conv was measured raw ("c1 (raw output)"), not what the next layer reads: tanh and sigmoid, modules,
    calls or methods, are now where its channels are measured. A channel below 0 on every image is not called dead
    after tanh (it passes its values on), nor is any after a sigmoid (never 0)."""
    from introspect.channels import examples_pass
    from introspect.models.sources import measuring_fields
    from introspect.models.spec import ModelSpec

    model = LeNetTanh().eval()
    with torch.no_grad():
        model.c1.bias.fill_(-100.0)  # tanh(c1) near -1 on every image
    fields = measuring_fields(model)
    spec = ModelSpec(name="lenet", architecture="user", input_shape=(1, 28, 28), mean=(0.0,), std=(1.0,),
                     logits_layer="out", class_names=tuple("0123456789"), **fields)
    assert [spec.measured_at(layer) for layer in ("c1", "c3", "f5", "out")] == [
        "c1 → torch.tanh", "c3 → act", "f5 → gate", "out (raw output)"]
    assert [(spec.tap(layer), spec.activation(layer)) for layer in ("c1", "c3", "f5")] == [
        ("c1", "tanh"), ("c3", "tanh"), ("f5", "sigmoid")]
    stats = examples_pass(model, spec, ["c1", "f5"], tiny_dataset(12))
    assert bool((stats["c1"].max_value < -0.99).all())  # tanh's value, not the raw -100
    for layer in ("c1", "f5"):
        assert bool(stats[layer].live.all()) and not bool(stats[layer].rare.any())
    assert bool((stats["f5"].max_value > 0).all()) and not stats["f5"].judged


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Basic(nn.Module):
    """A ResNet BasicBlock: one ReLU module called twice, the second time on the residual sum (its output)."""

    def __init__(self, shift: float = 0.0):
        super().__init__()
        self.conv1, self.conv2, self.relu, self.shift = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), \
            nn.ReLU(inplace=True), shift

    def forward(self, x):
        out = self.relu(self.conv2(self.relu(self.conv1(x))) + x)
        if self.shift:
            out -= self.shift  # changed in place after its ReLU: signed again
        return out


class Blocks(nn.Module):
    """Conv-BN-ReLU containers (as torchvision's Conv2dNormActivation), BasicBlocks, and a ReLU module at the end;
    block1's channels 0 and 1 are closed on every image."""

    def __init__(self):
        super().__init__()
        self.block1 = ConvBNReLU(1, 4)
        self.block2 = ConvBNReLU(4, 4)
        self.basic, self.shifted = Basic(), Basic(shift=1.0)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.block1[0].weight[:2].abs_().mul_(0.1)
            self.block1[0].bias[:2] = -2.0

    def forward(self, x):
        x = self.shifted(self.basic(self.block2(self.block1(x))))
        return self.fc(self.relu(x + 1.0).mean((2, 3)))


def test_a_block_that_ends_in_a_relu_is_measured_after_it():
    """`--layer block1` on a Conv-BN-ReLU container (or on its ReLU) was measured as a signed output: two channels
    closed on every image were "live", with five "top examples" tied at 0; its conv said "2 dead". Named by the
    block, by its ReLU or by its conv, the verdict is now the same."""
    from introspect.channels import examples_pass
    from introspect.models.sources import measuring_fields, relu_outputs
    from introspect.models.spec import ModelSpec

    model = Blocks().eval()
    found = relu_outputs(model, (1, 28, 28))
    assert {name: found.get(name) for name in ("block1", "block1.2", "block2", "basic", "shifted", "relu", "block1.0",
                                               "fc")} == {
        "block1": "relu", "block1.2": "relu", "block2": "relu", "basic": "relu", "shifted": None, "relu": "relu",
        "block1.0": None, "fc": None}
    assert hook_count(model) == 0 and not model.training
    spec = ModelSpec(name="blocks", architecture="user", input_shape=(1, 28, 28), mean=(0.0,), std=(1.0,),
                     logits_layer=None, class_names=(), **measuring_fields(model, (1, 28, 28)))
    assert spec.measured_at("block1") == "block1 → relu"
    stats = examples_pass(model, spec, ["block1", "block1.2", "block1.0"], tiny_dataset(10))
    assert [stats[layer].live.tolist()[:2] for layer in ("block1", "block1.2", "block1.0")] == [[False, False]] * 3


class Residual(nn.Module):
    """A block whose forward ends in a ReLU call, which no hook sees: ``F.relu(x + bn(conv(x)))``."""

    def __init__(self, shift: float | None = None, relu6: bool = False):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.shift, self.relu6 = shift, relu6

    def forward(self, x):
        out = (F.relu6 if self.relu6 else F.relu)(x + self.bn(self.conv(x)))
        return out if self.shift is None else out - self.shift  # shifted after its ReLU: signed again


class Residuals(nn.Module):
    """block's channels 0 and 1 are closed on every image (its BatchNorm's bias -10 against a stem's ReLU'd output
    of about 1); the same block reused, in a Sequential, shifted, or returning two tensors."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block, self.shifted, self.stack = Residual(), Residual(shift=1.0), nn.Sequential(Residual(), Residual(relu6=True))
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.stem.weight.zero_()
            self.stem.bias.fill_(1.0)
            self.block.bn.bias[:2] = -10.0

    def forward(self, x):
        x = self.block(self.block(F.relu(self.stem(x))))
        return self.fc(self.stack(self.shifted(x)).mean((2, 3)))


def test_a_block_that_ends_in_a_relu_call_is_measured_after_it():
    """A residual block ending in ``F.relu(x + self.bn(self.conv(x)))`` was measured as a signed output ("block (raw
    output)"): two channels that are 0 on every image were "live", their top examples tied at 0. fx sees the ReLU
    call hand the block's output on: the block is measured after it (its first call, as a reused module is)."""
    from introspect.channels import examples_pass
    from introspect.models.sources import measuring_fields, traced_relu_outputs
    from introspect.models.spec import ModelSpec

    model = Residuals().eval()
    assert traced_relu_outputs(model) == {"block": "relu", "stack": "relu6", "stack.0": "relu", "stack.1": "relu6"}
    spec = ModelSpec(name="residuals", architecture="user", input_shape=(1, 12, 12), mean=(0.0,), std=(1.0,),
                     logits_layer=None, class_names=(), **measuring_fields(model, (1, 12, 12)))
    assert [spec.measured_at(layer) for layer in ("block", "shifted", "stack")] == [
        "block → relu", "shifted (raw output)", "stack → relu6"]
    stats = examples_pass(model, spec, ["block"], tiny_dataset(10))["block"]
    assert stats.live.tolist() == [False, False, True, True]
    assert hook_count(model) == 0


def test_a_module_called_twice_is_measured_where_its_first_call_goes():
    """A conv applied twice, first followed by F.relu and then by tanh, was measured raw ("shared (raw output)"),
    judged as a signed output. Its hook records the first call: that call's chain is its measuring point."""
    from introspect.models.sources import measuring_points

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.shared, self.bn = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x):
            x = self.shared(F.relu(self.stem(x)))
            x = torch.tanh(self.shared(F.relu(self.bn(x))))
            return x.mean((2, 3))

    points = measuring_points(Twice())
    assert (points["shared"].chain, points["shared"].tap, points["shared"].activation) == (("bn", "F.relu"), "bn", "relu")


def test_a_batchnorm_that_opens_a_closed_conv_makes_it_live():
    """conv output -1 everywhere, BatchNorm weight -1: after the BatchNorm every channel is 1 > 0."""
    from introspect.channels import examples_pass
    from introspect.models.sources import measuring_fields
    from introspect.models.spec import ModelSpec

    class ConvBNReLU(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.relu = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True)
            self.fc = nn.Linear(4, 10)

        def forward(self, x):
            return self.fc(self.relu(self.bn(self.conv(x))).mean((2, 3)))

    model = ConvBNReLU().eval()
    with torch.no_grad():
        model.conv.weight.zero_()
        model.conv.bias.fill_(-1.0)
        model.bn.weight.fill_(-1.0)
        model.bn.bias.zero_()
    spec = ModelSpec(name="convbn", architecture="user", input_shape=(1, 28, 28), mean=(0.0,), std=(1.0,),
                     logits_layer=None, class_names=(), **measuring_fields(model))
    assert spec.measured_at("conv") == "conv → bn → relu"
    stats = examples_pass(model, spec, ["conv"], tiny_dataset(20))["conv"]
    assert bool(stats.live.all())
    assert bool((stats.active_fraction >= 0.5).all())


def test_an_untraceable_forward_uses_sequential_neighbours():
    from introspect.models.sources import measuring_points

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(), nn.ReLU6(), nn.MaxPool2d(2))

        def forward(self, x):
            if x.sum() > 0:
                x = x * 2
            return self.block(x)

    point = measuring_points(Branchy())["block.0"]
    assert (point.chain, point.tap, point.activation) == (("block.1", "block.3"), "block.1", "relu6")


UNTRACEABLE = """import torch.nn.functional as F
from torch import nn


class Untraceable(nn.Module):  # conv, BatchNorm, ReLU as attributes, and a check fx cannot trace
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        if x.shape[-1] > 64:
            x = F.interpolate(x, size=64)
        return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))


class Traceable(Untraceable):
    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))
"""


def test_a_forward_fx_cannot_trace_is_named_with_where_channels_are_measured(tmp_path):
    """Without the graph the BatchNorm and ReLU after conv go unseen: a note says why its raw output is measured."""
    from introspect import MetaOverrides, load_model

    (tmp_path / "untraceable.py").write_text(UNTRACEABLE)
    loaded = load_model(f"{tmp_path / 'untraceable.py'}:Untraceable", meta=MetaOverrides(size=8))
    assert loaded.spec.measured_at("conv") == "conv (raw output)"
    assert any(str(note).startswith("torch.fx cannot trace Untraceable's forward (TraceError:") for note in loaded.notes)
    traced = load_model(f"{tmp_path / 'untraceable.py'}:Traceable", meta=MetaOverrides(size=8))
    assert traced.spec.measured_at("conv") == "conv → bn → F.relu"
    assert not any("torch.fx" in str(note) for note in traced.notes)


class _PiecewiseSequential(nn.Module):
    """fx cannot trace it; ``block``'s parts are called one by one, conv2 between them; ``whole`` runs as a whole."""

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.whole = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())

    def forward(self, x):
        if x.sum() > -1e9:
            x = self.block[2](self.block[1](self.conv2(self.block[0](x))))
        return self.whole(x).mean((2, 3))


def test_a_sequential_the_forward_calls_piecewise_gives_no_measuring_point():
    """block.0's output goes to conv2, never to block.1: it was measured at block.1 (bn(conv2(...)), another layer)."""
    from introspect.models.sources import measuring_points

    model = _PiecewiseSequential().eval()
    points = measuring_points(model, (1, 8, 8))
    assert "block.0" not in points
    assert points["whole.0"].chain == ("whole.1", "whole.2")
    assert "block.0" in measuring_points(model)  # no input shape: what the Sequential says, as before


def test_an_instance_norms_output_is_noted_as_constant_in_its_spatial_mean():
    """An InstanceNorm's output, measured by its channels' spatial means, scored the norm's bias on every image: the
    run printed ratios of rounding noise and health advice. The note says so and names --neuron; a BatchNorm's
    output, an instance norm with an activation after it, or --neuron, get none."""
    from introspect.channels import constant_mean_notes
    from introspect.models.sources import measuring_fields
    from introspect.models.spec import ModelSpec

    class Norms(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.inorm = nn.Conv2d(1, 4, 3, padding=1), nn.InstanceNorm2d(4, affine=True)
            self.conv2, self.gn = nn.Conv2d(4, 4, 3, padding=1), nn.GroupNorm(4, 4)
            self.conv3, self.bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
            self.conv4, self.closed = nn.Conv2d(4, 4, 3, padding=1), nn.InstanceNorm2d(4)

        def forward(self, x):
            x = self.bn(self.conv3(self.gn(self.conv2(self.inorm(self.conv1(x))))))
            return F.relu(self.closed(self.conv4(x))).mean((2, 3))

    model = Norms().eval()
    spec = ModelSpec(name="norms", architecture="user", input_shape=(1, 8, 8), mean=(0.0,), std=(1.0,),
                     logits_layer=None, class_names=(), **measuring_fields(model, (1, 8, 8)))
    layers = ["inorm", "gn", "bn", "closed", "conv4"]
    noted = [str(note).split(" ")[0] for note in constant_mean_notes(model, spec, layers, neuron=False)]
    assert noted == ["inorm", "gn"]
    assert "{neuron}" in constant_mean_notes(model, spec, ["inorm"], neuron=False)[0].template
    assert constant_mean_notes(model, spec, layers, neuron=True) == []
    with torch.no_grad():  # what the note says: the spatial mean is the bias, whatever the image
        means = model.inorm(model.conv1(torch.rand(3, 1, 8, 8))).mean((2, 3))
    assert torch.allclose(means, model.inorm.bias.expand(3, -1), atol=1e-5)


def test_softplus_and_a_relu_written_as_a_clamp_are_measuring_points():
    """A conv followed by nn.Softplus, F.softplus or ``x.clamp(min=0)`` was measured at its raw output, so its channels
    were judged as signed (a clamp's closed channels "live") and not as what the next layer sees."""
    from introspect.channels import examples_pass
    from introspect.models.sources import measuring_fields, measuring_points
    from introspect.models.spec import ModelSpec

    class Written(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.c3, self.c4, self.c5 = [nn.Conv2d(1 if i == 0 else 2, 2, 1) for i in range(5)]
            self.soft, self.sharp = nn.Softplus(), nn.Softplus(beta=2, threshold=10)
            with torch.no_grad():
                self.c1.bias[0] = -100.0  # channel 0 closed by the clamp on every image

        def forward(self, x):
            x = torch.clamp(self.c2(self.c1(x).clamp(min=0)), 0, 6)
            x = F.softplus(self.c4(self.soft(self.c3(x))), beta=2)
            return self.sharp(self.c5(x)).mean((2, 3))

    points = measuring_points(Written())
    assert {layer: (points[layer].chain, points[layer].activation) for layer in ("c1", "c2", "c3", "c4")} == {
        "c1": ((".clamp(min=0)",), "relu"), "c2": (("torch.clamp(min=0, max=6)",), "relu6"),
        "c3": (("soft",), "softplus"), "c4": (("F.softplus",), "softplus:2")}
    assert (points["c5"].tap, points["c5"].activation) == ("sharp", "identity")  # another threshold: hooked itself
    model = Written().eval()
    spec = ModelSpec(name="written", architecture="user", input_shape=(1, 8, 8), mean=(0.0,), std=(1.0,),
                     logits_layer=None, class_names=(), **measuring_fields(model, (1, 8, 8)))
    assert spec.measured_at("c1") == "c1 → .clamp(min=0)"
    assert examples_pass(model, spec, ["c1"], tiny_dataset(10))["c1"].live.tolist() == [False, True]


def test_hardsigmoid_selu_and_hardtanh_are_measuring_points():
    """MobileNetV3's squeeze-excitation fc2 → nn.Hardsigmoid was "fc2 (raw output): no activation traced after it"
    (its sigmoid twin in EfficientNet was followed). Hardsigmoid closes below -3 (judged); SELU and Hardtanh pass
    values below 0 on (never judged by sign)."""
    from introspect.channels import ExampleStats
    from introspect.models.sources import measuring_points

    class Gates(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Conv2d(1, 2, 1), nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)
            self.gate, self.selu, self.clip = nn.Hardsigmoid(), nn.SELU(), nn.Hardtanh()

        def forward(self, x):
            return self.clip(self.fc3(self.selu(self.fc2(self.gate(self.fc1(x)))))).mean((2, 3))

    points = measuring_points(Gates())
    assert [points[layer].activation for layer in ("fc1", "fc2", "fc3")] == ["hardsigmoid", "selu", "hardtanh"]
    judged = {name: ExampleStats("x", name, False, *[torch.zeros(1, 1)] * 2, *[torch.zeros(1)] * 3,
                                 torch.zeros(1, 3), "d", "s", "src", 1).judged for name in ("hardsigmoid", "selu", "hardtanh")}
    assert judged == {"hardsigmoid": True, "selu": False, "hardtanh": False}


def test_a_concatenation_or_pooling_of_relu_outputs_is_measured_as_a_relus():
    """An Inception block (branches ending in F.relu, one a max pool of the block's ReLU'd input) or a SqueezeNet Fire
    (nn.ReLU modules) concatenates ReLU outputs: measured raw, its channels closed on every image were "live"."""
    from introspect.models.sources import traced_relu_outputs

    class Inception(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 2, 1), nn.Conv2d(4, 2, 3, padding=1)

        def forward(self, x):
            return torch.cat([F.relu(self.a(x)), F.relu(self.b(x)), F.max_pool2d(x, 3, 1, 1)], 1)

    class Fire(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.act_a, self.act_b = nn.Conv2d(8, 2, 1), nn.Conv2d(8, 2, 1), nn.ReLU(), nn.ReLU6()

        def forward(self, x):
            return torch.cat([self.act_a(self.a(x)), self.act_b(self.b(x))], 1)

    class Mixed(nn.Module):  # a branch with no ReLU: signed
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 2, 1), nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return torch.cat([F.relu(self.a(x)), self.b(x)], 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.inception, self.fire, self.mixed = nn.Conv2d(1, 4, 3), Inception(), Fire(), Mixed()

        def forward(self, x):
            x = F.relu(self.stem(x))
            return self.fire(self.inception(x)).mean((2, 3)) + self.mixed(x).mean((2, 3))[:, :1]

    found = traced_relu_outputs(Net())
    assert (found.get("inception"), found.get("fire"), found.get("mixed")) == ("relu", "relu", None)


def test_a_block_or_module_whose_output_is_an_activations_is_measured_where_its_chain_is():
    """A Conv2dNormActivation ending in Hardswish (MobileNetV3's), or the nn.GELU module itself, was measured raw and
    never judged, while its conv, the same tensor at its measuring point, was: two verdicts for one tensor. Both now
    take that point's tap and activation."""
    from torchvision.ops.misc import Conv2dNormActivation

    from introspect.channels import examples_pass
    from introspect.models.sources import measuring_fields
    from introspect.models.spec import ModelSpec

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Conv2dNormActivation(1, 4, 3, activation_layer=nn.Hardswish)
            self.conv, self.act = nn.Conv2d(4, 4, 1), nn.GELU()
            self.fc = nn.Linear(4, 2)
            with torch.no_grad():
                self.block[1].bias[:2] = -20.0  # channels 0 and 1 closed on every image

        def forward(self, x):
            return self.fc(self.act(self.conv(self.block(x))).mean((2, 3)))

    model = Net().eval()
    spec = ModelSpec(name="net", architecture="user", input_shape=(1, 8, 8), mean=(0.0,), std=(1.0,),
                     logits_layer=None, class_names=(), **measuring_fields(model, (1, 8, 8)))
    assert [(spec.tap(layer), spec.activation(layer)) for layer in ("block", "block.0", "block.2", "act", "conv")] == [
        ("block.1", "hardswish"), ("block.1", "hardswish"), ("block.1", "hardswish"), ("conv", "gelu"),
        ("conv", "gelu")]
    assert spec.measured_at("block") == "block = block.1 → hardswish"  # its tap named: not hardswish twice
    stats = examples_pass(model, spec, ["block", "block.0", "block.2"], tiny_dataset(10))
    assert [stats[layer].live.tolist()[:2] for layer in ("block", "block.0", "block.2")] == [[False, False]] * 3
    assert hook_count(model) == 0


def test_a_module_whose_output_is_where_a_chain_starts_or_ends_is_measured_there():
    """DenseNet's ``features`` (its last BatchNorm's output goes on through F.relu outside it), a block ending in
    ``F.gelu(self.bn(self.conv(x)))``, and a ShuffleNet block (a channel shuffle of concatenated ReLU outputs) were
    measured raw, each the same tensor as a layer measured after its activation: two verdicts for one tensor."""
    from introspect.models.sources import measuring_fields
    from introspect.models.spec import ModelSpec

    class FG(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

        def forward(self, x):
            return F.gelu(self.bn(self.conv(x)))

    class Shuffle(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 2, 1), nn.Conv2d(4, 2, 1)

        def forward(self, x):
            x = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], 1)
            b, c, h, w = x.shape
            return x.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, c, h, w)

    class Dense(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
            self.fg, self.shuffle, self.fc = FG(), Shuffle(), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.shuffle(self.fg(F.relu(self.features(x)))).mean((2, 3)))

    model = Dense().eval()
    spec = ModelSpec(name="dense", architecture="user", input_shape=(1, 8, 8), mean=(0.0,), std=(1.0,),
                     logits_layer=None, class_names=(), **measuring_fields(model, (1, 8, 8)))
    assert [(spec.tap(layer), spec.activation(layer)) for layer in ("features", "features.1", "fg", "fg.conv")] == [
        ("features.1", "relu"), ("features.1", "relu"), ("fg.bn", "gelu"), ("fg.bn", "gelu")]
    assert spec.activation("shuffle") == "relu" and spec.tap("shuffle") == "shuffle"


def test_a_block_ending_in_a_shared_activation_is_not_measured_at_another_call():
    """A block whose output is the second call of a shared nn.SiLU was given the first call's measuring point:
    silu(bn(conv(x))) in place of silu(x + bn(conv(x))), the residual left out, with no word. Which call made the
    output, no measuring point says: the block is measured as it is."""
    from introspect.models.sources import measuring_fields
    from introspect.models.spec import ModelSpec

    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.act = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.SiLU()

        def forward(self, x):
            return self.act(x + self.act(self.bn(self.conv(x))))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.block, self.fc = nn.Conv2d(1, 4, 3), Nested(), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.block(self.stem(x)).mean((2, 3)))

    model = Net().eval()
    spec = ModelSpec(name="net", architecture="user", input_shape=(1, 8, 8), mean=(0.0,), std=(1.0,),
                     logits_layer=None, class_names=(), **measuring_fields(model, (1, 8, 8)))
    assert (spec.tap("block"), spec.activation("block")) == ("block", "identity")
    assert (spec.tap("block.conv"), spec.activation("block.conv")) == ("block.bn", "silu")  # its first call's chain


def test_a_logits_layer_is_not_given_the_activation_of_the_module_it_is_measured_as():
    """`--logits-layer head` on head = Sequential(Linear, Sigmoid) showed sigmoid(sigmoid(x)): the logits are read at
    their layer itself, and the sigmoid found at head.0's measuring point was applied to them again."""
    from introspect import MetaOverrides, load_model

    import textwrap
    import tempfile
    from pathlib import Path as _Path

    with tempfile.TemporaryDirectory() as folder:
        path = _Path(folder) / "sighead.py"
        path.write_text(textwrap.dedent("""
            from torch import nn
            class SigHead(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv, self.head = nn.Conv2d(1, 4, 3), nn.Sequential(nn.Linear(4, 3), nn.Sigmoid())
                def forward(self, x):
                    return self.head(self.conv(x).mean((2, 3)))
        """))
        loaded = load_model(f"{path}:SigHead", meta=MetaOverrides(input_shape=(1, 8, 8), logits_layer="head"))
    assert loaded.spec.logits == "head" and loaded.spec.tap("head") == "head"
    assert loaded.spec.activation("head") == "identity"
