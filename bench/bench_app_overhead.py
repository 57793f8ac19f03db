"""App overhead: a run started from the Train page, live charts open in Chromium, vs the same run from the CLI.

    python bench/bench_app_overhead.py --data-dir ../shared/data [--rounds 3] [--epochs 2]

Each round runs the CLI, then the page with its live charts watched until the end, then the page left for a blank
tab once the run started (the server's own cost, without the browser's redrawing). Each run's images/s is its own
measurement (saved in its meta.json, training time only). Prints every run, the medians, the ratios to the CLI
(goal: at least 0.9 watched) and how many cores Chromium used while it watched.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.sync_api import expect  # noqa: E402

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, free_port, wait_healthy  # noqa: E402

RECIPE = "fast-cnn-99"
BROWSER_CORES: list[float] = []  # CPU cores Chromium used while it watched each run
PRESET_TITLE = "Fast CNN: 99% in under a minute (ours)"


def cli_run(data_dir: Path, runs_dir: Path, epochs: int) -> float:
    """images/s of one run of the command line."""
    done = subprocess.run([sys.executable, "-m", "core", "train", "--recipe", RECIPE, "--epochs", str(epochs),
                           "--data-dir", str(data_dir), "--runs-dir", str(runs_dir), "--json"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["images_per_second"])


def serve(data_dir: Path, runs_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "DIGIT_STUDIO_RUNS": str(runs_dir), "DIGIT_STUDIO_DATA": str(data_dir)}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless",
                               "true", "--server.port", str(port), "--server.address", "127.0.0.1"],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, server)
    return server, url


def wait_idle(page) -> None:
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)


def choose(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=False).first.click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def set_epochs(page, epochs: int) -> None:
    """Type the number of epochs and wait until the page has taken it (a rerun may still be redrawing the form)."""
    field = page.get_by_label("Epochs", exact=True)
    for _ in range(5):
        field.fill(str(epochs))
        field.press("Enter")
        wait_idle(page)
        time.sleep(1.0)
        if field.input_value() == str(epochs):
            return
    raise RuntimeError("the Epochs field did not take the value")


def app_run(page, url: str, runs_dir: Path, epochs: int, watch: bool) -> float:
    """images/s of one run started from the Train page; `watch` keeps the page and its live charts open until it
    ends, otherwise the tab leaves for a blank page once the run has started (the server's own cost only)."""
    before = set(runs_dir.iterdir())
    page.goto(f"{url}/train")
    page.get_by_text("Set up a run").wait_for(timeout=120_000)
    wait_idle(page)
    choose(page, "Dataset", "MNIST (28x28)")
    # MNIST's default preset: nothing to pick, only to check
    expect(page.get_by_role("combobox", name="Start from")).to_have_value(PRESET_TITLE, timeout=30_000)
    set_epochs(page, epochs)
    page.get_by_role("button", name=re.compile("Start training")).click()
    page.get_by_role("button", name="Stop").wait_for(timeout=60_000)  # this run's: the last one's "Finished." goes
    if watch:
        used, started = chromium_cpu_seconds(), time.monotonic()
        page.get_by_text("Finished.").wait_for(timeout=600_000)
        BROWSER_CORES.append((chromium_cpu_seconds() - used) / (time.monotonic() - started))
    else:
        page.goto("about:blank")
    return finished_run_speed(runs_dir, before)


def chromium_cpu_seconds() -> float:
    """CPU seconds used so far by every Chromium process on the machine (Linux /proc)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, fields = stat.read_text().rsplit(")", 1)
        except OSError:  # the process ended while we looked
            continue
        if "chrom" in name.split("(", 1)[1]:
            values = fields.split()
            total += (int(values[11]) + int(values[12])) / os.sysconf("SC_CLK_TCK")
    return total


def finished_run_speed(runs_dir: Path, before: set[Path], timeout: float = 600.0) -> float:
    """images/s from the meta.json of the one run folder that is new since `before`, once it says done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run_dir in set(runs_dir.iterdir()) - before:
            try:
                meta = json.loads((run_dir / "meta.json").read_text())
            except (OSError, ValueError):  # not written yet
                continue
            if meta.get("status") == "done":
                return float(meta["images_per_second"])
        time.sleep(1.0)
    raise RuntimeError("the run started from the page did not finish in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch:
        cli_runs, app_runs = Path(scratch, "cli"), Path(scratch, "app")
        app_runs.mkdir()
        server, url = serve(args.data_dir.resolve(), app_runs)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url)  # the home page first: the frame's navigation takes over from the pages/ folder
                page.get_by_text("Digit Studio").first.wait_for(timeout=120_000)
                results: dict[str, list[float]] = {"cli": [], "watched": [], "unwatched": []}
                for round_number in range(1, args.rounds + 1):
                    results["cli"].append(cli_run(args.data_dir, cli_runs, args.epochs))
                    results["watched"].append(app_run(page, url, app_runs, args.epochs, watch=True))
                    results["unwatched"].append(app_run(page, url, app_runs, args.epochs, watch=False))
                    print(f"round {round_number}: " + ", ".join(f"{name} {speeds[-1]:,.0f} img/s"
                                                                 for name, speeds in results.items()), flush=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    cli, watched, unwatched = (statistics.median(results[name]) for name in ("cli", "watched", "unwatched"))
    print(f"{RECIPE}, {args.epochs} epochs on the MNIST subset, {args.rounds} rounds (medians): cli {cli:,.0f} img/s, "
          f"app with the live charts open {watched:,.0f} img/s, app with the tab gone {unwatched:,.0f} img/s")
    print(f"app watched / cli = {watched / cli:.2f} (goal >= 0.9); app unwatched / cli = {unwatched / cli:.2f}; "
          f"Chromium used {statistics.median(BROWSER_CORES):.2f} of the machine's {os.cpu_count()} cores while watching")


if __name__ == "__main__":
    main()
