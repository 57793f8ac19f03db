"""The Predict page's newer parts in AppTest: samples from the test set (and Explore's hand-over), uploads shown once
with the picked one explained, the camera drawn only when its tab is open, the layer views drawn only when theirs
is, the not-a-digit sentence, an unsure answer's top two; and the command line's refusal line."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from core.cli import main
from core.data import load_dataset
from core.inference import LOW_CONFIDENCE, load_default_model, predict_image, predict_proba
from core.inside import look_inside
from core.preprocess import NOT_A_DIGIT_LINE, NOT_A_STROKE, TOO_LITTLE_INK
from core.store import load_run_dir
from tests.drawn_digits import drawn, encoded
from tests.test_predict_page import answers, draw, page, runs_dir, shown, texts, untrained_digits, upload
from ui.inside import inside_figures
from ui.predict import HARD_TEST_IMAGE, WRITE_IT_AGAIN

EXPLORE = str(Path(__file__).resolve().parents[1] / "pages" / "explore.py")
REFUSALS = (TOO_LITTLE_INK, NOT_A_STROKE, NOT_A_DIGIT_LINE)


def dot(diameter: int = 18) -> Image.Image:
    """What one click with the 18 px brush leaves on the canvas: a round dot."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    ImageDraw.Draw(image).ellipse((130, 130, 130 + diameter, 130 + diameter), fill=(255, 255, 255, 255))
    return image


def open_tab(app: AppTest, tab: str) -> AppTest:
    app.session_state["predict_source"] = tab
    app.run()
    assert not app.exception
    return app


def alerts(app: AppTest) -> list[str]:
    return [shown(alert.value) for kind in (app.success, app.info, app.warning, app.error) for alert in kind]


def chart_keys(app: AppTest) -> list[str]:
    return [chart.key for chart in app.get("plotly_chart")]


# ---- the test set -------------------------------------------------------------------------------------------------

@pytest.fixture
def with_mnist(mnist_dir, monkeypatch) -> Path:
    monkeypatch.setenv("DIGIT_STUDIO_DATA", str(mnist_dir))
    return mnist_dir


def test_try_one_from_the_test_set_puts_a_test_digit_of_the_chosen_class_with_its_label(with_mnist):
    app = open_tab(page(), "Test set")
    assert any("Try one from the test set" in text for text in alerts(app)) and answers(app) == []
    labels = load_dataset("mnist", with_mnist).test_labels.numpy()
    chosen = set()
    for _ in range(3):
        app.selectbox(key="predict_sample_class").set_value(3).run()
        app.button(key="predict_try_sample").click().run()
        sample = app.session_state["predict_sample"]
        assert sample["dataset"] == "mnist" and sample["split"] == "test" and labels[sample["index"]] == 3
        chosen.add(sample["index"])
        assert f"MNIST (28x28) test image #{sample['index']:,}: true label **3**" in texts(app)
        answer = answers(app)
        verdict = next(text for text in alerts(app) if text.startswith("True label **3**"))
        assert verdict.endswith("the model got it right.") == (answer == ["3"])  # whichever it read, it says so
    assert len(chosen) > 1  # random, not the same image each time
    app.selectbox(key="predict_sample_class").set_value(-1).run()  # any class
    app.button(key="predict_try_sample").click().run()
    assert app.session_state["predict_sample"]["split"] == "test" and not app.exception


def test_a_sample_says_whether_the_model_got_it_right(with_mnist):
    data = load_dataset("mnist", with_mnist)
    predicted = predict_proba(load_default_model(), data.test_images[:2000].numpy()).argmax(axis=1)
    labels = data.test_labels[:2000].numpy()
    right, wrong = int(np.flatnonzero(predicted == labels)[0]), int(np.flatnonzero(predicted != labels)[0])
    app = page()
    app.session_state["predict_sample"] = {"dataset": "mnist", "split": "test", "index": right}
    open_tab(app, "Test set")
    assert answers(app) == [str(labels[right])]
    assert f"True label **{labels[right]}**: the model got it right." in alerts(app)
    captions = [caption.value for caption in app.caption]  # the Why tab: read as the dataset holds it, not cropped
    assert any(c.startswith("The test image as its dataset holds it") for c in captions)
    assert not any(c.startswith("The ink cropped") for c in captions)
    app.session_state["predict_sample"] = {"dataset": "mnist", "split": "test", "index": wrong}
    app.run()
    assert answers(app) == [str(predicted[wrong])]
    assert f"True label **{labels[wrong]}**: the model got it wrong." in alerts(app)
    run = load_default_model()
    preprocessed = (predict_image(run, data.test_images[index].numpy()).label for index in range(len(labels)))
    differs = next(index for index, label in enumerate(preprocessed) if label != predicted[index])
    app.session_state["predict_sample"] = {"dataset": "mnist", "split": "test", "index": differs}
    app.run()
    assert answers(app) == [str(predicted[differs])]  # preprocessing changes its answer: read as the test set is
    assert app.dataframe[0].value["answer"].iloc[0] == str(predicted[differs])  # every model's table reads it alike


