"""The channels run as a library call: resumable, and refusing any manifest or part file that does not belong
to it. (That it equals the CLI run, sharded over torchrun processes too, is tests/system/test_scale.py's.)"""
import json
import shutil

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
    _nothing_to_resume(tmp_path / "reference")
    return (tmp_path / "reference" / "images.npz").read_bytes()


def _nothing_to_resume(folder):
    """A complete run keeps neither its manifest nor its part files, and resuming it is refused."""
    assert not (folder / MANIFEST).exists() and not (folder / "parts").exists()
    with pytest.raises(UserError, match="is complete: there is nothing to resume"):
        read_manifest(folder)


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
    _nothing_to_resume(stopped)


def test_a_failed_run_keeps_what_resuming_needs(tmp_path, tiny_model, tiny_spec):
    """Only a complete run drops its manifest and part files; a failed one (NaN everywhere) keeps them."""
    with torch.no_grad():
        tiny_model.conv1.weight.fill_(float("nan"))
    done = run_channels(tiny_model, tiny_spec, ["conv1"], tmp_path / "run", channels="0-1", config=CONFIG,
                        batch_size=2)
    assert done.status == "failed"
    assert (tmp_path / "run" / MANIFEST).exists() and part_path(tmp_path / "run", 0).exists()


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


def test_the_estimate_of_a_large_chunk_renders_only_small_batches(tiny_model, tiny_spec, monkeypatch):
    """A dry run must take seconds: the estimate times a 64-image chunk on batches of 4 and 16 images only (with
    no time to spare for larger ones)."""
    import introspect.channels as ch
    from introspect.channel_runs import estimate_channels
    rendered, real = [], ch.visualize_chunk

    def counted(model, spec, plan, index, config, neuron, on_step):
        rendered.append(len(ch.chunk_channels(plan, index)) * plan.diverse)
        return real(model, spec, plan, index, config, neuron, on_step)

    monkeypatch.setattr(ch, "visualize_chunk", counted)
    plan = ch.plan_channels(tiny_model, tiny_spec, ["conv1", "conv2"], batch_size=64)
    rows = estimate_channels(tiny_model, tiny_spec, plan, CONFIG, budget=0.0)
    assert rendered == [4, 16, 4, 16]
    assert [(r["chunk_images"], r["timed_images"], r["extrapolated"]) for r in rows] == [(32, [4, 16], True),
                                                                                         (64, [4, 16], True)]
    assert all(r["seconds"] == pytest.approx(r["seconds_per_step"] * CONFIG.steps) and r["seconds"] > 0 for r in rows)


def test_a_sharded_examples_pass_with_ranks_left_without_a_batch_merges_the_others(tiny_model, tiny_spec):
    """A dataset of fewer batches than ranks leaves some ranks no batch (an empty part): merging them raised
    KeyError on rank 0."""
    from helpers import tiny_dataset
    from introspect.channel_runs import examples_for
    from introspect.channels import examples_pass
    from introspect.distributed import Ranks

    data = tiny_dataset(n=23)

    class ThreeRanks(Ranks):  # rank 0 of three; ranks 1 and 2 hold no batch of 23 images at 500 a batch
        def broadcast(self, value):
            return value

        def gather(self, value):
            return [value, {}, {}]

    stats = examples_for(tiny_model, tiny_spec, ["fc1"], data, top_k=3, ranks=ThreeRanks(0, 3))
    whole = examples_pass(tiny_model, tiny_spec, ["fc1"], data, k=3, batch_size=23)
    assert torch.equal(stats["fc1"].top_indices, whole["fc1"].top_indices)
