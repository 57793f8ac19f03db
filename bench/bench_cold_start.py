"""Cold start: seconds from `streamlit run` until the home page is served, and until it is usable in Chromium.

    python bench/bench_cold_start.py [--rounds 3] [--before DIR]

A: `streamlit run streamlit_app.py` (the app, with an empty runs folder and the data in ../shared/data).
B: the floor: `streamlit run` of a one-line page (st.title), what Streamlit itself costs on this machine.
"Served": GET / answers 200 (Streamlit's index page). "Usable": Chromium (launched before the clock starts)
has loaded the page, the script run is over (no running indicator) and the page's title is on screen.
With --before DIR (another checkout, e.g. `git worktree add /tmp/before <commit>`), that checkout's app is started
too, in the same rounds (A, A before, B, ...), so that before and after meet the same load.
Each run is a fresh interpreter; interleaved rounds, medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, SHARED_DATA, free_port, wait_for_app  # noqa: E402

GOAL_SECONDS = 5.0
FLOOR_APP = 'import streamlit as st\n\nst.title("Floor")\n'


def _served(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited early: {process.stdout.read() if process.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("streamlit did not serve its page in time")


def cold_start(browser, script: Path, title: str, env: dict[str, str], cwd: Path = REPO) -> tuple[float, float]:
    """Seconds until the page is served and until `title` shows in a usable page."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
                                "--server.port", str(port), "--server.address", "127.0.0.1"],
                               cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _served(url, process)
        served = time.perf_counter() - start
        page.goto(url)
        wait_for_app(page, timeout=60_000)
        page.get_by_role("heading", name=title).wait_for(timeout=60_000)
        return served, time.perf_counter() - start
    finally:
        context.close()
        process.terminate()
        process.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, help="another checkout whose app is measured in the same rounds")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch, sync_playwright() as playwright:
        floor = Path(scratch) / "floor_app.py"
        floor.write_text(FLOOR_APP)
        env = {**os.environ, "DIGIT_STUDIO_RUNS": str(Path(scratch) / "runs"), "DIGIT_STUDIO_DATA": str(SHARED_DATA)}
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        apps = {"app": (REPO, REPO / "streamlit_app.py", "Digit Studio"), "floor": (REPO, floor, "Floor")}
        if args.before:
            before = args.before.resolve()
            apps = {"app": apps["app"], "before": (before, before / "streamlit_app.py", "Digit Studio"),
                    "floor": apps["floor"]}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in apps}
        for _ in range(args.rounds):
            for name, (cwd, script, title) in apps.items():
                results[name].append(cold_start(browser, script, title, env, cwd))
                print(f"  {name}: served {results[name][-1][0]:.2f} s, usable {results[name][-1][1]:.2f} s", flush=True)
        browser.close()
    median = {name: [statistics.median(times) for times in zip(*runs)] for name, runs in results.items()}
    (app_served, app_usable), (floor_served, floor_usable) = median["app"], median["floor"]
    print(f"app: home page served {app_served:.2f} s, usable in Chromium {app_usable:.2f} s "
          f"(goal under {GOAL_SECONDS:.0f} s)")
    print(f"floor (one-line Streamlit page): served {floor_served:.2f} s, usable {floor_usable:.2f} s")
    print(f"app / floor: served {app_served / floor_served:.2f}x, usable {app_usable / floor_usable:.2f}x")
    if "before" in median:
        before_served, before_usable = median["before"]
        print(f"before ({args.before}): served {before_served:.2f} s, usable {before_usable:.2f} s; "
              f"after / before: usable {app_usable / before_usable:.2f}x")


if __name__ == "__main__":
    main()
