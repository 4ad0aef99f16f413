"""The explorer in a real browser: Debian's Chromium and ChromeDriver, driven by selenium, from file://.

A missing browser fails these tests (install: apt-get install -y chromium chromium-driver).
"""
import json
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from helpers import chromium
from introspect_cli.main import main

SEVEN = Path(__file__).resolve().parents[2] / "examples" / "seven.png"
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def driver():
    browser = chromium("--window-size=1280,900")
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def mnist_site(tmp_path_factory):
    """A channels run of every layer, a classes run and an activations run of the built-in MNIST net, joined."""
    root = tmp_path_factory.mktemp("explore")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("INTROSPECT_CACHE", str(root / "cache"))
        assert main(["channels", "--layer", "all", "--steps", "2", "--out", "ch", "--quiet"]) == 0
        assert main(["classes", "--steps", "2", "--out", "cl", "--quiet"]) == 0
        assert main(["activations", "--image", str(SEVEN), "--out", "act", "--quiet"]) == 0
        assert main(["explore", "ch", "cl", "act", "--out", "site", "--quiet"]) == 0
    return root


def load(driver, path: Path, fragment: str = "") -> None:
    driver.get(path.resolve().as_uri() + fragment)
    driver.get_log("browser")  # nothing before this page


def errors(driver) -> list:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def check_page(driver, path: Path, fragment: str = "") -> None:
    """Loads with no console error; every image decodes once scrolled into view; every link and image names a file."""
    driver.get(path.resolve().as_uri() + fragment)
    assert driver.execute_script("return document.readyState") == "complete"
    driver.execute_script("""
        for (const folded of document.querySelectorAll("details")) folded.open = true;
        for (const img of document.images) img.scrollIntoView();
        window.scrollTo(0, document.body.scrollHeight);""")
    waited(driver, 10, lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))  # or: below
    broken = driver.execute_script("return [...document.images].filter(i => !(i.naturalWidth > 0)).map(i => i.src)")
    assert broken == [], f"{path.name}: images not decoded: {broken[:5]}"
    targets = driver.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)"
                                    " .concat([...document.images].map(i => i.src))")
    for target in targets:
        url = urlparse(target)
        assert url.scheme == "file", f"{path.name}: {target} leaves the site"
        assert Path(unquote(url.path)).is_file(), f"{path.name}: {target} does not exist"
    assert errors(driver) == [], f"{path.name}: console errors"
    check_words(driver, path)
    check_scales(driver, path)


#: Words a page never shows: a missing value says why instead.
NOT_SHOWN = re.compile(r"\b(nan|undefined|null|Infinity)\b|\?", re.IGNORECASE)
#: Labels and numbers run together where a space is missing ("channel 14deadnot reached", "0 (0.12)1 (0.08)").
TERMS = "dead|rarely|rare|active|not|reached|saturates|saturate|optimized|ratio|none|live|flat|logit|activation|median|channels?"
RUN_TOGETHER = re.compile(rf"(?:\d|\b(?:{TERMS}))(?:{TERMS})\b|\)[\w(#]|\d\.\d+[a-z]{{2,}}", re.IGNORECASE)


def check_words(driver, path: Path) -> None:
    """Every page explains its numbers (a legend) and shows no 'nan', 'undefined', 'null' or '?', and no words
    run together."""
    text = driver.execute_script("return document.body.innerText")
    for pattern in (NOT_SHOWN, RUN_TOGETHER):
        found = pattern.search(text)
        assert found is None, f"{path.name}: shows {found[0]!r}: ...{text[max(0, found.start() - 60):found.end() + 60]}..."
    assert driver.execute_script("return document.querySelectorAll('.legend dt').length") >= 2, f"{path.name}: no legend"


def check_scales(driver, path: Path) -> None:
    """A colour bar for every kind of map a page shows (an image page: its saliency and each layer's feature
    maps; a channel page: the activation map over its real images), and both axes on a histogram."""
    kind, maps, histogram = driver.execute_script("""
        const P = window.PAGE, shown = (v) => v !== null && v !== undefined;
        const maps = P.kind === "image" ? 1 + P.layers.filter((l) => l.scale).length
            : P.kind === "channel" && (P.examples || []).some((e) => shown(e.peak)) ? 1 : 0;
        return [P.kind, maps, P.kind === "channel" && shown(P.hist)];""")
    assert count(driver, ".cbar") == maps, f"{path.name}: {count(driver, '.cbar')} colour bars for {maps} kinds of map"
    if histogram:
        assert count(driver, "svg.hist .axis") == 2 and count(driver, "svg.hist text") >= 4, f"{path.name}: histogram axes"


