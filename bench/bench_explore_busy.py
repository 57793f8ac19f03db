"""Explore's page load on a very busy machine: bench_page_load.py's measurement (its load() and "grid drawn" check)
with 180 s timeouts, this checkout against another one's Explore, Home as the reference, interleaved rounds.

    python bench/bench_explore_busy.py ROUNDS BEFORE_CHECKOUT [DATA_DIR]
"""
import statistics, subprocess, sys, tempfile
from pathlib import Path
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench")); sys.path.insert(0, str(REPO))
import bench_page_load as b
from playwright.sync_api import sync_playwright
from tests.browser.conftest import serve_app, stop_app, CHROMIUM, CHROMIUM_ARGS

def ready_explore(page):
    page.get_by_text("in this view").first.wait_for(timeout=180_000)
    page.wait_for_function(b.GRID_DRAWN, timeout=180_000, polling="raf")
def ready_home(page):
    page.get_by_role("link", name="Predict").last.wait_for(timeout=180_000)
data = Path(sys.argv[3]) if len(sys.argv) > 3 else b.SHARED_DATA
with tempfile.TemporaryDirectory() as scratch, sync_playwright() as p:
    runs = Path(scratch) / "runs"; runs.mkdir()
    apps = {"after": serve_app(runs, data, output=subprocess.DEVNULL),
            "before": serve_app(runs, data, output=subprocess.DEVNULL, script=str(Path(sys.argv[2]).resolve() / "streamlit_app.py"))}
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    pages = {"home": (apps["after"].url, ready_home), "explore": (apps["after"].url + "/explore", ready_explore),
             "explore, before": (apps["before"].url + "/explore", ready_explore)}
    try:
        b.load(browser, apps["before"].url, ready_home)
        for url, ready in pages.values():
            b.load(browser, url, ready)
        results = {name: [] for name in pages}
        for r in range(int(sys.argv[1])):
            for name, (url, ready) in pages.items():
                results[name].append(b.load(browser, url, ready)[0])
            print(f"round {r + 1}: " + ", ".join(f"{n} {v[-1]:.2f}" for n, v in results.items()), flush=True)
        home = statistics.median(results["home"])
        for name, values in results.items():
            print(f"{name:16s} ready {statistics.median(values):.2f} s (x{statistics.median(values) / home:.2f} Home)")
    finally:
        browser.close()
        for a in apps.values(): stop_app(a)
