"""rerun: the recorded files by absolute path and digest, code only with --trust, never over a run."""
import json
from pathlib import Path
import os
import shutil
import textwrap

import numpy as np
import pytest

from introspect.models import builtin_checkpoint_path
from introspect_cli.main import main

NET = textwrap.dedent("""
    from torch import nn
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
        def forward(self, x):
            return self.fc(x.flatten(1))
""")


def _record(folder) -> dict:
    return json.loads((folder / "run.json").read_text())


def test_records_inputs_and_reruns_them_from_anywhere(tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(builtin_checkpoint_path("mnist"), work / "weights.pt")
    os.chdir(work)
    assert main(["classes", "--checkpoint", "weights.pt", "--steps", "2", "--classes", "1", "--out", "a"]) == 0
    inputs = _record(work / "a")["inputs"]
    assert inputs["checkpoint"]["path"] == str(work / "weights.pt") and len(inputs["checkpoint"]["sha256"]) == 64
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)  # no weights.pt here: the recorded absolute path is used
    assert main(["rerun", str(work / "a"), "--out", "b"]) == 0
    assert (work / "a" / "images.npz").read_bytes() == (elsewhere / "b" / "images.npz").read_bytes()
    err = capsys.readouterr().err
    assert f"loads checkpoint {work / 'weights.pt'}" in err and "rerun: introspect classes --checkpoint" in err


def test_changed_or_missing_input_is_refused(tmp_path, capsys):
    shutil.copy(builtin_checkpoint_path("mnist"), "weights.pt")
    assert main(["classes", "--checkpoint", "weights.pt", "--steps", "1", "--classes", "1", "--out", "a"]) == 0
    shutil.copy(builtin_checkpoint_path("fashion-mnist"), "weights.pt")
    assert main(["rerun", "a"]) == 2
    assert "changed since the run" in capsys.readouterr().err and not os.path.exists("runs")
    assert main(["rerun", "a", "--allow-changed", "--out", "b"]) == 0
    os.remove("weights.pt")
    assert main(["rerun", "a"]) == 2
    assert "which is missing now" in capsys.readouterr().err


def test_code_loading_runs_need_trust(tmp_path, capsys):
    (tmp_path / "net.py").write_text(NET)
    assert main(["classes", "--model", "net.py:Net", "--input-shape", "1,2,2", "--steps", "1", "--out", "a"]) == 0
    assert main(["rerun", "a"]) == 2
    err = capsys.readouterr().err
    assert "loads code" in err and "net.py is imported" in err and "--trust" in err
    decoy = tmp_path / "other"
    decoy.mkdir()
    (decoy / "net.py").write_text("raise RuntimeError('the decoy ran')\n")
    os.chdir(decoy)  # a different net.py in the current folder is never imported
    assert main(["rerun", str(tmp_path / "a"), "--trust", "--out", "b"]) == 0
    assert _record(decoy / "b")["inputs"]["model_file"]["path"] == str(tmp_path / "net.py")


@pytest.mark.parametrize("argv,message", [
    (["classes", "--ou", "victim", "--forc"], "does not parse"),
    (["train", "--out", "victim.txt", "--force"], "repeats classes, channels, activations runs"),
    (["classes", "--trust-checkpoint"], "loads code"),
    (["channels", "--resume", "victim"], "continues or launches other runs"),
    (["channels", "--layer", "conv1", "--distributed=2"], "continues or launches other runs"),
])
def test_hostile_records_are_refused(argv, message, tmp_path, capsys):
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "run.json").write_text('{"mine": true}')
    (tmp_path / "victim.txt").write_text("mine")
    (tmp_path / "sent").mkdir()
    (tmp_path / "sent" / "run.json").write_text(json.dumps({"argv": argv, "inputs": {}}))
    assert main(["rerun", "sent"]) == 2
    assert message in capsys.readouterr().err
    assert (tmp_path / "victim" / "run.json").read_text() == '{"mine": true}'
    assert (tmp_path / "victim.txt").read_text() == "mine" and not (tmp_path / "runs").exists()


