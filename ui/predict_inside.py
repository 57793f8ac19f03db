"""Predict's *Inside the network* tab: the input as the model sees it, the first conv's filters and every layer's
output in order, from core.inside's forward hooks drawn by ui.inside's figures.

For the shipped model the figures are about 512 kB of plotly JSON: they are built only while the tab is open, and
cached per model version and input, so a rerun for anything else (a tab, a toggle) does not rebuild them.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.inside import look_inside
from core.store import LoadedRun
from ui.inside import inside_figures

CONFIG = {"displayModeBar": False}
INTRO = ("What each layer makes of the model input, in the order the network computes it. A grid shows a layer's "
         "first feature maps on one colour scale, so its maps compare (red above zero and blue below; dark to yellow "
         "where no value is negative, as after a ReLU); a dense layer shows one bar per unit, its most active units "
         "numbered. Hover for the values.")


@st.cache_data(max_entries=16, show_spinner=False)
def _figures(_run: LoadedRun, run_version: str, pixels: np.ndarray) -> list[dict]:
    """The view's figures as plain dicts: cheap to keep and to copy out of the cache."""
    return [figure.to_plotly_json() for figure in inside_figures(look_inside(_run, pixels), _run.class_names)]


def show_inside(run: LoadedRun, run_version: str, pixels: np.ndarray) -> None:
    """Every figure of the view, two by two: the input and the filters first, then each layer."""
    figures = _figures(run, run_version, pixels)
    st.caption(INTRO)
    for start in range(0, len(figures), 2):
        for column, index in zip(st.columns(2), range(start, min(start + 2, len(figures)))):
            column.plotly_chart(go.Figure(figures[index]), config=CONFIG, key=f"predict_inside_{index}")
