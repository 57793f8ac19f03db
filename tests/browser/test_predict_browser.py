"""The Predict page in real Chromium: digits drawn with the mouse on the canvas, and uploads good and bad."""

from __future__ import annotations

import time

from playwright.sync_api import expect

from tests.browser.conftest import assert_no_error, screenshot, wait_for_app
from tests.drawn_digits import bad_and_odd_files, drawn, encoded, photo_of, strokes_in

TALL = {"width": 1400, "height": 1800}  # the whole page in one screenshot (Streamlit scrolls inside its main block)
ANSWER_TIMEOUT = 30_000
ASK_FOR_A_DIGIT = "in the black square: the answer appears as soon as you lift the mouse"


def open_predict(page, app_url: str, viewport: dict[str, int] = TALL) -> None:
    page.set_viewport_size(viewport)
    page.goto(f"{app_url}/predict")
    wait_for_app(page)
    page.locator("canvas.upper-canvas").first.wait_for(timeout=60_000)
    expect(page.get_by_text(ASK_FOR_A_DIGIT)).to_be_visible()


def draw_strokes(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw each stroke with the mouse (press, move, release) on the canvas; positions are canvas pixels."""
    box = page.locator("canvas.upper-canvas").first.bounding_box()
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=6)
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
                "print.jpg": "4"}
    for name, digit in readable.items():
        expect(page.get_by_text(f"{name}: {digit}").first).to_be_visible(timeout=ANSWER_TIMEOUT)
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Explain")
    explained = " ".join([box.inner_text()] + box.locator("input").evaluate_all("inputs => inputs.map(i => i.value)"))
    shown = [name for name in readable if name in explained]  # uploads may arrive in any order
    assert len(shown) == 1, explained
    expect(page.locator(".predict-answer")).to_have_text(readable[shown[0]], timeout=ANSWER_TIMEOUT)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 5
    assert_no_error(page)
    expect(page.get_by_text("All your pictures")).to_be_visible()
    page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for()
    time.sleep(1)  # the every-model table paints its cells on a canvas
    screenshot(page, "predict-uploads")