def count(driver, selector: str) -> int:
    return driver.execute_script("return document.querySelectorAll(arguments[0]).length", selector)


def pictures(driver, selector: str) -> int:
    """Images matching ``selector`` that decoded (natural width > 0), after scrolling each into view."""
    return driver.execute_script("""
        const found = [...document.querySelectorAll(arguments[0])];
        for (const i of found) { i.loading = "eager"; i.scrollIntoView(); }
        return found;""", selector) and wait_pictures(driver, selector)


def wait_pictures(driver, selector: str) -> int:
    """Images matching ``selector`` that decoded, once all have (else after 10 s: the caller's count says)."""
    script = "return [...document.querySelectorAll(arguments[0])].filter(i => i.complete && i.naturalWidth > 0).length"
    waited(driver, 10, lambda d: d.execute_script(script, selector) >= count(d, selector))
    return driver.execute_script(script, selector)


def wait(driver, seconds: float):
    """selenium's wait for a browser condition, polled every 50 ms."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.05)


def waited(driver, seconds: float, condition) -> bool:
    """Whether ``condition`` held within ``seconds``; a timeout is left to the caller's assertion, which says
    what is missing."""
    from selenium.common.exceptions import TimeoutException

    try:
        wait(driver, seconds).until(condition)
    except TimeoutException:
        return False
    return True


def test_every_page_of_the_joined_site(driver, mnist_site):
    pages = sorted((mnist_site / "site").glob("*.html"))
    assert {"index.html", "layer", "channel", "class", "image"} <= {p.name.split("-")[0] for p in pages}
    assert [p.name for p in pages if p.name.startswith("channel-")] == [
        f"channel-{layer}.html" for layer in ("conv1", "conv2", "fc1", "fc2")]  # --layer all: a page per layer
    for page in pages:
        check_page(driver, page)
    for channel in (0, 63, 64, 127):  # the first and second blocks of fc1's channels
        check_page(driver, mnist_site / "site" / "channel-fc1.html", f"#{channel}")
        assert f"fc1 channel {channel}" in driver.title
    load(driver, mnist_site / "site" / "channel-conv2.html", "#3")
    text = driver.find_element("tag name", "main").text
    assert "Inputs" in text and "conv1" in text and "Outputs" in text and "Activation over the dataset" in text


def test_pages_show_pictures_first(driver, mnist_site):
    """The index: a strip of each layer's strongest channels and the class images; a layer page: every channel's
    optimized image with its top real images; classes: ten images with p and runner-up; an image page: prediction
    bars and each layer's strongest maps, with colour bars; a channel page: measuring point, histogram axes and
    the optimized value marked."""
    site = mnist_site / "site"
    load(driver, site / "index.html")
    assert count(driver, ".layer-strip") == 4 and pictures(driver, ".layer-strip img") == 4 * 8  # eight per layer
    assert pictures(driver, ".grid.classes img") == 10
    load(driver, site / "layer-conv2.html")
    assert "measured at" in driver.find_element("tag name", "main").text
    cards = count(driver, "#grid .card") + count(driver, "#folded .card")
    assert cards == 64 and count(driver, ".card img[loading=lazy]") > 64  # optimized and real images
    assert pictures(driver, "#grid .card img.exm") == 3 * count(driver, "#grid .card")
    load(driver, site / "classes.html")
    assert pictures(driver, ".grid.classes img") == 10
    text = driver.find_element("tag name", "main").text
    assert text.count("runner-up") >= 10 and "p 0." in text
    load(driver, site / "index.html")
    said = driver.find_element("css selector", ".card.wide").text.split()[-1]
    load(driver, site / "image-0.html")
    assert f"(p = {said})" in driver.find_element("tag name", "main").text  # one probability, printed alike
    assert count(driver, ".bars .bar-row") == 5 and count(driver, ".cbar") == 3  # saliency, conv1 and conv2 maps
    assert pictures(driver, ".fmap img") == 32
    load(driver, site / "channel-conv2.html", "#5")
    assert count(driver, ".cbar") == 1 and "measured at" in driver.find_element("tag name", "main").text
    assert count(driver, "svg.hist .opt") >= 1 and count(driver, "svg.hist .axis") == 2
    assert "optimized" in driver.find_element("css selector", "svg.hist").text


def test_every_run_folder_shows_its_own_pictures(driver, mnist_site):
    """A run folder's index.html is a page of that run's pictures (no redirect), from file:// with no server: the
    channels run's strongest channels per layer, the classes run's ten class images with p and runner-up, the
    activations run's image with its prediction bars and maps; its links lead into the run's site/."""
    shown = {"ch": (".layer-strip img", 4 * 8), "cl": (".grid.classes img", 10), "act": (".fmap img", 32)}
    for run, (selector, expected) in shown.items():
        index = mnist_site / run / "index.html"
        check_page(driver, index)
        assert driver.current_url == index.resolve().as_uri()  # the page itself, not a redirect
        assert pictures(driver, selector) == expected, run
        links = driver.execute_script("return [...document.querySelectorAll('main a[href]')].map(a => a.href)")
        assert links and all(Path(unquote(urlparse(a).path)).parent == (mnist_site / run / "site").resolve()
                             for a in links), run
        for page in sorted((mnist_site / run / "site").glob("*.html"))[:40]:
            check_page(driver, page)
    load(driver, mnist_site / "cl" / "index.html")
    assert driver.find_element("tag name", "main").text.count("runner-up") >= 10
    load(driver, mnist_site / "act" / "index.html")
    assert count(driver, ".bars .bar-row") == 5 and pictures(driver, ".big img") == 2


def test_sorting_and_folding(driver, mnist_site):
    load(driver, mnist_site / "site" / "layer-conv2.html")
    rows = driver.execute_script("return PAGE.channels")
    live = [r for r in rows if not r["dead"] and not r["rare"]]
    order = lambda: [int(c) for c in driver.find_element("id", "grid").get_attribute("data-order").split(",")]
    assert order() == sorted(r["c"] for r in live)
    from selenium.webdriver.support.ui import Select

    for key in ("ratio", "active", "best"):
        Select(driver.find_element("id", "sort")).select_by_value(key)
        shown = [next(r for r in rows if r["c"] == c) for c in order()]
        groups = [shown] if key == "active" else [[r for r in shown if not r["flat"]], [r for r in shown if r["flat"]]]
        assert [r for g in groups for r in g] == shown  # by ratio or activation flat (saturating) channels come last
        for group in groups:
            values = [r[key] for r in group]
            known = [v for v in values if v is not None]
            assert known == sorted(known, reverse=True) and values[:len(known)] == known
    folded = [r["c"] for r in rows if r["dead"] or r["rare"]]
    if folded:  # dead and rarely active channels: their own section, collapsed
        assert driver.find_element("id", "foldedSection").get_attribute("open") is None
        assert sorted(int(c) for c in driver.find_element("id", "folded").get_attribute("data-order").split(",")) == sorted(folded)
    assert errors(driver) == []


def test_dead_flat_and_rare_channels(driver, tmp_path):
    """A hand-made run with a dead, a rarely active and a flat channel: dead and rare in the folded section, not
    the grid; the flat one (the highest ratio) labelled "saturates" with the --neuron hint on every page that
    shows it, and ranked after the informative channels in the index's strip and by ratio."""
    import numpy as np
    from selenium.webdriver.support.ui import Select

    from introspect.folders import Run
    from introspect.site import build_site

    per = [{"channel": c, "activation": 1.0, "ratio": 0.9 if c == 3 else 0.5, "dead": c == 1,
            "active_share": [0.5, 0.0, 0.001, 0.9][c]} for c in range(4)]
    record = {"command_name": "channels", "model": {"name": "m"}, "diverse": 1, "neuron": False,
              "dataset": {"name": "x", "split": "train", "count": 10}, "layers": [{"layer": "conv", "per_channel": per}]}
    images = np.random.default_rng(0).integers(0, 256, (4, 1, 4, 4), dtype=np.uint8)
    images[3] = 99  # uniform: the channel saturates
    arrays = {"layers": np.array(["conv"] * 4), "images": images, "scores": np.ones(4, np.float32)}
    build_site([Run(tmp_path / "run", record, arrays)], tmp_path / "site", compute=False, names={"neuron": "--neuron"})
    site = tmp_path / "site"
    for page in sorted(site.glob("*.html")):
        check_page(driver, page)
    load(driver, site / "layer-conv.html")
    assert driver.find_element("id", "foldedSection").get_attribute("open") is None
    assert driver.find_element("id", "grid").get_attribute("data-order") == "0,3"
    assert driver.find_element("id", "folded").get_attribute("data-order") == "1,2"
    Select(driver.find_element("id", "sort")).select_by_value("ratio")
    assert driver.find_element("id", "grid").get_attribute("data-order") == "0,3"  # 3's ratio is higher, but flat
    text = driver.find_element("tag name", "main").text
    assert "1 channel saturates: the channel prefers a uniform input" in text and "Neuron mode (--neuron: one position maximized" in text
    assert driver.find_element("css selector", '#grid [data-c="3"]').text.endswith("saturates")
    load(driver, site / "channel-conv.html", "#3")
    text = driver.find_element("tag name", "main").text
    assert "saturates: the channel prefers a uniform input" in text and "--neuron" in text and "localized pattern" in text
    load(driver, site / "index.html")
    strip = driver.execute_script("return [...document.querySelectorAll('.layer-strip .card')].map(a => a.innerText)")
    assert [s.split()[0] for s in strip] == ["0", "3"] and "saturates" in strip[1]


