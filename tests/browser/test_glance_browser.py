"""The Train page at a glance, in Chromium at 1400x1000: what starts a run is on the first screen, the live charts
come into view on Start, the results take the live panel's place when the run ends, and the charts zoom and switch
to a log scale as plotly users expect."""

from __future__ import annotations

import re
import shutil
import time

from playwright.sync_api import expect

from tests.browser.conftest import (PHONE, assert_no_error, metric_lines, screenshot, settled_box, settled_on_screen,
                                   wait_for_app)
from tests.browser.test_train_browser import (click_row, finished_tiny_run, plant_run, set_number,
                                              wait_for_more_points)
from ui.live_chart import COMPONENT_NAME

HEIGHT = 1000  # the page fixture's viewport: 1400x1000
CHARTS = f'iframe[title$="{COMPONENT_NAME}"]'
GRID_DRAWN = ("() => { const grid = document.querySelector('.st-key-explore_grid');"  # ui.tile_grid: in a shadow root
              " const host = grid && [...grid.querySelectorAll('*')].find((element) => element.shadowRoot);"
              " const image = host && host.shadowRoot.querySelector('img.mosaic');"
              " return !!(image && image.complete && image.naturalWidth > 0"
              " && host.shadowRoot.querySelectorAll('.tiles button').length > 0); }")
SCROLLED = "() => document.querySelector('[data-testid=\"stMain\"]').scrollTop"


UNDER_THE_HEADER = 72  # px: where a part brought into view lands (its scroll margin, 4.5rem)


def open_train(page, app_url: str) -> None:
    page.goto(f"{app_url}/train")
    wait_for_app(page)
    page.get_by_role("button", name=re.compile("Start training|Queue training")).wait_for(timeout=60_000)


PAGE_SCROLL = """() => { const main = document.querySelector('[data-testid="stMain"]') || document.scrollingElement;
  return {scrolled: main.scrollTop, height: main.scrollHeight}; }"""


def on_screen(locator) -> bool:
    """Whether the element lies wholly inside the 1,000 px high window, as it is scrolled now."""
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= HEIGHT


def loss_layout(page, expression: str):
    """A property of the live loss chart's plotly layout, read inside the charts' frame."""
    frame = page.locator(CHARTS).first.element_handle(timeout=10_000).content_frame()
    return frame.evaluate(f"() => {{ const layout = document.getElementById('loss').layout; return {expression}; }}")


def test_the_pickers_the_preset_and_start_are_on_the_first_screen(page, app_url):
    open_train(page, app_url)
    assert page.evaluate(SCROLLED) == 0
    for label in ("Dataset", "Start from", "Model", "Epochs"):
        assert on_screen(page.get_by_label(label, exact=True)), label
    assert on_screen(page.get_by_role("button", name=re.compile("Start training|Queue training")))
    assert_no_error(page)
    screenshot(page, "glance-train-first-screen")


def test_start_brings_the_live_charts_into_view_and_the_results_come_where_they_were(page, app_url, no_training_left):
    open_train(page, app_url)
    set_number(page, "Epochs", 60)
    page.get_by_role("button", name="Start training").click()
    wait_for_more_points(page, 0)
    time.sleep(1.0)  # the page has settled after the scroll
    assert on_screen(page.locator(CHARTS).first), page.locator(CHARTS).first.bounding_box()
    live_top = page.locator(".st-key-train_live").bounding_box()["y"]
    assert abs(live_top - UNDER_THE_HEADER) < 8, live_top  # all the way up, even where the page grew after the scroll
    screenshot(page, "glance-train-during-run")

    results = page.get_by_role("heading", name=re.compile("^Results:"))
    results.wait_for(timeout=300_000)
    time.sleep(1.0)
    assert on_screen(results), results.bounding_box()
    assert abs(page.locator(".st-key-train_live").bounding_box()["y"] - live_top) < 40  # in the live panel's place
    expect(page.get_by_text(re.compile("^Finished. Test accuracy"))).to_be_visible()
    assert_no_error(page)
    screenshot(page, "glance-train-results-linear")

    page.get_by_text("Log-scale loss").first.click()
    deadline = time.monotonic() + 30
    while loss_layout(page, "layout.yaxis.type") != "log":
        assert time.monotonic() < deadline, "the loss chart did not switch to a log scale"
        time.sleep(0.3)
    screenshot(page, "glance-train-results-log")


def test_a_live_chart_zooms_on_a_drag_and_a_double_click_shows_it_whole(page, app_url, no_training_left):
    open_train(page, app_url)
    set_number(page, "Epochs", 20)
    page.get_by_role("button", name=re.compile("Start training|Queue training")).click()
    page.get_by_role("heading", name=re.compile("^Results:")).wait_for(timeout=300_000)
    wait_for_app(page)
    page.get_by_text("Test images the model got wrong", exact=False).first.wait_for(timeout=60_000)  # all drawn
    left, top = zoomed_by_a_drag(page)
    page.mouse.dblclick(left + 60, top + 40)
    assert loss_autorange_becomes(page, True)  # the whole run again


