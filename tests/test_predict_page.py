"""The Predict page's logic in Streamlit's AppTest: drawings (the canvas's state as the browser sends it), uploads,
the camera, every model side by side, and bad input that must get a clear message and never a traceback."""

import base64
import html
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from streamlit.testing.v1 import AppTest

from core.inference import DEFAULT_MODEL_DIR
from core.models import build_model
from core.store import RunStore
from ui.train_format import created_time
from tests.drawn_digits import bad_and_odd_files, drawn, encoded, photo_of
from tests.plotly_text import hover_text
from ui.predict import probability_figure

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "predict.py")
DEFAULT_META = json.loads((DEFAULT_MODEL_DIR / "meta.json").read_text())
DEFAULT_WEIGHTS = DEFAULT_MODEL_DIR / DEFAULT_META["weights_file"]


# ---- helpers --------------------------------------------------------------------------------------------------------

def page() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.run()
    assert not app.exception
    return app


def canvas_state(image: Image.Image | None) -> dict:
    """The canvas widget's value as the browser sends it after a stroke (or after clear, with no objects)."""
    if image is None:
        return {"drawing": {"raw": {"objects": [], "background": "#000000"}, "data": None}, "backgroundFit": None}
    data = "data:image/png;base64," + base64.b64encode(encoded(image, "PNG")).decode()
    return {"drawing": {"raw": {"objects": [{"type": "path"}], "background": "#000000"}, "data": data},
            "backgroundFit": None}


def draw(app: AppTest, image: Image.Image | None) -> AppTest:
    app.session_state["predict_canvas"] = canvas_state(image)
    app.run()
    assert not app.exception
    return app


def answers(app: AppTest) -> list[str]:
    """The big answers on the page (the HTML block with class predict-answer), as the text a browser shows."""
    return [html.unescape(block.value.split(">", 1)[1].rsplit("<", 1)[0]) for block in app.html
            if "predict-answer" in block.value]