@pytest.mark.parametrize("dataset", [None, {"name": "mnist", "split": "train", "count": 60}])
def test_a_channel_page_gives_the_optimized_activation_once(driver, tmp_path, dataset):
    """With or without a dataset a channel page shows the optimized activation under the optimized image only, as
    the report does under its tile: not again in the line above (which gives the ratio, or says there is none)."""
    import numpy as np

    from introspect.folders import Run
    from introspect.site import build_site

    ratio = 2.5 if dataset else None
    record = {"command_name": "channels", "model": {"name": "m"}, "diverse": 1, "neuron": False, "dataset": dataset,
              "layers": [{"layer": "conv", "per_channel": [{"channel": 0, "activation": 1.25, "ratio": ratio,
                                                            "dead": False}]}]}
    arrays = {"layers": np.array(["conv"]), "images": np.random.default_rng(0).integers(0, 256, (1, 1, 4, 4), np.uint8),
              "scores": np.array([1.25], np.float32)}
    build_site([Run(tmp_path / "run", record, arrays)], tmp_path / "site", compute=False)
    load(driver, tmp_path / "site" / "channel-conv.html", "#0")
    text = driver.find_element("tag name", "main").text
    assert text.count("1.25") == 1 and "activation 1.25" in text, text
    assert ("ratio 2.50" in text and "of the mnist images" in text) if dataset else "no dataset" in text, text
    assert errors(driver) == []


