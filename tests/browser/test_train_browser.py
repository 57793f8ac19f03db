"""The Train page in Chromium: a run trains in the background, its charts redraw, it survives a reload, and Stop keeps it."""

from __future__ import annotations

import io
import json
import re
import shutil
import time
import zipfile
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from core.record import RecordedTraining
from core.store import RunStore
from core.training import TrainConfig
from tests.browser.conftest import assert_no_error, cpu_seconds, screenshot, settled_box, wait_for_app
from ui.live_chart import COMPONENT_NAME
from ui.train_format import run_name

POINTS_JS = """() => {
    const plot = document.getElementById('accuracy');
    return plot && plot.data ? plot.data.reduce((total, trace) => total + (trace.x ? trace.x.length : 0), 0) : -1;
}"""


def open_train_page(page, app_url: str) -> None:
    page.set_viewport_size({"width": 1400, "height": 2400})  # the whole page in one screenshot
    page.goto(f"{app_url}/train")
    wait_for_app(page)
    page.get_by_label("Dataset", exact=True).wait_for(timeout=60_000)
    # widgets can come a few seconds after the text on a busy machine (CI saw the form without them)
    page.get_by_label("Epochs", exact=True).wait_for(timeout=60_000)


def set_number(page, label: str, value: int | str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    wait_for_app(page)


def start_training(page, epochs: int) -> None:
    set_number(page, "Epochs", epochs)
    page.get_by_role("button", name=re.compile("Start training|Queue training")).click()
    page.get_by_text(re.compile(r"Epoch [\d,]+/" + f"{epochs:,}")).first.wait_for(timeout=60_000)  # "Epoch 3/5,000"


def chart_points(page, element=None) -> int:
    """Points in the live accuracy chart, which is drawn in the live-charts component's frame (`element`, else the
    page's first); -1 before it is.

    The frame is found from its element: Playwright's page.frames missed it in a second browser context.
    """
    element = element or page.locator(f'iframe[title$="{COMPONENT_NAME}"]')
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
    still_training = page.get_by_text(re.compile(r"Epoch \d+/200")).first
    still_training.or_(page.get_by_text("Finished.").first).first.wait_for(timeout=30_000)  # a fast machine is done
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
    # an epoch has ended once the bar counts the second (on a busy machine the first points come before that)
    page.get_by_text(re.compile(r"Epoch ([2-9]|\d{2,})/5,000")).first.wait_for(timeout=60_000)
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
    page.get_by_text(re.compile(r"Training Digits CNN \(recipe\): epoch")).wait_for(timeout=30_000)  # the sidebar follows it
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


def test_a_typed_number_is_never_dropped_unseen(page, app_url):
    """Streamlit's number input dropped, in the browser, a value past 2**53: the field showed it, the old one trained."""
    open_train_page(page, app_url)
    set_number(page, "Batch size", "99999999999999999999")
    expect(page.get_by_text(re.compile("batch size 99999999999999999999 is larger than the 1347 training images"))
           ).to_be_visible(timeout=30_000)
    expect(page.get_by_role("button", name=re.compile("Start training|Queue training"))).to_be_disabled()
    set_number(page, "Batch size", 100)
    set_number(page, "Epochs", 20000)
    expect(page.get_by_text("Epochs: 20000 is above the maximum 10,000; still 1000.")).to_be_visible(timeout=30_000)
    expect(page.get_by_label("Epochs", exact=True)).to_have_value("1000")
    page.get_by_text("More settings").click()
    set_number(page, "Seed", 2**63)
    expect(page.get_by_text(f"Seed: {2**63} is above the maximum 9,223,372,036,854,775,807; still 0.")
           ).to_be_visible(timeout=30_000)
    expect(page.get_by_label("Seed", exact=True)).to_have_value("0")
    expect(page.get_by_text("Epochs: 20000 is above")).to_have_count(0)  # the newest note alone; the settings box
    assert_no_error(page)  # stays open though the note above it went (it closed, and hid the seed's note)
    screenshot(page, "train-typed-numbers")


ROW_PIXELS = 35  # st.dataframe's header and row height
RESULTS_COMING = "Drawing the curves, the confusion matrix and the mistakes..."  # ui.train_live.ended_view


NOTHING_TICKED = "Tick runs in the table's first column"  # ui.saved_runs' hint, shown while no run is picked


def click_row(page, table, row: int, shows=None) -> None:
    """Tick a row's selection box in a st.dataframe (a canvas: clicked by position).

    With `shows` (what the tick brings up), a click that did not tick (the grid redrawn or moved under the mouse) is
    clicked again, up to three times: it did not tick while the hint for an empty selection stays. A tick that
    landed is never clicked again (that would untick it); what it shows is then waited for, however slowly it comes.
    The results of the last run above the table are drawn whole first: their charts, drawn a moment after the page,
    moved the table under a click aimed by a box that had held still for a quarter of a second."""
    page.get_by_text(RESULTS_COMING).wait_for(state="hidden", timeout=60_000)
    wait_for_app(page)
    box = None
    for _ in range(3):
        table.evaluate("element => element.scrollIntoView({block: 'center'})")  # the whole table on screen
        box = settled_box(table)
        page.mouse.click(box["x"] + 18, box["y"] + ROW_PIXELS * (row + 1) + ROW_PIXELS / 2)
        wait_for_app(page)
        if shows is None:
            return
        try:
            page.get_by_text(NOTHING_TICKED).wait_for(state="hidden", timeout=5_000)
        except PlaywrightError:
            continue
        shows.wait_for(timeout=60_000)
        return
    screenshot(page, "click-row-ticked-nothing")
    raise AssertionError(f"three clicks on row {row} of the table at {box} ticked nothing")


def finished_tiny_run(folder) -> Path:
    """A finished one-epoch digits run trained into `folder` (a couple of seconds): its folder."""
    recorded = RecordedTraining(TrainConfig(model="digits-cnn", dataset="digits", epochs=1, train_limit=200),
                                RunStore(folder))
    assert list(recorded.events())[-1].status == "done"
    return recorded.run_dir


def plant_run(run_dir: Path, target: Path, **meta) -> None:
    """A copy of a run folder under another id (the target folder's name), with `meta` over its metadata."""
    shutil.copytree(run_dir, target)
    meta_file = target / "meta.json"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "run_id": target.name, **meta}))


