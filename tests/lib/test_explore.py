

def test_a_recorded_model_that_loads_code_needs_trust(tmp_path):
    from introspect.explore import load_recorded_model

    record = {"model": {"name": "x"}, "command_name": "classes",
              "load": {"source": str(tmp_path / "evil.py") + ":Net", "meta": {"size": 8}}}
    (tmp_path / "evil.py").write_text("raise SystemExit('ran')\n")
    loaded, why = load_recorded_model(record)
    assert loaded is None and "loads code" in why  # evil.py was never imported
    recipe = {"model": {"name": "x"}, "recipe": {"command": "classes", "model": str(tmp_path / "evil.py") + ":Net"}}
    loaded, why = load_recorded_model(recipe)  # a recipe without load arguments: the same rule
    assert loaded is None and "loads code" in why


def test_build_site_reports_progress_and_spells_settings(tmp_path):
    """on_progress gets a line per stage (the library prints nothing); notes spell settings as ``names`` says."""
    import json

    import numpy as np

    from introspect.folders import Run
    from introspect.site import build_site

    per = [{"channel": c, "activation": 1.0, "ratio": None, "dead": False} for c in range(3)]
    record = {"command_name": "channels", "model": {"name": "m"}, "diverse": 1, "neuron": False, "dataset": None,
              "layers": [{"layer": "conv", "measured_at": "conv → relu", "per_channel": per}],
              "load": {"source": str(tmp_path / "model.py") + ":Net"}}
    arrays = {"layers": np.array(["conv"] * 3), "images": np.zeros((3, 1, 4, 4), np.uint8), "scores": np.ones(3, np.float32)}
    lines = []
    build_site([Run(tmp_path / "run", record, arrays)], tmp_path / "site", on_progress=lines.append,
               names={"trust": "--trust"})
    assert lines[0] == "reading 1 run folder" and lines[-1] == "writing 5 pages"  # index, layer, three channels
    page = json.loads((tmp_path / "site" / "data" / "layer-conv.js").read_text()[len("window.PAGE = "):-2])
    assert page["summary"]["measured_at"] == "conv → relu"
    assert any(n.endswith("add --trust.") for n in page["notes"]), page["notes"]
    channel = json.loads((tmp_path / "site" / "data" / "channel-conv.js").read_text()[len("window.PAGE = "):-2])
    assert channel["measured_at"] == "conv → relu" and channel["blocks"] == {"0": "data/channel-conv/0.js"}
    block = (tmp_path / "site" / "data" / "channel-conv" / "0.js").read_text()
    own = json.loads(block[len("window.CHANNELS = Object.assign(window.CHANNELS || {}, "):-3])
    assert sorted(own) == ["0", "1", "2"] and own["1"]["prev"] == "channel-conv.html#0"
    assert sorted(p.name for p in (tmp_path / "site").glob("*.html")) == ["channel-conv.html", "index.html", "layer-conv.html"]


def test_histogram_marks_the_optimized_value():
    import torch

    from introspect.channels import HISTOGRAM_BINS
    from introspect.site import histogram_page

    counts = torch.zeros(HISTOGRAM_BINS, dtype=torch.int64)
    counts[10:13] = 5
    inside = histogram_page(counts, 0.1, 0.2, optimized=float(__import__("introspect.channels", fromlist=["x"]).HISTOGRAM_EDGES[9]))
    assert inside["optimized"]["at"] == 1 and inside["optimized"]["beyond"] is None
    assert histogram_page(counts, 0.1, 0.2, optimized=1e9)["optimized"] == {"value": 1e9, "at": None, "beyond": "right"}
    assert histogram_page(counts, 0.1, 0.2, optimized=-1.0)["optimized"]["beyond"] == "left"
    assert histogram_page(counts, 0.1, 0.2)["optimized"] is None


