"""The Predict page in real Chromium: digits drawn with the mouse on the canvas, and uploads good and bad."""

from __future__ import annotations

import json
import math
import re
import time
from itertools import pairwise

import pytest
from playwright.sync_api import expect
from safetensors.torch import load_file

from core.inference import DEFAULT_MODEL_DIR
from core.store import RunStore
from tests.browser.conftest import assert_no_error, pick, screenshot, serve_app, settled_box, stop_app, wait_for_app
from tests.drawn_digits import bad_and_odd_files, drawn, encoded, photo_of, strokes_in

TALL = {"width": 1400, "height": 1800}  # the whole page in one screenshot (Streamlit scrolls inside its main block)
ANSWER_TIMEOUT = 30_000
MOUSE_STEP = 20  # px between mouse events, as a quick hand's at 60 events/s: each event costs Chromium a frame, and six
# a segment (curves are drawn as many short ones) took twice the browser's CPU for the same strokes
ASK_FOR_A_DIGIT = "in the black square: the answer appears as soon as you lift the mouse or your finger"


def open_predict(page, app_url: str, viewport: dict[str, int] = TALL) -> None:
    page.set_viewport_size(viewport)
    page.goto(f"{app_url}/predict")
    wait_for_app(page)
    page.locator("canvas.upper-canvas").first.wait_for(timeout=60_000)
    expect(page.get_by_text(ASK_FOR_A_DIGIT)).to_be_visible()


