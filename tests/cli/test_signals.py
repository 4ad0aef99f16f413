"""SIGINT and SIGTERM through real processes, waiting on events (stderr lines), never on time."""
import json
import os
import signal
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import start_and_wait
from introspect_cli.main import main

SEVEN = Path(__file__).resolve().parents[2] / "examples" / "seven.png"


def test_sigterm_finishes_the_step_and_saves(tmp_path):
    out = tmp_path / "run"
    process, _ = start_and_wait(["classes", "--steps", "1000000", "--progress", "--out", str(out)], "classes: step 1/")
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=120)[1]
    assert process.returncode == 143, rest
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == f"interrupted at step {record['steps_done']}" and record["steps_done"] >= 1
    assert len(record["history"]) == record["steps_done"]
    assert "SIGTERM" in rest and "Traceback" not in rest


def test_interrupt_during_startup_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "slow.py").write_text(textwrap.dedent("""
        import sys, time
        from torch import nn
        print("loading the model", file=sys.stderr, flush=True)
        while True:
            time.sleep(0.01)
        class Net(nn.Module):
            pass
    """))
    process, _ = start_and_wait(["classes", "--model", f"{tmp_path / 'slow.py'}:Net", "--size", "8"],
                                "loading the model", cwd=tmp_path)
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=120)[1]
    assert process.returncode == 130
    assert rest.strip() == "introspect: interrupted (SIGINT)"
    assert not (tmp_path / "runs").exists()


def test_interrupt_during_dataset_pass_leaves_no_folder(monkeypatch, capsys):
    import introspect.channel_runs as channels_cmd

    real = channels_cmd.dataset_examples_many

    def interrupted_pass(*args, callback, **kwargs):
        def first_batch(done, total):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives during the pass
            callback(done, total)
        return real(*args, callback=first_batch, **kwargs)

    monkeypatch.setattr(channels_cmd, "dataset_examples_many", interrupted_pass)
    assert main(["channels", "--layer", "conv1", "--steps", "2", "--out", "run"]) == 130
    err = capsys.readouterr().err
    assert "introspect: interrupted (SIGINT)" in err and "Traceback" not in err
    assert not os.path.exists("run")


@pytest.mark.parametrize("chunked", [False, True], ids=["one chunk", "a chunk a channel"])
def test_interrupt_during_visualizations_saves_the_activations_and_stops(chunked, monkeypatch, capsys):
    """activations --with-visualizations: Ctrl-C during a layer's optimization stops it after that step; the run
    keeps the activations and the images so far, the later layers get none, and it says so (exit 130). A layer
    whose channels take several chunks keeps those of the chunks that ran: its channels and images agree."""
    import introspect.channels as channels
    import introspect_cli.commands.activations as activations_cmd

    if chunked:  # a budget of one image: each channel its own chunk, as for a big model's deep layer
        monkeypatch.setattr(channels, "memory_budget", lambda device: 1)

    real, calls = activations_cmd.visualize_channels, []

    def interrupted(*args, callback, **kwargs):
        calls.append(args[2])

        def on_step(step, total, values):
            if step == 3:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the first layer's optimization
            callback(step, total, values)
        return real(*args, callback=on_step, **kwargs)

    monkeypatch.setattr(activations_cmd, "visualize_channels", interrupted)
    argv = ["activations", "--image", str(SEVEN), "--layer", "conv1,conv2", "--with-visualizations", "--steps", "50",
            "--out", "run"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted (SIGINT) at step 3 of 50 of conv1's visualizations (conv2: none)" in err
    assert "Traceback" not in err and calls == ["conv1"]
    record = json.loads(open("run/run.json").read())
    assert record["status"] == "interrupted at step 3" and record["steps_done"] == 3
    assert list(record["visualizations"]) == ["conv1"] and record["not_visualized"] == ["conv2"]
    data = np.load("run/activations.npz")
    assert data["conv2"].shape == (64, 24, 24) and set(data["visualized_layers"].tolist()) == {"conv1"}
    kept = record["visualizations"]["conv1"]["channels"]
    assert len(kept) == (1 if chunked else 3)
    assert data["visualized_channels"].tolist() == kept and len(data["visualized_images"]) == len(kept)
    with Image.open("run/report.png") as image:
        image.load()


def test_a_signal_after_the_visualizations_still_writes_the_run(monkeypatch, capsys):
    """A Ctrl-C right after the visualizations are done, before the writing starts, keeps the finished run."""
    import introspect_cli.commands.activations as activations_cmd

    real = activations_cmd.strongest_visualizations

    def then_signalled(*args, **kwargs):
        done = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return done

    monkeypatch.setattr(activations_cmd, "strongest_visualizations", then_signalled)
    argv = ["activations", "--image", str(SEVEN), "--layer", "conv1", "--with-visualizations", "--steps", "2",
            "--out", "run"]
    assert main(argv) == 130
    assert "after the work was done" in capsys.readouterr().err
    record = json.loads(open("run/run.json").read())
    assert record["status"] == "complete" and record["visualizations"]["conv1"]["steps_done"] == 2


def test_signals_while_writing_are_deferred(monkeypatch, capsys):
    import introspect.report as report

    real = report.save_figure

    def save_while_signalled(fig, path):
        os.kill(os.getpid(), signal.SIGINT)  # two Ctrl-C during the write
        os.kill(os.getpid(), signal.SIGINT)
        real(fig, path)

    monkeypatch.setattr(report, "save_figure", save_while_signalled)
    assert main(["classes", "--steps", "2", "--out", "run"]) == 130
    record = json.loads(open("run/run.json").read())
    assert record["status"] == "complete"
    with Image.open("run/report.png") as image:
        image.load()  # a whole, readable PNG
    assert "after the work was done" in capsys.readouterr().err


def test_model_sys_exit_is_a_failure(tmp_path, capsys):
    (tmp_path / "quitter.py").write_text(textwrap.dedent("""
        import sys
        from torch import nn
        class AtImport(nn.Module):
            pass
        class InForward(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)
            def forward(self, x):
                sys.exit(0)
    """))
    argv = ["classes", "--model", f"{tmp_path / 'quitter.py'}:InForward", "--input-shape", "1,2,2", "--out", "r"]
    assert main(argv) == 1
    assert "called sys.exit(0)" in capsys.readouterr().err
    assert not os.path.exists("r")


def test_model_prints_do_not_break_json(tmp_path, capsys):
    (tmp_path / "chatty.py").write_text(textwrap.dedent("""
        from torch import nn
        class Chatty(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)
            def forward(self, x):
                print("hello from forward")
                return self.fc(x.flatten(1))
    """))
    argv = ["classes", "--model", f"{tmp_path / 'chatty.py'}:Chatty", "--input-shape", "1,2,2", "--steps", "2", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["exit_code"] == 0
    assert "hello from forward" in captured.err
