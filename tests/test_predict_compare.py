"""Predict's before and after: a fine-tune's answer beside the answer of the model it started from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.collection import collections_root
from core.config import fine_tune_config
from core.inference import DEFAULT_MODEL_DIR, load_default_model, predict_image
from core.record import RecordedTraining
from core.store import RunStore, default_runs_dir, read_meta
from tests.drawn_digits import drawn
from tests.font_digits import available_fonts, write_collection
from tests.test_predict_page import draw, page

pytestmark = pytest.mark.skipif(not available_fonts(), reason="no DejaVu or Liberation font to draw digits with")


@pytest.fixture
def fine_tuned() -> str:
    """A one-epoch fine-tune of the shipped model on a small collection called mine, saved in the runs folder."""
    folder = collections_root(Path(os.environ["DIGIT_STUDIO_DATA"])) / "mine"
    write_collection(folder, per_class=4)
    config = fine_tune_config("default", read_meta(DEFAULT_MODEL_DIR), image_folder=str(folder), dataset="folder",
                              epochs=1, batch_size=16)
    recorded = RecordedTraining(config, RunStore(default_runs_dir()))
    assert list(recorded.events())[-1].status == "done"
    return recorded.run_id


def metric(app, start: str) -> str:
    return next(m.value for m in app.metric if m.label.startswith(start))


def test_a_fine_tune_is_compared_with_the_model_it_started_from(fine_tuned):
    app = page()
    assert any(o.startswith("Fast CNN (modern) on mine,") and o.endswith(fine_tuned)
               for o in app.selectbox(key="predict_model").options)
    app.selectbox(key="predict_model").set_value(fine_tuned)
    app.run()
    picture = drawn(5)
    draw(app, picture)
    assert not app.error, [e.value for e in app.error]
    before = predict_image(load_default_model(), picture)
    after = predict_image(RunStore(default_runs_dir()).load(fine_tuned), picture)
    assert any("Before and after fine-tuning on mine" in m.value for m in app.markdown)
    assert metric(app, "Before: Fast CNN (modern) · shipped") == f"{before.label} ({before.confidence * 100:.0f} %)"
    assert metric(app, "After: this fine-tune") == f"{after.label} ({after.confidence * 100:.0f} %)"


def test_a_model_trained_from_scratch_has_no_before_and_after():
    app = draw(page(), drawn(5))
    assert not [m for m in app.metric if m.label.startswith("Before:")]


def test_the_box_suggests_the_collection_the_chosen_model_was_tuned_on_then_the_last_one_used(fine_tuned):
    app = draw(page(), drawn(5))
    assert app.text_input(key="predict_collection").value == "my-digits"  # the shipped model: no collection of its own
    app.selectbox(key="predict_model").set_value(fine_tuned).run()
    assert app.text_input(key="predict_collection").value == "mine"
    [keep] = [b for b in app.button if b.label.startswith("Right, keep it as")]
    keep.click().run()
    assert not app.exception and any("in mine" in s.value for s in app.success)
    assert len(list((collections_root(Path(os.environ["DIGIT_STUDIO_DATA"])) / "mine").rglob("*.png"))) == 41
    app.selectbox(key="predict_model").set_value("shipped").run()
    assert app.text_input(key="predict_collection").value == "mine"  # the last one used, not my-digits again