def loss_autorange_becomes(page, wanted: bool, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while loss_layout(page, "layout.xaxis.autorange") is not wanted:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def zoomed_by_a_drag(page, tries: int = 3) -> tuple[float, float]:
    """Drag a box inside the loss chart's plot area until it zooms in on it; returns where the drag started. A rerun
    after the run ends may draw the chart again under a drag, which then zooms nothing: the drag is made again."""
    for _ in range(tries):
        box = settled_on_screen(page.locator(CHARTS).first)
        left, top = box["x"] + 80, box["y"] + 120  # inside the loss chart's plot area
        page.mouse.move(left, top)
        page.mouse.down()
        page.mouse.move(left + 120, top + 80, steps=8)
        page.mouse.up()
        if loss_autorange_becomes(page, False):
            return left, top
    raise AssertionError(f"{tries} drags over the loss chart never zoomed it")


def test_show_results_opens_them_under_the_table_in_view(page, app_url, app_folders, tmp_path, no_training_left):
    # A finished run of its own, first in the table (ids sort newest first, and "zz" above any date): the run an
    # earlier test left first may have been stopped before its first epoch, and a run without weights has no results
    own = app_folders["runs"] / "zz-9-glance"
    plant_run(finished_tiny_run(tmp_path), own)
    try:
        open_train(page, app_url)
        table = page.locator('[data-testid="stDataFrame"]').last
        table.scroll_into_view_if_needed()
        click_row(page, table, 0, shows=page.get_by_role("button", name="Show results"))
        page.get_by_role("button", name="Show results").click()
        wait_for_app(page)
        time.sleep(1.0)
        opened = page.locator(".st-key-train_table_results")
        expect(opened.get_by_role("heading", name=re.compile("^Results:"))).to_be_visible(timeout=60_000)
        heading = opened.get_by_role("heading", name=re.compile("^Results:"))
        if not on_screen(heading):
            screenshot(page, "glance-train-table-results-not-in-view")
            raise AssertionError(f"the results' heading lies at {heading.bounding_box()} in a window {HEIGHT} px high "
                                 f"(the page: {page.evaluate(PAGE_SCROLL)})")
        assert_no_error(page)
        screenshot(page, "glance-train-table-results")
        page.set_viewport_size(PHONE)  # the five figures wrap, where columns stacked them a screen high
        figures = opened.locator('[data-testid="stMetric"]')
        assert figures.count() == 5
        lines = metric_lines(page, figures, most=3)
        assert lines <= 3, f"the results' figures take {lines} lines on a phone"  # stacked: 5
        figures.first.scroll_into_view_if_needed()
        screenshot(page, "glance-train-table-results-phone")
    finally:  # later tests count the table's rows from the top
        shutil.rmtree(own)


# ---- Explore ------------------------------------------------------------------------------------------------------

def open_explore(page, app_url: str) -> None:
    page.goto(f"{app_url}/explore")
    wait_for_app(page, timeout=120_000)
    page.get_by_text("in this view").first.wait_for(timeout=60_000)


def test_every_class_filter_is_whole_on_screen_at_1400_px(page, app_url):
    open_explore(page, app_url)
    page.wait_for_function(GRID_DRAWN, timeout=60_000)  # the page has settled: the grid is drawn
    pills = page.locator(".st-key-explore_classes")
    frame = page.locator('[data-testid="stColumn"]').filter(has=pills).last.bounding_box()  # the pills' column
    for name in map(str, range(10)):
        box = pills.get_by_role("button", name=name, exact=True).bounding_box()
        assert box["x"] >= frame["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"] + 0.5, name
        assert on_screen(pills.get_by_role("button", name=name, exact=True)), name
    assert_no_error(page)
    screenshot(page, "glance-explore-first-screen")


def test_the_augmentation_tab_shows_the_sample_clicked_in_the_grid(page, app_url):
    open_explore(page, app_url)
    mosaic = page.locator(".st-key-explore_grid img.mosaic")
    box = settled_box(mosaic)  # the page may still be laying out what lies above the grid: a click then misses #23
    tile, columns, rows = 23, 10, 10  # third row, fourth column of the first page: sample #23 in index order
    page.mouse.click(box["x"] + (tile % columns + 0.5) / columns * box["width"],
                     box["y"] + (tile // columns + 0.4) / rows * box["height"])
    page.get_by_text(re.compile(r"^Sample #23: ")).first.wait_for(timeout=30_000)
    page.get_by_role("tab", name="Augmentation").click()
    wait_for_app(page)
    panel = page.locator('[role="tabpanel"]:visible')
    expect(panel.get_by_text(re.compile(r"^Sample #23: "))).to_be_visible(timeout=30_000)
    expect(panel.get_by_role("spinbutton", name="Sample index")).to_have_value("23")
    assert_no_error(page)
    screenshot(page, "glance-explore-augmentation")
