"""Scale: one dataset pass for many layers, shards that merge exactly, runs split over torchrun
processes (gloo on the CPU), kill-and-resume, time estimates and chunks that fit memory; a notebook's run
on torchrun ranks equals the CLI's. Processes are waited for by their exit, never by time; a rank is
killed by INTROSPECT_FAULT at a known chunk."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from introspect.channels import (HISTOGRAM_BINS, WorkItem, dataset_examples, dataset_examples_many, examples_pass,
                                 split_items)
from introspect_cli.main import main
from helpers import tiny_dataset

SMALL = ["channels", "--layer", "conv1,fc1", "--steps", "2", "--channels", "0-5", "--batch-size", "2", "--top-k", "3"]
FIELDS = ("top_indices", "top_values", "max_value", "peak", "active", "histogram")


def introspect(argv, processes=1, **env):
    """`introspect ARGV`, under torchrun with ``processes`` CPU processes when more than one."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] if processes > 1 else []
    return subprocess.run([sys.executable, *launcher, "-m", "introspect_cli.main", *argv], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **env}, timeout=600)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The small run in one process: the bytes the sharded runs must equal."""
    folder = tmp_path_factory.mktemp("single")
    done = introspect(SMALL + ["--out", str(folder / "run")], INTROSPECT_CACHE=str(folder / "cache"))
    assert done.returncode == 0, done.stderr
    return (folder / "run" / "images.npz").read_bytes()


def test_sharded_dataset_pass_equals_unsharded(tiny_model, tiny_spec):
    data = tiny_dataset(n=70)
    whole = examples_pass(tiny_model, tiny_spec, ["conv1", "fc1"], data, k=4, batch_size=16)
    shards = [examples_pass(tiny_model, tiny_spec, ["conv1", "fc1"], data, k=4, batch_size=16, shard=(r, 3))
              for r in range(3)]
    for layer in ("conv1", "fc1"):
        merged = shards[2][layer].merge(shards[0][layer]).merge(shards[1][layer])
        for name in FIELDS:
            assert torch.equal(getattr(merged, name), getattr(whole[layer], name)), (layer, name)
        assert whole[layer].histogram.shape[1] == HISTOGRAM_BINS
        assert bool((whole[layer].histogram.sum(1) == len(data)).all())
        assert bool((whole[layer].active <= len(data)).all()) and whole[layer].active_fraction.max() <= 1


def test_one_pass_for_many_layers_equals_one_pass_each_and_is_cached(tiny_model, tiny_spec, monkeypatch):
    data = tiny_dataset()
    many = dataset_examples_many(tiny_model, tiny_spec, ["conv1", "fc1"], data, k=3, cache_key="ab" * 32)
    for layer in ("conv1", "fc1"):
        alone = dataset_examples(tiny_model, tiny_spec, layer, data, k=3)
        assert all(torch.equal(getattr(many[layer], f), getattr(alone, f)) for f in FIELDS)
        assert torch.equal(many[layer].quantiles, alone.quantiles)

    def no_pass(*_args, **_kwargs):
        raise AssertionError("a dataset pass ran although every layer is cached")

    monkeypatch.setattr("introspect.channels.examples_pass", no_pass)
    again = dataset_examples(tiny_model, tiny_spec, "fc1", data, k=3, cache_key="ab" * 32)  # a later single-layer run
    assert torch.equal(again.histogram, many["fc1"].histogram)


def test_split_of_five_items_over_three_ranks_is_balanced_and_complete():
    items = [WorkItem(i, "conv1" if i < 3 else "fc1", i % 3, 2, cost) for i, cost in enumerate([4, 4, 2, 9, 1])]
    shares = split_items(items, 3)
    assert sorted(i.id for share in shares for i in share) == [0, 1, 2, 3, 4]
    assert all(share for share in shares) and shares == split_items(items, 3)
    assert all([i.id for i in share] == sorted(i.id for i in share) for share in shares)
    assert max(sum(i.cost for i in share) for share in shares) == 9


def test_two_processes_give_the_same_bytes_as_one(tmp_path, single):
    done = introspect(SMALL + ["--out", "run"], processes=2)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "images.npz").read_bytes() == single
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["distributed"]["world_size"] == 2 and record["distributed"]["backend"] == "gloo"
    assert sum(record["distributed"]["items_per_rank"]) == 6 and min(record["distributed"]["items_per_rank"]) > 0
    assert [layer["batch_size"] for layer in record["layers"]] == [2, 2]


def test_killed_rank_then_resume_gives_the_same_bytes(tmp_path, single):
    # rank 1's share is items 0, 1, 2, 4 (balanced by cost); it dies right after saving item 1
    killed = introspect(SMALL + ["--out", "run"], processes=2, INTROSPECT_FAULT="1:1")
    assert killed.returncode != 0
    run = tmp_path / "run"
    assert not (run / "run.json").exists() and (run / "manifest.json").exists()
    kept = sorted(p.name for p in (run / "parts").iterdir())
    assert "item-00001.pt" in kept and "item-00002.pt" not in kept
    resumed = introspect(["channels", "--resume", "run"])
    assert resumed.returncode == 0, resumed.stderr
    assert (run / "images.npz").read_bytes() == single
    record = json.loads((run / "run.json").read_text())
    assert record["resumed"]["items_kept"] == len(kept) and record["status"] == "complete"
    assert "--resume" not in record["command"]


def test_three_ranks_share_five_items(tmp_path):
    argv = ["channels", "--layer", "conv1", "--channels", "0-9", "--batch-size", "2", "--steps", "2", "--dataset", "none"]
    one, three = introspect(argv + ["--out", "one"]), introspect(argv + ["--out", "three"], processes=3)
    assert one.returncode == 0 and three.returncode == 0, three.stderr
    assert (tmp_path / "one" / "images.npz").read_bytes() == (tmp_path / "three" / "images.npz").read_bytes()
    record = json.loads((tmp_path / "three" / "run.json").read_text())
    assert sorted(record["distributed"]["items_per_rank"]) == [1, 2, 2]


def test_single_process_interrupt_then_resume(tmp_path, monkeypatch):
    """One process stopped after its second chunk; --resume completes the folder in place. (The reference
    runs in this process too: the dataset pass's low bits depend on the number of threads.)"""
    import introspect.channel_runs as channels_cmd

    assert main(SMALL + ["--out", "reference", "--quiet"]) == 0
    real = channels_cmd.write_part

    def stop_after_two(folder, item, data):
        real(folder, item, data)
        if item == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(channels_cmd, "write_part", stop_after_two)
    assert main(SMALL + ["--out", "run", "--quiet"]) == 130
    monkeypatch.setattr(channels_cmd, "write_part", real)
    assert sorted(p.name for p in (tmp_path / "run" / "parts").iterdir()) == ["item-00000.pt", "item-00001.pt"]
    assert main(["channels", "--resume", "run", "--quiet"]) == 0
    assert (tmp_path / "run" / "images.npz").read_bytes() == (tmp_path / "reference" / "images.npz").read_bytes()


def test_dry_run_estimates_time_and_memory(capsys):
    assert main(["channels", "--layer", "conv1,fc1", "--steps", "100", "--dry-run", "--json"]) == 0
    captured = capsys.readouterr()
    plan = json.loads(captured.out)["plan"]
    assert [row["layer"] for row in plan] == ["conv1", "fc1"]
    assert all(row["seconds"] > 0 and row["memory_bytes"] > 0 for row in plan)
    assert "estimate: total" in captured.err


def test_resnet50_all_layers_plan_fits_and_one_chunk_stays_within_budget(tmp_path):
    """--layer all on resnet50 at 224 px with a 1 GiB budget: every chunk's estimate fits, and the largest
    layer's real chunk (one step) grows the process's peak memory by less than the budget."""
    script = textwrap.dedent("""
        import json, resource, sys
        from introspect.channels import CHANNELS_DEFAULTS, plan_channels, visualize_chunk
        from introspect.engine import on_device
        from introspect.layers import select_layers
        from introspect.models import load_model
        loaded = load_model("torchvision:resnet50")
        layers = select_layers(loaded.model, loaded.spec.input_shape, "all")
        budget = 1 << 30
        plan = plan_channels(loaded.model, loaded.spec, layers, budget_bytes=budget, steps=1)
        largest = max(plan.layers, key=lambda p: p.chunk * p.bytes_per_image)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        with on_device(loaded.model, "cpu") as model:
            visualize_chunk(model, loaded.spec, largest, 0, CHANNELS_DEFAULTS.replace(steps=1))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"layers": len(plan.layers), "input": list(loaded.spec.input_shape), "budget": budget,
                          "fits": all(p.chunk * p.bytes_per_image <= budget for p in plan.layers if p.chunk > 1),
                          "largest": largest.layer, "chunk": largest.chunk, "growth": after - before}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["input"] == [3, 224, 224] and report["layers"] > 50 and report["fits"]
    assert 0 <= report["growth"] <= report["budget"], report


def test_distributed_option_wraps_torchrun(tmp_path):
    argv = ["channels", "--layer", "conv1", "--channels", "0-3", "--steps", "1", "--batch-size", "2", "--dataset", "none"]
    done = introspect(argv + ["--distributed", "2", "--out", "run"])
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["distributed"]["items_per_rank"] == [1, 1] and "--distributed" not in record["command"]


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
