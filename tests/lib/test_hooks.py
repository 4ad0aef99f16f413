import pytest
import torch
from torch import nn
from helpers import hook_count

from introspect.errors import UserError
from introspect.hooks import HookRegistry, frozen, record
from introspect.layers import describe_layers, resolve_layer


def test_describe_layers_shapes(tiny_model):
    infos = {i.name: i for i in describe_layers(tiny_model, (1, 28, 28))}
    assert infos["conv1"].output_shape == (32, 26, 26)
    assert infos["conv2"].output_shape == (64, 24, 24)
    assert infos["fc1"].output_shape == (128,)
    assert infos["fc2"].output_shape == (10,)
    assert infos["conv2"].units == 64 and infos["fc1"].units == 128
    assert hook_count(tiny_model) == 0


def test_resolve_layer_suggests_closest(tiny_model):
    assert resolve_layer(tiny_model, "conv2") is tiny_model.conv2
    with pytest.raises(UserError, match="closest: conv2.*describe_layers"):
        resolve_layer(tiny_model, "conv3")


def test_registry_records_and_removes(tiny_model):
    x = torch.randn(2, 1, 28, 28)
    with HookRegistry(tiny_model, ["conv2", "fc1"], early_exit=False) as hooks:
        outputs = hooks.run(x)
        assert hook_count(tiny_model) == 2
    assert hook_count(tiny_model) == 0
    assert outputs["conv2"].shape == (2, 64, 24, 24)
    assert torch.allclose(outputs["conv2"], tiny_model.conv2(torch.relu(tiny_model.conv1(x))))


def test_registry_removes_hooks_after_exception(tiny_model):
    with pytest.raises(RuntimeError, match="boom"):
        with HookRegistry(tiny_model, ["conv1", "fc2"]):
            raise RuntimeError("boom")
    assert hook_count(tiny_model) == 0
    with pytest.raises(UserError):
        with HookRegistry(tiny_model, ["conv1", "nope"]):
            pass
    assert hook_count(tiny_model) == 0


def test_early_exit_skips_later_layers(tiny_model):
    def explode(*_):
        raise AssertionError("fc1 ran after the last hooked layer")

    handle = tiny_model.fc1.register_forward_pre_hook(explode)
    try:
        with HookRegistry(tiny_model, ["conv2"]) as hooks:
            assert hooks.run(torch.zeros(1, 1, 28, 28))["conv2"].shape == (1, 64, 24, 24)
    finally:
        handle.remove()


def test_frozen_restores_on_error(tiny_model):
    tiny_model.train()
    with pytest.raises(ValueError):
        with frozen(tiny_model):
            assert not tiny_model.training
            assert not any(p.requires_grad for p in tiny_model.parameters())
            raise ValueError
    assert tiny_model.training and all(p.requires_grad for p in tiny_model.parameters())


def test_probe_and_record_normalize_freeze_and_clean_up(tiny_model, tiny_spec):
    images = torch.rand(2, 1, 28, 28)
    tiny_model.train()
    outputs = record(tiny_model, tiny_spec, images, ["conv1"])
    expected = tiny_model.conv1((images - tiny_spec.mean[0]) / tiny_spec.std[0])
    torch.testing.assert_close(outputs["conv1"], expected)
    assert tiny_model.training and hook_count(tiny_model) == 0


def test_redirected_relus_let_a_dead_image_move_and_leave_the_model_as_it_was():
    from introspect.hooks import redirected_relus

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    with torch.no_grad():
        model[0].bias.fill_(-10.0)  # every unit closed on inputs in [0, 1]
    image = torch.rand(2, 1, 8, 8, requires_grad=True)
    model(image)[:, 0].sum().backward()
    assert image.grad.abs().max() == 0  # plain ReLU: no gradient at all
    image.grad = None
    with redirected_relus(model) as count:
        assert count == 1 and not model[1].inplace
        model(image)[:, 0].sum().backward()
    assert image.grad.abs().max() > 0
    assert model[1].inplace and not model[1]._forward_hooks
    with pytest.raises(RuntimeError), redirected_relus(model):
        raise RuntimeError("a failure inside")
    assert model[1].inplace and not model[1]._forward_hooks
    alive = torch.rand(2, 1, 8, 8)  # forward values are exactly ReLU's
    with torch.no_grad(), redirected_relus(model):
        redirected = model(alive)
    assert torch.equal(redirected, model(alive).detach())