def test_arrow_keys_walk_the_channels(driver, mnist_site):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as shows

    load(driver, mnist_site / "site" / "channel-conv1.html", "#5")
    driver.find_element("tag name", "body").send_keys(Keys.ARROW_RIGHT)
    wait(driver, 5).until(shows.title_contains("conv1 channel 6"))
    assert driver.current_url.endswith("channel-conv1.html#6")
    driver.find_element("tag name", "body").send_keys(Keys.ARROW_LEFT)
    wait(driver, 5).until(shows.title_contains("conv1 channel 5"))
    assert driver.current_url.endswith("channel-conv1.html#5")
    assert driver.find_element("id", "next").get_attribute("href").endswith("channel-conv1.html#6")
    driver.find_element("id", "next").click()  # a link to another channel of the page draws that channel
    wait(driver, 5).until(shows.title_contains("conv1 channel 6"))
    assert "conv1 channel 6" in driver.find_element("tag name", "h1").text and errors(driver) == []


def test_own_model_with_its_own_pictures(driver, tmp_path, monkeypatch, capsys):
    """A zoo model given as a user gives one (a model file, its checkpoint, its input shape and normalization:
    BNResNet, BatchNorm and residual blocks) and a folder of a few digits in sub-folders (--images): the site
    uses those pictures for the channels' real images, maps and histograms, as for a built-in model, and every
    page passes the same checks; explore says what it computes on stderr."""
    from PIL import Image

    from helpers import digit

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INTROSPECT_CACHE", str(tmp_path / "cache"))
    for label in range(8):
        folder = tmp_path / "digits" / ("even" if label % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digit(label)).save(folder / f"{label}.png")
    model = ["--model", f"{TESTS / 'zoo' / 'models.py'}:BNResNet", "--checkpoint", str(TESTS / "assets" / "zoo" / "bnresnet.pt"),
             "--input-shape", "1,28,28", "--mean", "0.1307", "--std", "0.3081"]
    assert main(["channels", *model, "--trust", "--layer", "stem.0,block1.conv2,fc", "--steps", "2", "--images", "digits",
                 "--out", "ch", "--quiet"]) == 0
    assert main(["classes", *model, "--steps", "2", "--out", "cl", "--quiet"]) == 0
    assert main(["activations", *model, "--images", "digits", "--index", "0", "--out", "act", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["explore", "ch", "cl", "act", "--out", "plain", "--quiet"]) == 0
    assert "explore:" not in capsys.readouterr().err  # --quiet: nothing
    notes = json.loads((tmp_path / "plain" / "data" / "index.js").read_text()[len("window.PAGE = "):-2])["notes"]
    assert any("add --trust" in n for n in notes), notes  # the flag named in full
    assert main(["explore", "ch", "cl", "act", "--out", "site", "--trust"]) == 0
    err = capsys.readouterr().err
    assert "explore: computing layer block1.conv2 (32 channels, 8 images)" in err and re.search(r"explore: writing \d+ pages", err)
    site = tmp_path / "site"
    pages = sorted(site.glob("*.html"))
    assert len([p for p in pages if p.name.startswith("channel-")]) == 3  # stem.0, block1.conv2, fc
    for page in pages:
        check_page(driver, page)
        assert "unknown dataset" not in driver.find_element("tag name", "main").text
    load(driver, site / "layer-block1.conv2.html")
    assert pictures(driver, ".card img.exm") >= 3
    live = next(r["c"] for r in driver.execute_script("return PAGE.channels") if not r["dead"])
    load(driver, site / "channel-block1.conv2.html", f"#{live}")
    assert pictures(driver, ".ex img") == 1 + 5  # the optimized image and five of the user's pictures
    assert count(driver, ".cbar") == 1 and count(driver, "svg.hist rect") >= 1
    text = driver.find_element("tag name", "main").text
    assert "(even)" in text or "(odd)" in text  # each picture's sub-folder
    assert "measured at: block1.conv2 → block1.bn2" in text
    load(driver, site / "index.html")
    assert pictures(driver, ".grid.classes img") == 10 and pictures(driver, ".layer-strip img") >= 3
    load(driver, tmp_path / "act" / "index.html")  # the activations run's own page: the digit and its maps
    assert pictures(driver, ".big img") == 2 and pictures(driver, ".fmap img") >= 16


def test_512_channel_layer_page_is_interactive_in_under_3_s(driver, tmp_path):
    assert main(["channels", "--model", "torchvision:resnet18", "--layer", "layer4.1.conv2", "--dataset", "none",
                 "--steps", "1", "--size", "32", "--out", "r18", "--quiet"]) == 0
    assert main(["explore", "r18", "--out", "site", "--quiet"]) == 0
    page = tmp_path / "site" / "layer-layer4.1.conv2.html"
    timings = []
    for _ in range(3):
        driver.get(page.resolve().as_uri())
        timings.append(driver.execute_script("""
            const n = performance.getEntriesByType('navigation')[0];
            return {interactive: n.domInteractive, content_loaded: n.domContentLoadedEventEnd, load: n.loadEventEnd,
                    rendered: window.READY, cards: document.querySelectorAll('#grid .card').length,
                    lazy: document.querySelectorAll('#grid img[loading=lazy]').length};"""))
    print("512-channel layer page (ms):", json.dumps(timings))
    for timing in timings:
        assert timing["cards"] == 512 and timing["lazy"] == 512
        assert timing["rendered"] < 3000 and timing["content_loaded"] < 3000 and timing["load"] < 3000
    assert errors(driver) == []
