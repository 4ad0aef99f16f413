"""The README's screenshots of the explorer: the layer grid of conv2, a channel page and the classes page of the
built-in MNIST net, from runs at the default settings, taken with Debian's headless Chromium through its chromedriver (never a
download: apt-get install -y chromium chromium-driver).

    .venv/bin/python docs/screenshots.py            # writes docs/explorer-{layer,channel,classes}.png
    .venv/bin/python docs/screenshots.py --work DIR # keeps the runs and the site in DIR (default: a temporary one)

Each PNG is the top of its page at 1100 px wide, saved with as few colours as keep it exact, under 300 KB.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
WIDTH = 1100
LIMIT = 300_000
#: Each screenshot: the page it shows and the window's height.
SHOTS = {"explorer-layer.png": ("layer-conv2.html", 760), "explorer-channel.png": ("channel-conv2.html#8", 1250),
         "explorer-classes.png": ("classes.html", 760)}


#: The runs the screenshots show (reused when already in the work folder), then the site joining them.
RUNS = {"ch": ["channels", "--layer", "conv2"], "cl": ["classes"]}


def build(work: Path) -> Path:
    """The runs and their site under ``work``; returns the site folder."""
    from introspect_cli.main import main

    os.chdir(work)
    for out, command in RUNS.items():
        if not (work / out / "run.json").is_file() and main([*command, "--out", out, "--quiet"]) != 0:
            raise SystemExit(f"introspect {' '.join(command)} failed")
    if main(["explore", *RUNS, "--out", "site", "--quiet"]) != 0:
        raise SystemExit("introspect explore failed")
    return work / "site"


def browser():
    os.environ["SE_AVOID_STATS"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars",
                     f"--window-size={WIDTH},760"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def shoot(driver, page: Path, height: int, out: Path) -> int:
    """The top of ``page`` (``height`` the window's) once its images decoded, as a PNG at ``out``; returns its
    size in bytes."""
    from PIL import Image

    driver.set_window_size(WIDTH, height)
    name, _, channel = page.name.partition("#")  # a channel page: the channel after the #
    driver.get(page.with_name(name).resolve().as_uri() + (f"#{channel}" if channel else ""))
    deadline = time.time() + 20
    script = "return [...document.images].filter(i => i.getBoundingClientRect().top < innerHeight).every(i => i.complete)"
    while not driver.execute_script(script) and time.time() < deadline:
        time.sleep(0.1)
    picture = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    colours = picture.getcolors(256)
    if colours is not None:  # few colours: a palette image holds them exactly, in far fewer bytes
        picture = picture.quantize(len(colours), dither=Image.Dither.NONE)
    picture.save(out, optimize=True)
    size = out.stat().st_size
    if size >= LIMIT:
        raise SystemExit(f"{out} is {size} bytes, over {LIMIT}")
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="folder for the runs and the site (kept; runs already there are reused)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        site = build(work.resolve())
        driver = browser()
        stack.callback(driver.quit)
        for name, (page, height) in SHOTS.items():
            print(f"{DOCS / name}: {shoot(driver, site / page, height, DOCS / name)} bytes from {page}")


if __name__ == "__main__":
    main()