@pytest.mark.parametrize("after", [nn.ReLU(inplace=True), nn.LeakyReLU(inplace=True), nn.Hardtanh(inplace=True)])
def test_a_redirected_relu_output_can_be_changed_in_place_by_the_next_module(after):
    """Later modules may change a redirected ReLU's output in place, as they may a plain ReLU's (a Function that
    passed its input on as its output would refuse it)."""
    from introspect.hooks import redirected_relus

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), after, nn.Flatten())
    image = torch.rand(2, 1, 8, 8, requires_grad=True)
    with redirected_relus(model):
        model(image).sum().backward()
    assert image.grad is not None and torch.isfinite(image.grad).all()


class _ChannelsLastBlock(nn.Module):
    """A ConvNeXt / Swin block: Linear and LayerNorm run on (B, H, W, C), the channels last."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.norm = nn.LayerNorm(8)
        self.fc1 = nn.Linear(8, 16)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(16, 8)

    def forward(self, x):
        x = self.conv(x).permute(0, 2, 3, 1)  # (B, 6, 5, 8) for a 8 x 7 input: H, W and C all differ
        return self.fc2(self.act(self.fc1(self.norm(x)))).permute(0, 3, 1, 2)


def test_a_linear_on_channels_last_maps_has_its_features_as_channels():
    """fc1's 16 features are its channels, each a 6 x 5 map — not its 6 rows as '6 channels of 5 x 16'."""
    torch.manual_seed(0)
    model = _ChannelsLastBlock().eval()
    infos = {i.name: i for i in describe_layers(model, (3, 8, 7))}
    assert (infos["fc1"].output_shape, infos["fc1"].units) == ((16, 6, 5), 16)
    assert (infos["norm"].output_shape, infos["norm"].units) == ((8, 6, 5), 8)
    assert (infos["conv"].output_shape, infos["fc2"].output_shape) == ((8, 6, 5), (8, 6, 5))
    x = torch.randn(2, 3, 8, 7)
    with HookRegistry(model, ["fc1"], early_exit=False) as hooks:
        recorded = hooks.run(x)["fc1"]
    with torch.no_grad():
        direct = model.fc1(model.norm(model.conv(x).permute(0, 2, 3, 1)))
    torch.testing.assert_close(recorded, direct.permute(0, 3, 1, 2))


def _described_and_recorded(model: nn.Module, layer: str, x: torch.Tensor):
    """``layer``'s row of the layers table (every module described) and its output hooked alone on ``x``."""
    info = {i.name: i for i in describe_layers(model, tuple(x.shape[1:]))}[layer]
    with HookRegistry(model, [layer]) as hooks:
        return info, hooks.run(x)[layer]


def test_an_elementwise_module_has_the_layout_of_the_module_that_fed_it():
    """The GELU between two channels-last Linears has fc1's 16 features as channels — not its 6 rows — whether it is
    described with every module or hooked alone; a GELU on a conv's (B, C, H, W) map stays as it is."""
    torch.manual_seed(0)
    model = _ChannelsLastBlock().eval()
    x = torch.randn(2, 3, 8, 7)
    info, recorded = _described_and_recorded(model, "act", x)
    assert (info.output_shape, info.units) == ((16, 6, 5), 16)
    with torch.no_grad():
        direct = model.act(model.fc1(model.norm(model.conv(x).permute(0, 2, 3, 1))))
    torch.testing.assert_close(recorded, direct.permute(0, 3, 1, 2))
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GELU(), nn.Identity()).eval()
    assert [i.output_shape for i in describe_layers(plain, (3, 8, 7))] == [(8, 6, 5)] * 3
    with HookRegistry(plain, ["2"]) as hooks:
        assert hooks.run(x)["2"].shape == (2, 8, 6, 5)


class _Mixer(nn.Module):
    """A Swin-style block of its own kind: on a channels-last map (B, H, W, C) it mixes the positions and adds the
    result back, keeping the shape (no Linear or LayerNorm of its own to judge it by)."""

    def forward(self, x):
        return x + x.mean(dim=(1, 2), keepdim=True)


class _PassThrough(nn.Module):
    """torchvision's StochasticDepth or timm's DropPath in eval mode: the input itself, given back."""

    def forward(self, x):
        return x


class _SwinLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.norm = nn.LayerNorm(8)
        self.block = _Mixer()
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.block(self.norm(self.conv(x).permute(0, 2, 3, 1))).mean(dim=(1, 2)))


