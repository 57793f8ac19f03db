"""The live charts' cost in the browser: Chromium's CPU while the Train page's charts and progress bar redraw.

    python bench/bench_live_chart.py [--seconds 20] [--every 1] [--rounds 2]

Serves bench/live_chart_page.py, which redraws synthetic live data (the curve buffer's 1,000 points, new values
each time) in a fragment, as the Train page does, one way per visit. Sums the CPU time of every Chromium process
from /proc over each window, and prints the medians and the ratios of each change to its baseline:
- charts: two st.plotly_chart elements (the baseline, what the page did before) vs the ui.live_chart component;
- progress bar: st.progress as Streamlit animates it (baseline) vs with its slide transition switched off.
On a machine where the browser shares the cores that train, every core it takes is taken from training.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from playwright.sync_api import sync_playwright  # noqa: E402

from bench_app_overhead import chromium_cpu_seconds  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, serve_app, stop_app  # noqa: E402

WAYS = ("none", "plotly", "component", "bar", "bar-still")
SETTLE_SECONDS = 6.0  # plotly.js loads and the first redraws pass before the window opens


def browser_cores(page, url: str, way: str, every: float, seconds: float) -> float:
    """Chromium's CPU, in cores, over `seconds` of the bench page redrawing one way."""
    page.goto(f"{url}/?way={way}&every={every:g}")
    page.wait_for_timeout(SETTLE_SECONDS * 1000)
    used, started = chromium_cpu_seconds(), time.monotonic()
    page.wait_for_timeout(seconds * 1000)
    return (chromium_cpu_seconds() - used) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--every", type=float, default=1.0, help="redraw period in seconds")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cores: dict[str, list[float]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory() as scratch:
        served = serve_app(Path(scratch) / "runs", Path(scratch) / "data", script="bench/live_chart_page.py")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                for round_number in range(1, args.rounds + 1):
                    for way in WAYS:  # interleaved, so a slow minute of the machine hits every way alike
                        cores[way].append(browser_cores(page, served.url, way, args.every, args.seconds))
                    print(f"round {round_number}: " + ", ".join(f"{way} {values[-1]:.3f}" for way, values in cores.items()),
                          flush=True)
                browser.close()
        finally:
            stop_app(served)
    median = {way: statistics.median(values) for way, values in cores.items()}
    print(f"Chromium cores (median of {args.rounds}), redraw every {args.every:g} s: "
          + ", ".join(f"{way} {value:.3f}" for way, value in median.items()))
    charts_before, charts_after = median["plotly"] - median["none"], median["component"] - median["none"]
    print(f"charts: component / st.plotly_chart = {median['component'] / median['plotly']:.2f} "
          f"(above an empty fragment: {charts_after:.3f} vs {charts_before:.3f} cores, "
          f"{charts_after / charts_before:.2f})")
    print(f"progress bar: still / animated = {median['bar-still'] / median['bar']:.2f}")


if __name__ == "__main__":
    main()
