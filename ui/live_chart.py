"""The Train page's two live charts, drawn by plotly.js in one component that redraws them in place.

Measured by bench/bench_live_chart.py on the 2-core machine of bench/README.md: two st.plotly_chart elements
redrawn once a second cost Chromium 0.30 cores, this component 0.14, and where the browser shares the cores that
train, every core it takes is taken from training.

The frame loads plotly.js's basic bundle (scatter, bar and pie traces with the whole layout: axes, zoom, shapes,
annotations), 1.2 MB, not the 4.6 MB full bundle the plotly package ships: the frame is on every Train page, and
Chromium parsed and compiled the full one on each visit (bench/bench_page_load.py's CPU column). It is the
plotly.js release the installed plotly package is built for (tests/test_live_chart.py checks), copied unchanged
from npm's plotly.js-basic-dist-min with its licence (ui/plotly-basic.LICENSE).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import streamlit.components.v1 as components

from core.store import atomic_write

PAGE = Path(__file__).with_name("live_chart.html")
BUNDLE = Path(__file__).with_name("plotly-basic.min.js")  # served under its own name; live_chart.html loads it
COMPONENT_NAME = "live_charts"


def cache_root() -> Path:
    """This user's cache folder for the app: files written here are served to the browser, so never a shared /tmp."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "digit-studio"


def plotly_js() -> bytes:
    """plotly.js's basic bundle, from the app's own files: no network."""
    return BUNDLE.read_bytes()


def write_component(folder: Path, page: bytes) -> None:
    """The page and plotly.js side by side (Streamlit serves a component's files from one folder); the page last,
    so a folder with a page is complete."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / BUNDLE.name, plotly_js())
    atomic_write(folder / "index.html", page)


def complete(folder: Path) -> bool:
    return (folder / "index.html").is_file() and (folder / BUNDLE.name).is_file()


def component_folder() -> Path:
    """The folder to serve, built once per page and bundle (its name says which)."""
    page = PAGE.read_bytes()
    try:
        folder = cache_root() / f"live-chart-{hashlib.sha256(page + plotly_js()).hexdigest()[:16]}"
        if not complete(folder):
            write_component(folder, page)
        return folder
    except (OSError, RuntimeError, KeyError):  # no home folder, or one we cannot write: a private folder instead
        folder = Path(tempfile.mkdtemp(prefix="digit-studio-live-chart-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)  # 5 MB a start would pile up in /tmp
        write_component(folder, page)
        return folder


@lru_cache(maxsize=1)
def _component() -> tuple[Any, Path]:
    folder = component_folder()
    return components.declare_component(COMPONENT_NAME, path=str(folder)), folder


def live_charts(loss: dict[str, Any], accuracy: dict[str, Any], *, height: int, key: str) -> None:
    """Draw (or redraw in place) the loss and accuracy figures, given as plotly JSON dicts, side by side."""
    component, folder = _component()
    if not complete(folder):  # the cache was cleaned while the app ran: put the files back, or the charts go blank
        try:
            write_component(folder, PAGE.read_bytes())
        except OSError:  # the frame then says that the charts cannot be drawn
            pass
    component(loss=loss, accuracy=accuracy, height=height, key=key, default=None)
