"""Hostile input to explore: a run.json, an arrays file or a run folder is something people send each other, a
site folder something people open. File names derived from run data stay in the site folder and never share a
name; only a new, empty or introspect-made site folder is written to, and only its own files replaced; every run
value reaches the page as text; --serve answers only local hosts with regular files of the site; malformed runs
are refused with exit 2 and one line."""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import chromium

from introspect import site as site_module
from introspect_cli.main import main

PAYLOAD = "<img src=x onerror=alert(1)>"
LINKS = ("src", "thumb", "href", "input_src", "saliency_src", "first", "layer_href", "prev", "next")


# --- run folders written by hand: what a stranger could send ------------------------------------


def write_run(folder: Path, record: dict, arrays: dict, npz: str = "images.npz") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / npz, **arrays)
    (folder / "run.json").write_text(json.dumps(record))
    return folder


def channels_run(folder: Path, layers: dict, diverse: int = 1) -> Path:
    """A channels run of ``layers`` (name -> channel indices), 4x4 grey images, no model to reload."""
    names = [name for name, channels in layers.items() for _ in range(len(channels) * diverse)]
    record = {"command_name": "channels", "model": {"name": "stranger"}, "diverse": diverse, "neuron": False,
              "dataset": None,
              "layers": [{"layer": name, "per_channel": [{"channel": c, "activation": 1.0, "ratio": None, "dead": False}
                                                         for c in channels]} for name, channels in layers.items()]}
    arrays = {"layers": np.array(names, dtype=str), "images": np.full((len(names), 1, 4, 4), 128, np.uint8),
              "scores": np.ones(len(names), np.float32)}
    return write_run(folder, record, arrays)


def classes_run(folder: Path, names: list[str]) -> Path:
    record = {"command_name": "classes", "model": {"name": "stranger"},
              "images": [{"class": i, "name": name} for i, name in enumerate(names)]}
    n = len(names)
    arrays = {"labels": np.arange(n), "images": np.zeros((n, 1, 4, 4), np.uint8), "probabilities": np.full(n, 0.5, np.float32),
              "scores": np.zeros(n, np.float32)}
    return write_run(folder, record, arrays)


def activations_run(folder: Path, layer: str, class_name: str = "seven") -> Path:
    record = {"command_name": "activations", "model": {"name": "stranger"}, "input": {"source": class_name},
              "layers": {layer: {"shape": [2, 3, 3], "activation_shown": "relu"}},
              "prediction": {"class": 0, "name": class_name, "probability": 0.9},
              "top5": [{"class": 0, "name": class_name, "probability": 0.9}]}
    arrays = {layer: np.ones((2, 3, 3), np.float32), "input": np.zeros((1, 4, 4), np.float32),
              "saliency": np.zeros((1, 4, 4), np.float32)}
    return write_run(folder, record, arrays, "activations.npz")


def explore(*argv: str) -> int:
    return main(["explore", *argv, "--quiet"])


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def page_data(page: Path) -> dict:
    script = re.search(r'<script src="(data/[^"]+)">', page.read_text())[1]
    return json.loads((page.parent / script).read_text().removeprefix("window.PAGE = ").rstrip().rstrip(";"))


def channel_blocks(page: Path) -> dict:
    """A layer's channel page: each channel's own data, from the blocks its page data names."""
    found = {}
    for block in page_data(page)["blocks"].values():
        text = (page.parent / block).read_text().removeprefix("window.CHANNELS = Object.assign(window.CHANNELS || {}, ")
        found.update(json.loads(text.rstrip().removesuffix(");")))
    return found


def links(value) -> list[str]:
    if isinstance(value, dict):
        return [v for k, v in value.items() if k in LINKS and isinstance(v, str)] + \
            [x for k, v in value.items() for x in links(v)]
    if isinstance(value, list):
        return [x for v in value for x in links(v)]
    return []


