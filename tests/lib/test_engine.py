import pytest
import torch

from introspect.engine import RenderConfig, render
from introspect.models import ModelSpec
from introspect.objectives import class_logits
from introspect.params import PixelImage, image_generators
from introspect.transforms import TransformConfig

from helpers import hook_count

FAST = RenderConfig(steps=6)


def run(model, spec, config=FAST, keys=(0, 1, 2), objective=None):
    objective = objective or class_logits("fc2", keys)
    return config.render(model, objective, spec, list(keys))


def test_images_in_range_and_shape(tiny_model, tiny_spec):
    result = run(tiny_model, tiny_spec)
    assert result.images.shape == (3, 1, 28, 28)
    assert 0 <= result.images.min() and result.images.max() <= 1
    assert result.history.shape == (6, 3)
    assert result.steps_done == 6 and result.interrupted_at is None


def test_model_left_exactly_as_it_was(tiny_model, tiny_spec):
    tiny_model.train()
    tiny_model.fc1.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    flags = [p.requires_grad for p in tiny_model.parameters()]
    rng = torch.get_rng_state()
    run(tiny_model, tiny_spec)
    assert tiny_model.training and all(m.training for m in tiny_model.modules())
    assert [p.requires_grad for p in tiny_model.parameters()] == flags
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in tiny_model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    assert hook_count(tiny_model) == 0


def test_eval_mode_during_run(tiny_model, tiny_spec):
    seen = []
    handle = tiny_model.conv1.register_forward_pre_hook(lambda m, i: seen.append(tiny_model.training))
    tiny_model.train()
    try:
        run(tiny_model, tiny_spec)
    finally:
        handle.remove()
    assert seen and not any(seen)


def test_hooks_removed_after_failure(tiny_model, tiny_spec):
    def fail(step, total, values):
        if step == 2:
            raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        render(tiny_model, class_logits("fc2", [0]), PixelImage((1, 28, 28), image_generators(0, [0])),
               transforms=tiny_spec.normalize(), steps=6, on_step=fail)
    assert hook_count(tiny_model) == 0
    assert all(p.requires_grad for p in tiny_model.parameters())


def test_objective_increases(tiny_model, tiny_spec):
    result = run(tiny_model, tiny_spec, RenderConfig(steps=30, transforms=TransformConfig(jitter=0, scale=0, rotate=0)))
    assert (result.history[-1] > result.history[0]).all()


def test_same_seed_same_images_other_seed_differs(tiny_model, tiny_spec):
    a, b = run(tiny_model, tiny_spec), run(tiny_model, tiny_spec)
    assert torch.equal(a.images, b.images)
    c = run(tiny_model, tiny_spec, FAST.replace(seed=1))
    assert not torch.equal(a.images, c.images)


def test_batching_does_not_change_an_image(tiny_model, tiny_spec):
    together = run(tiny_model, tiny_spec, keys=(0, 1, 2))
    alone = run(tiny_model, tiny_spec, keys=(1,))
    torch.testing.assert_close(together.images[1:2], alone.images, atol=1e-5, rtol=0)


def test_non_finite_objective_stops_only_that_image(tiny_model, tiny_spec):
    base = class_logits("fc2", [0, 1])
    from introspect.objectives import Objective

    def poisoned(acts):
        values = base(acts)
        return torch.stack([values[0], values[1] * float("nan")])

    result = run(tiny_model, tiny_spec, keys=(0, 1), objective=Objective(poisoned, ["fc2"], "poisoned"))
    assert result.stopped == [1]
    assert torch.isfinite(result.images).all()


