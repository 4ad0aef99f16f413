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
    assert run.kind == "classes" and run.arrays["images"].shape == (2, 1, 28, 28) and run.record["argv"] is None
    assert run.record["recipe"]["classes"] == [3, 8] and run.record["recipe"]["seed"] == 5
    assert main(["rerun", str(folder), "--out", "again"]) == 0
    assert (tmp_path / "again" / "images.npz").read_bytes() == (folder / "images.npz").read_bytes()


def test_a_run_from_settings_the_cli_lacks_records_no_recipe(shipped_mnist, capsys):
    import introspect

    config = introspect.RenderConfig(steps=2, image=introspect.ImageConfig(init_std=0.5))
    folder = introspect.save_run(introspect.visualize_classes(shipped_mnist.model, shipped_mnist.spec, [1], config),
                                 loaded=shipped_mnist)
    assert json.loads((folder / "run.json").read_text())["recipe"] is None
    assert main(["rerun", str(folder)]) == 2
    assert "records no command to repeat" in capsys.readouterr().err