def shown(markdown: str) -> str:
    """Markdown as the characters it renders to, for text escaped with ui.text.escape_markdown."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def rendered_as_markdown(app: AppTest) -> list[str]:
    """Everything on the page that Streamlit renders as Markdown."""
    return [e.value for kind in (app.markdown, app.caption, app.info, app.warning, app.error, app.success,
                                 app.subheader) for e in kind]


def texts(app: AppTest) -> str:
    parts = [m.value for m in app.markdown] + [i.value for i in app.info] + [w.value for w in app.warning]
    return shown("\n".join(parts + [e.value for e in app.error] + [c.value for c in app.caption]))


def save_run(root: Path, run_id: str, meta: dict, weights: dict[str, torch.Tensor]) -> Path:
    RunStore(root).save(run_id, meta, weights)
    return root / run_id


def copy_of_default(root: Path, run_id: str) -> Path:
    return save_run(root, run_id, {k: v for k, v in DEFAULT_META.items() if k != "weights_file"},
                    load_file(DEFAULT_WEIGHTS))


def untrained_digits(root: Path, run_id: str = "20260101-000000-digits-cnn-digits-0001") -> Path:
    torch.manual_seed(0)
    model = build_model("digits-cnn", image_size=8, num_classes=10)
    meta = {"model": "digits-cnn", "model_title": "Digits CNN", "dataset": "digits",
            "input_format": {"size": 8, "max_value": 16, "style": "digits"}, "pixel_scale": 1.0,
            "normalization": {"mean": 4.88, "std": 6.02}, "class_names": list("0123456789"), "status": "done",
            "epochs_completed": 1, "final": {"test_accuracy": 0.1}}
    return save_run(root, run_id, meta, model.state_dict())


def runs_dir() -> Path:
    return Path(os.environ["DIGIT_STUDIO_RUNS"])


# ---- drawing --------------------------------------------------------------------------------------------------------

def test_a_fresh_page_asks_for_a_drawing_and_offers_the_shipped_model():
    app = page()
    assert app.selectbox(key="predict_model").options == ["Shipped: Fast CNN (modern) on MNIST (28x28), 99.15 %"]
    assert any("Draw a digit" in info.value for info in app.info)
    assert answers(app) == [] and not app.error


@pytest.mark.parametrize("digit", [0, 1, 3, 7])
def test_a_drawing_is_answered_with_its_probabilities_and_reasons(digit):
    app = draw(page(), drawn(digit))
    assert answers(app) == [str(digit)]
    page_text = texts(app)
    assert f"The model reads {digit}" in page_text and "**Model input** 28x28" in page_text
    assert f"**Why {digit}**: saliency" in page_text and "Not sure" not in page_text
    assert [chart.key for chart in app.get("plotly_chart")] == ["predict_probabilities", "predict_saliency"]
    assert len(app.image) == 1  # the 28x28 input; the saliency map is drawn over it in a chart
    assert not app.error


def test_clearing_the_canvas_asks_for_a_digit_again():
    app = draw(page(), drawn(7))
    assert answers(app) == ["7"]
    draw(app, None)
    assert answers(app) == [] and any("Draw a digit" in info.value for info in app.info)
    draw(app, Image.new("RGBA", (280, 280), (0, 0, 0, 255)))  # objects undone to nothing, canvas still black
    assert answers(app) == [] and any("Draw a digit" in info.value for info in app.info)


def test_the_clear_button_empties_the_canvas_and_asks_for_a_digit_again():
    app = draw(page(), drawn(7))
    assert answers(app) == ["7"]
    app.button(key="predict_clear").click().run()
    assert answers(app) == [] and any("Draw a digit" in info.value for info in app.info)
    app.run()
    assert answers(app) == []  # the old drawing is not sent back


def test_the_probability_chart_writes_percentages_as_the_app_does():
    probabilities = np.array([0.0085, 0.9915] + [0.0] * 8, dtype=np.float32)
    bars = probability_figure(probabilities, tuple("0123456789")).data[0]
    assert list(bars.text[:2]) == ["", "99 %"]  # on the bars: whole percents, none under 1 %
    assert hover_text(bars, 1) == "1: 99.15 %" and hover_text(bars, 0) == "0: 0.85 %"


def test_a_dot_is_too_little_ink_to_be_a_digit():
    app = draw(page(), drawn(1, width=4, box=(140, 140, 142, 142)))
    assert answers(app) == [] and any("please draw or write the digit bigger" in info.value for info in app.info)


def test_several_digits_are_read_as_a_number_and_the_page_suggests_it():
    row = drawn("1407", box=(10, 60, 270, 200), width=12)
    app = draw(page(), row)
    assert any("several digits" in info.value for info in app.info)  # answered as one digit, with a hint
    app.toggle(key="predict_several").set_value(True).run()
    assert answers(app) == ["1407"]
    per_digit = [m.value.split(" · ")[0] for m in app.markdown if " · " in m.value and m.value.startswith("**")]
    assert "4 digits" in texts(app) and per_digit == ["**1**", "**4**", "**0**", "**7**"]


# ---- uploads and the camera ---------------------------------------------------------------------------------------

def upload(app: AppTest, files: dict[str, bytes]) -> AppTest:
    app.session_state["predict_source"] = "Upload"
    app.file_uploader(key="predict_uploads").set_value([(name, data, "image/png") for name, data in files.items()])
    app.run()
    assert not app.exception
    return app


def test_every_bad_or_odd_upload_gets_its_one_clear_message():
    files = bad_and_odd_files()
    app = upload(page(), {name: data for name, (data, _) in files.items()})
    messages = [shown(e.value) for kind in (app.error, app.info, app.warning) for e in kind]
    for name, (_, expected) in files.items():
        about = [message for message in messages if name in message]
        assert len(about) >= 1 and any(expected in message for message in about), (name, about)
        assert all(message.endswith(".") for message in about)
    assert len(app.error) == 5  # the five files that cannot be read at all
    gallery = {shown(m.value).split(":")[0]: m.value for m in app.markdown if shown(m.value).split(":")[0] in files}
    assert gallery["animated.gif"].endswith("**2** · 100 %") and "**8**" in gallery["deep.png"]
    assert "**4**" in gallery["print.jpg"] and "white.png" not in gallery  # blank: its warning says so
    assert "**7**" in gallery["cut.jpg"]  # read without the grey rows (with them: a 2)


def test_uploads_are_each_answered_and_the_chosen_one_explained():
    files = {"five.png": encoded(drawn(5, mode="L", background=255, ink=0), "PNG"),
             "photo.jpg": encoded(photo_of(3), "JPEG"),
             "export.png": encoded(drawn(9, background=(0, 0, 0, 0), ink=(0, 0, 0, 255)), "PNG"),
             "screen.webp": encoded(drawn(6).convert("RGB"), "WEBP", lossless=True)}
    app = upload(page(), files)
    assert answers(app) == ["5"] and "All your pictures" in [s.value for s in app.subheader]
    gallery = [shown(m.value) for m in app.markdown if shown(m.value).split(":")[0] in files]
    assert gallery == ["five.png: **5** · 100 %", "photo.jpg: **3** · 100 %", "export.png: **9** · 100 %",
                       "screen.webp: **6** · 100 %"]
    app.selectbox(key="predict_explain").select_index(2).run()  # the third picture, export.png
    assert answers(app) == ["9"] and not app.error
    app.selectbox(key="predict_explain").select_index(1).run()
    assert answers(app) == ["3"]


def test_each_new_upload_is_explained_and_one_that_cannot_be_read_leaves_the_last_good_one():
    first = {"five.png": encoded(drawn(5, mode="L", background=255, ink=0), "PNG")}
    added = first | {"three.png": encoded(drawn(3, mode="L", background=255, ink=0), "PNG")}
    app = upload(page(), first)
    assert answers(app) == ["5"]
    upload(app, added)
    assert answers(app) == ["3"]  # the picture just added
    upload(app, added | {"empty.png": b""})
    assert answers(app) == ["3"] and any("empty.png" in shown(error.value) for error in app.error)  # not the first


def test_a_camera_photo_is_read():
    app = page()
    app.session_state["predict_source"] = "Camera"
    app.run()
    assert any("Take a photo" in info.value for info in app.info)
    app.camera_input(key="predict_camera").set_value(("photo.jpg", encoded(photo_of(2), "JPEG"), "image/jpeg")).run()
    assert not app.exception and answers(app) == ["2"]


# ---- models -------------------------------------------------------------------------------------------------------

def test_every_saved_run_is_offered_and_compared_in_its_own_input_format():
    copy_of_default(runs_dir(), "20260102-000000-fast-cnn-mnist-0001")
    untrained_digits(runs_dir())
    app = draw(page(), drawn(4))
    options = app.selectbox(key="predict_model").options
    assert options[0].startswith("Shipped") and len(options) == 3
    assert options[1].startswith("Fast CNN (modern) on MNIST")
    assert options[1].endswith(" · 20260102-000000-fast-cnn-mnist-0001")
    assert options[2].startswith("Digits CNN on scikit-learn digits")  # what it is first: a phone shows the start
    assert options[2].endswith(" · 20260101-000000-digits-cnn-digits-0001")
    table = app.dataframe[0].value
    assert list(table["trained on"]) == ["MNIST (28x28)", "MNIST (28x28)", "scikit-learn digits (8x8)"]
    started = created_time(RunStore(runs_dir()).info("20260102-000000-fast-cnn-mnist-0001"))
    assert re.fullmatch(r"\d{1,2} [A-Z][a-z]{2} \d\d:\d\d", started)
    # the start time before the id, which the table's narrow column cuts off: two runs of one model stay apart
    assert list(table["model"]) == ["Fast CNN (modern) · shipped",
                                    f"Fast CNN (modern) · {started} · 20260102-000000-fast-cnn-mnist-0001",
                                    "Digits CNN · 20260101-000000-digits-cnn-digits-0001"]  # no start time saved
    assert list(table["answer"])[:2] == ["4", "4"] and table["confidence"].iloc[0] > 99  # in percent
    assert "disagree" in texts(app) or "All 3 models agree" in texts(app)
    shown = list(app.dataframe[0].proto.column_order)  # the answers beside the names: a phone shows three
    assert shown[:3] == ["model", "answer", "confidence"] and set(shown) == set(table.columns)


def test_an_unsure_model_says_so():
    untrained_digits(runs_dir())
    app = page()
    app.selectbox(key="predict_model").set_value("20260101-000000-digits-cnn-digits-0001").run()
    draw(app, drawn(3))
    assert len(answers(app)) == 1 and any("Not sure" in w.value for w in app.warning)
    assert "**Model input** 8x8" in texts(app)  # the 8x8 input is what is shown


def test_a_run_with_damaged_weights_gets_a_message_and_the_shipped_model_answers():
    damaged = copy_of_default(runs_dir(), "20260103-000000-fast-cnn-mnist-0002")
    weights = next(damaged.glob("weights-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    app = page()
    app.selectbox(key="predict_model").set_value(damaged.name).run()
    assert any("weights are damaged" in e.value and "Showing the shipped model instead" in e.value for e in app.error)
    draw(app, drawn(7))
    assert answers(app) == ["7"] and any("weights are damaged" in w.value for w in app.warning)
    assert not app.exception


def test_a_run_saved_again_is_loaded_again():
    from ui.predict import load_choice, model_choices

    run_dir = copy_of_default(runs_dir(), "20260104-000000-fast-cnn-mnist-0003")
    first = load_choice(model_choices()[1])
    assert load_choice(model_choices()[1]) is first  # cached while the weights file is unchanged
    changed = {name: tensor.clone() for name, tensor in load_file(next(run_dir.glob("weights-*"))).items()}
    changed["12.bias"] += 1.0
    weights = next(run_dir.glob("weights-*"))
    save_file(changed, weights)
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    second = load_choice(model_choices()[1])
    assert second is not first and torch.equal(second.model.state_dict()["12.bias"], changed["12.bias"])
    shutil.rmtree(run_dir)
    assert len(model_choices()) == 1


def test_a_picture_of_many_marks_read_as_a_number_shows_a_bounded_strip_and_says_why():
    fence = np.full((200, 2000), 255, np.uint8)
    for left in range(20, 1980, 40):
        fence[40:160, left:left + 12] = 0  # 49 separate bars
    app = page()
    app.toggle(key="predict_several").set_value(True).run()
    upload(app, {"fence.png": encoded(Image.fromarray(fence), "PNG")})
    warnings = [w.value for w in app.warning if "separate marks were found" in w.value]
    assert warnings and len(app.image) <= 24 + 1  # the strip, and the upload's gallery thumbnail at most
    assert not app.exception


def test_agreement_says_whether_the_models_agree():
    from ui.predict import agreement

    def rows(*answers):
        return [{"answer": answer} for answer in answers]

    assert agreement(rows("7", "7", "7")) == "All 3 models agree: **7**."
    assert agreement(rows("7", "1", "7")) == "The models disagree: 7 (2), 1 (1)."
    assert agreement(rows("7", "-", "7")) == "2 of 3 models read **7**; 1 found no digit."
    assert agreement(rows("7", "-", "1")) == "The models disagree: 7 (1), 1 (1). 1 found no digit."
    assert agreement(rows("-", "-")) == "No model found a digit."
    assert "Train a model" in agreement(rows("4"))


# ---- text from a run or an upload is shown as text ---------------------------------------------------------------

HOSTILE_TEXT = ['<img src=x onerror="alert(1)">', '<iframe src="//127.0.0.1:9/f">', "<style>*{display:none}</style>",
                "<form><input name=q></form>", "![x](http://127.0.0.1:9/a.png)", "[click](http://127.0.0.1:9/)",
                "**bold** _it_ ~~no~~", ":red[red] $x^2$ :smile:", "# heading", "1. item", "`code` &amp; <b>b</b>"]
# each a short printable line, as core.store accepts a class name


def run_named(run_id: str, class_names: list[str]) -> Path:
    """A copy of the shipped model whose meta.json gives its ten classes these names."""
    meta = {k: v for k, v in DEFAULT_META.items() if k != "weights_file"}
    return save_run(runs_dir(), run_id, {**meta, "class_names": class_names}, load_file(DEFAULT_WEIGHTS))


HOSTILE_MARKUP = re.compile(r"<(img|iframe|style|form|b)\b", re.IGNORECASE)  # st.html reads no Markdown
UNESCAPED_MARKUP = re.compile(r"(?<!\\)(<(img|iframe|style|form|b)\b|\]\(http)", re.IGNORECASE)  # escaped is text


def assert_shown_as_text(app: AppTest, text: str) -> None:
    """`text` reaches no Markdown or HTML element as markup (only escaped), and the page shows it somewhere."""
    markdown, blocks = rendered_as_markdown(app), [block.value for block in app.html]
    assert not [value for value in markdown if UNESCAPED_MARKUP.search(value)]
    assert not [value for value in markdown if re.search(r"(?<!\\)" + re.escape(text), value)]  # only escaped
    assert not [value for value in blocks if HOSTILE_MARKUP.search(value)]
    assert any(text in shown(value) for value in markdown) or any(text in html.unescape(value) for value in blocks)


@pytest.mark.parametrize("hostile", HOSTILE_TEXT)
def test_class_names_of_a_run_are_shown_as_text(hostile):
    names = [str(digit) if digit != 7 else hostile for digit in range(10)]
    run_id = "20260105-000000-fast-cnn-mnist-0004"
    run_named(run_id, names)
    app = page()
    app.selectbox(key="predict_model").set_value(run_id).run()
    draw(app, drawn(7))
    assert answers(app) == [hostile]
    assert f"The model reads {hostile}" in texts(app) and f"**Why {hostile}**: saliency" in texts(app)
    assert_shown_as_text(app, hostile)
    figure = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert "<" not in "".join(figure["data"][0]["x"])  # plotly draws <a href>, <b>... in axis labels
    assert app.dataframe[0].value["answer"].iloc[0] == hostile  # a table shows text as it is


def test_a_number_read_with_a_runs_class_names_is_shown_as_text():
    names = [str(digit) if digit != 7 else HOSTILE_TEXT[0] for digit in range(10)]
    run_named("20260105-000000-fast-cnn-mnist-0005", names)
    app = page()
    app.selectbox(key="predict_model").set_value("20260105-000000-fast-cnn-mnist-0005").run()
    app.toggle(key="predict_several").set_value(True).run()
    draw(app, drawn("17", box=(20, 60, 260, 220), width=14))
    assert answers(app) == [f"1 {HOSTILE_TEXT[0]}"]
    assert_shown_as_text(app, HOSTILE_TEXT[0])


HOSTILE_FILE_NAMES = ["![x](http://127.0.0.1:9/x.png).png", "<img src=http://127.0.0.1:9/y.png>.png"]


def test_upload_file_names_are_shown_as_text():
    files = {HOSTILE_FILE_NAMES[0]: encoded(drawn(5), "PNG"), HOSTILE_FILE_NAMES[1]: encoded(drawn(3), "PNG"),
             "[blank](http://127.0.0.1:9/).png": encoded(Image.new("L", (64, 64), 255), "PNG"),
             "**broken**.png": b"not an image"}
    app = upload(page(), files)
    for name in files:
        assert_shown_as_text(app, name)
    assert any("**broken**.png" in shown(e.value) for e in app.error)
    assert any("[blank](http://127.0.0.1:9/).png" in shown(w.value) for w in app.warning)
    gallery = [shown(m.value) for m in app.markdown if shown(m.value).split(".png: ")[0] + ".png" in files]
    assert gallery == [f"{HOSTILE_FILE_NAMES[0]}: **5** · 100 %", f"{HOSTILE_FILE_NAMES[1]}: **3** · 100 %"]


def test_escaped_markdown_is_one_line_of_the_same_characters():
    from ui.text import escape_markdown

    for text in HOSTILE_TEXT + ["a\n\n# heading\r\n- item\u2028b\\c", "T-shirt/top", "7"]:
        escaped = escape_markdown(text)
        assert not any(mark in escaped for mark in "\n\r\u2028")  # a new line could start a heading or a list
        assert shown(escaped) == " ".join(line for line in text.splitlines() if line)
        assert not re.search(r"[!-/:-@\[-`{-~]", re.sub(r"\\[!-/:-@\[-`{-~]", "", escaped))  # every mark escaped


def test_a_long_answer_is_set_smaller_than_a_digit_but_never_tiny():
    from ui.predict import ANSWER_REM, MIN_ANSWER_REM, answer_size_rem

    sizes = [answer_size_rem("7" * length) for length in range(1, 60)]
    assert sizes[0] == sizes[2] == ANSWER_REM  # a digit, or a number of up to three
    assert all(later <= earlier for earlier, later in zip(sizes, sizes[1:]))  # longer text, never larger type
    assert answer_size_rem("Ankle boot") < 0.5 * ANSWER_REM and min(sizes) == MIN_ANSWER_REM


def test_a_run_still_training_says_so_before_its_time_and_id():
    from ui.predict import _choice

    meta = {"model_title": "Digits CNN", "dataset": "digits", "weights_file": "weights-000001.safetensors",
            "status": "running", "final": {"test_accuracy": 0.9}}
    choice = _choice("20260101-000000-digits-cnn-digits-0001", Path("."), meta, when="1 Jan 10:00")
    assert choice.short == "Digits CNN (still training) · 1 Jan 10:00 · 20260101-000000-digits-cnn-digits-0001"
    assert choice.label.endswith("90.00 % (still training) · 1 Jan 10:00 · 20260101-000000-digits-cnn-digits-0001")
