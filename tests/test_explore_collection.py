"""Explore lists each digit collection as a dataset: its images as the model sees them, counts per class, the chosen
model's mistakes marked (read as Predict reads a picture), and deleting one wrong sample after asking once."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.collection import collection_samples, collections_root, read_sample
from core.inference import load_default_model, predict_image
from tests.font_digits import available_fonts, write_collection
from tests.test_explore_page import PAGE, charts, grid_marks, metric, rendered, rerun, shown

pytestmark = pytest.mark.skipif(not available_fonts(), reason="no DejaVu or Liberation font to draw digits with")
PER_CLASS = 3


def root() -> Path:
    return collections_root(Path(os.environ["DIGIT_STUDIO_DATA"]))


@pytest.fixture
def mine() -> Path:
    """A collection of 30 wide, back-slanted typed digits: the shipped model misreads some of them."""
    write_collection(root() / "mine", per_class=PER_CLASS)
    return root() / "mine"


def opened(name: str = "mine") -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=180)
    app.run()
    app.selectbox(key="explore_dataset").set_value(f"collection:{name}")
    return rerun(app)


def text(app: AppTest) -> str:
    return shown("\n".join(rendered(app)))


def figure(app: AppTest, title_part: str) -> dict:
    return next(json.loads(c.proto.spec) for c in charts(app) if title_part in c.proto.spec)


def numbers(values) -> list[float]:
    """A plotly array as a list: plain, or base64 typed (plotly 6's 'bdata')."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"])).tolist()
    return list(values)


def test_without_collections_the_page_says_how_to_make_one():
    app = rerun(AppTest.from_file(PAGE, default_timeout=180))
    assert not [o for o in app.selectbox(key="explore_dataset").options if o.startswith("collection:")]
    assert "press *Right, keep it* or pick the right digit after *Wrong? It's a ...*" in text(app)


def test_an_empty_collection_says_how_to_fill_it():
    (root() / "empty").mkdir(parents=True)
    app = opened("empty")
    assert "The collection empty has no images yet." in text(app) and "Right, keep it" in text(app)


def test_counts_and_the_shipped_models_mistakes_as_predict_reads_them(mine):
    (mine / "7" / "extra.png").write_bytes((mine / "7" / "font-0021.png").read_bytes())  # 7 gets one more
    app = opened()
    assert app.selectbox(key="explore_dataset").value == "collection:mine"
    counts = figure(app, "collection (31)")["data"][0]
    assert numbers(counts["y"]) == [PER_CLASS + (digit == 7) for digit in range(10)]
    model = load_default_model()
    samples = collection_samples(root(), "mine")
    guesses = np.array([predict_image(model, read_sample(sample)).label for sample in samples])
    labels = np.array([sample.label for sample in samples])
    wrong = guesses != labels
    assert 0 < wrong.sum() < len(samples)  # some mistakes, or the marks prove nothing
    assert metric(app, "Mistakes") == f"{wrong.sum()} of {len(samples)}"
    assert metric(app, "Read right") == f"{(~wrong).mean() * 100:.2f} %"
    assert grid_marks(app, len(samples), side=28)[1:] == list(wrong[1:])  # the first tile is the one shown large: blue
    app.selectbox(key="explore_collection_model").set_value("none")
    rerun(app)
    assert not any(grid_marks(app, len(samples), side=28)[1:])


def test_delete_asks_once_and_removes_exactly_that_file(mine):
    before = sorted(mine.rglob("*.png"))
    app = opened()
    target = "4/font-0013.png"
    app.selectbox(key="explore_collection_sample").set_value(target)
    rerun(app)
    app.button(key="explore_collection_delete").click()
    rerun(app)
    assert f"Delete {target} from mine?" in text(app)
    app.button(key="explore_collection_delete_no").click()
    rerun(app)
    assert sorted(mine.rglob("*.png")) == before  # Cancel deletes nothing
    app.button(key="explore_collection_delete").click()
    rerun(app)
    app.button(key="explore_collection_delete_yes").click()
    rerun(app)
    assert sorted(mine.rglob("*.png")) == [path for path in before if path != mine / target]
    assert f"Deleted {target} from mine." in text(app)
    assert target not in app.selectbox(key="explore_collection_sample").options
    assert figure(app, "collection (29)")


def test_a_bad_file_name_is_refused_and_nothing_is_deleted(mine, tmp_path):
    outside = tmp_path / "keep.png"
    outside.write_bytes(b"not to be deleted")
    before = sorted(mine.rglob("*"))
    app = opened()
    app.button(key="explore_collection_delete").click()
    rerun(app)
    app.session_state["explore_collection_confirm"] = "4/../../../../keep.png"  # as a forged request would name it
    app.button(key="explore_collection_delete_yes").click()
    app.run()
    assert not app.exception
    assert app.error and "Nothing was deleted" in shown(app.error[0].value)
    assert sorted(mine.rglob("*")) == before and outside.exists()


def test_an_unreadable_image_is_shown_and_said_and_the_rest_still_list(mine):
    (mine / "2" / "broken.png").write_bytes(b"not a png")
    app = opened()
    assert "1 image with no readable digit" in text(app)
    app.selectbox(key="explore_collection_sample").set_value("2/broken.png")
    rerun(app)
    assert "is not an image this app can read" in text(app)
    assert figure(app, "collection (31)")