def test_any_module_that_keeps_a_channels_last_map_s_shape_keeps_its_layout():
    """A Swin block (here a module of its own kind) fed a channels-last map, giving one of the same shape, has the map's
    8 channels — not its 6 rows — described with every module or hooked alone; fed a plain map it stays plain."""
    torch.manual_seed(0)
    model = _SwinLike().eval()
    x = torch.randn(2, 3, 8, 7)
    info, recorded = _described_and_recorded(model, "block", x)
    assert (info.output_shape, info.units) == ((8, 6, 5), 8)
    assert hook_count(model) == 0
    with torch.no_grad():
        direct = model.block(model.norm(model.conv(x).permute(0, 2, 3, 1)))
    torch.testing.assert_close(recorded, direct.permute(0, 3, 1, 2))
    passing = nn.Sequential(nn.Conv2d(3, 8, 3), Permute([0, 2, 3, 1]), nn.LayerNorm(8), _PassThrough()).eval()
    assert describe_layers(passing, (3, 8, 7))[-1].output_shape == (8, 6, 5)  # as the registry reads it alone:
    with HookRegistry(passing, ["3"]) as hooks:
        assert hooks.run(x)["3"].shape == (2, 8, 6, 5)
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), _Mixer()).eval()
    assert [i.output_shape for i in describe_layers(plain, (3, 8, 7))] == [(8, 6, 5)] * 2
    with torch.no_grad():
        expected = plain(x)
    with HookRegistry(plain, ["1"]) as hooks:
        torch.testing.assert_close(hooks.run(x)["1"], expected)


class Permute(nn.Module):
    """torchvision.ops.misc.Permute as ConvNeXt uses it: known by its class name and ``dims``."""

    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)