def test_a_run_folder_index_shows_the_page_of_its_pictures(tmp_path):
    """run_index: the site page that holds the run's pictures, its links resolved inside site/ (a <base>)."""
    from introspect.site import run_index

    site = tmp_path / "site"
    site.mkdir()
    for name in ("index.html", "classes.html", "image-0.html", "layer-conv1.html"):
        (site / name).write_text("")
    assert '<base href="site/">' in run_index(site, "classes") and 'src="data/classes.js"' in run_index(site, "classes")
    assert 'src="data/image-0.js"' in run_index(site, "activations")
    assert 'src="data/layer-conv1.js"' in run_index(site, "channels")  # one layer: the grid of every channel
    (site / "layer-conv2.html").write_text("")
    assert 'src="data/index.js"' in run_index(site, "channels")  # several: each layer's strongest channels
    (site / "classes.html").unlink()
    assert 'src="data/index.js"' in run_index(site, "classes")


def test_real_images_are_labelled_by_their_sub_folder_only():
    """A real image's label on the pages: its sub-folder of the user's pictures; none when they lie in one folder."""
    import torch

    from introspect.data import ImageDataset
    from introspect.site import Site, _label

    site = Site(model={}, label="m", class_names=["zero", "one"])
    pictures = lambda names: ImageDataset("mine", "all", torch.zeros(2, 1, 4, 4, dtype=torch.uint8),  # noqa: E731
                                          torch.tensor([0, 1]), names, "2 images")
    assert _label(site, pictures(("cats", "dogs")), 1) == "dogs"
    assert _label(site, pictures(("images",)), 0) is None  # one folder: nothing tells them apart
    builtin = ImageDataset("mnist", "train", torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]), ("0", "1"), "x")
    assert _label(site, builtin, 1) == "one"  # the model's class names


def test_runs_whose_examples_come_from_different_data_are_not_joined(tmp_path):
    """Each channel's real examples are indices into the data its run used: runs over other data (another pictures
    folder, dataset or split) are refused with both named, not shown with the wrong pictures; the same data joins."""
    import numpy as np
    import pytest

    from introspect.errors import UserError
    from introspect.folders import Run
    from introspect.site import build_site

    def run(name, layer, dataset, folder=None):
        per = [{"channel": 0, "activation": 1.0, "ratio": None, "dead": False}]
        record = {"command_name": "channels", "model": {"name": "m"}, "diverse": 1, "neuron": False,
                  "dataset": dataset, "layers": [{"layer": layer, "measured_at": layer, "per_channel": per}],
                  "repeat": {"data": {"images": folder}} if folder else {}}
        arrays = {"layers": np.array([layer]), "images": np.zeros((1, 1, 4, 4), np.uint8),
                  "scores": np.ones(1, np.float32), "examples": np.array([[1]]),
                  "example_activations": np.ones((1, 1), np.float32), "ratio": np.ones(1, np.float32),
                  "dead": np.zeros(1, bool)}
        return Run(tmp_path / name, record, arrays)

    mine = lambda count: {"name": "images", "split": "all", "source": "x", "count": count}  # noqa: E731
    with pytest.raises(UserError, match="took their real examples from different data .2 pictures of /a and 5 "
                                        "pictures of /b."):
        build_site([run("one", "conv1", mine(2), "/a"), run("two", "conv2", mine(5), "/b")], tmp_path / "site",
                   compute=False)
    mnist = {"name": "mnist", "split": "train", "source": "x", "count": 5000}
    with pytest.raises(UserError, match="mnist train, 5000 images and mnist test"):
        build_site([run("one", "conv1", mnist), run("two", "conv2", {**mnist, "split": "test"})], tmp_path / "site",
                   compute=False)
    build_site([run("one", "conv1", mnist), run("two", "conv2", mnist)], tmp_path / "site", compute=False)
    assert (tmp_path / "site" / "layer-conv1.html").is_file() and (tmp_path / "site" / "layer-conv2.html").is_file()
