"""Run folders: exclusive claims (also between processes started together), atomic files, run.json last."""
import json
import multiprocessing

import pytest

from introspect.errors import UserError
from introspect.folders import LOCK_NAME, claim_run_folder, holds_run
from introspect_cli.main import main


def _claim_and_hold(out, barrier_start, barrier_held, results):
    """Claim after every process is ready; hold the claim until every process has tried."""
    barrier_start.wait()
    try:
        run = claim_run_folder(out, "classes")
    except UserError as exc:
        results.put(("refused", str(exc)))
        barrier_held.wait()
        return
    barrier_held.wait()
    run.write_json("owner.json", {"pid": multiprocessing.current_process().pid})
    run.finish({"status": "complete"})
    results.put(("claimed", str(run.path)))


def _race(out, processes=6):
    context = multiprocessing.get_context("fork")
    start, held, results = context.Barrier(processes), context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_claim_and_hold, args=(out, start, held, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return [results.get(timeout=5) for _ in workers]


@pytest.mark.parametrize("round_", range(3))
def test_numbered_folders_are_never_shared(round_):
    outcomes = _race(None)
    folders = [path for kind, path in outcomes if kind == "claimed"]
    assert len(folders) == 6 and len(set(folders)) == 6, outcomes
    assert all(holds_run(folder) for folder in folders)


def test_one_out_folder_one_run():
    outcomes = _race("shared", processes=4)
    kinds = sorted(kind for kind, _ in outcomes)
    assert kinds == ["claimed", "refused", "refused", "refused"], outcomes
    assert all("another introspect run is writing" in text or "already holds a run" in text
               for kind, text in outcomes if kind == "refused")


def test_files_are_atomic_and_run_json_last(tmp_path):
    run = claim_run_folder(tmp_path / "r", "classes")
    with pytest.raises(OSError):
        with run.file("report.png") as path:
            path.write_bytes(b"half")
            raise OSError(28, "No space left on device")
    assert not (tmp_path / "r" / "report.png").exists()
    assert not holds_run(tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [LOCK_NAME]  # no temporary files left
    run.abandon()
    assert not (tmp_path / "r").exists()  # created by this run, nothing written: removed


def test_empty_or_broken_run_json_is_not_a_run(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "run.json").write_text("")
    assert not holds_run(folder)
    assert main(["classes", "--steps", "1", "--classes", "0", "--out", str(folder)]) == 0
    assert holds_run(folder)


def test_a_folder_of_the_users_own_files_is_not_written_into_unasked(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "report.png").write_bytes(b"my own picture")
    assert main(["classes", "--steps", "1", "--classes", "0", "--out", str(folder)]) == 2
    assert "holds files that are not a run's (report.png)" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["report.png"]
    assert (folder / "report.png").read_bytes() == b"my own picture"
    assert main(["classes", "--steps", "1", "--classes", "0", "--out", str(folder), "--force"]) == 0  # asked
    assert holds_run(folder)
    failed = tmp_path / "failed"  # a run that failed after its first file: its folder, not the user's, is reused
    failed.mkdir()
    (failed / "images.npz").write_bytes(b"")
    (failed / "report.png").write_bytes(b"")
    assert main(["classes", "--steps", "1", "--classes", "0", "--out", str(failed)]) == 0 and holds_run(failed)


def test_force_replaces_the_earlier_run_files(tmp_path):
    folder = tmp_path / "r"
    assert main(["classes", "--steps", "1", "--classes", "0", "--snapshots", "1", "--out", str(folder)]) == 0
    assert (folder / "evolution.gif").exists()
    assert main(["classes", "--steps", "1", "--classes", "0", "--out", str(folder), "--force"]) == 0
    record = json.loads((folder / "run.json").read_text())
    assert not (folder / "evolution.gif").exists() and "evolution.gif" not in record["files"]
    assert sorted(p.name for p in folder.iterdir()) == record["files"]


@pytest.mark.parametrize("argv,message", [
    (["--out", ""], "--out is empty"),
    (["--ou", "x"], "unrecognized arguments: --ou"),
    (["--forc"], "unrecognized arguments: --forc"),
])
def test_out_refusals(argv, message, capsys, tmp_path):
    (tmp_path / "report.png").write_bytes(b"mine")
    assert main(["classes", "--steps", "1", *argv]) == 2
    assert message in capsys.readouterr().err
    assert (tmp_path / "report.png").read_bytes() == b"mine" and not (tmp_path / "runs").exists()


def test_a_notebook_run_is_a_run_rerun_repeats(shipped_mnist, tmp_path):
    import introspect
    from introspect.folders import load_run

    result = introspect.visualize_classes(shipped_mnist.model, shipped_mnist.spec, [3, 8],
                                          introspect.CLASSES_DEFAULTS.replace(steps=3, seed=5))
    folder = introspect.save_run(result, loaded=shipped_mnist)
    run = load_run(folder)
    repeat = run.record["repeat"]
    assert run.kind == "classes" and run.arrays["images"].shape == (2, 1, 28, 28) and repeat["argv"] is None
    assert repeat["targets"]["classes"] == [3, 8] and repeat["settings"]["seed"] == 5
    assert main(["rerun", str(folder), "--out", "again"]) == 0
    assert (tmp_path / "again" / "images.npz").read_bytes() == (folder / "images.npz").read_bytes()


def test_a_run_from_settings_the_cli_lacks_records_no_recipe(shipped_mnist, capsys):
    import introspect

    config = introspect.RenderConfig(steps=2, image=introspect.ImageConfig(init_std=0.5))
    folder = introspect.save_run(introspect.visualize_classes(shipped_mnist.model, shipped_mnist.spec, [1], config),
                                 loaded=shipped_mnist)
    assert json.loads((folder / "run.json").read_text())["repeat"] is None
    assert main(["rerun", str(folder)]) == 2
    assert "records no way to repeat it" in capsys.readouterr().err


@pytest.mark.parametrize("make_root", ["runs is a file", "its parent is a file"])
def test_a_runs_folder_that_cannot_be_created_is_a_user_error(make_root, tmp_path, capsys):
    from introspect.folders import claim_run_folder as claim

    (tmp_path / "runs" if make_root == "runs is a file" else tmp_path / "parent").write_text("mine")
    root = "runs" if make_root == "runs is a file" else "parent/runs"
    with pytest.raises(UserError) as caught:
        claim(None, "classes", root=root)
    reason = "it is an existing file" if make_root == "runs is a file" else "'parent' is a file"
    assert str(caught.value) == f"cannot create the runs folder '{root}' ({reason}); name an output folder with out"
    if make_root == "runs is a file":
        assert main(["classes", "--steps", "1", "--classes", "0"]) == 2
        err = capsys.readouterr().err.strip()
        assert "cannot create the runs folder 'runs' (it is an existing file)" in err and "--out" in err
        assert err.count("error:") == 1 and "plan:" not in err  # refused before any work
        assert (tmp_path / "runs").read_text() == "mine"


def test_claimed_run_lets_go_on_any_exception_and_keeps_a_finished_run(tmp_path):
    from introspect.folders import claimed_run

    with pytest.raises(KeyboardInterrupt):
        with claimed_run(tmp_path / "r", "classes"):
            raise KeyboardInterrupt
    assert not (tmp_path / "r").exists()  # created by this run, nothing written: removed
    with claimed_run(tmp_path / "r", "classes") as run:
        run.write_json("owner.json", {})
        run.finish({"status": "complete"})
    assert holds_run(tmp_path / "r") and not (tmp_path / "r" / LOCK_NAME).exists()
    with claimed_run(tmp_path / "s", "classes") as run:
        run.write_json("half.json", {})
    assert (tmp_path / "s" / "half.json").exists() and not (tmp_path / "s" / LOCK_NAME).exists()


def _snapshot(value):
    """A deep copy of a result to compare with later (tensors and arrays copied)."""
    import copy

    return copy.deepcopy(value)


def _same(a, b) -> bool:
    """Equal, tensors and arrays included (NaN equal to NaN)."""
    import dataclasses

    import numpy as np
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(
            torch.nan_to_num(a), torch.nan_to_num(b)) and torch.equal(a.isnan(), b.isnan()) if a.is_floating_point() \
            else isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(_same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return a == b


def test_writers_never_change_the_results_they_write(shipped_mnist):
    from pathlib import Path

    import introspect

    model, spec = shipped_mnist.model, shipped_mnist.spec
    classes = introspect.visualize_classes(model, spec, [3, 8], introspect.CLASSES_DEFAULTS.replace(steps=2, snapshots=(1,)))
    channels = introspect.visualize_channels(model, spec, "conv1", [0, 1], introspect.CHANNELS_DEFAULTS.replace(steps=2))
    seven = Path(__file__).resolve().parents[2] / "examples" / "seven.png"
    activations = introspect.inspect_image(model, spec, introspect.load_image(seven, spec), ["conv1", "fc2"])
    for result in (classes, channels, [channels], activations):
        before = _snapshot(result)
        introspect.save_run(result, loaded=shipped_mnist)
        assert _same(before, result), type(result).__name__