def test_a_permute_to_channels_last_has_the_map_channels():
    """A Permute of dims (0, 2, 3, 1) gives a channels-last map: its 8 channels, not its 6 rows, as is the Dropout it
    feeds; the Permute (0, 3, 1, 2) back gives a plain map."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), Permute([0, 2, 3, 1]), nn.Dropout(), nn.Linear(8, 16),
                          Permute([0, 3, 1, 2])).eval()
    infos = describe_layers(model, (3, 8, 7))
    assert [(i.output_shape, i.units) for i in infos] == [((8, 6, 5), 8)] * 3 + [((16, 6, 5), 16)] * 2
    x = torch.randn(2, 3, 8, 7)
    for name in ("1", "2"):
        with HookRegistry(model, [name]) as hooks:
            torch.testing.assert_close(hooks.run(x)[name], model[0](x))
    with HookRegistry(model, ["4"]) as hooks:
        assert hooks.run(x)["4"].shape == (2, 16, 6, 5)


class _ReusedReLU(nn.Module):
    """One ReLU run twice with other channel counts (as torchvision's ResNet Bottleneck runs ``relu`` three times)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.relu, self.head = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 8, 1), nn.ReLU(), nn.Linear(8, 2)

    def forward(self, x):
        x = self.relu(self.conv2(self.relu(self.conv1(x))))
        return self.head(x.mean((2, 3)))


def test_a_reused_module_is_its_first_call_in_the_table_and_in_every_hooked_pass():
    """The layers table, a pass hooking it alone (stopping early), one hooking a later layer too and one running to
    the end all see the same call: before, the table and a pass that went on showed the last (8 channels) and a
    pass that stopped at it the first (4), so a channels run over [relu, head] failed on channel 5."""
    from introspect.channels import plan_channels
    from introspect.models.spec import ModelSpec

    torch.manual_seed(0)
    model = _ReusedReLU().eval()
    x = torch.randn(2, 3, 6, 6)
    info, alone = _described_and_recorded(model, "relu", x)
    assert (info.calls, info.output_shape) == (2, (4, 4, 4))
    with HookRegistry(model, ["relu", "head"]) as hooks:
        with_later = hooks.run(x)["relu"]
    with HookRegistry(model, ["relu"], early_exit=False) as hooks:
        to_the_end = hooks.run(x)["relu"]
    first = torch.relu(model.conv1(x)).detach()
    for recorded in (alone, with_later, to_the_end):
        torch.testing.assert_close(recorded, first)
    spec = ModelSpec(name="reused", architecture="reused", input_shape=(3, 6, 6), mean=(0.0,) * 3, std=(1.0,) * 3,
                     logits_layer="", class_names=("a", "b"), dataset=None, activations={})
    plan = plan_channels(model, spec, ["relu", "head"], batch_size=4)
    assert plan["relu"].output_shape == (4, 4, 4)


class _Attention(nn.Module):
    """Self-attention over (B, N, D) tokens as torchvision's ViT blocks do: an nn.MultiheadAttention returns a tuple."""

    def __init__(self) -> None:
        super().__init__()
        self.attn, self.dropout, self.head = nn.MultiheadAttention(4, 1, batch_first=True), nn.Dropout(0.0), nn.Linear(4, 2)

    def forward(self, x):
        x, _ = self.attn(x, x, x)
        return self.head(self.dropout(x).mean(1))


def test_a_layer_that_returns_a_tuple_is_said_to_run_and_refused_with_the_fix():
    """Before, the attention was listed last as "not called", a channels plan said it does not run, and a hooked
    pass (the activations command) recorded the tuple, whose [0] the report then read as one image's output."""
    from introspect.channels import plan_channels
    from introspect.models.spec import ModelSpec

    torch.manual_seed(0)
    model = _Attention().eval()
    infos = describe_layers(model, (5, 4))
    assert [i.name for i in infos][:2] == ["attn", "dropout"]
    assert (infos[0].calls, infos[0].output_shape, infos[0].returns) == (1, None, "tuple")
    with pytest.raises(UserError, match=r"layer 'attn' returns a tuple of 2 \(0: \(1, 5, 4\), 1: .*not one tensor"):
        with HookRegistry(model, ["attn"], early_exit=False) as hooks:
            hooks.run(torch.zeros(1, 5, 4))
    assert hook_count(model) == 0
    spec = ModelSpec(name="attention", architecture="attention", input_shape=(5, 4), mean=(0.0,) * 5, std=(1.0,) * 5,
                     logits_layer="", class_names=("a", "b"), dataset=None, activations={})
    with pytest.raises(UserError, match="layer 'attn' returns a tuple, not one tensor.*the module its output goes to"):
        plan_channels(model, spec, ["attn"], batch_size=4)


class _PositionTable(nn.Module):
    """A bias table from a fixed grid, not from the input (Swin V2's cpb_mlp): batch 1 whatever the input's."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("grid", torch.linspace(-1, 1, 10).view(1, 5, 2))
        self.table, self.conv = nn.Linear(2, 3), nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.conv(x).mean((2, 3)) + self.table(self.grid).mean(1)


def test_a_layer_without_a_row_per_image_is_refused_with_the_fix():
    """Before, a channels run on it failed with 'element 0 of tensors does not require grad'."""
    model = _PositionTable().eval()
    with pytest.raises(UserError, match=r"layer 'table' gives an output of shape \(1, 5, 3\) for 4 input image\(s\): "
                                        "not one row per image.*hook a layer whose output keeps the batch first"):
        with HookRegistry(model, ["table"]) as hooks:
            hooks.run(torch.zeros(4, 3, 2, 2))
    with HookRegistry(model, ["conv"]) as hooks:
        assert hooks.run(torch.zeros(4, 3, 2, 2))["conv"].shape == (4, 3, 2, 2)
    assert hook_count(model) == 0


def test_a_layer_that_does_not_depend_on_the_input_is_refused_with_the_fix_for_one_image_too():
    """With one image the shape cannot tell a table computed from the model's own weights (Swin V2's cpb_mlp) from
    an image's output; its missing gradient can. Before, a one-channel run failed in backward ('element 0 of
    tensors does not require grad'). A pass without gradients (measuring) is left alone. The weights frozen, as
    the engine runs a model (``hooks.frozen``): else the table's gradient leads to them."""
    model = _PositionTable().eval().requires_grad_(False)
    image = torch.zeros(1, 3, 2, 2, requires_grad=True)
    with pytest.raises(UserError, match="layer 'table' does not depend on the input images.*hook a layer computed"):
        with HookRegistry(model, ["table"]) as hooks:
            hooks.run(image)
    with HookRegistry(model, ["conv"]) as hooks:
        assert hooks.run(image)["conv"].requires_grad
    with torch.no_grad(), HookRegistry(model, ["table"]) as hooks:
        assert hooks.run(image)["table"].shape == (1, 5, 3)
    assert hook_count(model) == 0



class _Tables(_PositionTable):
    """_PositionTable, its input changed in place first (a leaf that requires grad would refuse that)."""

    def forward(self, x):
        return super().forward(x.mul_(1.0))


