"""Objectives: composable (B,) values to maximize; regularizers are objectives on the input images."""
import torch

from introspect.engine import RenderConfig
from introspect.objectives import INPUT, blur, channel, class_logits, ink, l2, near_data, spread, total_variation
from introspect.quality import total_variation as tv


def test_objective_arithmetic():
    acts = {"conv2": torch.arange(2 * 3 * 2 * 2, dtype=torch.float).view(2, 3, 2, 2)}
    combined = 0.5 * channel("conv2", 1) + channel("conv2", 2) - channel("conv2", 0)
    expected = 0.5 * acts["conv2"][:, 1].mean((1, 2)) + acts["conv2"][:, 2].mean((1, 2)) - acts["conv2"][:, 0].mean((1, 2))
    torch.testing.assert_close(combined(acts), expected)
    assert combined.layers == ("conv2",)
    only_second = channel("conv2", 1, batch=1)(acts)
    assert only_second[0] == 0 and only_second[1] == acts["conv2"][1, 1].mean()


def test_regularizers_read_the_input_images():
    images = torch.rand(2, 1, 8, 8)
    acts = {INPUT: images}
    torch.testing.assert_close(total_variation(2.0)(acts), -2.0 * tv(images, reduction="mean"))
    torch.testing.assert_close(l2(0.5)(acts), -0.5 * images.pow(2).flatten(1).mean(1))
    flat = {INPUT: torch.full((1, 1, 8, 8), 0.3)}
    assert blur(1.0)(flat).abs().max() < 1e-7  # a flat image is its own blur
    assert total_variation(1.0).layers == () and l2(1.0).layers == ()  # no hooks needed


def test_config_adds_only_weighted_regularizers():
    base = class_logits("fc2", [0])
    assert RenderConfig().regularized(base) is base
    acts = {"fc2": torch.zeros(1, 10), INPUT: torch.rand(1, 1, 8, 8)}
    combined = RenderConfig(tv=1.0).regularized(base)
    torch.testing.assert_close(combined(acts), -tv(acts[INPUT], reduction="mean"))


def test_near_data_caps_the_gain_at_the_target_and_costs_only_the_distance_past_the_budget():
    mean, components = torch.zeros(4), torch.eye(4)[:, :2]  # the data: the first two pixels
    images = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.3, 0.4], [0.0, 0.0, 0.6, 0.8]]).view(3, 1, 2, 2)
    acts = {"fc": torch.tensor([[1.0], [3.0], [0.5]]), INPUT: images}
    objective = near_data(channel("fc", 0), torch.full((3,), 2.0), mean, components, scale=0.25, budget=1.0, weight=0.5)
    # gains 0.5, 1 (capped), 0.25; distances 0, 0.25 / 0.25 = 1 (the budget: free), 1 / 0.25 = 4 (3 past it)
    torch.testing.assert_close(objective(acts), torch.tensor([0.5, 1.0, 0.25 - 0.5 * 3]))
    assert objective.layers == ("fc",)


def test_ink_penalizes_only_images_fainter_than_the_level():
    images = torch.zeros(3, 1, 4, 4)
    images[0, 0, 1:3, 1:3] = 0.9  # ink 0.9: above the level
    images[1, 0, 1:3, 1:3] = 0.5  # ink 0.5: 0.2 short
    images[2, 0, 1:3, 1:3] = 0.7  # exactly the level
    values = ink(0.7, 10.0)({INPUT: images})
    torch.testing.assert_close(values, torch.tensor([0.0, -10 * 0.2 ** 2, 0.0]))
    faint = images[1:2].clone().requires_grad_(True)
    ink(0.7, 10.0)({INPUT: faint}).sum().backward()
    assert faint.grad[0, 0, 1, 1] > 0  # raising the objective brightens the ink


def test_channel_with_the_activation_is_what_visualize_channels_maximizes(tiny_model, tiny_spec, monkeypatch):
    """One channel objective: introspect.channel with the spec's activation gives the same values, image by
    image, as the objective visualize_channels hands the engine."""
    from introspect.channels import visualize_channels

    captured = []
    original = RenderConfig.render

    def capture(self, model, objective, *args, **kwargs):
        captured.append(objective)
        return original(self, model, objective, *args, **kwargs)

    monkeypatch.setattr(RenderConfig, "render", capture)
    visualize_channels(tiny_model, tiny_spec, "conv2", [1, 4, 9], RenderConfig(steps=1))
    acts = {"conv2": torch.randn(3, 64, 7, 7, generator=torch.Generator().manual_seed(0)), INPUT: torch.rand(3, 1, 28, 28)}
    activation = tiny_spec.activation("conv2")
    assert activation == "relu"
    mine = torch.stack([channel("conv2", c, activation=activation)(acts)[i] for i, c in enumerate([1, 4, 9])])
    torch.testing.assert_close(captured[0](acts), mine, rtol=0, atol=0)
    relu_only = torch.relu(acts["conv2"][:, 4]).mean((1, 2))
    assert not torch.allclose(channel("conv2", 4, activation=activation)(acts), relu_only)  # the leak term is there


def test_spread_repels_only_copies_closer_than_their_target():
    """Two groups of two: the first pair 1 apart (below its target 2: each pays 1 - 1/2), the second 3 apart
    (past its target 2: free)."""
    images = torch.zeros(4, 1, 1, 2)
    images[1, 0, 0, 0], images[3, 0, 0, 1] = 1.0, 3.0
    value = spread(torch.full((4,), 2.0), 2, 4.0)({INPUT: images})
    torch.testing.assert_close(value, torch.tensor([-2.0, -2.0, 0.0, 0.0]))
    images.requires_grad_(True)
    spread(torch.full((4,), 2.0), 2, 4.0)({INPUT: images}).sum().backward()
    assert images.grad[0, 0, 0, 0] < 0 < images.grad[1, 0, 0, 0]  # maximizing pushes the close pair apart
    assert bool(torch.isfinite(images.grad).all()) and bool((images.grad[2:] == 0).all())
