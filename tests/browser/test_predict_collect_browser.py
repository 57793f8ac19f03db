"""Collecting in a real browser: a drawn digit kept from Predict lands, as a PNG, in its class folder."""

from __future__ import annotations

import time

from PIL import Image

from core.collection import collections_root
from tests.browser.conftest import assert_no_error, screenshot, serve_app, stop_app
from tests.browser.test_predict_live_browser import BOX, answer_is, open_predict, settle, stroke
from tests.drawn_digits import strokes_in


def wait_for_files(folder, timeout: float = 20.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.rglob("*.png")) if folder.exists() else []
        if found:
            return found
        time.sleep(0.2)
    return []


def test_a_drawn_digit_kept_as_right_is_saved_in_its_class_folder(page, tmp_path):
    (tmp_path / "runs").mkdir()
    served = serve_app(tmp_path / "runs", tmp_path / "data")  # its own data folder: the test writes into it
    try:
        open_predict(page, served.url)
        for points in strokes_in(7, BOX):
            stroke(page, points)
        answer_is(page, "7")
        settle(page)
        page.get_by_role("button", name="Right, keep it as 7").click()
        page.get_by_text("Kept as a 7 in my-digits").wait_for(timeout=30_000)
        assert_no_error(page)
        screenshot(page, "predict-collect")
        root = collections_root(tmp_path / "data")
        files = wait_for_files(root)
        assert [path.relative_to(root).parts[:2] for path in files] == [("my-digits", "7")]
        assert Image.open(files[0]).size == (280, 280)  # the canvas as drawn, not the model's 28x28
    finally:
        stop_app(served)
