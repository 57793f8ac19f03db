"""Three browser sessions at once: one trains while two draw and upload; a second start waits in the queue."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import assert_no_error, screenshot, stop_everything, wait_for_app
from tests.browser.test_predict_browser import ANSWER_TIMEOUT, draw_strokes, open_predict, settled_answer
from tests.browser.test_train_browser import open_train_page, start_training, wait_for_more_points
from tests.drawn_digits import drawn, encoded, strokes_in


def test_one_trains_two_predict_and_a_second_start_is_queued(page, new_tab, app_url, tmp_path, no_training_left):
    trainer = page
    open_train_page(trainer, app_url)
    start_training(trainer, epochs=5000)
    wait_for_more_points(trainer, 0)

    drawer, uploader = new_tab(), new_tab()
    open_predict(drawer, app_url)
    for digit in (7, 0, 1):
        draw_strokes(drawer, strokes_in(digit, (25, 25, 255, 255)))
        assert settled_answer(drawer, str(digit)) == str(digit), f"drew a {digit} while a run trained"
        drawer.locator(".dc-toolbar button[title='Reset canvas & history']").click()
        expect(drawer.locator(".predict-answer")).to_have_count(0, timeout=ANSWER_TIMEOUT)
    expect(drawer.get_by_text(re.compile(r"Training Digits CNN \(recipe\): epoch"))).to_be_visible(timeout=30_000)

    (tmp_path / "five.png").write_bytes(encoded(drawn(5, mode="L", background=255, ink=0), "PNG"))
    open_predict(uploader, app_url)
    if uploader.locator(".predict-answer").count():  # kept to see what a fresh session showed, should it happen
        screenshot(uploader, "load-fresh-session-with-an-answer")
    expect(uploader.locator(".predict-answer")).to_have_count(0)  # the drawer's answers stay in the drawer's session
    uploader.get_by_role("tab", name="Upload").click()
    uploader.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(tmp_path / "five.png"))
    expect(uploader.locator(".predict-answer")).to_have_text("5", timeout=ANSWER_TIMEOUT)
    assert_no_error(uploader)

    open_train_page(uploader, app_url)
    wait_for_app(uploader)
    expect(uploader.get_by_label("Epochs", exact=True)).to_have_value("1000", timeout=30_000)  # not the trainer's 5000
    uploader.get_by_role("button", name="Queue training").click()
    uploader.get_by_text("Your run waits in the queue behind this one.").wait_for(timeout=30_000)
    assert_no_error(uploader)
    screenshot(uploader, "load-second-start-queued")

    # the running job, then the queued one that takes its place at once (never cancelled: it is not pressed)
    assert stop_everything(trainer, names="^Stop$") >= 2
    expect(trainer.get_by_role("button", name="Stop")).to_have_count(0)
    trainer.get_by_text("Stopped.").wait_for(timeout=30_000)
    assert_no_error(trainer)