def test_recorded_out_is_ignored(tmp_path):
    assert main(["classes", "--steps", "1", "--classes", "0", "--out", "a", "--force"]) == 0
    before = (tmp_path / "a" / "run.json").read_text()
    assert main(["rerun", "a"]) == 0
    assert (tmp_path / "a" / "run.json").read_text() == before
    assert (tmp_path / "runs" / "classes-001" / "run.json").exists()


def test_rerun_on_another_device_overrides_the_recorded_one(tmp_path, capsys):
    """A run recorded on one device repeats on the machine at hand: --device is appended (last one wins)."""
    assert main(["classes", "--steps", "2", "--classes", "3", "--device", "cpu", "--out", "a"]) == 0
    capsys.readouterr()
    assert main(["rerun", "a", "--out", "b", "--device", "cpu"]) == 0
    assert "--device cpu --out b" in capsys.readouterr().err
    assert (tmp_path / "a" / "images.npz").read_bytes() == (tmp_path / "b" / "images.npz").read_bytes()
    assert main(["rerun", "a", "--out", "c", "--device", "tpu"]) == 2
    assert not (tmp_path / "c").exists()


def test_rerun_repeats_a_candidates_run_byte_for_byte(tmp_path):
    assert main(["classes", "--steps", "4", "--classes", "1,7", "--candidates", "3", "--out", "a"]) == 0
    assert main(["rerun", "a", "--out", "b"]) == 0
    assert (tmp_path / "a" / "images.npz").read_bytes() == (tmp_path / "b" / "images.npz").read_bytes()
    first, again = _record(tmp_path / "a"), _record(tmp_path / "b")
    assert again["candidates"] == 3 and again["images"] == first["images"]
    assert len(first["candidate_margins"]) == 3 and len(first["candidate_margins"][0]) == 2


def test_rerun_repeats_a_notebook_candidates_run(shipped_mnist, tmp_path):
    import introspect

    result = introspect.visualize_classes(shipped_mnist.model, shipped_mnist.spec, [3, 8],
                                          introspect.CLASSES_DEFAULTS.replace(steps=3, seed=5), candidates=2)
    folder = introspect.save_run(result, loaded=shipped_mnist)
    assert _record(folder)["repeat"]["targets"]["candidates"] == 2
    assert main(["rerun", str(folder), "--out", "again"]) == 0
    assert (tmp_path / "again" / "images.npz").read_bytes() == (folder / "images.npz").read_bytes()
    assert "--candidates" in _record(tmp_path / "again")["repeat"]["argv"]



def test_rerun_repeats_a_no_data_candidates_run(shipped_mnist, tmp_path):
    """A checkpoint without a prior or a dataset: classes run without data (NO_DATA_CANDIDATES kept by their margin
    under random transforms), and its rerun makes the same images."""
    from introspect.classes import NO_DATA_CANDIDATES
    from introspect.models.checkpoint import save_checkpoint
    from introspect.params import without_prior

    save_checkpoint(tmp_path / "bare.pt", shipped_mnist.model, without_prior(shipped_mnist.spec).replace(dataset=None))
    assert main(["classes", "--checkpoint", "bare.pt", "--classes", "3,7", "--steps", "2", "--out", "a"]) == 0
    assert main(["rerun", "a", "--out", "b"]) == 0
    first, again = _record(tmp_path / "a"), _record(tmp_path / "b")
    assert first["candidates"] == again["candidates"] == NO_DATA_CANDIDATES
    transforms = first["settings"]["transforms"]
    assert transforms["scale"] == 0.5 and again["settings"]["transforms"] == transforms  # NO_DATA_TRANSFORMS
    assert [image["candidate"] for image in again["images"]] == [image["candidate"] for image in first["images"]]
    with np.load(tmp_path / "a" / "images.npz") as old, np.load(tmp_path / "b" / "images.npz") as new:
        assert np.abs(old["images"].astype(int) - new["images"].astype(int)).max() <= 1

