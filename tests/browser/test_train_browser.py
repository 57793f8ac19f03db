"""The Train page in Chromium: a run trains in the background, its charts redraw, it survives a reload, and Stop keeps it."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Error as PlaywrightError

from core.store import RunStore
from tests.browser.conftest import assert_no_error, cpu_seconds, screenshot, wait_for_app
from ui.live_chart import COMPONENT_NAME

POINTS_JS = """() => {
    const plot = document.getElementById('accuracy');
    return plot && plot.data ? plot.data.reduce((total, trace) => total + (trace.x ? trace.x.length : 0), 0) : -1;
}"""


def open_train_page(page, app_url: str) -> None:
    page.set_viewport_size({"width": 1400, "height": 2400})  # the whole page in one screenshot
    page.goto(f"{app_url}/train")
    wait_for_app(page)
    page.get_by_text("Set up a run").wait_for()
    # widgets can come a few seconds after the text on a busy machine (CI saw the form without them)
    page.get_by_label("Epochs", exact=True).wait_for(timeout=60_000)


def set_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    wait_for_app(page)


def start_training(page, epochs: int) -> None:
    set_number(page, "Epochs", epochs)
    page.get_by_role("button", name=re.compile("Start training|Queue training")).click()
    page.get_by_text(re.compile(r"Epoch \d+/" + str(epochs))).first.wait_for(timeout=60_000)


def chart_points(page) -> int:
    """Points in the live accuracy chart, which is drawn in the live-charts component's frame; -1 before it is.

    The frame is found from its element: Playwright's page.frames missed it in a second browser context.
    """
    element = page.locator(f'iframe[title$="{COMPONENT_NAME}"]')
    try:
        if not element.count():
            return -1
        frame = element.first.element_handle(timeout=5_000).content_frame()
        return frame.evaluate(POINTS_JS) if frame else -1
    except PlaywrightError:  # the frame was replaced while we read it (a rerun, a reload)
        return -1


def wait_for_more_points(page, than: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        points = chart_points(page)
        if points > than:
            return points
        time.sleep(0.5)
    raise AssertionError(f"the accuracy chart stayed at {than} points")


def test_a_run_redraws_live_survives_a_reload_and_ends_with_a_confusion_matrix(page, app_url, no_training_left):
    open_train_page(page, app_url)
    start_training(page, epochs=200)
    first = wait_for_more_points(page, 0)
    second = wait_for_more_points(page, first)  # the fragment redraws by itself: no click in between
    screenshot(page, "train-during-run")

    page.reload()
    wait_for_app(page)
    page.get_by_text(re.compile(r"Epoch \d+/200")).first.wait_for(timeout=30_000)
    wait_for_more_points(page, second - 1)  # the same job, with its whole history (at least what it had)
    assert_no_error(page)

    page.get_by_text("Finished.").wait_for(timeout=300_000)
    page.get_by_text(re.compile("^Results:")).wait_for(timeout=60_000)
    page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')]"
                           ".some(plot => plot.data && plot.data.some(trace => trace.type === 'heatmap'))",
                           timeout=60_000)
    assert_no_error(page)
    screenshot(page, "train-after-run")


def test_stop_ends_the_run_and_keeps_it_saved_as_stopped(page, app_url, app_folders, no_training_left):
    open_train_page(page, app_url)
    start_training(page, epochs=5000)
    wait_for_more_points(page, 0)
    page.get_by_role("button", name="Stop").click()
    page.get_by_text("Stopped.").wait_for(timeout=30_000)
    assert_no_error(page)
    screenshot(page, "train-stopped")
    stopped = [info for info in RunStore(app_folders["runs"]).list_runs() if info.status == "stopped"]
    assert stopped and stopped[0].has_weights and stopped[0].get("epochs_completed") >= 1


def test_training_carries_on_across_pages_and_closed_tabs_and_nothing_runs_after_stop(page, new_tab, app_server,
                                                                                       no_training_left):
    open_train_page(page, app_server.url)
    start_training(page, epochs=5000)
    page.get_by_role("link", name="Home").first.click()
    page.get_by_text(re.compile("Training digits-cnn: epoch")).wait_for(timeout=30_000)  # the sidebar follows it
    page.get_by_role("link", name="Train").first.click()
    page.get_by_role("button", name="Stop").wait_for(timeout=30_000)  # the same job, still running
    page.close()

    other = new_tab()
    open_train_page(other, app_server.url)
    before = chart_points(other)
    wait_for_more_points(other, before)  # the tab that started it is gone; training goes on, by design
    other.get_by_role("button", name="Stop").click()
    other.get_by_text("Stopped.").wait_for(timeout=30_000)
    other.close()

    time.sleep(1.0)
    used = cpu_seconds(app_server.process.pid)
    time.sleep(3.0)
    assert cpu_seconds(app_server.process.pid) - used < 0.6, "the server kept working after its run was stopped"