def test_saved_runs_download_the_picked_one_and_delete_exactly_it(page, app_url, app_folders, tmp_path):
    names = ["zz-3-alpha", "zz-2-bravo", "zz-1-charlie"]  # first in the table (newest first), in this order
    finished = finished_tiny_run(tmp_path)
    for day, name in enumerate(names, start=1):  # each its own start time, so each its own name
        plant_run(finished, app_folders["runs"] / name, created_at=f"2026-0{day}-0{day}T1{day}:00:00+00:00")
    bravo = run_name(RunStore(app_folders["runs"]).info("zz-2-bravo"))  # "Digits CNN (recipe) · digits · 1 epoch · ..."
    open_train_page(page, app_url)
    table = page.locator('[data-testid="stDataFrame"]').last
    table.scroll_into_view_if_needed()
    click_row(page, table, 1, shows=page.get_by_role("button", name="Prepare download (.zip)"))
    page.get_by_role("button", name="Prepare download (.zip)").click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the .zip").click()
    with zipfile.ZipFile(io.BytesIO(download.value.path().read_bytes())) as zipped:
        assert json.loads(zipped.read("zz-2-bravo/meta.json"))["run_id"] == "zz-2-bravo"

    page.get_by_role("button", name="Delete 1 run", exact=True).click()
    expect(page.get_by_text(f"{bravo} (run id zz-2-bravo)")).to_be_visible(timeout=30_000)
    expect(page.get_by_text(f"{bravo}, saved as zz-2-bravo.zip")).to_be_visible()
    screenshot(page, "train-delete-question")
    page.get_by_role("button", name="Delete 1 run for good").click()
    expect(page.get_by_text(re.compile("^Tick runs in the table"))).to_be_visible(timeout=30_000)
    expect(page.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)  # charlie, in bravo's row: unpicked
    assert_no_error(page)
    screenshot(page, "train-after-delete")
    left = {info.run_id for info in RunStore(app_folders["runs"]).list_runs()}
    assert {"zz-3-alpha", "zz-1-charlie"} <= left and "zz-2-bravo" not in left