def test_the_cpu_s_shorter_step_gives_the_bytes_of_the_device_path(tiny_model, tiny_spec, monkeypatch):
    """While every image is finite the CPU steps on -sum(values), checked on the host each step; the device path keeps
    its NaN flags on the device. Both give the same bytes, also when an image fails halfway and the CPU falls back
    to the device path's masking for the rest of the run."""
    from introspect import devices
    from introspect.objectives import Objective

    base = class_logits("fc2", [0, 1, 2])
    steps = []

    def fails_at_step_4(acts):
        values = base(acts)
        steps.append(None)
        return values * torch.tensor([1.0, float("nan") if len(steps) % 8 >= 4 else 1.0, 1.0])

    config = RenderConfig(steps=8, tv=1.0)
    results = []
    for free in (True, False):
        steps.clear()
        monkeypatch.setattr(devices, "host_reads_free", lambda device, free=free: free)
        results.append(run(tiny_model, tiny_spec, config, objective=Objective(fails_at_step_4, ["fc2"], "fails")))
    cpu, device = results
    assert cpu.stopped == device.stopped == [1] and cpu.failed_at == device.failed_at == {1: 4}
    assert torch.equal(cpu.images, device.images) and torch.equal(cpu.history.nan_to_num(), device.history.nan_to_num())
    assert not torch.equal(cpu.images[0], cpu.images[1])


def test_interrupt_returns_partial_result(tiny_model, tiny_spec):
    def interrupt(step, total, values):
        if step == 3:
            raise KeyboardInterrupt

    parts = RenderConfig().parts(tiny_spec, [0])
    result = render(tiny_model, class_logits("fc2", [0]), parts.param, transforms=parts.transforms, steps=20,
                    on_step=interrupt)
    assert result.interrupted_at == 3 and result.images.shape == (1, 1, 28, 28)
    assert hook_count(tiny_model) == 0


def test_render_differs_for_seeds_that_used_to_alias(tiny_model, tiny_spec):
    config = FAST.replace(steps=2)
    images = {s: run(tiny_model, tiny_spec, config.replace(seed=s), keys=(0,)).images for s in (0, 2**32, -1)}
    assert not torch.equal(images[0], images[2**32]) and not torch.equal(images[0], images[-1])
    assert not torch.equal(images[2**32], images[-1])


def test_amp_and_channels_last_paths_on_every_device(device):
    from torch import nn

    from introspect.classes import visualize_classes

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    spec = ModelSpec("rgb", "user", (3, 16, 16), (0.5,) * 3, (0.25,) * 3, "4", ("a", "b", "c", "d"))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    for amp in (False, True):
        result = visualize_classes(model, spec, config=RenderConfig(steps=4, device=device, amp=amp))
        assert result.images.shape == (4, 3, 16, 16) and torch.isfinite(result.logits).all()
    assert next(model.parameters()).device.type == "cpu" and hook_count(model) == 0
    assert all(torch.equal(v, weights[k]) and v.is_contiguous() for k, v in model.state_dict().items())


class ViewsAConvOutput(torch.nn.Module):
    """A hand-written 3-channel net that flattens a conv's output with ``.view``, which channels-last maps refuse
    (their strides do not flatten), with a BatchNorm whose running statistics a forward in train mode would change."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.view(x.size(0), -1))


def test_a_model_that_views_a_conv_output_runs_in_its_own_layout():
    from introspect.engine import runs_channels_last

    torch.manual_seed(0)
    model = ViewsAConvOutput().train()
    spec = ModelSpec("views", "user", (3, 8, 8), (0.5,) * 3, (0.25,) * 3, "fc", ("a", "b", "c"))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert not runs_channels_last(model, spec.input_shape, "cpu")
    assert model.training and all(p.requires_grad for p in model.parameters()) and hook_count(model) == 0
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # BatchNorm's statistics too
    config = FAST.replace(steps=3)
    images = run(model, spec, config, keys=(0, 1, 2), objective=class_logits("fc", (0, 1, 2))).images
    # the default for 3-channel inputs (channels-last) fell back to the model's layout: the same as asking for it
    assert torch.equal(images, run(model, spec, config.replace(channels_last=False), objective=class_logits(
        "fc", (0, 1, 2))).images)
    flattening = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(144, 3))
    assert runs_channels_last(flattening, spec.input_shape, "cpu")  # reshape-based flattening runs in it


def test_channels_last_asked_for_and_not_applied_is_said():
    """channels_last=True on a model that cannot run in that layout runs in its own, and the result says so; the
    default's fallback, and a model that runs in it, say nothing."""
    model = ViewsAConvOutput().eval()
    spec = ModelSpec("views", "user", (3, 8, 8), (0.5,) * 3, (0.25,) * 3, "fc", ("a", "b", "c"))
    objective = class_logits("fc", (0, 1, 2))
    asked = run(model, spec, FAST.replace(steps=2, channels_last=True), objective=objective)
    assert any("channels_last=True was not applied" in note for note in asked.notes)
    assert not any("channels_last" in note for note in run(model, spec, FAST.replace(steps=2), objective=objective).notes)
    runs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(144, 3))
    applied = run(runs, spec, FAST.replace(steps=2, channels_last=True), objective=class_logits("2", (0, 1, 2)))
    assert not any("channels_last" in note for note in applied.notes)


