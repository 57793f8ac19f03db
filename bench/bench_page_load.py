"""Page load: seconds from opening a page in a fresh browser session until it can be used, Train and Explore against
Home, measured in the same run.

    python bench/bench_page_load.py [--rounds 7] [--runs 4] [--data-dir ../shared/data] [--after-a-run]
                                    [--before DIR]

One `streamlit run streamlit_app.py` serves every load (warmed by one load of each page, not counted), with a runs
folder holding `--runs` small digits runs trained at the start (the Train page lists them, Explore offers them).
Each load is a new Chromium context (a new visitor: no cached files, a new Streamlit session) going to the page's
address; rounds interleave Home, Train and Explore, and the figures are medians.
"Ready" is when the page's main control can be used: Home's last link ("Predict"), Train's enabled Start button,
Explore's sample grid drawn (its image loaded and its tiles clickable; an older checkout's plotly grid: the chart
with its points). "Done" is when the script run is over (no running
indicator). The ratio is against Home's "ready" of the same round. "Chromium" is the CPU all of Chromium's
processes used from the visit's start until SETTLE_SECONDS after its script run (its frames' scripts loaded too).

With --after-a-run, a short run (digits, 3 epochs) is first trained from the Train page, as a person would before
coming back to it: every later visit to Train then shows that run's results (charts, confusion matrix, mistakes).

With --before DIR (another checkout, e.g. `git worktree add /tmp/before <commit>`), that checkout's app is served
too and its Train and Explore are measured in the same rounds ("train, before"...), against the same Home: a
before/after comparison on a machine whose load varies.

Two floors, served by a second `streamlit run` and measured in the same rounds, say what Streamlit and Chromium cost
here before the app does anything: a page with a title and a button (ready: the button), and the same with one
two-point plotly chart (ready: the chart drawn), the floor of a page whose first control is a plotly chart (as
Explore's grid was before ui.tile_grid).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402

from bench_app_overhead import chromium_cpu_seconds  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, SHARED_DATA, serve_app, stop_app, wait_for_app  # noqa: E402

GOAL_SECONDS = 2.5
SETTLE_SECONDS = 2.0
GOALS = ("train", "explore")
GRID_DRAWN = ("() => { const grid = document.querySelector('.st-key-explore_grid');"
              " const plot = grid && grid.querySelector('.js-plotly-plot');"  # the grid as a plotly figure (before)
              " const host = grid && [...grid.querySelectorAll('*')].find((element) => element.shadowRoot);"
              " const image = host && host.shadowRoot.querySelector('img.mosaic');"  # ui.tile_grid, in a shadow root
              " return !!(plot && plot.data && plot.data.length > 1) || !!(image && image.complete"
              " && image.naturalWidth > 0 && host.shadowRoot.querySelectorAll('.tiles button').length > 0); }")


def ready_home(page) -> None:
    page.get_by_role("link", name="Predict").last.wait_for(timeout=60_000)


def ready_train(page) -> None:
    page.locator("button:enabled", has_text="Start training").first.wait_for(timeout=60_000)


def ready_explore(page) -> None:
    page.wait_for_function(GRID_DRAWN, timeout=60_000, polling="raf")


PAGES = {"home": ("", ready_home), "train": ("/train", ready_train), "explore": ("/explore", ready_explore)}
FLOOR_PAGE = """import streamlit as st
st.title("Floor")
st.button("Go")
if st.query_params.get("plotly"):
    import plotly.graph_objects as go
    st.plotly_chart(go.Figure(go.Scatter(x=[1, 2], y=[1, 2])), key="floor")
