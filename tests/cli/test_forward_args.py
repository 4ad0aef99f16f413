"""--forward-arg, TorchScript leaves in a Python model, 1-D --input-shape and failed (NaN) runs on the CLI."""
import json
import textwrap

from introspect_cli.main import main

WRAPPED = textwrap.dedent("""
    import torch
    from torch import nn

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(1, 2, 5, stride=4)
            self.fc = nn.Linear(2, 3)

        def forward(self, x, sample_rate: int):
            return self.fc(torch.relu(self.conv(x)).mean(-1) * (sample_rate / 16000.0))

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.front = nn.Conv1d(1, 2, 3, padding=1)
            self.back = nn.Conv1d(2, 1, 1)
            self.net = torch.jit.script(Inner())

        def forward(self, x, sample_rate: int):
            return self.net(self.back(self.front(x)), sample_rate)

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 3)

        def forward(self, x):
            return self.fc(x) * float("nan")
""")


def test_layers_and_channels_of_a_wrapped_torchscript_module_with_a_forward_argument(tmp_path, capsys):
    (tmp_path / "wrapped.py").write_text(WRAPPED)
    model = ["--model", f"{tmp_path / 'wrapped.py'}:Wrapper", "--input-shape", "1,64", "--forward-arg", "sample_rate=16000"]
    assert main(["layers", *model, "--json"]) == 0
    captured = capsys.readouterr()
    layers = {row["name"]: row for row in json.loads(captured.out)["layers"]}
    assert layers["net"]["type"] == "TorchScript Inner" and layers["net"]["output_shape"] == []
    assert "net.conv" not in layers and layers["front"]["output_shape"] == [2, 1, 64]
    assert "TorchScript modules take no forward hooks" in captured.err
    out = tmp_path / "run"
    assert main(["channels", *model, "--layer", "back", "--steps", "2", "--out", str(out)]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and (out / "report.png").is_file()
    assert record["repeat"]["load"]["meta"]["forward_args"] == [["sample_rate", 16000]]
    assert "--forward-arg" in record["command"]  # rerun replays the recorded command line
    assert main(["channels", *model, "--layer", "net", "--steps", "2", "--out", str(tmp_path / "bad")]) == 2


def test_forward_arg_must_be_name_equals_literal(tmp_path, capsys):
    (tmp_path / "wrapped.py").write_text(WRAPPED)
    for bad in ("sample_rate", "sample_rate=sixteen"):
        try:
            code = main(["layers", "--model", f"{tmp_path / 'wrapped.py'}:Wrapper", "--input-shape", "1,64",
                         "--forward-arg", bad])
        except SystemExit as exc:
            code = exc.code
        assert code == 2


def test_a_run_whose_objective_is_nan_for_every_image_fails(tmp_path, capsys):
    (tmp_path / "wrapped.py").write_text(WRAPPED)
    out = tmp_path / "run"
    code = main(["classes", "--model", f"{tmp_path / 'wrapped.py'}:Broken", "--input-shape", "64", "--steps", "20",
                 "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "failed" in err and "from the start, before any update" in err and "--lr" not in err  # no lr helps there
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and record["non_finite"]["all"]


def test_forward_args_json_cannot_hold_are_recorded_as_literals_and_read_back_the_same():
    """Tuples, bytes, sets, complex numbers, int-keyed dicts and inf go into run.json as Python literals and come
    back as the very same values (a rerun passes what the run passed); what no literal repeats is refused."""
    import math

    import pytest
    import torch

    from introspect.errors import UserError
    from introspect.repeat import forward_args_of, record_forward_args
    from introspect_cli.options import forward_arg

    typed = ["sample_rate=16000", "window=(256, 128)", "tag=b'ab'", "bands={1, 2}", "gain=1j", "table={1: 'a'}",
             "limit=1e999", "names=['a', 'b']", "scale=0.5"]
    pairs = [forward_arg(text) for text in typed]
    recorded = json.loads(json.dumps(record_forward_args(pairs), allow_nan=False))
    assert recorded[0] == ["sample_rate", 16000] and recorded[1] == ["window", {"literal": "(256, 128)"}]
    again = forward_args_of(recorded)
    assert [name for name, _ in again] == [name for name, _ in pairs]
    for (_, before), (_, after) in zip(pairs, again):
        assert type(before) is type(after) and before == after
    assert math.isinf(again[6][1])
    with pytest.raises(UserError, match="cannot be recorded") as caught:
        record_forward_args([("window", (float("nan"), 2))])
    assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match="cannot be recorded"):
        record_forward_args([("weights", torch.ones(2))])
    with pytest.raises(UserError, match="not a Python literal"):
        forward_args_of([["x", {"literal": "__import__('os')"}]])