def assert_consistent(site: Path) -> None:
    """Every page's data file and every file its data links to exist: no page points at a removed file."""
    for page in site.glob("*.html"):
        data = page_data(page)
        own = channel_blocks(page) if data["kind"] == "channel" else {}
        for target in links(data) + links(own) + list(data.get("blocks", {}).values()):
            assert (site / target.split("#")[0]).is_file(), f"{page.name} links to {target}, which does not exist"


def one_error_line(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("introspect "), err
    assert "Traceback" not in err and all(w in err for w in words), err
    return err


# --- 1. file names from run data ------------------------------------------------------------------


def test_layer_names_that_are_paths_stay_in_the_site_and_never_share_a_page(tmp_path):
    hostile = ["../../x", "/abs/x", "a/b", "a_b", "..", ".hidden", "A_B", "x" * 300]
    channels_run(tmp_path / "run", {name: [0, 1] for name in hostile})
    activations_run(tmp_path / "act", "../../../act")
    before = files_under(tmp_path)
    assert explore("run", "act", "--out", "site") == 0
    assert files_under(tmp_path) - before == {f"site/{f}" for f in files_under(tmp_path / "site")}  # nothing outside
    assert not Path("/abs/x").exists() and not (tmp_path.parent / "x").exists()
    layer_pages = sorted((tmp_path / "site").glob("layer-*.html"))
    assert len(layer_pages) == len(hostile)  # one page each: "a/b", "a_b" and "A_B" do not overwrite each other
    assert sorted(page_data(p)["summary"]["layer"] for p in layer_pages) == sorted(hostile)
    channel_pages = sorted((tmp_path / "site").glob("channel-*.html"))
    assert len(channel_pages) == len(hostile)  # one per layer, its two channels after the #
    assert sorted(page_data(p)["layer"] for p in channel_pages) == sorted(hostile)
    assert all(sorted(channel_blocks(p)) == ["0", "1"] for p in channel_pages)
    for name in files_under(tmp_path / "site"):
        assert all(len(part) < 255 and not part.startswith("..") for part in name.split("/")), name
    assert_consistent(tmp_path / "site")


def test_slugs_are_safe_and_unique():
    for name in ("../../x", "/abs/x", "..", ".", "", "a\\b", "a\0b", "x" * 1000):
        s = site_module.slug(name)
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", s) and len(s) <= 89, s
    assert site_module.slug("conv1") == "conv1" and site_module.slug("layer4.1.conv2") == "layer4.1.conv2"
    assert site_module.slug("a/b") != site_module.slug("a_b")
    crafted = site_module.slug("a/b")  # a name spelled as another's slug still gets a page of its own
    table = site_module.unique_slugs(["a/b", crafted, "Conv", "conv"])
    assert len({v.lower() for v in table.values()}) == 4


@pytest.mark.parametrize("channel", ["../../y", "/abs/y", -1, 1.5, True, None, [0]])
def test_a_channel_index_that_is_not_a_number_is_refused(tmp_path, capsys, channel):
    run = channels_run(tmp_path / "run", {"conv1": [0]})
    record = json.loads((run / "run.json").read_text())
    record["layers"][0]["per_channel"][0]["channel"] = channel
    (run / "run.json").write_text(json.dumps(record))
    assert explore("run", "--out", "site") == 2
    one_error_line(capsys, "channel index")
    assert not (tmp_path / "site").exists() and not Path("/abs/y").exists() and not (tmp_path.parent / "y").exists()


def test_a_module_dict_key_with_a_slash_writes_its_report_and_pages(tmp_path):
    (tmp_path / "m.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.blocks = nn.ModuleDict({'a/b': nn.Conv2d(1, 2, 3), 'a_b': nn.Conv2d(2, 2, 3)})\n"
        "        self.fc = nn.Linear(2 * 4 * 4, 3)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(torch.relu(self.blocks['a_b'](torch.relu(self.blocks['a/b'](x)))).flatten(1))\n")
    assert main(["channels", "--model", "m.py:Net", "--input-shape", "1,8,8", "--layer", "blocks.a/b,blocks.a_b",
                 "--dataset", "none", "--steps", "1", "--out", "out", "--quiet"]) == 0
    reports = sorted(p.name for p in (tmp_path / "out").glob("report-*.png"))
    assert len(reports) == 2 and "report-blocks.a_b.png" in reports
    assert len(list((tmp_path / "out" / "site").glob("layer-*.html"))) == 2
    assert not (tmp_path / "out" / "report-blocks.a").exists()


# --- 2. the site folder -----------------------------------------------------------------------------


def test_a_folder_introspect_did_not_make_is_refused(tmp_path, capsys):
    channels_run(tmp_path / "run", {"conv1": [0]})
    for own in ("data/notes.txt", "img/photo.png"):
        (tmp_path / own).parent.mkdir()
        (tmp_path / own).write_text("mine")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.html").write_text("my docs")
    assert explore("run", "--out", ".") == 2
    one_error_line(capsys, "did not make", "--out")
    assert explore("run", "--out", "docs") == 2
    one_error_line(capsys, "did not make")
    assert (tmp_path / "data/notes.txt").read_text() == "mine" and (tmp_path / "img/photo.png").read_text() == "mine"
    assert (tmp_path / "docs" / "index.html").read_text() == "my docs" and len(list((tmp_path / "docs").iterdir())) == 1
    (tmp_path / "empty").mkdir()
    assert explore("run", "--out", "empty") == 0 and (tmp_path / "empty" / "index.html").is_file()
    assert explore("run", "--out", "run") == 2  # a run folder: its own site is its site/ folder
    one_error_line(capsys, "is a run folder", "site/")


def test_a_site_is_rebuilt_in_place_replacing_only_its_own_files(tmp_path):
    channels_run(tmp_path / "two", {"conv1": [0, 1], "conv2": [0]})
    channels_run(tmp_path / "one", {"conv1": [0, 1]})
    assert explore("two", "--out", "site") == 0
    site = tmp_path / "site"
    marker = json.loads((site / site_module.MARKER).read_text())
    assert set(marker["files"]) == files_under(site) - {site_module.MARKER}
    (site / "notes.txt").write_text("mine")
    (site / "img" / "mine.png").write_text("mine")
    outside = tmp_path / "victim.txt"
    outside.write_text("keep")
    marker["files"] += ["../victim.txt", str(outside), "img/../../victim.txt"]  # a marker from a stranger
    (site / site_module.MARKER).write_text(json.dumps(marker))
    assert explore("one", "--out", "site") == 0
    assert not list(site.glob("*conv2*")) and not (site / "img" / "layer-conv2").exists()  # the old layer is gone
    assert (site / "notes.txt").read_text() == "mine" and (site / "img" / "mine.png").read_text() == "mine"
    assert outside.read_text() == "keep"
    assert not list(site.glob(site_module.BUILD_PREFIX + "*"))
    assert_consistent(site)


def test_a_new_site_moves_its_folders_whole_the_same_files_as_a_rebuild_moves_one_by_one(tmp_path, monkeypatch):
    """Into a new folder (a run's site, say) the build's folders move whole, hundreds of pictures at once; a rebuild
    in place moves file by file. Both leave the same files, bytes and marker."""
    channels_run(tmp_path / "run", {"conv1": [0, 1, 2], "conv2": [0, 1]})
    site, moved, real = tmp_path / "site", [], os.replace

    def replace(source, target):  # what moves into the site, the marker aside
        if Path(target).is_relative_to(site) and not Path(target).name.startswith(site_module.MARKER):
            moved.append(Path(target).relative_to(site).as_posix())
        return real(source, target)

    monkeypatch.setattr(site_module.os, "replace", replace)
    site_module.build_site([tmp_path / "run"], site)
    new = {name: (site / name).read_bytes() for name in files_under(site)}
    whole = list(moved)
    moved.clear()
    site_module.build_site([tmp_path / "run"], site)
    one_by_one = list(moved)
    assert {name: (site / name).read_bytes() for name in files_under(site)} == new
    assert sorted(whole) == sorted({name.split("/")[0] for name in new} - {site_module.MARKER})  # the top level
    assert len(one_by_one) == len(new) - 1 > len(whole)  # every file but the marker
    assert whole[-1] == one_by_one[-1] == "index.html"  # the index last, after everything it shows
    assert_consistent(site)


def test_a_file_of_the_user_where_the_site_writes_is_refused(tmp_path, capsys):
    channels_run(tmp_path / "run", {"conv1": [0]})
    assert explore("run", "--out", "site") == 0
    marker = tmp_path / "site" / site_module.MARKER
    listed = [f for f in json.loads(marker.read_text())["files"] if f != "index.html"]
    marker.write_text(json.dumps({"files": listed}))  # introspect's folder, but index.html is not listed as its own
    (tmp_path / "site" / "index.html").write_text("my page")
    assert explore("run", "--out", "site") == 2
    one_error_line(capsys, "index.html", "did not write")
    assert (tmp_path / "site" / "index.html").read_text() == "my page"


@pytest.mark.parametrize("where", ["writing", "moving"])
def test_an_interrupted_rebuild_leaves_no_page_pointing_at_a_removed_file(tmp_path, monkeypatch, where):
    channels_run(tmp_path / "two", {"conv1": [0, 1, 2], "conv2": [0, 1]})
    channels_run(tmp_path / "one", {"fc": [0]})
    assert explore("two", "--out", "site") == 0
    before = files_under(tmp_path / "site")
    calls = []

    def interrupt_on_third(original):
        def wrapped(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return original(*args, **kwargs)
        return wrapped

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        if where == "writing":
            patch.setattr(site_module, "_write_page", interrupt_on_third(site_module._write_page))
        else:
            patch.setattr(site_module.os, "replace", interrupt_on_third(os.replace))
        site_module.build_site(["one"], "site")
    assert_consistent(tmp_path / "site")
    if where == "writing":
        assert files_under(tmp_path / "site") == before  # nothing moved yet
    assert explore("one", "--out", "site") == 0  # the next build cleans up
    assert_consistent(tmp_path / "site")
    assert not list((tmp_path / "site").glob("*conv*")) and not list((tmp_path / "site").glob(".introspect-build-*"))


# --- 3. values reach the page as text ---------------------------------------------------------------


def injected_site(tmp_path: Path) -> Path:
    channels_run(tmp_path / "ch", {PAYLOAD: [0, 1], "conv1": [0]})
    classes_run(tmp_path / "cl", [PAYLOAD, "one"])
    activations_run(tmp_path / "act", PAYLOAD, PAYLOAD)
    for run in ("ch", "cl", "act"):
        path = tmp_path / run / "run.json"
        changed = json.loads(path.read_text())
        changed["model"] = {"name": PAYLOAD}
        path.write_text(json.dumps(changed))
    assert explore("ch", "cl", "act", "--out", "site") == 0
    return tmp_path / "site"


def test_run_values_appear_only_escaped_in_the_html(tmp_path):
    site = injected_site(tmp_path)
    pages = list(site.glob("*.html"))
    assert len(pages) > 5
    for page in pages:
        text = page.read_text()
        assert PAYLOAD not in text and "<img" not in text, page.name
    script = (site / "explore.js").read_text()
    assert ".innerHTML = html.s" in script and "esc(" in script


def test_run_values_reach_the_browser_as_text(tmp_path):
    from selenium.common.exceptions import NoAlertPresentException

    site = injected_site(tmp_path)
    browser = chromium(capabilities={"unhandledPromptBehavior": "ignore"})
    try:
        for page in sorted(site.glob("*.html")):
            browser.get(page.resolve().as_uri())
            with pytest.raises(NoAlertPresentException):
                browser.switch_to.alert  # noqa: B018 - raises unless an alert opened
            assert browser.execute_script("return document.querySelectorAll('img[onerror], img[src=\"x\"]').length") == 0
            assert browser.execute_script("return window.READY !== undefined"), page.name
            if page.name.startswith(("layer-", "class-0", "image-", "index")):
                assert PAYLOAD in browser.find_element("tag name", "main").text, page.name
            severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
            assert severe == [], f"{page.name}: {severe}"
    finally:
        browser.quit()


# --- 4. --serve ---------------------------------------------------------------------------------------


def start_server(tmp_path: Path, *argv: str) -> tuple[subprocess.Popen, int]:
    """`introspect explore ... --serve 0 --json`, read until its 'serving' line on stderr (an event, not a sleep)."""
    process = subprocess.Popen([sys.executable, "-m", "introspect_cli.main", "explore", *argv, "--serve", "0", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               env={**os.environ, "INTROSPECT_CACHE": str(tmp_path / "cache")})
    lines = []
    for line in process.stderr:
        lines.append(line)
        found = re.match(r"serving http://127\.0\.0\.1:(\d+)/", line)
        if found:
            return process, int(found[1])
    process.wait()
    raise AssertionError(f"never served (exit {process.returncode}):\n{''.join(lines)}")


def get(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("GET", path, skip_host=True)
        connection.putheader("Host", host if host is not None else f"127.0.0.1:{port}")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_serve_answers_only_local_hosts_with_files_of_the_site(tmp_path):
    channels_run(tmp_path / "run", {"conv1": [0]})
    (tmp_path / "secret.txt").write_text("secret")
    process, port = start_server(tmp_path, "run", "--out", "site")
    try:
        site = tmp_path / "site"
        (site / "link.txt").symlink_to(tmp_path / "secret.txt")
        (site / "img" / "outside").symlink_to(tmp_path, target_is_directory=True)
        status, body = get(port, "/index.html")
        assert status == 200 and b"explore.js" in body
        assert get(port, "/")[0] == 200
        assert get(port, "/layer-conv1.html", host=f"localhost:{port}")[0] == 200
        assert get(port, "/index.html", host="localhost")[0] == 200
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "", f"127.0.0.2:{port}"):
            assert get(port, "/index.html", host=host)[0] in (403, 421), host
        for path in ("/link.txt", "/img/outside/secret.txt", "/../secret.txt", "/%2e%2e/secret.txt",
                     "/data/", "/img/", "/" + site_module.MARKER, "/nothing.html"):
            status, body = get(port, path)
            assert status == 404 and b"secret" not in body, path
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    summary = json.loads(out)
    assert summary["port"] == port and summary["url"] == f"http://127.0.0.1:{port}/" and summary["exit_code"] == 0


def test_a_port_in_use_or_out_of_range_is_one_line(tmp_path, capsys):
    channels_run(tmp_path / "run", {"conv1": [0]})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert explore("run", "--out", "site", "--serve", str(port)) == 2
        one_error_line(capsys, f"port {port} is in use")
    assert not (tmp_path / "site").exists()  # refused before any work
    for bad in ("70000", "-1", "http"):
        assert explore("run", "--out", "site", "--serve", bad) == 2
        one_error_line(capsys, "--serve")


# --- 5. malformed runs and output folders ---------------------------------------------------------


def mutate(record: dict, change: str):
    if change == "not an object":
        return [record]
    if change == "no layers":
        return {k: v for k, v in record.items() if k != "layers"}
    if change == "layers a string":
        return {**record, "layers": "conv1"}
    if change == "per_channel missing":
        return {**record, "layers": [{"layer": "conv1"}]}
    if change == "layer a number":
        return {**record, "layers": [{**record["layers"][0], "layer": 5}]}
    if change == "diverse a string":
        return {**record, "diverse": "2"}
    if change == "model a list":
        return {**record, "model": ["x"]}
    if change == "recipe a string":
        return {**record, "recipe": "mnist"}
    if change == "load a list":
        return {**record, "load": [1]}
    if change == "activation a string":
        layer = record["layers"][0]
        return {**record, "layers": [{**layer, "per_channel": [{**layer["per_channel"][0], "activation": "high"}]}]}
    if change == "more channels than images":
        layer = record["layers"][0]
        return {**record, "layers": [{**layer, "per_channel": layer["per_channel"] * 3}]}
    raise AssertionError(change)


@pytest.mark.parametrize("change", ["not an object", "no layers", "layers a string", "per_channel missing", "layer a number",
                                    "diverse a string", "model a list", "recipe a string", "load a list",
                                    "activation a string", "more channels than images"])
def test_a_malformed_channels_record_is_one_line(tmp_path, capsys, change):
    run = channels_run(tmp_path / "run", {"conv1": [0]})
    (run / "run.json").write_text(json.dumps(mutate(json.loads((run / "run.json").read_text()), change)))
    assert explore("run", "--out", "site") == 2
    one_error_line(capsys, "introspect explore: error:")
    assert not (tmp_path / "site").exists()


def test_malformed_classes_and_activations_runs_are_one_line(tmp_path, capsys):
    cases = []
    run = classes_run(tmp_path / "labels", ["a", "b"])
    np.savez(run / "images.npz", labels=np.array([0, 10**9]), images=np.zeros((2, 1, 4, 4), np.uint8),
             probabilities=np.zeros(2), scores=np.zeros(2))
    cases.append(run)
    run = classes_run(tmp_path / "images", ["a"])
    np.savez(run / "images.npz", labels=np.array([0]), images=np.zeros((1, 7), np.float32), probabilities=np.zeros(1),
             scores=np.zeros(1))
    cases.append(run)
    run = activations_run(tmp_path / "shape", "conv1")
    record = json.loads((run / "run.json").read_text())
    record["layers"]["conv1"]["shape"] = "<b>32</b>"
    (run / "run.json").write_text(json.dumps(record))
    cases.append(run)
    run = activations_run(tmp_path / "missing", "conv1")
    np.savez(run / "activations.npz", input=np.zeros((1, 4, 4)), saliency=np.zeros((1, 4, 4)))
    cases.append(run)
    run = activations_run(tmp_path / "4d", "conv1")
    np.savez(run / "activations.npz", conv1=np.zeros((1, 2, 3, 3)), input=np.zeros((1, 4, 4)), saliency=np.zeros((1, 4, 4)))
    cases.append(run)
    run = channels_run(tmp_path / "npz", {"conv1": [0]})
    (run / "images.npz").write_bytes(b"PK\x03\x04 not a zip")
    cases.append(run)
    run = channels_run(tmp_path / "pickled", {"conv1": [0]})
    np.savez(run / "images.npz", layers=np.array([object()], dtype=object))
    cases.append(run)
    for run in cases:
        assert explore(str(run), "--out", "site") == 2, run.name
        one_error_line(capsys, "introspect explore: error:")


def test_a_deeply_nested_run_json_is_one_line(tmp_path, capsys):
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "run.json").write_text("[" * 200_000 + "]" * 200_000)
    assert explore("deep", "--out", "site") == 2
    one_error_line(capsys, "nested too deeply")
    (tmp_path / "deep" / "run.json").write_text('{"command_name": "channels", "model": ' + "[" * 200_000 + "]" * 200_000 + "}")
    assert explore("deep", "--out", "site") == 2
    one_error_line(capsys, "nested too deeply")


def test_bad_output_folders_are_one_line(tmp_path, capsys):
    channels_run(tmp_path / "run", {"conv1": [0]})
    (tmp_path / "file").write_text("x")
    for out, words in ((("n" * 300), ("name too long",)), ("file", ("existing file",)), ("file/site", ("is a file",)),
                       ("/sys/introspect-site", ("cannot be used",))):
        assert explore("run", "--out", out) == 2, out
        one_error_line(capsys, *words)
    assert main(["classes", "--steps", "1", "--out", "n" * 300, "--quiet"]) == 2
    one_error_line(capsys, "name too long")


def test_runs_that_name_the_classes_differently_are_refused(tmp_path, capsys):
    """A run given --class-names beside one that was not: the site named every class as the first run's model does,
    and the other run's runner-up classes under the wrong names."""
    classes_run(tmp_path / "plain", ["0", "1"])
    named = json.loads((classes_run(tmp_path / "named", ["b", "a"]) / "run.json").read_text())
    named["repeat"] = {"load": {"meta": {"class_names": ["b", "a"]}}}
    (tmp_path / "named" / "run.json").write_text(json.dumps(named))
    assert explore("plain", "named", "--out", "site") == 2
    one_error_line(capsys, "name the model's classes differently (--class-names given to some")
    assert explore("named", "named", "--out", "site") == 0  # the same names: joined


def test_an_unwritable_out_is_refused_before_anything_is_computed(tmp_path, capsys, monkeypatch):
    """explore computed what the runs lack (minutes on a big layer) and only then found --out unwritable. Permission
    bits do not stop root, so the process is told it may not write there."""
    channels_run(tmp_path / "run", {"conv1": [0]})
    (tmp_path / "locked").mkdir()
    allowed = os.access
    monkeypatch.setattr(site_module.os, "access", lambda path, mode, **kw: Path(path).name != "locked"
                        and allowed(path, mode, **kw))
    monkeypatch.setattr(site_module, "_gather", lambda *a, **k: pytest.fail("computed before refusing --out"))
    for out in ("locked", "locked/site"):
        assert explore("run", "--out", out) == 2
        one_error_line(capsys, "is not writable")


def test_a_cache_entry_of_the_wrong_shape_is_recomputed(tmp_path):
    import torch

    from introspect.cache import cache_path, cached, torch_load, torch_save

    names, channel_lists, examples = ["conv1"], {"conv1": [0, 3]}, {"conv1": np.zeros((2, 5), int)}
    good = {"conv1": {"hist": torch.zeros(4, site_module.HISTOGRAM_BINS), "low": torch.zeros(4), "high": torch.zeros(4),
                      "active": torch.zeros(4), "maps": torch.zeros(2, 5, 3, 3)}}
    load = lambda path: site_module._fits_layers(torch_load(path), names, channel_lists, examples, 10)  # noqa: E731
    path = cache_path("explore", "wrong-shape")
    path.parent.mkdir(parents=True)
    for wrong in ({"conv1": {"hist": torch.zeros(1)}}, {"conv1": {**good["conv1"], "maps": torch.zeros(1, 5)}},
                  {"conv1": {**good["conv1"], "hist": torch.zeros(2, site_module.HISTOGRAM_BINS)}}, [1, 2], {}):
        torch_save(wrong, path)
        notes = []
        assert cached(path, lambda: good, load=load, notes=notes) is good
        assert len(notes) == 1 and "recomputed" in notes[0]
    assert cached(path, lambda: pytest.fail("recomputed a good entry"), load=load)["conv1"]["low"].shape == (4,)
    classes = {"confusion": torch.zeros(3, 3, dtype=torch.long), "top": torch.full((3, 2), 7), "top_scores": torch.zeros(3, 2),
               "channels": {"conv1": torch.zeros(3, 4)}}
    with pytest.raises(ValueError):
        site_module._fits_classes(classes, ["conv1"], 2)  # an image index past the held-out data
    site_module._fits_classes({**classes, "top": torch.ones(3, 2, dtype=torch.long)}, ["conv1"], 2)


def test_a_real_example_without_a_map_is_written_once_however_many_channels_show_it(tmp_path):
    """A Linear layer's examples are the dataset's pictures as they are: each is one file in img/data that every
    channel showing it links to (fashion-mnist's --layer all wrote 1,279 PNGs, 371 of them copies), and every
    link of the site's pages names a file that is there."""
    assert main(["channels", "--layer", "fc1", "--channels", "0-23", "--steps", "2", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    site = tmp_path / "run" / "site"
    shown = set()
    for block in (site / "data" / "channel-fc1").iterdir():
        text = block.read_text()
        data = json.loads(text.removeprefix("window.CHANNELS = Object.assign(window.CHANNELS || {}, ").rstrip()
                          .removesuffix(");"))
        for channel in data.values():
            shown |= {example["src"] for example in channel["examples"]}
    pictures = sorted(p.name for p in (site / "img" / "data").iterdir())
    assert shown and sorted(src.rsplit("/", 1)[1] for src in shown) == pictures
    assert not list((site / "img" / "layer-fc1").glob("*-ex*.png"))
    linked = {src for page in site.rglob("*.js") for src in re.findall(r"img/[\w./-]+\.png", page.read_text())}
    assert linked and all((site / src).is_file() for src in linked)
