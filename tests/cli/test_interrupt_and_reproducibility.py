"""The command line interrupted (SIGINT writes a partial run), repeated (same command, same bytes; rerun
never writes over its original) and scripted (--json with --quiet)."""
import json
import signal

from cli_helpers import start_and_wait
from introspect_cli.main import main


def test_sigint_writes_partial_run(tmp_path):
    out = tmp_path / "run"
    process, _ = start_and_wait(["classes", "--steps", "1000000", "--progress", "--out", str(out)], "classes: step 1/")
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=120)[1]
    assert process.returncode == 130, rest
    record = json.loads((out / "run.json").read_text())
    assert record["status"].startswith("interrupted at step ")
    assert record["steps_done"] >= 1
    assert (out / "report.png").exists() and (out / "images.npz").exists()
    assert "interrupted at step" in rest and "Traceback" not in rest


def test_same_command_same_bytes(tmp_path):
    for name in ("a", "b"):
        assert main(["classes", "--steps", "6", "--seed", "3", "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / "a" / "images.npz").read_bytes() == (tmp_path / "b" / "images.npz").read_bytes()
    assert main(["rerun", str(tmp_path / "a" / "run.json"), "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "a" / "images.npz").read_bytes() == (tmp_path / "c" / "images.npz").read_bytes()


def test_rerun_never_writes_over_the_original(tmp_path):
    assert main(["classes", "--steps", "2", "--classes", "4", "--out", str(tmp_path / "a")]) == 0
    before = (tmp_path / "a" / "run.json").read_text()
    assert main(["rerun", str(tmp_path / "a")]) == 0  # into a new numbered folder
    assert (tmp_path / "a" / "run.json").read_text() == before
    assert (tmp_path / "runs" / "classes-001" / "images.npz").exists()


def test_json_and_quiet(capsys):
    assert main(["classes", "--steps", "2", "--classes", "0", "--quiet", "--json", "--out", "q"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    summary = json.loads(captured.out)
    assert summary["exit_code"] == 0 and summary["images"][0]["class"] == 0


def test_sigint_stops_a_dry_run_not_only_the_layer_being_timed(monkeypatch, capsys):
    """The timing steps swallow an interrupt as 'stop after this step' (``render``): the dry run must still end."""
    import introspect.channels as channels

    timed, real = [], channels.visualize_chunk

    def interrupted_while_timing(model, spec, plan, index, config, neuron, on_step):
        def step(*values):
            on_step(*values)
            if not timed:
                timed.append(plan.layer)
                signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of the first layer's timing
        return real(model, spec, plan, index, config, neuron, step)

    monkeypatch.setattr(channels, "visualize_chunk", interrupted_while_timing)
    assert main(["channels", "--layer", "conv1,conv2,fc1", "--dry-run", "--steps", "4"]) == 130
    err = capsys.readouterr().err
    assert timed == ["conv1"] and "interrupted (SIGINT)" in err and "estimate: fc1" not in err


def test_random_weights_are_the_same_in_every_run_and_its_rerun(small_net_file, tmp_path):
    """A user's class without a checkpoint (RANDOM WEIGHTS): each run drew other weights, so the same command,
    its rerun and the processes of a --distributed run each saw another network."""
    import torch

    model = ["--model", f"{small_net_file}:SmallNet", "--size", "8"]
    torch.manual_seed(1)
    for name in ("a", "b"):
        torch.rand(1)  # the global generator elsewhere
        assert main(["classes", *model, "--steps", "2", "--candidates", "1", "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / "a" / "images.npz").read_bytes() == (tmp_path / "b" / "images.npz").read_bytes()
    assert main(["rerun", str(tmp_path / "a" / "run.json"), "--trust", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "a" / "images.npz").read_bytes() == (tmp_path / "c" / "images.npz").read_bytes()



def test_a_recorded_model_is_built_as_the_command_line_built_it(small_net_file, tmp_path):
    """--resume loads a run's model from its record: the same random weights whatever the global generator."""
    import torch

    from introspect.repeat import load_recorded, read_repeat

    assert main(["channels", "--model", f"{small_net_file}:SmallNet", "--size", "8", "--layer", "block1.0",
                 "--steps", "2", "--dataset", "none", "--out", str(tmp_path / "a")]) == 0
    load = read_repeat(json.loads((tmp_path / "a" / "run.json").read_text())).load
    first = load_recorded(load, trust=True).model.state_dict()
    torch.rand(5)  # the global generator moved on
    second = load_recorded(load, trust=True).model.state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_a_run_recorded_with_size_and_a_disagreeing_input_shape_still_loads(small_net_file, tmp_path):
    """Before the two flags were refused together, --input-shape won: such a recorded run reloads with its shape."""
    from introspect.repeat import load_recorded

    load = {"source": f"{small_net_file}:SmallNet", "meta": {"size": 12, "input_shape": [1, 8, 8]}}
    assert tuple(load_recorded(load, trust=True).spec.input_shape) == (1, 8, 8)
