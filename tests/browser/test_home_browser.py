import re

from playwright.sync_api import expect

from core.data import DATASETS, is_available

from tests.browser.conftest import assert_no_error, screenshot, serve_app, stop_app, wait_for_app


def test_home_page_opens_with_no_error(page, app_url, app_folders):
    page.goto(app_url)
    wait_for_app(page)
    page.get_by_text("Datasets on this machine").wait_for()
    page.get_by_text("Saved runs").wait_for()
    page.get_by_text("Where to go next").wait_for()
    ready = sum(is_available(name, app_folders["data"]) for name in DATASETS)  # digits always; MNIST when found
    expect(page.get_by_text(re.compile(r"^Ready(: [\d,]+ to train on, [\d,]+ to test here)?$"))).to_have_count(ready)
    heights = {round(page.locator(f".st-key-home_dataset_{name}").bounding_box()["height"]) for name in DATASETS}
    assert len(heights) == 1, heights  # one row of cards as high as the highest (MNIST's two-line status was taller)
    assert_no_error(page)
    screenshot(page, "home")


def test_a_page_opened_first_after_a_start_shows_the_frame(page, tmp_path):
    """A tab left on /train across a restart reconnects there: Streamlit's first run then skipped the frame."""
    (tmp_path / "runs").mkdir()
    served = serve_app(tmp_path / "runs", tmp_path / "data")  # a server no session has visited yet
    try:
        page.goto(f"{served.url}/train")
        wait_for_app(page)
        page.get_by_text("Set up a run").wait_for(timeout=60_000)
        navigation = page.locator('[data-testid="stSidebarNav"]')
        for title in ("Home", "Train", "Explore", "Predict"):  # the frame's pages, not the folder's file names
            expect(navigation.get_by_role("link", name=title, exact=True)).to_be_visible()
        expect(navigation.get_by_role("link", name="streamlit app")).to_have_count(0)
        assert_no_error(page)
    finally:
        stop_app(served)