def draw_strokes(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw each stroke with the mouse (press, move, release) on the canvas; positions are canvas pixels. The box is
    read once it holds still: a rerun (a new brush width) redraws the canvas and leaves no box for a moment."""
    box = settled_box(page.locator("canvas.upper-canvas").first)
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        page.mouse.down()
        for (x0, y0), (x, y) in pairwise(stroke):
            steps = max(1, math.ceil(math.dist((x0, y0), (x, y)) / MOUSE_STEP))
            page.mouse.move(box["x"] + x, box["y"] + y, steps=steps)
        page.mouse.up()


def settled_answer(page, expected: str) -> str:
    """The big answer once the page has finished answering the last stroke."""
    answer = page.locator(".predict-answer")
    try:
        expect(answer).to_have_text(expected, timeout=ANSWER_TIMEOUT)
    except AssertionError:
        pass  # a wrong answer: read it below so the failure names it
    wait_for_app(page)
    time.sleep(0.5)  # a rerun for the last stroke may still have been on its way
    wait_for_app(page)
    return answer.inner_text() if answer.count() else "(no answer)"


def clear_canvas(page) -> None:
    page.locator(".dc-toolbar button[title='Reset canvas & history']").click()
    expect(page.locator(".predict-answer")).to_have_count(0, timeout=ANSWER_TIMEOUT)
    expect(page.get_by_text(ASK_FOR_A_DIGIT)).to_be_visible()
    wait_for_app(page)


def test_digits_drawn_with_the_mouse_are_read(page, app_url):
    open_predict(page, app_url)
    for digit in (1, 7, 0, 4, 3):
        draw_strokes(page, [[(x, y) for x, y in stroke] for stroke in strokes_in(digit, (25, 25, 255, 255))])
        assert settled_answer(page, str(digit)) == str(digit), f"drew a {digit}"
        expect(page.get_by_text(f"The model reads {digit}")).to_be_visible()
        assert_no_error(page)
        if digit == 7:
            page.get_by_text("Why 7: saliency").wait_for()
            page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for()
            time.sleep(1)  # the every-model table paints its cells on a canvas
            screenshot(page, "predict-drawn-7")
        clear_canvas(page)


def test_a_small_digit_in_a_corner_with_a_thin_brush_is_read(page, app_url):
    open_predict(page, app_url)
    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(12):
        slider.press("ArrowLeft")  # 18 -> 6 px
    expect(slider).to_have_attribute("aria-valuetext", "6")
    wait_for_app(page)
    draw_strokes(page, strokes_in(7, (190, 180, 260, 265)))
    assert settled_answer(page, "7") == "7"
    assert_no_error(page)


def test_several_digits_are_read_as_a_number(page, app_url):
    open_predict(page, app_url)
    page.get_by_text("Several digits: read a number").click()
    wait_for_app(page)
    strokes = [stroke for index, digit in enumerate((2, 5, 1))
               for stroke in strokes_in(digit, (15 + index * 85, 70, 95 + index * 85, 210))]
    draw_strokes(page, strokes)
    assert settled_answer(page, "251") == "251"
    page.get_by_text("3 digits").wait_for()
    assert_no_error(page)
    screenshot(page, "predict-number")


def test_uploads_good_and_bad_each_get_their_answer_or_one_clear_message(page, app_url, tmp_path):
    bad = bad_and_odd_files()
    good = {"five.png": encoded(drawn(5, mode="L", background=255, ink=0), "PNG"),
            "photo.jpg": encoded(photo_of(3), "JPEG"),
            "transparent.png": encoded(drawn(9, background=(0, 0, 0, 0), ink=(0, 0, 0, 255)), "PNG")}
    paths = []
    for name, data in {**good, **{name: data for name, (data, _) in bad.items()}}.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    open_predict(page, app_url, {"width": TALL["width"], "height": 2600})  # the gallery is below the messages
    page.get_by_role("tab", name="Upload").click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files([str(p) for p in paths])
    for name, (_, expected) in bad.items():
        expect(page.get_by_text(expected).first).to_be_visible(timeout=ANSWER_TIMEOUT)
    wait_for_app(page)
    readable = {"five.png": "5", "photo.jpg": "3", "transparent.png": "9", "animated.gif": "2", "deep.png": "8",
                "print.jpg": "4", "cut.jpg": "7"}
    for name, digit in readable.items():
        expect(page.get_by_text(f"{name}: {digit}").first).to_be_visible(timeout=ANSWER_TIMEOUT)
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Explain")
    explained = " ".join([box.inner_text()] + box.locator("input").evaluate_all("inputs => inputs.map(i => i.value)"))
    shown = [name for name in readable if name in explained]  # uploads may arrive in any order
    assert len(shown) == 1, explained
    expect(page.locator(".predict-answer")).to_have_text(readable[shown[0]], timeout=ANSWER_TIMEOUT)
    assert_no_error(page, expected_errors=5)  # the five files that cannot be read at all
    with pytest.raises(AssertionError):
        assert_no_error(page)  # the helper counts st.error alerts: a page showing one fails an error-free check
    expect(page.get_by_text("All your pictures")).to_be_visible()
    page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for()
    time.sleep(1)  # the every-model table paints its cells on a canvas
    screenshot(page, "predict-uploads")


# ---- text from a run or an upload is shown as text ---------------------------------------------------------------

OUTSIDE = "127.0.0.1:9"  # nothing listens there: a request to it is a page following markup it was given as text
HOSTILE_RUN = "20260105-000000-fast-cnn-mnist-0009"
HOSTILE_CLASSES = {7: f'<img src="//{OUTSIDE}/c.png">', 1: f'<iframe src="//{OUTSIDE}/f">'}  # within core's limits


def requests_to(page, host: str) -> list[str]:
    """Every URL the page asks for on `host` from now on (images, frames, fetches)."""
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if host in request.url else None)
    return asked


@pytest.fixture
def hostile_app(tmp_path):
    """The app served with one run: the shipped model, two of whose class names are HTML."""
    meta = json.loads((DEFAULT_MODEL_DIR / "meta.json").read_text())
    weights = load_file(DEFAULT_MODEL_DIR / meta.pop("weights_file"))
    meta["class_names"] = [HOSTILE_CLASSES.get(index, name) for index, name in enumerate(meta["class_names"])]
    RunStore(tmp_path / "runs").save(HOSTILE_RUN, meta, weights)
    served = serve_app(tmp_path / "runs", tmp_path / "data")
    try:
        yield served.url
    finally:
        stop_app(served)


def assert_nothing_outside(page, asked: list[str]) -> None:
    """No request left for OUTSIDE, and no image or frame pointing there is in the page."""
    assert asked == [], asked
    assert page.locator(f'img[src*="{OUTSIDE}"], iframe[src*="{OUTSIDE}"]').count() == 0


@pytest.mark.fresh_page  # listens to the tab's requests
def test_html_in_a_runs_class_names_is_shown_as_text(page, hostile_app):
    asked = requests_to(page, OUTSIDE)
    open_predict(page, hostile_app)
    pick(page, "Model", re.compile(HOSTILE_RUN))
    wait_for_app(page)
    draw_strokes(page, strokes_in(7, (25, 25, 255, 255)))
    answer = settled_answer(page, HOSTILE_CLASSES[7])
    page.get_by_text("saliency").first.wait_for()
    assert_nothing_outside(page, asked)
    assert answer == HOSTILE_CLASSES[7]
    expect(page.get_by_text(f"Why {HOSTILE_CLASSES[7]}: saliency")).to_be_visible()
    expect(page.get_by_text(f"The model reads {HOSTILE_CLASSES[7]}")).to_be_visible()
    clear_canvas(page)
    page.get_by_text("Several digits: read a number").click()
    wait_for_app(page)
    draw_strokes(page, [stroke for index, digit in enumerate((7, 1))
                        for stroke in strokes_in(digit, (30 + index * 120, 60, 130 + index * 120, 220))])
    number = f"{HOSTILE_CLASSES[7]} {HOSTILE_CLASSES[1]}"
    answer = settled_answer(page, number)
    assert_nothing_outside(page, asked)
    assert answer == number
    assert_no_error(page)
    screenshot(page, "predict-hostile-class-names")


def test_an_upload_named_like_markdown_is_shown_by_its_name(page, app_url):
    hostile = f"![x](http://{OUTSIDE}/x.png).png"
    asked = requests_to(page, OUTSIDE)
    open_predict(page, app_url, {"width": TALL["width"], "height": 2400})
    page.get_by_role("tab", name="Upload").click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files([
        {"name": hostile, "mimeType": "image/png", "buffer": encoded(drawn(5), "PNG")},
        {"name": "three.png", "mimeType": "image/png", "buffer": encoded(drawn(3), "PNG")}])
    expect(page.get_by_text("three.png: 3").first).to_be_visible(timeout=ANSWER_TIMEOUT)  # the gallery
    wait_for_app(page)
    assert_nothing_outside(page, asked)
    expect(page.get_by_text(f"{hostile}: 5").first).to_be_visible()
    pick(page, "Explain", hostile)  # the picker lists it by its name, as text
    wait_for_app(page)
    expect(page.locator(".predict-answer")).to_have_text("5", timeout=ANSWER_TIMEOUT)
    assert_nothing_outside(page, asked)
    assert_no_error(page)
