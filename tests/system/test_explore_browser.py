"""The explorer in a real browser: Debian's Chromium and ChromeDriver, driven by selenium, from file://.

A missing browser fails these tests (install: apt-get install -y chromium chromium-driver).
"""
import json
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from helpers import chromium
from introspect_cli.main import main

SEVEN = Path(__file__).resolve().parents[2] / "examples" / "seven.png"


@pytest.fixture(scope="module")
def driver():
    browser = chromium("--window-size=1280,900")
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def mnist_site(tmp_path_factory):
    """A channels run of all four layers, a classes run and an activations run of the built-in MNIST net, joined."""
    root = tmp_path_factory.mktemp("explore")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("INTROSPECT_CACHE", str(root / "cache"))
        assert main(["channels", "--layer", "all", "--steps", "2", "--out", "ch", "--quiet"]) == 0
        assert main(["classes", "--steps", "2", "--out", "cl", "--quiet"]) == 0
        assert main(["activations", "--image", str(SEVEN), "--out", "act", "--quiet"]) == 0
        assert main(["explore", "ch", "cl", "act", "--out", "site", "--quiet"]) == 0
    return root


def load(driver, path: Path) -> None:
    driver.get(path.resolve().as_uri())
    driver.get_log("browser")  # nothing before this page


def errors(driver) -> list:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def check_page(driver, path: Path) -> None:
    """Loads with no console error; every image decodes once scrolled into view; every link and image names a file."""
    driver.get(path.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    driver.execute_script("""
        for (const img of document.images) img.scrollIntoView();
        window.scrollTo(0, document.body.scrollHeight);""")
    deadline = time.time() + 10
    while driver.execute_script("return [...document.images].some(i => !i.complete)") and time.time() < deadline:
        time.sleep(0.05)
    broken = driver.execute_script("return [...document.images].filter(i => !(i.naturalWidth > 0)).map(i => i.src)")
    assert broken == [], f"{path.name}: images not decoded: {broken[:5]}"
    targets = driver.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)"
                                    " .concat([...document.images].map(i => i.src))")
    for target in targets:
        url = urlparse(target)
        assert url.scheme == "file", f"{path.name}: {target} leaves the site"
        assert Path(unquote(url.path)).is_file(), f"{path.name}: {target} does not exist"
    assert errors(driver) == [], f"{path.name}: console errors"


def test_every_page_of_the_joined_site(driver, mnist_site):
    pages = sorted((mnist_site / "site").glob("*.html"))
    assert {"index.html", "layer", "channel", "class", "image"} <= {p.name.split("-")[0] for p in pages}
    assert len([p for p in pages if p.name.startswith("channel-")]) == 32 + 64 + 128 + 10
    for page in pages:
        check_page(driver, page)
    load(driver, mnist_site / "site" / "channel-conv2-3.html")
    text = driver.find_element("tag name", "main").text
    assert "Inputs" in text and "conv1" in text and "Outputs" in text and "Activation over the dataset" in text


def test_every_run_folder_opens_its_own_site(driver, mnist_site):
    for run in ("ch", "cl", "act"):
        index = mnist_site / run / "index.html"
        driver.get(index.resolve().as_uri())
        deadline = time.time() + 5
        while not driver.current_url.endswith("site/index.html") and time.time() < deadline:
            time.sleep(0.05)
        assert driver.current_url.endswith("site/index.html")
        for page in sorted((mnist_site / run / "site").glob("*.html"))[:40]:
            check_page(driver, page)


def test_sorting_and_filters(driver, mnist_site):
    load(driver, mnist_site / "site" / "layer-fc1.html")
    rows = driver.execute_script("return PAGE.channels")
    order = lambda: [int(c) for c in driver.find_element("id", "grid").get_attribute("data-order").split(",")]
    assert order() == sorted(r["c"] for r in rows)
    from selenium.webdriver.support.ui import Select

    for key in ("ratio", "active"):
        Select(driver.find_element("id", "sort")).select_by_value(key)
        values = [next(r[key] for r in rows if r["c"] == c) for c in order()]
        known = [v for v in values if v is not None]
        assert known == sorted(known, reverse=True) and values[:len(known)] == known
    driver.find_element("id", "hideDead").click()
    assert len(order()) == sum(not r["dead"] for r in rows)
    assert errors(driver) == []


def test_arrow_keys_walk_the_channels(driver, mnist_site):
    from selenium.webdriver.common.keys import Keys

    load(driver, mnist_site / "site" / "channel-conv1-5.html")
    driver.find_element("tag name", "body").send_keys(Keys.ARROW_RIGHT)
    deadline = time.time() + 5
    while not driver.current_url.endswith("channel-conv1-6.html") and time.time() < deadline:
        time.sleep(0.05)
    assert driver.current_url.endswith("channel-conv1-6.html")
    driver.find_element("tag name", "body").send_keys(Keys.ARROW_LEFT)
    while not driver.current_url.endswith("channel-conv1-5.html") and time.time() < deadline + 5:
        time.sleep(0.05)
    assert driver.current_url.endswith("channel-conv1-5.html")
    assert driver.find_element("id", "next").get_attribute("href").endswith("channel-conv1-6.html")


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