def test_rerun_repeats_a_notebook_no_data_run(shipped_mnist, tmp_path):
    """A no-data classes run made in a notebook records the default transforms, from which the command line chooses
    the no-data ones again, and reruns to the same images; other transforms, or a model with a prior, record none."""
    from dataclasses import replace

    import introspect
    from introspect.models.checkpoint import save_checkpoint
    from introspect.params import without_prior
    from introspect.records import repeat_of

    save_checkpoint(tmp_path / "bare.pt", shipped_mnist.model, without_prior(shipped_mnist.spec).replace(dataset=None))
    loaded = introspect.load_model("mnist", tmp_path / "bare.pt")
    result = introspect.visualize_classes(loaded.model, loaded.spec, [3, 7], introspect.CLASSES_DEFAULTS.replace(steps=2),
                                          candidates=2)
    assert result.config.transforms.scale == 0.5  # NO_DATA_TRANSFORMS
    folder = introspect.save_run(result, loaded=loaded)
    repeat = _record(folder)["repeat"]
    assert repeat is not None and repeat["settings"]["transforms"] == introspect.CLASSES_DEFAULTS.to_record()["transforms"]
    assert main(["rerun", str(folder), "--out", "again"]) == 0
    again = _record(tmp_path / "again")
    assert again["settings"]["transforms"] == _record(folder)["settings"]["transforms"]
    with np.load(folder / "images.npz") as old, np.load(tmp_path / "again" / "images.npz") as new:
        assert np.abs(old["images"].astype(int) - new["images"].astype(int)).max() <= 1
    noisy = replace(result, config=result.config.replace(transforms=replace(result.config.transforms, noise=0.3)))
    assert repeat_of("classes", noisy, loaded) is None  # transforms of the caller's own
    assert repeat_of("classes", result, shipped_mnist) is None  # the command line would use its stored prior


OLD_RUNS = Path(__file__).resolve().parents[1] / "assets" / "old-runs"


@pytest.mark.parametrize("name", ["cli-classes", "cli-channels", "notebook-classes"])
def test_runs_written_by_an_earlier_version_rerun_and_explore(name, tmp_path, capsys):
    """Stored run folders as introspect wrote them before run.json kept one repeat record (see the README
    beside them): top-level argv and load (CLI) or a recipe (notebook)."""
    shutil.copytree(OLD_RUNS / name, tmp_path / "old")
    before = _record(tmp_path / "old")
    assert "repeat" not in before and ("argv" in before or "recipe" in before)
    assert main(["rerun", "old", "--out", "again"]) == 0
    again = _record(tmp_path / "again")
    command = before["argv"][0] if before.get("argv") else before["recipe"]["command"]
    assert again["status"] == "complete" and again["repeat"]["command"] == command
    with np.load(tmp_path / "old" / "images.npz") as old, np.load(tmp_path / "again" / "images.npz") as new:
        assert old["images"].shape == new["images"].shape
        assert (np.abs(old["images"].astype(int) - new["images"].astype(int)) <= 2).mean() >= 0.99
    assert main(["explore", "old", "--out", "site"]) == 0
    assert (tmp_path / "site" / "index.html").is_file()


def test_a_recipe_from_before_the_ink_term_reruns_without_it(tmp_path, capsys):
    shutil.copytree(OLD_RUNS / "notebook-classes", tmp_path / "old")
    record = _record(tmp_path / "old")
    del record["recipe"]["ink"]
    (tmp_path / "old" / "run.json").write_text(json.dumps(record))
    assert main(["rerun", "old", "--out", "again"]) == 0
    assert "--ink 0.0" in capsys.readouterr().err
    assert _record(tmp_path / "again")["settings"]["ink"] == 0.0


