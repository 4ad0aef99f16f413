import json
import signal

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import hook_count, start_and_wait
from introspect import RenderConfig, visualize_classes
from introspect.channels import parse_channel_list
from introspect.errors import UserError
from introspect.layers import resolve_layer
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


def test_model_and_global_state_untouched(shipped_mnist):
    model = shipped_mnist.model
    params = {k: v.clone() for k, v in model.state_dict().items()}
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    visualize_classes(model, shipped_mnist.spec, [1, 2], RenderConfig(steps=3))
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert not model.training and hook_count(model) == 0
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())


def test_json_and_quiet(capsys):
    assert main(["classes", "--steps", "2", "--classes", "0", "--quiet", "--json", "--out", "q"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    summary = json.loads(captured.out)
    assert summary["exit_code"] == 0 and summary["images"][0]["class"] == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 5)), min_size=1, max_size=5))
def test_channel_ranges_property(ranges):
    count = 45
    text = ",".join(f"{lo}-{lo + width}" if width else str(lo) for lo, width in ranges)
    expected = list(dict.fromkeys(c for lo, width in ranges for c in range(lo, lo + width + 1)))
    if max(expected) >= count:
        try:
            parse_channel_list(text, count)
        except UserError:
            return
        raise AssertionError("out-of-range channel accepted")
    assert parse_channel_list(text, count) == expected


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=12))
def test_channel_list_never_crashes(text):
    try:
        channels = parse_channel_list(text, 10)
    except UserError:
        return
    assert channels and all(0 <= c < 10 for c in channels)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._", max_size=16))
def test_layer_names_resolve_or_fail_clearly(name):
    import torchvision

    model = torchvision.models.resnet18(weights=None)
    modules = dict(model.named_modules())
    try:
        module = resolve_layer(model, name)
    except UserError as exc:
        assert name not in modules and exc.settings == ("layers_command",)
        return
    assert module is modules[name]
