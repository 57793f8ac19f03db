"""A digit collection on Explore in real Chromium: pick it as the dataset, click a sample in its grid, delete it."""

from __future__ import annotations

import pytest

from core.collection import collections_root
from tests.browser.conftest import assert_no_error, pick, screenshot, serve_app, stop_app, wait_for_app
from tests.font_digits import available_fonts, write_collection

COLUMNS = 10


@pytest.mark.skipif(not available_fonts(), reason="no DejaVu or Liberation font to draw digits with")
def test_a_collection_is_browsed_and_a_clicked_sample_deleted(page, tmp_path):
    folder = collections_root(tmp_path / "data") / "mine"
    write_collection(folder, per_class=3)
    (tmp_path / "runs").mkdir()
    served = serve_app(tmp_path / "runs", tmp_path / "data")
    page.set_viewport_size({"width": 1400, "height": 1400})
    try:
        page.goto(f"{served.url}/explore")
        wait_for_app(page, timeout=120_000)
        pick(page, "Dataset", "Your digits: mine (30 images)")
        wait_for_app(page, timeout=60_000)
        page.get_by_text("30 images in").wait_for(timeout=60_000)
        mosaic = page.locator(".st-key-explore_collection_grid img.mosaic")  # ui.tile_grid, as MNIST's grid
        mosaic.wait_for(timeout=60_000)
        mosaic.scroll_into_view_if_needed()
        box = mosaic.bounding_box()
        tile, rows = 14, 3  # the third 4: second row, fifth column
        page.mouse.click(box["x"] + (tile % COLUMNS + 0.5) / COLUMNS * box["width"],
                         box["y"] + (tile // COLUMNS + 0.4) / rows * box["height"])
        page.get_by_text("Kept as a 4").wait_for(timeout=30_000)
        assert_no_error(page)
        screenshot(page, "explore-collection")
        page.get_by_role("button", name="Delete this sample").click()
        page.get_by_text("Delete 4/font-0014.png from mine?").wait_for(timeout=30_000)
        screenshot(page, "explore-collection-confirm")
        page.get_by_role("button", name="Delete", exact=True).click()
        page.get_by_text("Deleted 4/font-0014.png from mine.").wait_for(timeout=30_000)
        assert_no_error(page)
        assert not (folder / "4" / "font-0014.png").exists() and len(list(folder.rglob("*.png"))) == 29
    finally:
        stop_app(served)