class RunsOutOfMemoryOnce(torch.nn.Module):
    """A conv net whose first forward finds the device full."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3)
        self.full = True

    def forward(self, x):
        if self.full:
            self.full = False
            raise torch.OutOfMemoryError("out of memory")
        return self.conv(x).flatten(1)


def test_a_full_device_is_not_remembered_as_a_layout_the_model_cannot_run():
    """runs_channels_last remembered any failure for the model's life: one OOM (a busy GPU) then ran every later render
    in the slower layout. Only a failure of the layout itself is remembered."""
    from introspect.engine import runs_channels_last

    model = RunsOutOfMemoryOnce()
    assert not runs_channels_last(model, (3, 8, 8), "cpu")
    assert runs_channels_last(model, (3, 8, 8), "cpu")  # asked again: it runs


def test_channels_examples_and_activations_on_every_device(device):
    """The caller's model stays on the CPU while the work runs on ``device`` (a copy when it differs)."""
    from torch import nn

    from introspect.activations import ImageInput, inspect_image
    from introspect.channels import dataset_examples, visualize_channels
    from introspect.data import ImageDataset

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    spec = ModelSpec("gray", "user", (1, 12, 12), (0.5,), (0.25,), "4", ("a", "b", "c"))
    data = ImageDataset("toy", "train", torch.randint(0, 256, (10, 1, 12, 12), dtype=torch.uint8),
                        torch.zeros(10, dtype=torch.long), ("a",), "toy")
    examples = dataset_examples(model, spec, "0", data, k=2, device=device)
    result = visualize_channels(model, spec, "0", config=RenderConfig(steps=2, device=device), examples=examples)
    inspected = inspect_image(model, spec, ImageInput(torch.rand(1, 12, 12), "noise"), ["0", "4"], device)
    assert result.images.shape == (4, 1, 12, 12) and examples.top_indices.shape == (4, 2)
    assert inspected.predicted in (0, 1, 2) and inspected.saliency.shape == (1, 12, 12)
    assert next(model.parameters()).device.type == "cpu" and hook_count(model) == 0


