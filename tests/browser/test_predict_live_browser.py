"""The Predict page live in Chromium: the answer follows each stroke (and the eraser and undo), every layer inside the
network, the camera asked for only once chosen, the sentence a dot gets, and the answer right under the canvas on a
phone-sized window."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from playwright.sync_api import expect
from torch import nn

from core.inference import load_default_model
from core.inside import look_inside
from core.preprocess import NOT_A_STROKE, TOO_LITTLE_INK
from tests.browser.conftest import assert_no_error, screenshot, wait_for_app
from tests.browser.test_predict_browser import draw_strokes
from tests.drawn_digits import strokes_in
from ui.predict_inputs import QUICK_SEND

ANSWER = ".predict-answer"
ANSWER_TIMEOUT = 30_000
BOX = (25, 25, 255, 255)
ONE = strokes_in(1, BOX)[0]
BAR = [(25 + 0.3 * 230, 25 + 0.5 * 230), (25 + 0.8 * 230, 25 + 0.5 * 230)]  # across a 1's middle: it reads 7
PHONE = {"width": 390, "height": 844}
QUICK_SEND_BUTTON = re.search(r"title=\"([^\"]+)\"", QUICK_SEND).group(1)  # the canvas's own send-now button
COUNT_CAMERA_REQUESTS = """
window.cameraRequests = 0;
if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
  const ask = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (...args) => { window.cameraRequests += 1; return ask(...args); };
}
"""


def open_predict(page, app_url: str, viewport: dict[str, int] | None = None) -> None:
    if viewport:
        page.set_viewport_size(viewport)
    page.goto(f"{app_url}/predict")
    wait_for_app(page)
    page.locator("canvas.upper-canvas").first.wait_for(timeout=60_000)


def stroke(page, points: list[tuple[float, float]]) -> None:
    """One stroke with the mouse (press, move, release); positions are canvas pixels."""
    draw_strokes(page, [points])


def answer_is(page, text: str) -> None:
    expect(page.locator(ANSWER)).to_have_text(text, timeout=ANSWER_TIMEOUT)


def settle(page) -> None:
    wait_for_app(page)
    time.sleep(0.5)  # a rerun for the last stroke may still be on its way
    wait_for_app(page)


def test_the_answer_follows_each_stroke_the_eraser_and_undo(page, app_url):
    open_predict(page, app_url)
    expect(page.locator(f".dc-toolbar button[title='{QUICK_SEND_BUTTON}']")).to_have_count(1)  # what QUICK_SEND presses
    stroke(page, ONE)
    answer_is(page, "1")
    stroke(page, BAR)
    answer_is(page, "7")  # the second stroke changes the answer
    expect(page.get_by_text("The model reads 7")).to_be_visible()
    page.locator(".dc-toolbar button[title='Undo']").click()
    answer_is(page, "1")
    page.locator(".dc-toolbar button[title='Redo']").click()
    answer_is(page, "7")
    settle(page)
    page.get_by_text("Eraser", exact=True).click()
    settle(page)
    stroke(page, BAR)  # the same path in the background's colour, a little wider
    answer_is(page, "1")
    page.get_by_text("Pen", exact=True).click()
    settle(page)
    stroke(page, BAR)
    answer_is(page, "7")
    page.get_by_role("button", name="Clear", exact=True).click()
    expect(page.locator(ANSWER)).to_have_count(0, timeout=ANSWER_TIMEOUT)
    expect(page.get_by_text("as soon as you lift the mouse")).to_be_visible()
    stroke(page, ONE)  # on the new canvas alone: with the old drawing's bar back it would read 7
    answer_is(page, "1")
    assert_no_error(page)


def test_drawing_a_digit_shows_every_layer_inside_the_network(page, app_url):
    open_predict(page, app_url)
    for points in strokes_in(7, BOX):
        stroke(page, points)
    answer_is(page, "7")
    settle(page)
    page.get_by_role("tab", name="Inside the network").click()
    run = load_default_model()
    layers = look_inside(run, np.zeros((28, 28), np.uint8)).layers
    titles = page.locator('[data-testid="stPlotlyChart"] .gtitle')
    expect(titles).to_have_count(2 + len(layers), timeout=ANSWER_TIMEOUT)  # the input, the filters, every layer
    convolutions = sum(isinstance(module, nn.Conv2d) for module in run.model.modules())
    conv_charts = page.locator('[data-testid="stPlotlyChart"]').filter(has=page.locator(".gtitle", has_text="Conv2d"))
    expect(conv_charts).to_have_count(convolutions)
    for index in range(convolutions):  # each a grid of feature-map heatmaps
        expect(conv_charts.nth(index).locator(".heatmaplayer .hm")).to_have_count(1)
        expect(conv_charts.nth(index).locator(".gtitle")).to_contain_text("maps")
    numbered = [title for title in titles.all_text_contents() if re.match(r"\d+\. ", title)]
    assert [int(title.split(".")[0]) for title in numbered] == list(range(1, len(layers) + 1))  # in forward order
    first = conv_charts.first.locator(".nsewdrag").first
    first.scroll_into_view_if_needed()
    box = first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    expect(page.locator(".hoverlayer .hovertext").first).to_contain_text("map", timeout=10_000)  # values on hover
    assert_no_error(page)
    page.mouse.move(0, 0)
    screenshot(page, "predict-inside-the-network")


@pytest.mark.fresh_page  # adds an init script to the tab
def test_the_camera_is_asked_for_only_once_chosen(page, app_url):
    page.add_init_script(COUNT_CAMERA_REQUESTS)
    open_predict(page, app_url)
    for points in strokes_in(3, BOX):
        stroke(page, points)
    answer_is(page, "3")
    for tab in ("Upload", "Draw"):
        page.get_by_role("tab", name=tab).click()
        settle(page)
    assert page.evaluate("window.cameraRequests") == 0
    page.get_by_role("tab", name="Camera").click()
    page.wait_for_function("window.cameraRequests > 0", timeout=ANSWER_TIMEOUT)


def test_a_dot_asks_for_a_bigger_digit(page, app_url):
    open_predict(page, app_url)
    stroke(page, [(140, 140), (141, 140)])  # a click, as good as: one round dot of the brush's width
    sentence = page.get_by_text(NOT_A_STROKE).or_(page.get_by_text(TOO_LITTLE_INK))
    expect(sentence).to_be_visible(timeout=ANSWER_TIMEOUT)
    expect(page.locator(ANSWER)).to_have_count(0)
    assert_no_error(page)


def test_on_a_phone_the_answer_is_right_under_the_canvas(page, app_url):
    open_predict(page, app_url, PHONE)
    for points in strokes_in(4, BOX):
        stroke(page, points)
    answer_is(page, "4")
    settle(page)
    canvas = page.locator("canvas.upper-canvas").first.bounding_box()
    answer = page.locator(ANSWER).bounding_box()
    gap = answer["y"] - (canvas["y"] + canvas["height"])
    assert 0 <= gap < PHONE["height"], gap  # within one screen of the canvas
    assert gap < 100, gap  # nothing between them but the space between the stacked columns
    screenshot(page, "predict-phone")


def finger_stroke(page, points: list[tuple[float, float]]) -> None:
    """One stroke with a finger (touch start, moves, end) through Chromium's touch input; canvas pixels."""
    box = page.locator("canvas.upper-canvas").first.bounding_box()
    screen = page.context.new_cdp_session(page)
    at = [{"x": box["x"] + x, "y": box["y"] + y} for x, y in points]
    screen.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [at[0]]})
    for start, end in zip(at, at[1:]):
        for step in range(1, 9):
            share = step / 8
            point = {axis: start[axis] + (end[axis] - start[axis]) * share for axis in ("x", "y")}
            screen.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
    screen.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    screen.detach()


def test_on_a_touch_screen_a_digit_drawn_with_a_finger_is_answered_when_it_lifts(browser, app_url):
    """The empty canvas says the answer comes as soon as the finger lifts: a phone's touch events draw and send."""
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    try:
        page = context.new_page()
        open_predict(page, app_url)
        expect(page.get_by_text("as soon as you lift the mouse or your finger")).to_be_visible()
        page.locator("canvas.upper-canvas").first.scroll_into_view_if_needed()
        finger_stroke(page, strokes_in(7, BOX)[0])
        answer_is(page, "7")
        assert_no_error(page)
    finally:
        context.close()