def test_an_unsure_test_image_is_not_answered_with_advice_for_its_writer(with_mnist):
    data = load_dataset("mnist", with_mnist)
    probabilities = predict_proba(load_default_model(), data.test_images[:2000].numpy())
    unsure = int(np.flatnonzero(probabilities.max(axis=1) < LOW_CONFIDENCE)[0])
    app = page()
    app.session_state["predict_sample"] = {"dataset": "mnist", "split": "test", "index": unsure}
    open_tab(app, "Test set")
    [warning] = [text for text in alerts(app) if text.startswith("Not sure:")]
    assert warning.endswith(HARD_TEST_IMAGE) and WRITE_IT_AGAIN not in warning  # nobody here wrote it


def test_without_mnist_the_samples_come_from_the_digits_test_set():
    app = open_tab(page(), "Test set")
    app.button(key="predict_try_sample").click().run()
    sample = app.session_state["predict_sample"]
    assert sample["dataset"] == "digits" and sample["split"] == "test" and not app.exception
    assert "scikit-learn digits (8x8) test image" in texts(app) and len(answers(app)) <= 1


def test_explore_opens_its_sample_in_predict(with_mnist):
    explore = AppTest.from_file(EXPLORE, default_timeout=60)
    explore.session_state["explore_dataset"] = "mnist"
    explore.run()
    explore.session_state["explore_index"] = 5
    explore.run()
    explore.button(key="explore_open_in_predict").click().run()
    assert not explore.exception
    handed = explore.session_state["predict_open_sample"]
    assert handed == {"dataset": "mnist", "split": "train", "index": 5}
    app = AppTest.from_file(str(Path(EXPLORE).with_name("predict.py")), default_timeout=60)
    app.session_state["predict_open_sample"] = handed  # what st.switch_page carries over in the session
    app.run()
    label = int(load_dataset("mnist", with_mnist).train_labels[5])
    assert app.session_state["predict_source"] == "Test set" and "predict_open_sample" not in app.session_state
    assert f"MNIST (28x28) train image #5: true label **{label}**" in texts(app)
    assert len(answers(app)) == 1 and any(text.startswith(f"True label **{label}**") for text in alerts(app))


@pytest.mark.parametrize("request_", [
    {"dataset": "digits", "split": "test", "index": 10_000}, {"dataset": "digits", "split": "test", "index": -1},
    {"dataset": "digits", "split": "test", "index": True}, {"dataset": "digits", "split": "test", "index": 1.0},
    {"dataset": "digits", "split": "valid", "index": 1}, {"dataset": "../runs", "split": "test", "index": 1},
    {"dataset": "mnist", "split": "test", "index": 1}, "digits/test/1", None])
def test_a_malformed_or_absent_sample_is_left_out(request_):
    app = page()  # no MNIST here: a request for one is absent
    app.session_state["predict_open_sample"] = request_
    app.session_state["predict_sample"] = request_
    app.run()
    assert not app.exception and "predict_open_sample" not in app.session_state
    assert app.session_state["predict_source"] == "Draw"  # the hand-over was refused: the page opens as usual
    open_tab(app, "Test set")
    assert answers(app) == [] and any("Try one from the test set" in text for text in alerts(app))


# ---- uploads ------------------------------------------------------------------------------------------------------

FIVE, THREE, NINE = (encoded(drawn(digit), "PNG") for digit in (5, 3, 9))


def gallery_names(app: AppTest, names: list[str]) -> list[str]:
    return [shown(m.value).split(":")[0] for m in app.markdown if shown(m.value).split(":")[0] in names]


def test_a_file_uploaded_twice_is_shown_once():
    app = upload(page(), {"five.png": FIVE, "three.png": THREE, "again.png": FIVE})
    assert gallery_names(app, ["five.png", "three.png", "again.png"]) == ["five.png", "three.png"]
    assert app.selectbox(key="predict_explain").options == ["five.png", "three.png"]
    assert "again.png is the same picture as five.png: it is shown once." in alerts(app)


def test_the_same_file_added_twice_is_said_so_not_compared_with_itself():
    from ui.predict_inputs import once_each

    twice = [SimpleNamespace(name="digit3.png", digest="d3"), SimpleNamespace(name="digit3.png", digest="d3")]
    kept, notes = once_each(twice)
    assert len(kept) == 1 and notes == ["digit3.png was added twice: it is shown once."]  # not "... same file as itself"


