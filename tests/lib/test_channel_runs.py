"""The channels run as a library call: the same run as the CLI (sharded too), resumable, and refusing any
manifest or part file that does not belong to it."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from introspect.channel_runs import (MANIFEST, RunListener, part_path, read_manifest, resume_channels, run_channels)
from introspect.channels import CHANNELS_DEFAULTS
from introspect.errors import UserError

CONFIG = CHANNELS_DEFAULTS.replace(steps=2)
ARGS = dict(channels="0-5", config=CONFIG, batch_size=2)


class StopInItem(RunListener):
    """Ctrl-C during work item ``item`` (the items before it are saved)."""

    def __init__(self, item: int) -> None:
        self.item = item

    def step(self, item, step, values):
        if item.id == self.item:
            raise KeyboardInterrupt


@pytest.fixture
def reference(tmp_path, tiny_model, tiny_spec):
    done = run_channels(tiny_model, tiny_spec, ["conv1", "fc1"], tmp_path / "reference", **ARGS)
    assert done.complete and [r.layer for r in done.results] == ["conv1", "fc1"]
    return (tmp_path / "reference" / "images.npz").read_bytes()


@pytest.fixture
def stopped(tmp_path, tiny_model, tiny_spec):
    done = run_channels(tiny_model, tiny_spec, ["conv1", "fc1"], tmp_path / "run", listener=StopInItem(2), **ARGS)
    assert not done.complete and done.status.startswith("interrupted")
    assert sorted(p.name for p in (tmp_path / "run" / "parts").iterdir()) == ["item-00000.pt", "item-00001.pt"]
    return tmp_path / "run"


def test_an_interrupted_run_resumes_to_the_same_bytes(stopped, reference, tiny_model, tiny_spec):
    done = resume_channels(stopped, tiny_model, tiny_spec)
    assert done.complete and done.record["resumed"] == {"items_redone": 4, "items_kept": 2}
    assert (stopped / "images.npz").read_bytes() == reference


def _edit_manifest(folder, change, redigest=False):
    import hashlib

    from introspect.channel_runs import _canonical

    manifest = json.loads((folder / MANIFEST).read_text())
    change(manifest)
    if redigest:
        body = {k: v for k, v in manifest.items() if k != "digest"}
        manifest["digest"] = hashlib.sha256(_canonical(body)).hexdigest()
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_a_manifest_edited_after_the_run_is_refused(stopped, tiny_model, tiny_spec):
    _edit_manifest(stopped, lambda m: m["settings"].update(steps=5))
    with pytest.raises(UserError, match="changed after the run wrote it"):
        resume_channels(stopped, tiny_model, tiny_spec)


def test_parts_of_another_plan_are_refused_even_with_a_recomputed_digest(stopped, tiny_model, tiny_spec):
    _edit_manifest(stopped, lambda m: m["settings"].update(seed=7), redigest=True)
    with pytest.raises(UserError, match="does not belong to this run"):
        resume_channels(stopped, tiny_model, tiny_spec)


def test_another_model_is_refused(stopped, tiny_model, tiny_spec):
    other = type(tiny_model)()
    with pytest.raises(UserError, match="weights differ"):
        resume_channels(stopped, other, tiny_spec)
    with pytest.raises(UserError, match="metadata or image prior differ"):
        resume_channels(stopped, tiny_model, tiny_spec.replace(mean=(0.5,)))


def test_a_stray_part_file_is_refused(stopped, tiny_model, tiny_spec):
    shutil.copy(part_path(stopped, 0), part_path(stopped, 99))
    with pytest.raises(UserError, match="not an item of the run's plan"):
        resume_channels(stopped, tiny_model, tiny_spec)


def test_a_copied_part_file_is_refused(stopped, tiny_model, tiny_spec):
    shutil.copy(part_path(stopped, 0), part_path(stopped, 2))
    with pytest.raises(UserError, match="does not belong to this run's item 2"):
        resume_channels(stopped, tiny_model, tiny_spec)


def test_a_damaged_or_foreign_part_file_is_refused(stopped, tiny_model, tiny_spec):
    torch.save({"anything": 1}, part_path(stopped, 1))
    with pytest.raises(UserError, match="not readable"):
        resume_channels(stopped, tiny_model, tiny_spec)
    part_path(stopped, 1).write_bytes(b"not a part")
    with pytest.raises(UserError, match="not readable"):
        resume_channels(stopped, tiny_model, tiny_spec)


def test_a_malformed_manifest_is_refused(stopped):
    (stopped / MANIFEST).write_text("[" * 200_000)
    with pytest.raises(UserError, match="no readable manifest.json"):
        read_manifest(stopped)
    (stopped / MANIFEST).write_text(json.dumps({"argv": ["channels", "--layer", "conv1"]}))  # an older version's
    with pytest.raises(UserError, match="older version"):
        read_manifest(stopped)


LIBRARY_RUN = textwrap.dedent("""
    import sys
    from introspect.channel_runs import run_channels
    from introspect.channels import CHANNELS_DEFAULTS
    from introspect.data import load_dataset
    from introspect.distributed import join
    from introspect.models import load_model
    from introspect.params import prior_for

    loaded = load_model("mnist")
    data = load_dataset("mnist", "train")
    spec, _ = prior_for(loaded.spec, data)
    ranks, device = join("cpu")
    try:
        run_channels(loaded.model, spec, ["conv1", "fc1"], sys.argv[1], channels="0-5", batch_size=2, top_k=3,
                     config=CHANNELS_DEFAULTS.replace(steps=2, device=device), data=data, ranks=ranks)
    finally:
        ranks.close()
""")


def test_a_notebook_run_on_two_gloo_ranks_equals_the_cli_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "INTROSPECT_CACHE": str(tmp_path / "cache")}
    cli = subprocess.run([sys.executable, "-m", "introspect_cli.main", "channels", "--layer", "conv1,fc1", "--steps", "2",
                          "--channels", "0-5", "--batch-size", "2", "--top-k", "3", "--out", "cli", "--quiet"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert cli.returncode == 0, cli.stderr
    (tmp_path / "library.py").write_text(LIBRARY_RUN)
    library = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                              "library.py", "library"], capture_output=True, text=True, env=env, timeout=600)
    assert library.returncode == 0, library.stderr
    assert (tmp_path / "library" / "images.npz").read_bytes() == (tmp_path / "cli" / "images.npz").read_bytes()
    record = json.loads((tmp_path / "library" / "run.json").read_text())
    assert record["distributed"]["world_size"] == 2 and record["status"] == "complete"


NET = textwrap.dedent("""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(1, 4, 3)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))
""")


def test_resuming_a_run_whose_model_loads_code_needs_trust(tmp_path, capsys):
    from introspect_cli.main import main

    (tmp_path / "net.py").write_text(NET)
    argv = ["channels", "--model", "net.py:Net", "--input-shape", "1,8,8", "--layer", "conv", "--steps", "1",
            "--batch-size", "2", "--out", "run", "--quiet"]
    assert main(argv) == 0
    (tmp_path / "run" / "run.json").unlink()  # as if stopped before the end
    part_path(tmp_path / "run", 1).unlink()
    assert main(["channels", "--resume", "run"]) == 2
    err = capsys.readouterr().err
    assert "loads code" in err and "net.py is imported" in err and "--trust" in err
    assert not (tmp_path / "run" / "run.json").exists()
    assert main(["channels", "--resume", "run", "--trust", "--quiet"]) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "complete"
