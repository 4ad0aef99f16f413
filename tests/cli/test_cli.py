import json

import numpy as np
import pytest
import torch

import introspect
from introspect.data import load_dataset
from introspect.models import load_checkpoint
from introspect_cli.main import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert introspect.__version__ in capsys.readouterr().out


def test_bad_model_exits_2_with_names(capsys):
    assert main(["layers", "--model", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and "mnist, fashion-mnist" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("columns", [None, "40"])
def test_layers_table(columns, capsys, monkeypatch):
    """Every column shows whole, however narrow the terminal (or a pipe's default width): none collapses."""
    if columns:
        monkeypatch.setenv("COLUMNS", columns)
    assert main(["layers"]) == 0
    out = capsys.readouterr().out
    assert all(title in out for title in ("type", "output shape", "channels/units", "a channel is", "measured at"))
    for name, kind, shape, measured in [("conv1", "Conv2d", "32×26×26", "conv1 → relu"),
                                        ("conv2", "Conv2d", "64×24×24", "conv2 → relu"),
                                        ("fc1", "Linear", "128", "fc1 → relu"), ("fc2", "Linear", "10", "fc2 (raw output)")]:
        line = next(line for line in out.splitlines() if f" {name} " in line)
        assert f" {kind} " in line and shape in line and measured in line


BLOCKS = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.block(x).mean((2, 3)))
"""


def test_layers_table_says_a_relu_ended_block_is_measured_after_its_relu(tmp_path, capsys):
    (tmp_path / "blocks.py").write_text(BLOCKS)
    assert main(["layers", "--model", f"{tmp_path / 'blocks.py'}:Net", "--input-shape", "1,8,8", "--json"]) == 0
    rows = {row["name"]: row["measured_at"] for row in json.loads(capsys.readouterr().out)["layers"]}
    assert rows["block"] == "block → relu" and rows["block.2"] == "block.2 → relu"
    assert rows["block.0"] == "block.0 → block.1 → block.2" and rows["fc"] == "fc (raw output)"


def test_train_few_batches_writes_loadable_checkpoint(tmp_path, capsys):
    out = tmp_path / "tiny.pt"
    assert main(["train", "--epochs", "1", "--max-batches", "2", "--out", str(out)]) == 0
    loaded = load_checkpoint(out)
    assert loaded.spec.dataset == "mnist" and loaded.spec.spectrum is not None
    assert main(["train", "--epochs", "1", "--max-batches", "2", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def test_train_refuses_an_out_it_cannot_write_before_training(tmp_path, capsys, monkeypatch):
    """A read-only folder (root writes through permission bits, so the file system's refusal is what is made here)
    is found before training, not after it: nothing is trained to be lost."""
    import errno
    import pathlib

    import introspect_cli.commands.train as command

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(pathlib.Path, "touch", read_only)
    monkeypatch.setattr(command, "load_dataset", lambda *a, **k: pytest.fail("loaded data to train"))
    assert main(["train", "--epochs", "1", "--max-batches", "2", "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert "cannot write --out" in err and "Read-only file system" in err and not list(tmp_path.iterdir())


def test_evaluate_shows_its_progress(capsys):
    assert main(["evaluate", "--split", "test", "--progress"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evaluating: ")]
    done = [tuple(map(int, line.split()[1].split("/"))) for line in lines]
    assert len(done) > 1 and done[-1][0] == done[-1][1] and done == sorted(done)


def test_training_changes_weights(tiny_model, tiny_spec):
    from introspect.training import train

    data = load_dataset("mnist", "train")
    before = [p.detach().clone() for p in tiny_model.parameters()]
    train(tiny_model, tiny_spec, data, epochs=1, max_batches=3)
    assert all(not torch.equal(a, b) for a, b in zip(before, tiny_model.parameters()))


@pytest.mark.parametrize("model,threshold", [("mnist", 0.975), ("fashion-mnist", 0.90)])
def test_shipped_checkpoints_reach_stated_accuracy(model, threshold, capsys):
    assert main(["evaluate", "--model", model]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("accuracy:"))
    assert float(line.split()[1].rstrip("%")) / 100 >= threshold


def test_classes_end_to_end(tmp_path):
    out = tmp_path / "run"
    argv = ["classes", "--steps", "4", "--snapshots", "2,4", "--format", "png,pdf", "--out", str(out)]
    assert main(argv) == 0
    for name in ("report.png", "report.pdf", "images.npz", "run.json", "evolution.gif"):
        assert (out / name).stat().st_size > 0, name
    data = np.load(out / "images.npz")
    assert data["images"].dtype == np.uint8 and data["images"].shape == (10, 1, 28, 28)
    assert list(data["labels"]) == list(range(10)) and data["scores"].shape == (10,)
    assert data["snapshots"].shape == (2, 10, 1, 28, 28)
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["settings"]["steps"] == 4
    assert len(record["model"]["checkpoint_sha256"]) == 64
    assert len(record["history"]) == 4 and len(record["images"]) == 10
    assert record["command"].startswith("introspect classes")


def test_classes_by_name_and_numbered_runs(tmp_path):
    assert main(["classes", "--model", "fashion-mnist", "--classes", "sneaker,Bag", "--steps", "2"]) == 0
    assert main(["classes", "--model", "fashion-mnist", "--classes", "7", "--steps", "2"]) == 0
    first = np.load(tmp_path / "runs" / "classes-001" / "images.npz")
    assert list(first["labels"]) == [7, 8]
    assert (tmp_path / "runs" / "classes-002" / "run.json").exists()


def test_classes_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    assert main(["classes", "--classes", "10", "--steps", "2"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["classes", "--classes", "cat", "--steps", "2"]) == 2
    assert "unknown class 'cat'" in capsys.readouterr().err
    assert main(["classes", "--steps", "0"]) == 2
    assert not (tmp_path / "runs").exists()


def test_explicit_out_with_run_needs_force(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["classes", "--steps", "2", "--classes", "1", "--out", str(out)]) == 0
    before = (out / "images.npz").read_bytes()
    assert main(["classes", "--steps", "3", "--classes", "1", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "images.npz").read_bytes() == before
    assert main(["classes", "--steps", "3", "--classes", "1", "--out", str(out), "--force"]) == 0


def test_any_int_is_a_training_seed():
    from introspect.training import torch_seed

    assert [torch_seed(s) for s in (0, 1, 2**64 - 1)] == [0, 1, 2**64 - 1]
    hashed = {torch_seed(s) for s in (2**64, -1, -(2**64), 2**200)}
    assert len(hashed) == 4 and all(0 <= s < 2**64 for s in hashed)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_classes_candidates_below_1_are_refused(value, tmp_path, capsys):
    assert main(["classes", "--candidates", value, "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--candidates" in err and "at least 1" in err
    assert not (tmp_path / "runs").exists()


def test_classes_candidates_plan_summary_and_record(tmp_path, capsys):
    assert main(["classes", "--classes", "1,7", "--candidates", "3", "--dry-run", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["plan"]["images"] == 6 and "6 images (2 classes × 3 candidates)" in captured.err
    assert main(["classes", "--classes", "1,7", "--candidates", "3", "--steps", "2", "--out", "a", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    record = json.loads((tmp_path / "a" / "run.json").read_text())
    assert summary["candidates"] == 3 and record["candidates"] == 3 and "--candidates" in record["repeat"]["argv"]
    for image in summary["images"]:
        assert image["runner_up"] != image["class"] and image["candidate"] in (0, 1, 2)
        assert image["margin"] == pytest.approx(image["logit"] - image["runner_up_logit"])
    assert record["images"] == summary["images"]
    data = np.load(tmp_path / "a" / "images.npz")
    assert data["images"].shape == (2, 1, 28, 28) and list(data["candidate"]) == [i["candidate"] for i in summary["images"]]


def test_progress_reads_a_gpu_mean_only_at_intervals():
    """The progress line's mean objective: every step on the CPU; off the CPU only every READ_EVERY steps (each
    read waits for the device), the last text staying meanwhile."""
    from introspect_cli.output import READ_EVERY, mean_info

    assert mean_info("mean objective", 3, torch.tensor([1.0, 2.0]), ".2f") == {"info": "mean objective 1.50"}
    elsewhere = torch.empty(2, device="meta")  # a device that is not the CPU, with nothing to read
    assert mean_info("mean objective", 3, elsewhere, ".2f") == {}
    assert READ_EVERY > 1


def test_a_progress_line_estimates_the_time_left_from_its_own_steps(monkeypatch):
    """A layer waiting behind others (its task added with theirs at the start) and its first step's warm-up do not
    count: the time left is the rate between its own updates, none at its first."""
    import io

    from rich.console import Console

    from introspect_cli import output

    clock = iter([0.0, 0.0, 600.0, 601.0, 602.0])  # add two tasks; the second's first step comes 10 min later
    monkeypatch.setattr(output.time, "monotonic", lambda: next(clock))
    lines = output.LineProgress(Console(file=io.StringIO(), width=200), every_step=False)
    lines.add_task("a: optimizing", total=10, unit="step")
    waiting = lines.add_task("b: optimizing", total=10, unit="step")
    for step in (1, 2, 3):
        lines.update(waiting, completed=step)
    said = lines.console.file.getvalue().splitlines()
    assert said == ["b: optimizing: step 1/10", "b: optimizing: step 2/10, about 8.0 s left", "b: optimizing: step 3/10, about 7.0 s left"]


def test_the_health_line_names_what_to_change_from_how_far_the_logits_moved():
    """The advice follows the class logits, not the objective's history: a constant head, logits that barely moved,
    or logits that moved but not far enough; how far they moved is asked only when a class is weak."""
    from types import SimpleNamespace

    from introspect_cli.commands.classes import classes_health

    def result(p, margins):
        return SimpleNamespace(probabilities=torch.tensor(p), labels=[0, 1], class_names=["a", "b"],
                               margins=torch.tensor(margins))

    def never():
        raise AssertionError("asked how far the logits moved though every class is sure")

    assert classes_health(result([0.9, 0.95], [2.0, 3.0]), never) is None
    assert "does not depend on the input" in classes_health(result([0.5, 0.1], [0.0, 0.0]), lambda: torch.zeros(2))
    # a random MobileNetV3's logits are about 3e-10: was "barely moved: try --start grey", which changes nothing
    vanishing = classes_health(result([0.001, 0.001], [3e-10, -2e-10]), lambda: torch.zeros(2))
    assert "the same to within 1e-06: the output does not depend on the input" in vanishing
    assert "barely moved" in classes_health(result([0.3, 0.9], [-1.0, 2.0]), lambda: torch.tensor([0.01, 3.0]))
    assert "more --steps" in classes_health(result([0.3, 0.9], [-1.0, 2.0]), lambda: torch.tensor([0.5, 3.0]))
    # what to start from instead names only what the run did not use
    for start, parametrization, advice in [("grey (auto)", "fft", "try --start dark, or --param pixel"),
                                           ("dark", "pixel", "try --start grey"),
                                           ("data mean logit (auto)", "basis", "try --start grey (or dark), or --param pixel")]:
        stuck = SimpleNamespace(**vars(result([0.3, 0.9], [-1.0, 2.0])), start=start, parametrization=parametrization)
        assert classes_health(stuck, lambda: torch.tensor([0.01, 3.0])).endswith(advice)


def test_a_classes_run_reads_from_a_gpu_only_at_intervals(tmp_path, monkeypatch):
    """The whole command on the CUDA path (``host_reads_free`` patched False): 32 more steps read or copy only
    at the intervals, the NaN check and the progress line's mean every 16 steps (tests/helpers.py HostTraffic)."""
    from introspect import devices

    from helpers import HostTraffic

    monkeypatch.setattr(devices, "host_reads_free", lambda device: False)
    counts = {}
    for steps in (32, 64):
        with HostTraffic() as counted:
            assert main(["classes", "--steps", str(steps), "--out", str(tmp_path / str(steps)), "--quiet"]) in (0, None)
        counts[steps] = counted.count
    assert counts[64] - counts[32] == 2 * (32 // 16)  # at steps 48 and 64: the NaN check and the progress line


def test_the_health_line_of_one_sigmoid_logit_does_not_say_every_class_scores_the_same():
    """A binary classifier's one raw logit (a sigmoid's) has no runner-up, its margin NaN: a logit that moved
    little was 'no logit moved and every class scores the same: the output does not depend on the input'."""
    from types import SimpleNamespace

    from introspect_cli.commands.classes import classes_health

    one = SimpleNamespace(probabilities=torch.tensor([0.42]), labels=[0], class_names=["0"],
                          margins=torch.tensor([float("nan")]))
    line = classes_health(one, lambda: torch.tensor([0.02]))
    assert "barely moved" in line and "does not depend on the input" not in line


def test_the_prior_line_says_when_the_flags_choose_the_start_and_the_image(tmp_path, capsys):
    """`--start grey --param pixel` on a model whose prior comes from its normalization printed "images start at its
    normalization mean with a 1/f spectrum": the run did neither."""
    import textwrap

    (tmp_path / "net.py").write_text(textwrap.dedent("""
        from torch import nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 3)
            def forward(self, x):
                return self.fc(self.conv(x).mean((2, 3)))
    """))
    base = ["classes", "--model", f"{tmp_path / 'net.py'}:Net", "--size", "16", "--mean", "0.4", "--std", "0.2",
            "--steps", "2", "--classes", "0"]
    assert main(base + ["--out", str(tmp_path / "a"), "--start=grey", "--param", "pixel"]) == 0
    assert "; --start grey and --param pixel given: the images start and are made as they say" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "b")]) == 0
    assert "given:" not in capsys.readouterr().err