def test_layer_all_leaves_out_layers_that_do_not_depend_on_the_input_and_says_so():
    """`introspect channels --model torchvision:swin_v2_t --layer all` picked its 24 cpb_mlp Linears, optimized the
    layers before the first and then stopped: 'layer ... does not depend on the input images'. The weights' flags
    are as they were, and nothing is left hooked."""
    from introspect.layers import select_layers

    model = _Tables().eval()
    model.table.bias.requires_grad_(False)  # one weight the user froze stays frozen, the others trainable
    flags = [p.requires_grad for p in model.parameters()]
    notes: list[str] = []
    assert select_layers(model, (3, 2, 2), "all", notes) == ["conv"]
    assert notes == ["'all' leaves out 1 layer whose output does not depend on the input (table): computed from the "
                     "model's weights alone, no image changes them"]
    assert select_layers(model, (3, 2, 2), "table,conv") == ["table", "conv"]  # named: refused where it runs
    infos = {i.name: i for i in describe_layers(model, (3, 2, 2), track_input=True)}
    assert (infos["table"].from_input, infos["conv"].from_input) == (False, True)
    assert describe_layers(model, (3, 2, 2))[0].from_input is None  # not checked: no gradients
    assert [p.requires_grad for p in model.parameters()] == flags and hook_count(model) == 0


class _SharedConv(nn.Module):
    """One conv applied twice (shared weights), in training mode: its hook sees its first call only."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, padding=1)
        self.shared = nn.Conv2d(2, 2, 3, padding=1)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.shared(torch.relu(self.shared(self.drop(self.stem(x))))).mean((2, 3))


def test_a_layer_run_more_than_once_is_named_in_a_note():
    """`channels --layer shared` on a module the forward calls twice measured its first call with no word (only
    `introspect layers` warned); named or picked by "all", the note now says so, after one frozen forward that leaves
    the model's mode, random state and hooks as they were."""
    from introspect.layers import select_layers

    model = _SharedConv().train()
    state = torch.random.get_rng_state()
    for chosen in ("shared,stem", "all"):
        notes: list[str] = []
        assert sorted(select_layers(model, (1, 4, 4), chosen, notes)) == ["shared", "stem"]
        assert notes == ["shared (2 times) runs more than once per forward pass: its channels are measured and optimized "
                         "at the first call only"]
    notes = []
    select_layers(model, (1, 4, 4), "stem", notes)
    assert notes == []
    assert model.training and model.drop.training and hook_count(model) == 0
    assert torch.equal(torch.random.get_rng_state(), state)


def test_describe_layers_restores_each_modules_mode():
    """A model in train mode whose BatchNorms the user froze (bn.eval(), as for fine-tuning) keeps them frozen."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Dropout(), nn.Linear(64, 2))
    model.train()
    model[1].eval()
    modes = {name: m.training for name, m in model.named_modules()}
    describe_layers(model, (1, 6, 6))
    assert {name: m.training for name, m in model.named_modules()} == modes


def test_a_module_whose_output_is_a_tuple_ran_in_its_place():
    """An LSTM ran between conv and fc: listed there with no shape, never as "not called" at the end."""
    from helpers import recurrent

    model, spec = recurrent()
    infos = describe_layers(model, spec.input_shape)
    assert [i.name for i in infos] == ["conv", "lstm", "fc"]
    assert infos[1].output_shape is None and infos[1].calls == 1


def test_outputs_recorded_without_a_copy_are_not_changed_by_in_place_modules():
    """Probe(clone=False) (explore's attributions) recorded bn's output, which SiLU(inplace=True) then turned into
    silu(bn): the measured silu(bn) came out silu(silu(bn))."""
    from introspect.hooks import Probe
    from introspect.models import ModelSpec
    from introspect.models.sources import measuring_fields
    from introspect.objectives import ACTIVATION_FUNCTIONS

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.SiLU(inplace=True), nn.Conv2d(4, 2, 3),
                          nn.LeakyReLU(0.2, inplace=True), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    model[1].running_mean.uniform_(-1, 1)
    spec = ModelSpec("s", "user", (1, 8, 8), (0.0,), (1.0,), "6", ("a", "b", "c"), **measuring_fields(model))
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        expected = {"0": model[:3](x), "3": model[:5](x)}
    with Probe(model, spec, ["0", "3", "6"], clone=False) as probe:
        outputs = probe(x.requires_grad_(True))
    for layer, want in expected.items():
        torch.testing.assert_close(ACTIVATION_FUNCTIONS[spec.activation(layer)](outputs[layer]), want)
    assert model[2].inplace and model[4].inplace  # restored