def test_a_run_made_under_other_defaults_reruns_with_its_own_settings(tmp_path, capsys):
    assert main(["classes", "--steps", "2", "--classes", "3", "--out", "a"]) == 0
    record = _record(tmp_path / "a")
    assert main(["rerun", "a", "--out", "same"]) == 0  # today's defaults: nothing to keep
    assert "defaults changed" not in capsys.readouterr().err
    # as an older introspect wrote it: FFT image, TV 20, a pull of 10, no ink term
    settings = {key: value for key, value in record["settings"].items() if key != "ink"}
    settings.update(tv=20.0, pull=10.0, image={**settings["image"], "parametrization": "fft"})
    old = {key: value for key, value in record.items() if key != "repeat"}  # the older record: argv and settings
    (tmp_path / "a" / "run.json").write_text(json.dumps({**old, "argv": record["repeat"]["argv"], "settings": settings}))
    assert main(["rerun", "a", "--out", "b"]) == 0
    err = capsys.readouterr().err
    assert "keeping its settings: --param fft --tv 20.0 --pull 10.0 --ink 0.0" in err
    assert _record(tmp_path / "b")["settings"]["tv"] == 20.0 and _record(tmp_path / "b")["settings"]["ink"] == 0.0


def test_an_image_folder_is_read_from_where_the_run_was_and_a_replaced_picture_is_noticed(tmp_path, capsys):
    from PIL import Image

    pictures = tmp_path / "work" / "pictures" / "7"
    pictures.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(pictures / f"{i}.png")
    os.chdir(tmp_path / "work")
    assert main(["classes", "--images", "pictures", "--steps", "1", "--classes", "3", "--out", "a", "--quiet"]) == 0
    assert _record(tmp_path / "work" / "a")["inputs"]["images"]["path"] == str(pictures.parent)
    os.chdir(tmp_path)  # elsewhere, where no ./pictures exists: the recorded absolute folder is read
    assert main(["rerun", str(tmp_path / "work" / "a"), "--out", "b", "--quiet"]) == 0
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(pictures / "1.png")  # one replaced
    assert main(["rerun", str(tmp_path / "work" / "a"), "--out", "c"]) == 2
    assert "images" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_a_changed_folder_rerun_says_which_picture_the_run_read(tmp_path, capsys):
    """activations --images DIR --index N rerun with --allow-changed after a picture was added before it analysed
    another picture with only "images changed" said; the run now records its file, and rerun names it."""
    from PIL import Image

    (tmp_path / "pics" / "b").mkdir(parents=True)
    Image.new("L", (28, 28), 0).save(tmp_path / "pics" / "b" / "seven.png")
    assert main(["activations", "--images", "pics", "--index", "0", "--layer", "fc2", "--out", "a", "--quiet"]) == 0
    assert _record(tmp_path / "a")["input"]["file"] == "b/seven.png"
    (tmp_path / "pics" / "a").mkdir()
    Image.new("L", (28, 28), 255).save(tmp_path / "pics" / "a" / "new.png")  # now index 0
    capsys.readouterr()
    assert main(["rerun", "a", "--out", "b", "--allow-changed"]) == 0
    assert "warning: the run read 'b/seven.png' as --index 0" in capsys.readouterr().err
    assert _record(tmp_path / "b")["input"]["file"] == "a/new.png"


def test_a_channels_run_recorded_with_snapshots_reruns_without_them(tmp_path, capsys):
    """Channels runs once took --snapshots (and kept nothing): a run recorded with it reruns, the flag left out."""
    assert main(["channels", "--layer", "conv1", "--channels", "0", "--steps", "1", "--out", "a"]) == 0
    record = _record(tmp_path / "a")
    argv = record["repeat"]["argv"]
    record["repeat"]["argv"] = [*argv[:1], "--snapshots", "1", *argv[1:]]
    (tmp_path / "a" / "run.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["rerun", "a", "--out", "b"]) == 0
    assert "the recorded --snapshots is left out" in capsys.readouterr().err
    assert (tmp_path / "a" / "images.npz").read_bytes() == (tmp_path / "b" / "images.npz").read_bytes()
