"""App overhead: a run started from the Train page, live charts open in Chromium, vs the same run from the CLI.

    python bench/bench_app_overhead.py --data-dir ../shared/data [--rounds 3] [--epochs 3] [--redraw 1 2]

Each round runs the CLI, then the page with its live charts watched until the end, then the page left for a blank
tab once the run started (the server's own cost, without the browser's redrawing). With --redraw, one server per
redraw period (DIGIT_STUDIO_REDRAW_SECONDS) and a watched run on each in every round, so they meet the same noise;
without it, the page's own choice for this machine. Each run's images/s is its own
measurement, read from its meta.json: overall (every epoch) and settled (from the end of epoch 1 on, since a
fresh CLI process pays in its first epoch for kernel set-up that the long-lived server has done once). Prints
every run, the medians, the ratios to the CLI (goal: at least 0.9 watched) and Chromium's CPU while watching.
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
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.sync_api import expect  # noqa: E402

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, cpu_seconds, serve_app, stop_app  # noqa: E402

RECIPE = "fast-cnn-99"
BROWSER_CORES: dict[str, list[float]] = {}  # CPU cores Chromium used while it watched each run, by kind of run
PRESET_TITLE = "Fast CNN: 99% in under a minute (ours)"


@dataclass(frozen=True)
class Speed:
    """Training images per second of one run, read from its meta.json."""

    overall: float  # every epoch, the first included
    settled: float  # from the end of epoch 1 on: a fresh process's first epoch pays to set up kernels


def speed_of(meta: dict) -> Speed:
    first, last = meta["history"][0], meta["history"][-1]
    images = meta["train_size"] * (last["epoch"] - first["epoch"])
    return Speed(float(meta["images_per_second"]), images / (last["elapsed_seconds"] - first["elapsed_seconds"]))


def cli_run(data_dir: Path, runs_dir: Path, epochs: int) -> Speed:
    """The speed of one run of the command line."""
    done = subprocess.run([sys.executable, "-m", "core", "train", "--recipe", RECIPE, "--epochs", str(epochs),
                           "--data-dir", str(data_dir), "--runs-dir", str(runs_dir), "--json"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    run_dir = Path(json.loads(done.stdout.strip().splitlines()[-1])["run_dir"])
    return speed_of(json.loads((run_dir / "meta.json").read_text()))


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


def app_run(page, url: str, runs_dir: Path, epochs: int, watch: str | None) -> Speed:
    """The speed of one run started from the Train page; `watch` (the kind of run, for Chromium's CPU) keeps the
    page and its live charts open until it ends, otherwise the tab leaves for a blank page once the run has started
    (the server's own cost only)."""
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
        BROWSER_CORES.setdefault(watch, []).append((chromium_cpu_seconds() - used) / (time.monotonic() - started))
    else:
        page.goto("about:blank")
    return finished_run_speed(runs_dir, before)


def chromium_cpu_seconds() -> float:
    """CPU seconds used so far by every Chromium process on the machine (Linux /proc)."""
    total = 0.0
    for process in Path("/proc").iterdir():
        try:
            if process.name.isdigit() and "chrom" in (process / "comm").read_text():
                total += cpu_seconds(process.name)
        except OSError:  # the process ended while we looked
            continue
    return total


def finished_run_speed(runs_dir: Path, before: set[Path], timeout: float = 600.0) -> Speed:
    """The speed in the meta.json of the one run folder that is new since `before`, once it says done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run_dir in set(runs_dir.iterdir()) - before:
            try:
                meta = json.loads((run_dir / "meta.json").read_text())
            except (OSError, ValueError):  # not written yet
                continue
            if meta.get("status") == "done":
                return speed_of(meta)
        time.sleep(1.0)
    raise RuntimeError("the run started from the page did not finish in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--redraw", type=float, nargs="*", default=[],
                        help="redraw periods in seconds to compare, one server each (default: the page's choice)")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the settled speed is measured from the end of epoch 1")
    if any(not 0.5 <= redraw <= 10 for redraw in args.redraw):
        parser.error("--redraw: each period must be from 0.5 to 10 s (the app ignores others)")
    from playwright.sync_api import sync_playwright

    redraws = args.redraw or [None]
    watched = [f"watched {redraw:g} s" if redraw else "watched" for redraw in redraws]
    results: dict[str, list[Speed]] = {name: [] for name in ("cli", *watched, "unwatched")}
    with tempfile.TemporaryDirectory() as scratch:
        cli_runs, app_runs = Path(scratch, "cli"), [Path(scratch, f"app-{index}") for index in range(len(redraws))]
        for folder in app_runs:
            folder.mkdir()
        servers = [serve_app(folder, args.data_dir.resolve(), subprocess.DEVNULL,
                             settings={"DIGIT_STUDIO_REDRAW_SECONDS": str(redraw)} if redraw else None)
                   for folder, redraw in zip(app_runs, redraws)]
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                for served in servers:  # the home page first: the frame's navigation takes over from pages/
                    page.goto(served.url)
                    page.get_by_text("Digit Studio").first.wait_for(timeout=120_000)
                for round_number in range(1, args.rounds + 1):
                    results["cli"].append(cli_run(args.data_dir, cli_runs, args.epochs))
                    for name, served, folder in zip(watched, servers, app_runs):
                        results[name].append(app_run(page, served.url, folder, args.epochs, watch=name))
                    results["unwatched"].append(app_run(page, servers[0].url, app_runs[0], args.epochs, watch=None))
                    print(f"round {round_number} (overall / settled img/s): " + ", ".join(
                        f"{name} {speeds[-1].overall:,.0f} / {speeds[-1].settled:,.0f}"
                        for name, speeds in results.items()), flush=True)
                browser.close()
        finally:
            for served in servers:
                stop_app(served)
    report(results, args)


def report(results: dict[str, list[Speed]], args: argparse.Namespace) -> None:
    for kind in ("settled", "overall"):
        median = {name: statistics.median(getattr(speed, kind) for speed in speeds) for name, speeds in results.items()}
        ratios = ", ".join(f"{name} / cli = {value / median['cli']:.2f}" for name, value in median.items() if name != "cli")
        print(f"{kind}: " + ", ".join(f"{name} {value:,.0f} img/s" for name, value in median.items())
              + f"; {ratios} (goal for watched: >= 0.9)")
    browser = ", ".join(f"{name} {statistics.median(cores):.2f}" for name, cores in BROWSER_CORES.items())
    print(f"{RECIPE}, {args.epochs} epochs on the MNIST subset, {args.rounds} rounds, medians; Chromium's share of "
          f"the machine's {os.cpu_count()} cores while watching: {browser}")


if __name__ == "__main__":
    main()