def test_explain_follows_the_upload_picked_added_or_clicked():
    app = upload(page(), {"five.png": FIVE, "three.png": THREE})
    assert answers(app) == ["5"]  # the first of a batch
    upload(app, {"five.png": FIVE, "three.png": THREE, "nine.png": NINE})
    assert answers(app) == ["9"]  # a file added later is the one people want to see
    tiles = [button for button in app.button if button.key and button.key.startswith("predict_tile_")]
    assert [button.label for button in tiles] == ["Explain", "Explain", "Shown above"]
    tiles[1].click().run()  # three.png's tile
    assert answers(app) == ["3"] and app.selectbox(key="predict_explain").value == tiles[1].key.split("_")[-1]
    upload(app, {"five.png": FIVE, "nine.png": NINE})  # the explained one removed
    assert answers(app) == ["5"] and not app.exception


# ---- the camera, the layer views --------------------------------------------------------------------------------

def test_the_camera_is_drawn_only_while_its_tab_is_open():
    app = page()
    assert len(app.get("camera_input")) == 0
    for tab in ("Upload", "Test set", "Draw"):
        assert len(open_tab(app, tab).get("camera_input")) == 0, tab
    assert len(open_tab(app, "Camera").get("camera_input")) == 1


def test_inside_the_network_shows_every_layer_only_while_its_tab_is_open():
    app = draw(page(), drawn(4))
    assert "predict_saliency" in chart_keys(app)
    assert not any(key.startswith("predict_inside") for key in chart_keys(app))
    app.session_state["predict_details"] = "Inside the network"
    app.run()
    run = load_default_model()
    expected = inside_figures(look_inside(run, predict_image(run, drawn(4)).preprocessed.pixels), run.class_names)
    shown_charts = [key for key in chart_keys(app) if key.startswith("predict_inside")]
    assert len(shown_charts) == len(expected) == 2 + len(look_inside(run, np.zeros((28, 28), np.uint8)).layers)
    assert "predict_saliency" not in chart_keys(app) and answers(app) == ["4"] and not app.exception


def test_inside_the_network_works_for_a_saved_run_in_its_own_format():
    untrained_digits(runs_dir())
    app = page()
    app.selectbox(key="predict_model").set_value("20260101-000000-digits-cnn-digits-0001").run()
    app.session_state["predict_details"] = "Inside the network"
    draw(app, drawn(3))
    run = load_run_dir(runs_dir() / "20260101-000000-digits-cnn-digits-0001")
    layers = len(look_inside(run, np.zeros((8, 8), np.uint8)).layers)
    assert len([key for key in chart_keys(app) if key.startswith("predict_inside")]) == 2 + layers
    assert not app.exception


# ---- not a digit, not sure ----------------------------------------------------------------------------------------

def test_a_dot_or_a_line_gets_the_sentence_asking_for_a_digit_not_an_answer():
    app = draw(page(), dot())
    assert answers(app) == [] and any(refusal in alerts(app) for refusal in REFUSALS)
    dash = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    Image.Image.paste(dash, (255, 255, 255, 255), (40, 130, 240, 142))  # a flat line across
    draw(app, dash)
    assert answers(app) == [] and NOT_A_DIGIT_LINE in alerts(app)
    upload(app, {"dot.png": encoded(dot(30), "PNG")})
    assert any(alert.startswith("dot.png: ") and alert.removeprefix("dot.png: ") in REFUSALS for alert in alerts(app))
    assert not any("looks blank" in alert for alert in alerts(app))


def test_an_unsure_answer_names_its_top_two():
    untrained_digits(runs_dir())
    app = page()
    app.selectbox(key="predict_model").set_value("20260101-000000-digits-cnn-digits-0001").run()
    draw(app, drawn(3))
    run = load_run_dir(runs_dir() / "20260101-000000-digits-cnn-digits-0001")
    probabilities = predict_image(run, drawn(3)).probabilities
    first, second = np.argsort(-probabilities, kind="stable")[:2]
    expected = (f"Not sure: **{first}** ({probabilities[first] * 100:.0f} %) or **{second}** "
                f"({probabilities[second] * 100:.0f} %), below the 60 % it takes to be sure.")
    assert any(alert.startswith(expected) for alert in alerts(app)), alerts(app)


def test_the_command_line_prints_the_sentence_for_a_dot(tmp_path):
    path = tmp_path / "dot.png"
    path.write_bytes(encoded(dot(), "PNG"))
    out = io.StringIO()
    assert main(["predict", str(path)], out=out) == 0
    line = out.getvalue().strip()
    assert line.startswith(f"{path}: ") and line.removeprefix(f"{path}: ") in REFUSALS