class MyParam(torch.nn.Module):
    """A caller's own parametrization: two free images through a sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.raw = torch.nn.Parameter(torch.zeros(2, 1, 28, 28))

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.raw)


def my_fn(images):
    return (images - 0.5) / 0.5


def test_render_from_the_callers_parts_is_drawn_and_saved(tiny_model, tmp_path):
    """No spec, no keys: the batch comes from the param; the result names its parts, and figure and
    save_run take it."""
    import json

    import introspect
    from introspect.objectives import total_variation

    objective = class_logits("fc2", [3, 7]) + total_variation(0.1)
    result = render(tiny_model, objective, MyParam(), transforms=my_fn, steps=5)
    assert result.images.shape == (2, 1, 28, 28) and result.history.shape == (5, 2)
    assert (result.objective, result.param, result.transforms) == (objective.name, "MyParam", ("my_fn",))
    assert result.regularizers == ("total_variation(0.1)",)
    from matplotlib.image import BboxImage

    assert len(introspect.figure(result).findobj(BboxImage)) == 2  # both images drawn
    folder = introspect.save_run(result, tmp_path / "run")
    assert {"images.npz", "report.png", "run.json"} <= {p.name for p in folder.iterdir()}
    record = json.loads((folder / "run.json").read_text())
    assert record["command_name"] == "render" and record["param"] == "MyParam" and record["transforms"] == ["my_fn"]
    assert introspect.load_run(folder).arrays["images"].shape == (2, 1, 28, 28)


def test_figure_and_save_run_refuse_what_they_do_not_take(tmp_path):
    import introspect

    with pytest.raises(TypeError, match="RenderResult"):
        introspect.figure({"images": None})
    with pytest.raises(TypeError, match="RenderResult"):
        introspect.save_run("runs/x", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_config_parts_end_with_the_normalization_and_name_the_regularizers(tiny_model, tiny_spec):
    config = RenderConfig(steps=2, tv=1.0)
    parts = config.parts(tiny_spec, [0, 1])
    assert [type(t).__name__ for t in parts.transforms] == ["RandomAffine", "Normalize"]
    result = config.render(tiny_model, class_logits("fc2", [0, 1]), tiny_spec, [0, 1])
    assert result.param == "fft" and result.transforms == ("random_affine", "normalize")
    assert result.regularizers == ("total_variation(1)",)


def _adam_pair(reference_options: dict, steps: int = 20, skipped: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Our Adam and torch.optim's on the same start and loss; at the steps ``skipped`` the parameter has no gradient."""
    from introspect.engine import Adam

    g = torch.Generator().manual_seed(0)
    start = torch.randn(3, 1, 8, 8, generator=g)
    ours, theirs = start.clone().requires_grad_(), start.clone().requires_grad_()
    mine, reference = Adam([ours], lr=0.05), torch.optim.Adam([theirs], lr=0.05, **reference_options)
    for step in range(steps):
        for p, optimizer in ((ours, mine), (theirs, reference)):
            optimizer.zero_grad()
            if step not in skipped:
                (p.sin() * p).sum().backward()
            optimizer.step()
    return ours, theirs


def test_own_adam_steps_as_torch_optim_adam_fused():
    """engine.Adam (no torch.optim import at run time) takes torch.optim.Adam(fused=True)'s steps: the same bytes, also
    when a parameter has no gradient at some steps (each counts its own steps)."""
    for skipped in ((), (2, 3)):
        ours, theirs = _adam_pair({"fused": True}, skipped=skipped)
        assert torch.equal(ours, theirs) and not torch.equal(ours, _adam_pair({}, steps=0)[0])


def test_own_adam_without_the_fused_kernel_steps_as_the_single_tensor_path(monkeypatch):
    from introspect import engine

    monkeypatch.setitem(engine.FUSED_ADAM, ("cpu", torch.float32), False)
    for skipped in ((), (2, 3)):
        ours, theirs = _adam_pair({"foreach": False}, skipped=skipped)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_own_adam_falls_back_for_one_step_when_the_kernel_refuses_it(monkeypatch):
    """A kernel that refuses a tensor (a RuntimeError: not for this dtype or layout, say) costs that step the formula
    written out, not every later run in the process; one that is missing altogether is not asked again."""
    from introspect import engine

    calls = []

    def refuses(*args, **kwargs):
        calls.append(None)
        raise RuntimeError("not for this layout")

    monkeypatch.setattr(engine, "_fused_adam", refuses)
    ours, theirs = _adam_pair({"foreach": False}, steps=3)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert len(calls) == 3 and ("cpu", torch.float32) not in engine.FUSED_ADAM

    def missing(*args, **kwargs):
        calls.append(None)
        raise NotImplementedError("no kernel for this backend")

    monkeypatch.setattr(engine, "_fused_adam", missing)
    monkeypatch.setattr(engine, "FUSED_ADAM", {})
    calls.clear()
    _adam_pair({"foreach": False}, steps=3)
    assert len(calls) == 1 and engine.FUSED_ADAM == {("cpu", torch.float32): False}


