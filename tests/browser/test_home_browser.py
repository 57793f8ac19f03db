from tests.browser.conftest import assert_no_error, screenshot, wait_for_app


def test_home_page_opens_with_no_error(page, app_url):
    page.goto(app_url)
    wait_for_app(page)
    page.get_by_text("Datasets on this machine").wait_for()
    page.get_by_text("Saved runs").wait_for()
    page.get_by_text("Where to go next").wait_for()
    assert page.get_by_text("Ready").count() >= 2  # digits always; MNIST from ../shared/data
    assert_no_error(page)
    screenshot(page, "home")
