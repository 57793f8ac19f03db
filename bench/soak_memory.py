"""Soak: a long training run with the Train page's live charts open in Chromium; the server's memory over time.

    python bench/soak_memory.py --minutes 30 [--dataset fashion-mnist] [--data-dir ../shared/data]

Samples the Streamlit server's resident memory (VmRSS) every --every seconds while the run trains and the page
redraws its charts once a second, then stops the run. Prints each sample, then the growth after the warm-up
(the dataset loaded and the model built).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_app_overhead import choose, set_epochs, wait_idle  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, serve_app, stop_app  # noqa: E402


def resident_mib(pid: int) -> float:
    """The process's resident memory in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line")


def start_long_run(page, url: str, dataset_title: str) -> None:
    page.goto(f"{url}/train")
    page.get_by_text("Set up a run").wait_for(timeout=120_000)
    wait_idle(page)
    choose(page, "Dataset", dataset_title)
    set_epochs(page, 1000)
    page.get_by_role("button", name="Start training").click()
    page.get_by_role("button", name="Stop").wait_for(timeout=120_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--dataset-title", default="Fashion-MNIST (28x28)")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=30.0)
    parser.add_argument("--warmup-minutes", type=float, default=1.0)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        served = serve_app(Path(scratch), args.data_dir.resolve(), subprocess.DEVNULL)
        server, url = served.process, served.url
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url)
                page.get_by_text("Digit Studio").first.wait_for(timeout=120_000)
                start_long_run(page, url, args.dataset_title)
                started = time.monotonic()
                while (elapsed := time.monotonic() - started) < args.minutes * 60:
                    samples.append((elapsed / 60, resident_mib(server.pid)))
                    progress = page.get_by_text("images/s").first.inner_text(timeout=60_000)
                    print(f"{elapsed / 60:6.1f} min  server RSS {samples[-1][1]:7.1f} MiB  {progress}", flush=True)
                    time.sleep(args.every)
                page.get_by_role("button", name="Stop").click()
                page.get_by_text("Stopped.").wait_for(timeout=60_000)
                browser.close()
        finally:
            stop_app(served)
    settled = [rss for minute, rss in samples if minute >= args.warmup_minutes]  # data loaded, model built
    print(f"{len(samples)} samples over {samples[-1][0]:.1f} min; after the first {args.warmup_minutes:g} min: "
          f"server RSS {settled[0]:.0f} MiB at first, {settled[-1]:.0f} MiB at the end "
          f"({settled[-1] - settled[0]:+.0f} MiB), between {min(settled):.0f} and {max(settled):.0f} MiB")

if __name__ == "__main__":
    main()
