"""The training curves a Train page panel draws: the zoom hint and log-scale toggle above, the live-charts component
under them; for this server's jobs and for runs followed from elsewhere alike."""

from __future__ import annotations

import math

import streamlit as st

from core.jobs import JobSnapshot
from core.recipes import planned_reference
from core.runlog import FollowedRun
from ui import train as ui
from ui.live_chart import live_charts


def curves(run: JobSnapshot | FollowedRun, *, key: str = "train_live") -> None:
    """The loss and accuracy charts, with the loss's scale to choose; drag to zoom, double-click for the whole run."""
    log = chart_controls(key)
    draw_charts(run, log=log, key=key)
    if run.config is not None and (note := smoothing_note(run.config.label_smoothing)):
        st.caption(note)


def smoothing_note(smoothing: float, classes: int = 10) -> str | None:
    """Why the training loss stays far above the test loss with label smoothing: the smoothed targets' own entropy is
    a floor the training loss cannot pass (about 0.50 at 0.1), and the test loss is measured without smoothing."""
    if smoothing <= 0:
        return None
    true, other = 1 - smoothing + smoothing / classes, smoothing / classes
    floor = -(true * math.log(true) + (classes - 1) * other * math.log(other))
    return (f"This run trains with label smoothing {smoothing:g}: its training loss cannot fall below about "
            f"{floor:.2f}, while the test loss is measured without smoothing, so the two lines stay apart.")


def chart_controls(key: str) -> bool:
    """The line above the charts: how to zoom, and the loss's scale (True: log)."""
    hint, scale = st.columns([3, 1], vertical_alignment="center")
    hint.caption("Drag across a chart to zoom in; double-click it to see the whole run again.")
    return scale.toggle("Log-scale loss", key="train_loss_log" if key == "train_live" else f"{key}_loss_log",
                        help="Shows the loss's last digits on long runs.")


def draw_charts(run: JobSnapshot | FollowedRun, *, log: bool, key: str) -> None:
    live_charts(ui.loss_figure(run, log=log), ui.accuracy_figure(run, chart_reference(run)), height=ui.CHART_HEIGHT,
                key=f"{key}_charts")


def chart_reference(run: JobSnapshot | FollowedRun) -> ui.Reference | None:
    """The figure the run is held to if it ends as planned, as the accuracy chart's line: a job's from its recipe,
    settings and training images; a followed run's as its log states it."""
    if isinstance(run, JobSnapshot):
        reference = planned_reference(run.recipe, run.config, run.train_size)
        return (reference.accuracy, reference.source) if reference else None  # planned: a figure, or None
    return (run.reported_accuracy, run.reference_source) if run.reported_accuracy is not None else None
