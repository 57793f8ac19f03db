"""A page of samples as one image whose tiles can be clicked, drawn by the browser alone: an <img> of the mosaic and
a transparent button over each tile (a components.v2 component: in the page itself, no iframe, no plotly.js).

The grid was a plotly figure (the mosaic plus an invisible marker a tile), and a page with a single plotly chart
is ready 2.4-2.6 s after a fresh visit on the project's 2-core machine (bench/README.md, page load): plotly.js is
3.5 MB to fetch and parse before it draws anything. An image and a few buttons draw with the page.

A click on a tile fires the component's "clicked" trigger with that tile's sample id; `on_click` runs first (as
st.plotly_chart's on_select did) and reads it with `clicked_sample(key)`. Each tile's button says its sample in
its title (the hover text) and its accessible name.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import streamlit as st
from PIL import Image

from ui.charts import png_data_uri

HTML = '<div class="tile-grid"><img class="mosaic" alt=""><div class="tiles"></div></div>'
CSS = """
.tile-grid { position: relative; display: inline-block; max-width: 100%; line-height: 0; }
.mosaic { display: block; max-width: 100%; height: auto; }
.tiles { position: absolute; inset: 0; }
.tiles button { position: absolute; margin: 0; padding: 0; border: 0; background: transparent; cursor: pointer; }
.tiles button:focus-visible { outline: 2px solid #1f77b4; outline-offset: -2px; }
"""
# The tiles are placed in percent of the mosaic, so they follow the image when a narrow column scales it down.
# Pixels drawn as squares (pixelated) only when the screen shows the mosaic at its size or larger (a 2x display): a
# mosaic scaled down (a phone's column) is smoothed, or its captions' strokes come out broken.
JS = """
export default function ({ data, parentElement, setTriggerValue }) {
  const image = parentElement.querySelector(".mosaic");
  const tiles = parentElement.querySelector(".tiles");
  const sharpness = () => {
    const shown = image.getBoundingClientRect().width * window.devicePixelRatio;
    image.style.imageRendering = image.naturalWidth && shown < image.naturalWidth - 0.5 ? "auto" : "pixelated";
  };
  const done = new AbortController();  // Streamlit calls what this returns before the next data, and on unmount
  image.addEventListener("load", sharpness, { signal: done.signal });
  const resized = new ResizeObserver(sharpness);
  resized.observe(image);
  const watchRatio = () => matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`).addEventListener("change",
    () => { sharpness(); watchRatio(); }, { once: true, signal: done.signal });  // a zoom, another screen
  watchRatio();
  if (image.getAttribute("src") !== data.src) image.setAttribute("src", data.src);
  image.style.width = data.shown_width + "px";
  const percent = (part, whole) => (100 * part / whole) + "%";
  tiles.replaceChildren(...data.ids.map((sampleId, position) => {
    const tile = document.createElement("button");
    tile.type = "button";
    tile.title = data.hover[position];
    tile.setAttribute("aria-label", data.hover[position]);
    tile.dataset.sample = String(sampleId);
    tile.style.left = percent((position % data.columns) * data.cell[0], data.size[0]);
    tile.style.top = percent(Math.floor(position / data.columns) * data.cell[1], data.size[1]);
    tile.style.width = percent(data.cell[0], data.size[0]);
    tile.style.height = percent(data.cell[1], data.size[1]);
    tile.onclick = () => setTriggerValue("clicked", sampleId);
    return tile;
  }));
  return () => { resized.disconnect(); done.abort(); };
}
"""


@st.cache_resource(show_spinner=False)
def _renderer() -> Any:
    """The component, registered once per process (registering it again each run would log a warning)."""
    return st.components.v2.component("digit_studio_tile_grid", html=HTML, css=CSS, js=JS)


def tile_grid(mosaic: Image.Image, columns: int, cell: tuple[int, int], sample_ids: Sequence[int],
              hover: Sequence[str], *, width: int, key: str, on_click: Callable[[], None]) -> None:
    """Draw `mosaic` (tiles of `cell` px, `columns` a row, in the order of `sample_ids`) `width` px wide at most."""
    data = {"src": png_data_uri(mosaic), "size": [mosaic.width, mosaic.height], "cell": list(cell),
            "columns": columns, "ids": [int(i) for i in sample_ids], "hover": [str(text) for text in hover],
            "shown_width": min(width, mosaic.width)}
    _renderer()(data=data, key=key, on_clicked_change=on_click)


def clicked_sample(key: str) -> int | None:
    """The sample id of the tile clicked (inside `on_click`); None when what came is not a whole number."""
    clicked = getattr(st.session_state.get(key), "clicked", None)
    return clicked if isinstance(clicked, int) and not isinstance(clicked, bool) else None