def test_a_step_waits_for_no_gpu(tiny_spec, monkeypatch):
    """The CUDA path on the CPU (``host_reads_free`` patched False): with every per-step piece a run can have (the
    redirected ReLU, the random affine with input noise, the data-style and diversity objectives, the prior's
    terms), a step reads nothing back and copies nothing from the host; only the NaN check every CHECK_EVERY
    steps does. With reads free (the CPU) the ReLU's check reads every step, which the count sees."""
    from introspect import devices, hooks
    from introspect.engine import CHECK_EVERY, adam
    from introspect.objectives import blur, channels, ink, near_data, spread, total_variation, toward
    from introspect.transforms import Normalize, RandomAffine

    from helpers import HostTraffic

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 24 * 24, 10)).eval()

    def traffic(steps: int) -> int:
        keys = [0, 1, 2, 3]
        measured = channels("2", [0, 0, 1, 1], activation="relu")
        components = torch.linalg.qr(torch.randn(784, 5, generator=torch.Generator().manual_seed(0)))[0]
        objective = (near_data(measured, torch.ones(4), torch.full((784,), 0.2), components, 1.0, 1.8, 0.05)
                     + spread(torch.ones(4), 2, 1.0) + toward(torch.full((1, 28, 28), 0.2), 0.1) + blur(0.1)
                     + total_variation(1.0) + ink(0.8, 1.0))
        param = PixelImage((1, 28, 28), image_generators(0, keys))
        transforms = [RandomAffine.for_keys(TransformConfig(noise=0.1), 0, keys), Normalize.of(tiny_spec)]
        with hooks.redirected_relus(model), HostTraffic() as counted:
            render(model, objective, param, transforms=transforms, optimizer=adam(0.05), steps=steps)
        return counted.count

    monkeypatch.setattr(devices, "host_reads_free", lambda device: False)
    assert traffic(4 * CHECK_EVERY) - traffic(2 * CHECK_EVERY) == 2  # the NaN checks at steps 48 and 64
    monkeypatch.undo()
    assert traffic(4 * CHECK_EVERY) - traffic(2 * CHECK_EVERY) >= 2 * CHECK_EVERY


def test_a_render_imports_nothing_heavy():
    """A backward given a gradient tensor imports sympy (0.6 s, a sixth of the main command) for its shape check:
    render's backward is a scalar's."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from introspect.engine import render\n"
            "from introspect.objectives import class_logits\n"
            "from introspect.params import PixelImage, image_generators\n"
            "model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))\n"
            "render(model, class_logits('1', [0, 2]), PixelImage((1, 4, 4), image_generators(0, [0, 1], 0)), steps=2)\n"
            "print('sympy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_scalar_objective_still_renders_every_image():
    """An objective that returns one number for the batch (as lucid's do) drives every image, as it always did."""
    from introspect.objectives import INPUT, Objective

    brighter = Objective(lambda a: a[INPUT].mean(), [], "mean brightness")
    param = PixelImage((1, 4, 4), image_generators(0, [0, 1], 0))
    start = param().detach()
    result = render(torch.nn.Sequential(torch.nn.Flatten()), brighter, param, steps=4)
    assert (result.images.flatten(1).mean(1) > start.flatten(1).mean(1)).all()


def test_a_snapshot_is_the_image_after_that_step(tiny_model, tiny_spec):
    """--snapshots 2,4,8 --steps 8 drew "step 8" two grey levels off the final image: each snapshot was the image
    before its step's update. Step k is now the image after k updates, so the last is the final image."""
    result = run(tiny_model, tiny_spec, FAST.replace(steps=4, snapshots=(1, 4)))
    assert torch.equal(result.snapshots[4], result.images)
    assert not torch.equal(result.snapshots[1], result.images)
    start = run(tiny_model, tiny_spec, FAST.replace(steps=1))
    assert torch.equal(result.snapshots[1], start.images)  # after one update: a one-step run's image


def test_a_regularizer_not_finite_from_the_start_is_named_not_the_model(tiny_model, tiny_spec):
    """A term that reads only the images (a regularizer of the caller's) failing before any update: the message
    blames that term, not the model's output."""
    from introspect.objectives import INPUT, Objective

    broken = Objective(lambda a: a[INPUT].flatten(1).mean(1).log() * float("nan"), [], "broken_prior")
    result = run(tiny_model, tiny_spec, keys=(0, 1), objective=class_logits("fc2", [0, 1]) + broken)
    message = str(result.failure())
    assert result.failed and result.failed_terms == ("broken_prior",)
    assert "in broken_prior" in message and "reads only the images" in message and "model's output" not in message
    healthy = run(tiny_model, tiny_spec, keys=(0, 1), objective=class_logits("fc2", [0, 1]) * float("nan"))
    assert "model's output" in str(healthy.failure())
