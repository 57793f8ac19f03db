"""The page bench_live_chart.py serves: the Train page's live charts and progress bar on synthetic data, drawn one
way (query parameter `way`) and redrawn every `every` seconds, as the Train page's fragment does."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.jobs import MAX_TRAIN_POINTS, EpochPoint, JobSnapshot, TrainPoint  # noqa: E402
from ui.live_chart import live_charts  # noqa: E402
from ui.train import CHART_HEIGHT, accuracy_figure, loss_figure  # noqa: E402

st.set_page_config(layout="wide")
WAY = st.query_params.get("way", "component")
EVERY = float(st.query_params.get("every", "1"))
if WAY == "bar-still":
    st.html("<style>[data-testid='stProgress'] * { transition: none !important; }</style>")


def snapshot() -> JobSnapshot:
    """A run's full live history (the curve buffer's maximum), shifted by the clock so every redraw is new data."""
    now = time.time()
    points = tuple(TrainPoint(index / 250, math.exp(-index / 300) + 0.05 * math.sin(index + now), 0.9)
                   for index in range(MAX_TRAIN_POINTS))
    ends = tuple(EpochPoint(epoch, 0.1, 0.97, 0.08, 0.98 + 0.001 * math.sin(now)) for epoch in range(1, 5))
    return JobSnapshot(job_id=1, status="running", config=None, recipe=None, run_id=None, queue_position=0,
                       message="", progress=None, train_points=points, epoch_points=ends, submitted_at=0.0,
                       finished_at=None)


@st.fragment(run_every=EVERY)
def live() -> None:
    shown = snapshot()
    if WAY in ("bar", "bar-still"):
        st.progress(time.time() % 10 / 10, text=f"Epoch 1/4 · step {int(time.time()):,}")
    elif WAY == "plotly":  # what the Train page did before: one st.plotly_chart per chart
        left, right = st.columns(2)
        left.plotly_chart(go.Figure(loss_figure(shown)), key="loss", config={"displayModeBar": False})
        right.plotly_chart(go.Figure(accuracy_figure(shown, 0.99)), key="accuracy", config={"displayModeBar": False})
    elif WAY == "component":
        live_charts(loss_figure(shown), accuracy_figure(shown, 0.99), height=CHART_HEIGHT, key="charts")


live()
