"""Predict in real Chromium with a fine-tune chosen: a drawing is answered by it and by the model it started from."""

from __future__ import annotations

import re

import pytest

from core.collection import collections_root
from core.config import fine_tune_config
from core.inference import DEFAULT_MODEL_DIR
from core.record import RecordedTraining
from core.store import RunStore, read_meta
from tests.browser.conftest import assert_no_error, pick, screenshot, serve_app, stop_app, wait_for_app
from tests.browser.test_predict_live_browser import BOX, open_predict, settle, stroke
from tests.drawn_digits import strokes_in
from tests.font_digits import available_fonts, write_collection


@pytest.mark.skipif(not available_fonts(), reason="no DejaVu or Liberation font to draw digits with")
def test_a_fine_tune_answers_beside_the_model_it_started_from(page, tmp_path):
    folder = collections_root(tmp_path / "data") / "mine"
    write_collection(folder, per_class=4)
    config = fine_tune_config("default", read_meta(DEFAULT_MODEL_DIR), image_folder=str(folder), dataset="folder",
                              epochs=1, batch_size=16)
    recorded = RecordedTraining(config, RunStore(tmp_path / "runs"))
    assert list(recorded.events())[-1].status == "done"
    served = serve_app(tmp_path / "runs", tmp_path / "data")
    page.set_viewport_size({"width": 1400, "height": 1200})
    try:
        open_predict(page, served.url)
        pick(page, "Model", re.compile(f"^Fast CNN \\(modern\\) on mine.*{recorded.run_id}$"))
        wait_for_app(page)
        page.locator("canvas.upper-canvas").first.wait_for(timeout=60_000)
        for points in strokes_in(7, BOX):
            stroke(page, points)
        settle(page)
        page.get_by_text("Before and after fine-tuning on mine").wait_for(timeout=60_000)
        page.get_by_text("Before: Fast CNN (modern) · shipped").wait_for(timeout=30_000)
        page.get_by_text("After: this fine-tune").wait_for(timeout=30_000)
        assert_no_error(page)
        screenshot(page, "predict-before-after")
    finally:
        stop_app(served)