def test_a_layer_none_of_whose_live_channels_was_reached_gets_a_health_line():
    """Six live channels, six not reached, no ratio: no health line, while a layer at 80% got one."""
    from types import SimpleNamespace

    from introspect_cli.commands.channels import channels_health

    none_reached = SimpleNamespace(share_ratio_at_least_1=None, live=6, not_reached=6)
    assert channels_health("g.conv", none_reached).startswith("health: g.conv: 6 of 6 live channels were not reached")
    assert "only 80%" in channels_health("c", SimpleNamespace(share_ratio_at_least_1=0.8, live=5, not_reached=0))
    assert channels_health("c", SimpleNamespace(share_ratio_at_least_1=1.0, live=5, not_reached=0)) is None
    assert channels_health("c", SimpleNamespace(share_ratio_at_least_1=None, live=0, not_reached=0)) is None


def test_the_layers_table_says_where_every_module_is_measured(tmp_path, capsys):
    """A block, a BatchNorm or an activation module had a blank "measured at" (it read as not measurable), while
    `introspect channels --layer` on it measured it raw."""
    assert main(["layers", "--model", "torchvision:resnet18", "--size", "32"]) == 0
    rows = {line.split("│")[1].strip(): line.split("│")[6].strip() for line in capsys.readouterr().out.splitlines()
            if line.startswith("│")}
    assert rows["avgpool"] == "avgpool (raw output)" and rows["layer1.0"] == "layer1.0 → relu"
    assert all(rows.values())