"""
PLOTLY_DRAWN = "() => { const plot = document.querySelector('.js-plotly-plot'); return !!(plot && plot.data); }"


def ready_floor(page) -> None:
    page.get_by_role("button", name="Go").wait_for(timeout=60_000)


def ready_plotly_floor(page) -> None:
    page.wait_for_function(PLOTLY_DRAWN, timeout=60_000, polling="raf")


FLOORS = {"floor": ("/", ready_floor), "plotly floor": ("/?plotly=1", ready_plotly_floor)}


def load(browser, url: str, ready) -> tuple[float, float, float]:
    """(seconds until ready, seconds until the script run is over, Chromium's CPU seconds) for one fresh visit; the
    CPU is counted until SETTLE_SECONDS after the script run, when the page's frames have loaded their scripts."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        cpu = chromium_cpu_seconds()
        start = time.perf_counter()
        page.goto(url, wait_until="commit")
        ready(page)
        usable = time.perf_counter() - start
        wait_for_app(page, timeout=60_000)
        done = time.perf_counter() - start
        time.sleep(SETTLE_SECONDS)
        return usable, done, chromium_cpu_seconds() - cpu
    finally:
        context.close()


def train_from_the_page(browser, url: str) -> None:
    """Train a 3-epoch digits run from the Train page and wait for its results, so the app has a finished job."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(url + "/train")
        wait_for_app(page, timeout=60_000)
        epochs = page.get_by_label("Epochs", exact=True)
        epochs.fill("3")
        epochs.press("Enter")
        wait_for_app(page)
        page.get_by_role("button", name="Start training").click()
        page.get_by_text("Finished.").wait_for(timeout=300_000)
        wait_for_app(page, timeout=60_000)
    finally:
        context.close()


def trained_runs(folder: Path, count: int) -> None:
    """`count` small digits runs in `folder`, as a person's runs folder would hold after a few tries."""
    from core.record import RecordedTraining
    from core.store import RunStore
    from core.training import TrainConfig

    for seed in range(count):
        config = TrainConfig(model="digits-cnn", dataset="digits", epochs=2, train_limit=300, seed=seed)
        list(RecordedTraining(config, RunStore(folder)).events())


def measure(browser, urls: dict[str, str], rounds: int,
            chosen: tuple[str, ...] = tuple(GOALS)) -> dict[str, list[tuple[float, float, float]]]:
    """Home and the `chosen` pages of PAGES (at urls["app"]), FLOORS (at urls["floor"]) and, with urls["before"], that
    app's `chosen` pages, `rounds` times, interleaved."""
    pages = {name: (urls["app"] + path, ready) for name, (path, ready) in PAGES.items() if name in ("home", *chosen)}
    if "before" in urls:
        pages.update({f"{name}, before": (urls["before"] + PAGES[name][0], PAGES[name][1]) for name in chosen})
    pages.update({name: (urls["floor"] + path, ready) for name, (path, ready) in FLOORS.items()})
    for address, ready in pages.values():  # warm-up: imports, caches and the first dataset load, not counted
        try:
            load(browser, address, ready)
        except PlaywrightTimeout:  # a first visit paying every import on a busy machine: once more, warmer
            load(browser, address, ready)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in pages}
    for round_number in range(rounds):
        for name, (address, ready) in pages.items():
            results[name].append(load(browser, address, ready))
        print(f"  round {round_number + 1}: " + ", ".join(f"{name} {times[-1][0]:.2f}" for name, times in
                                                          results.items()) + " s", flush=True)
    return results


def report(results: dict[str, list[tuple[float, float, float]]]) -> None:
    home, home_cpu = (statistics.median(column) for column in list(zip(*results["home"]))[::2])
    for name, times in results.items():
        ready, done, cpu = (statistics.median(column) for column in zip(*times))
        goal = f", goal under {GOAL_SECONDS} s" if name in GOALS else ""
        print(f"{name:16s} ready {ready:.2f} s (x{ready / home:.2f} Home){goal}; script done {done:.2f} s; "
              f"Chromium {cpu:.2f} CPU s (x{cpu / home_cpu:.2f} Home)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=4, help="small runs in the runs folder")
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--after-a-run", action="store_true", help="train a short run from the Train page first")
    parser.add_argument("--before", type=Path, help="another checkout whose Train and Explore to measure alongside")
    parser.add_argument("--pages", nargs="+", choices=sorted(GOALS), default=sorted(GOALS),
                        help="which of Train and Explore to measure (Home and the floors always)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch, sync_playwright() as playwright:
        runs = Path(scratch) / "runs"
        os.environ["DIGIT_STUDIO_DATA"] = str(args.data_dir)
        trained_runs(runs, args.runs)
        floor_script = Path(scratch) / "floor.py"
        floor_script.write_text(FLOOR_PAGE)
        apps = {"app": serve_app(runs, args.data_dir, output=subprocess.DEVNULL),
                "floor": serve_app(runs, args.data_dir, output=subprocess.DEVNULL, script=str(floor_script))}
        if args.before:
            apps["before"] = serve_app(runs, args.data_dir, output=subprocess.DEVNULL,
                                       script=str(args.before.resolve() / "streamlit_app.py"))
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for name in ("app", "before") if args.after_a_run else ():
                if name in apps:
                    load(browser, apps[name].url, ready_home)  # the frame first: /train first would run alone
                    train_from_the_page(browser, apps[name].url)
            report(measure(browser, {name: served.url for name, served in apps.items()}, args.rounds,
                           tuple(args.pages)))
        finally:
            browser.close()
            for served in apps.values():
                stop_app(served)


if __name__ == "__main__":
    main()
