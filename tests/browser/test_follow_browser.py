"""A run started from the command line shows live curves on the Train page of a server sharing its runs folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError

from core.store import EVENTS_FILE
from tests.browser.conftest import REPO, assert_no_error, screenshot
from tests.browser.test_train_browser import chart_points, open_train_page
from ui.live_chart import COMPONENT_NAME

SHOWN_WITHIN_SECONDS = 5.0  # issue 16: live curves within 5 s (of its first point: a curve has none before)


def followed_points(page, run_id: str) -> int:
    """Points in the accuracy chart of the followed run's panel; -1 before it is drawn."""
    slot = page.locator('[class*="st-key-train_elsewhere_slot_"]').filter(has=page.locator(f".st-key-train_elsewhere_{run_id}"))
    return chart_points(page, slot.locator(f'iframe[title$="{COMPONENT_NAME}"]'))


def wait_for_warm_charts(page, timeout: float = 90.0) -> None:
    """The open page's chart frame for runs from elsewhere, with plotly.js loaded (a second or two after its paint)."""
    deadline = time.monotonic() + timeout
    frame = page.locator(f'.st-key-train_elsewhere_slot_0 iframe[title$="{COMPONENT_NAME}"]')
    while time.monotonic() < deadline:
        try:
            if frame.count() and frame.first.element_handle(timeout=2_000).content_frame().evaluate(
                    "() => typeof Plotly === 'object'"):
                return
        except (PlaywrightError, AttributeError):
            pass
        time.sleep(0.2)
    raise AssertionError("the Train page did not prepare its charts for runs from elsewhere")


def first_progress(runs: Path, before: set[str], timeout: float = 180.0) -> tuple[str, float, float]:
    """The new run's id, when its event log got its first line (the run exists) and its first batch progress (the
    first point a curve can have)."""
    deadline, started = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        for folder in runs.iterdir():
            log = folder / EVENTS_FILE
            if folder.name in before or not log.is_file() or not log.stat().st_size:
                continue
            started = started or time.monotonic()
            if b'"event":"batch"' in log.read_bytes():
                return folder.name, started, time.monotonic()
        time.sleep(0.05)
    raise AssertionError("the command line's run wrote no progress to its event log")


def wait_for_points(page, run_id: str, more_than: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (points := followed_points(page, run_id)) > more_than:
            return points
        time.sleep(0.1)
    screenshot(page, "follow-no-curves")
    raise AssertionError(f"the followed run's chart stayed at {more_than} points for {timeout:.0f} s")


def test_a_command_line_run_shows_live_curves_within_5_s_and_its_end(page, app_url, app_folders):
    runs = app_folders["runs"]
    open_train_page(page, app_url)  # opened first: the run appears on a page that is already there
    wait_for_warm_charts(page)
    before = {folder.name for folder in runs.iterdir()}
    env = {**os.environ, "DIGIT_STUDIO_RUNS": str(runs), "DIGIT_STUDIO_DATA": str(app_folders["data"])}
    trainer = subprocess.Popen([sys.executable, "-m", "core", "train", "--recipe", "digits-cnn", "--runs-dir",
                                str(runs)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        run_id, started, first_point = first_progress(runs, before)
        first = wait_for_points(page, run_id, 0, timeout=60)
        shown = time.monotonic()
        screenshot(page, "follow-command-line-run")
        assert shown - first_point <= SHOWN_WITHIN_SECONDS, (
            f"curves shown {shown - first_point:.1f} s after the run's first point was written "
            f"({shown - started:.1f} s after its start)")
        wait_for_points(page, run_id, first, timeout=30)  # and they grow as it trains, without a click
        panel = page.locator(f".st-key-train_elsewhere_{run_id}")
        assert "Started from the command line on this machine" in panel.inner_text()
        assert f"kill -INT {trainer.pid}" in panel.inner_text()
        assert panel.get_by_role("button", name="Stop").count() == 0
        assert_no_error(page)
    finally:
        trainer.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal does: it stops and keeps its last epoch
        _, errors = trainer.communicate(timeout=120)
    assert "stopped" in errors  # it exits 1, as any run that did not reach its last epoch
    page.locator(f".st-key-train_elsewhere_ended_{run_id}").wait_for(timeout=30_000)
    ended = page.locator(f".st-key-train_elsewhere_ended_{run_id}").inner_text()
    assert "Stopped" in ended and "weights" in ended
    screenshot(page, "follow-command-line-run-stopped")
    assert_no_error(page)
