"""Fine-tune on your handwriting in real Chromium: open the form on Train, start from the shipped model on a
collection mixed with MNIST, watch it train, and read the accuracy before and after."""

from __future__ import annotations

import pytest

from core.collection import collections_root
from tests.browser.conftest import assert_no_error, screenshot, serve_app, stop_app, wait_for_app
from tests.font_digits import available_fonts, write_collection


@pytest.mark.skipif(not available_fonts(), reason="no DejaVu or Liberation font to draw digits with")
def test_a_fine_tune_started_from_the_form_shows_before_and_after(page, tmp_path, mnist_dir):
    data = tmp_path / "data"
    data.mkdir()
    (data / "MNIST").symlink_to(mnist_dir / "MNIST")  # the shared MNIST, the collection beside it in this test's folder
    write_collection(collections_root(data) / "mine", per_class=5)
    (tmp_path / "runs").mkdir()
    served = serve_app(tmp_path / "runs", data)
    try:
        page.goto(f"{served.url}/train")
        wait_for_app(page, timeout=120_000)
        page.get_by_text("Fine-tune on your handwriting").click()
        page.get_by_text("40 to train on and 10 held out").wait_for(timeout=60_000)
        form = page.get_by_test_id("stExpander").filter(has_text="Fine-tune on your handwriting")
        epochs = form.get_by_test_id("stNumberInputField")
        epochs.fill("2")
        epochs.press("Enter")
        wait_for_app(page)
        assert_no_error(page)
        screenshot(page, "train-finetune-form")
        page.get_by_role("button", name="Start fine-tuning").click()
        page.get_by_text("Before and after fine-tuning on mine").wait_for(timeout=240_000)
        wait_for_app(page)
        page.get_by_text("Your held-out digits (10 images)").first.wait_for(timeout=30_000)
        assert page.get_by_text("MNIST test set").count() >= 1
        assert page.get_by_text("cannot be computed").count() == 0
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)  # the before/after bars, drawn
        page.wait_for_timeout(1500)
        assert_no_error(page)
        screenshot(page, "train-finetune-results")
    finally:
        stop_app(served)
