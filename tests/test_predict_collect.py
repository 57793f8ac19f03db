"""Predict's *Right, keep it* and *Wrong? It's a ...*: the picture is saved into the right class folder of a collection."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from core.collection import collection_samples, collections_root
from tests.drawn_digits import drawn
from tests.test_predict_page import answers, draw, page, shown


def collection_root() -> Path:
    return collections_root(Path(os.environ["DIGIT_STUDIO_DATA"]))


def saved(name: str = "my-digits") -> list[tuple[int, Path]]:
    return [(sample.label, sample.path) for sample in collection_samples(collection_root(), name)]


def test_right_keeps_the_drawing_under_the_answer():
    app = draw(page(), drawn(3))
    answer = int(answers(app)[0])
    [keep] = [b for b in app.button if b.label.startswith("Right, keep it as")]
    assert keep.label == f"Right, keep it as {answer}"
    keep.click().run()
    assert not app.exception
    [(label, path)] = saved()
    assert label == answer and path.parent.name == str(answer)
    assert Image.open(path).size == drawn(3).size  # the original picture, not the 28x28 the model saw
    assert any(f"Kept as a {answer} in my-digits: 1 image there now." in shown(s.value) for s in app.success)


def test_wrong_keeps_the_drawing_under_the_label_picked():
    app = draw(page(), drawn(7))
    answer = int(answers(app)[0])
    label = 1 if answer != 1 else 2
    [wrong] = [w for w in app.segmented_control if w.label == "Wrong? It's a ..."]
    assert answer not in wrong.options and str(label) in [str(o) for o in wrong.options]
    wrong.set_value(label).run()
    assert not app.exception
    assert [entry[0] for entry in saved()] == [label]


def test_a_bad_collection_name_saves_nothing_and_says_why():
    app = draw(page(), drawn(4))
    app.text_input(key="predict_collection").set_value("../../etc").run()
    [keep] = [b for b in app.button if b.label.startswith("Right, keep it as")]
    keep.click().run()
    assert not app.exception
    assert app.error and "letters, digits" in shown(app.error[0].value)
    assert not collection_root().exists() or not any(collection_root().rglob("*.png"))


def test_the_same_picture_is_kept_once_however_often_it_is_clicked():
    app = draw(page(), drawn(5))
    answer = int(answers(app)[0])
    [keep] = [b for b in app.button if b.label.startswith("Right, keep it as")]
    keep.click().run()
    [keep] = [b for b in app.button if b.label.startswith("Right, keep it as")]
    assert keep.disabled  # the buttons say it is done for this picture
    app.run()  # the next rerun, once the 'Kept as' message has been shown
    assert any(f"Kept as a {answer} in this collection" in c.value for c in app.caption)
    assert [label for label, _ in saved()] == [answer]
    assert all(w.disabled for w in app.segmented_control if w.label == "Wrong? It's a ...")
    app.text_input(key="predict_collection").set_value("other-digits").run()  # another collection may keep it too
    [keep] = [b for b in app.button if b.label.startswith("Right, keep it as")]
    assert not keep.disabled
    keep.click().run()
    assert [label for label, _ in saved("other-digits")] == [answer]
