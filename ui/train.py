"""The Train page's pieces that are not layout: live and comparison figures, progress texts, run rows."""

from __future__ import annotations

import html
import math
import os
from typing import Any, Sequence

import plotly.graph_objects as go

from core.jobs import MAX_TRAIN_POINTS, EpochPoint, JobSnapshot
from core.progress import format_duration
from core.store import RunInfo

TRAIN_COLOR = "rgba(31, 119, 180, 0.55)"  # plotly blue, light: many noisy points
TEST_COLOR = "#d62728"
REFERENCE_COLOR = "#2ca02c"
CHART_HEIGHT = 320
MARKED_EPOCHS = 60  # beyond this many epochs a marker each is clutter, and costs the browser a shape each
SHARED_CORES = 2  # at most this many cores, the browser's redraws take them from training
REDRAW_VARIABLE = "DIGIT_STUDIO_REDRAW_SECONDS"
MIN_REDRAW_SECONDS, MAX_REDRAW_SECONDS = 0.5, 10.0


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def redraw_override() -> float | None:
    """$DIGIT_STUDIO_REDRAW_SECONDS when it holds a number from 0.5 to 10; None otherwise (unset, or not that)."""
    try:
        chosen = float(os.environ.get(REDRAW_VARIABLE, ""))
    except ValueError:
        return None
    return chosen if MIN_REDRAW_SECONDS <= chosen <= MAX_REDRAW_SECONDS else None


def live_refresh_seconds(cores: int) -> float:
    """How often the live charts redraw: as $DIGIT_STUDIO_REDRAW_SECONDS says, else every second, or every 2 s
    where the browser shares training's cores (bench/README.md, app overhead)."""
    return redraw_override() or (2.0 if cores <= SHARED_CORES else 1.0)


def redraw_note(seconds: float, cores: int) -> str | None:
    """The line under the live charts that says why they redraw less often than every second, if they do."""
    if redraw_override() is not None:
        return f"The charts redraw {refresh_words(seconds)}, as `{REDRAW_VARIABLE}` asks."
    if seconds > 1.0:
        return (f"The charts redraw {refresh_words(seconds)} on this {cores}-core machine, where the browser's "
                "redraws take their time from training's cores.")
    return None


def refresh_words(seconds: float) -> str:
    """"every second" or "every 2 s"."""
    return "every second" if seconds == 1.0 else f"every {seconds:g} s"


def progress_text(snapshot: JobSnapshot) -> str:
    """"Epoch 3/10 · step 450/2,230 · 5,120 images/s · 0:12 elapsed · ETA 0:42" for the progress bar."""
    progress = snapshot.progress
    if snapshot.status == "queued":
        return f"Waiting: number {snapshot.queue_position} in the queue"
    if progress is None:
        return "Loading the data and building the model..."
    parts = [f"Epoch {max(progress.epoch, 1)}/{progress.epochs}", f"step {progress.step:,}/{progress.total_steps:,}",
             f"{progress.images_per_second:,.0f} images/s", f"{format_duration(progress.elapsed_seconds)} elapsed"]
    if snapshot.active:
        parts.append(f"ETA {format_duration(progress.eta_seconds)}")
    return " · ".join(parts)


def chart_layout(title: str, y_title: str, y_format: str = "") -> dict[str, Any]:
    """The layout every training-curve chart shares, as plotly JSON."""
    return {"title": {"text": title, "x": 0.01}, "height": CHART_HEIGHT,
            "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "legend": {"orientation": "h", "y": -0.2},
            "hovermode": "x unified", "uirevision": "keep",
            # the x axis grows with the run: 1,000-epoch recipes stay readable
            "xaxis": {"title": {"text": "epoch"}, "rangemode": "tozero"},
            "yaxis": {"title": {"text": y_title}, "tickformat": y_format}}


def _plain(values: Sequence[float], digits: int) -> list[float | None]:
    """Rounded for a smaller message each redraw; NaN and infinities (a diverged run) as gaps, since JSON has none."""
    return [round(value, digits) if math.isfinite(value) else None for value in values]


def thinned(epochs: Sequence[EpochPoint], most: int = MAX_TRAIN_POINTS) -> Sequence[EpochPoint]:
    """At most about `most` epoch ends, evenly spread, the last always in: a 10,000-epoch run redraws lightly."""
    if len(epochs) <= most:
        return epochs
    stride = -(-len(epochs) // most)
    kept = list(epochs[::stride])
    return kept if kept[-1] is epochs[-1] else [*kept, epochs[-1]]


def _curves(snapshot: JobSnapshot, metric: str, train_name: str) -> list[dict[str, Any]]:
    """The train curve (every few steps) and the test curve (each epoch's end) of one metric, as plotly traces."""
    points, epochs = snapshot.train_points, thinned(snapshot.epoch_points)
    test_mode = "lines+markers" if len(epochs) <= MARKED_EPOCHS else "lines"
    return [{"type": "scatter", "mode": "lines", "name": train_name, "line": {"color": TRAIN_COLOR, "width": 1.5},
             "x": _plain([p.epoch_progress for p in points], 4), "y": _plain([getattr(p, metric) for p in points], 5)},
            {"type": "scatter", "mode": test_mode, "name": "test (epoch end)", "line": {"color": TEST_COLOR},
             "x": [e.epoch for e in epochs], "y": _plain([getattr(e, f"test_{metric}") for e in epochs], 5)}]


def loss_figure(snapshot: JobSnapshot) -> dict[str, Any]:
    """Training loss every few steps and test loss at each epoch's end, on one chart (plotly JSON)."""
    return {"data": _curves(snapshot, "loss", "train (recent batches)"), "layout": chart_layout("Loss", "loss")}


def accuracy_figure(snapshot: JobSnapshot, reference: float | None) -> dict[str, Any]:
    """Training accuracy as it runs, test accuracy per epoch, and the recipe's reported accuracy as a dashed line."""
    layout = chart_layout("Accuracy", "accuracy", ".0%")
    if reference is not None:
        layout["shapes"] = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": reference, "y1": reference,
                             "line": {"color": REFERENCE_COLOR, "dash": "dash"}}]
        layout["annotations"] = [{"xref": "paper", "x": 1, "y": reference, "yanchor": "top", "xanchor": "right",
                                  "showarrow": False, "text": f"reported {reference:.2%}"}]
    return {"data": _curves(snapshot, "accuracy", "train (this epoch so far)"), "layout": layout}


def run_label(info: RunInfo) -> str:
    """A short name for a run in legends and lists."""
    final = (info.get("final") or {}).get("test_accuracy")
    score = f" {final:.2%}" if isinstance(final, (int, float)) else ""
    return f"{info.get('model_title') or info.get('model')} · {info.get('dataset')}{score} ({info.run_id[-6:]})"


def comparison_figure(runs: Sequence[RunInfo], metric: str, title: str, percent: bool) -> go.Figure:
    """One metric of each run's epoch history, overlaid: the curves of the selected runs side by side."""
    figure = go.Figure()
    for info in runs:
        history = info.get("history") or []
        figure.add_scatter(x=[row.get("epoch") for row in history], y=[row.get(metric) for row in history],
                           mode="lines+markers", name=html.escape(run_label(info)))  # plotly.js reads HTML
    longest = max((len(info.get("history") or []) for info in runs), default=1)
    figure.update_layout(chart_layout(title, metric.replace("_", " "), ".1%" if percent else ""))
    figure.update_xaxes(range=[0.5, longest + 0.5])
    return figure


def run_row(info: RunInfo) -> dict[str, Any]:
    """One row of the runs table."""
    final = info.get("final") or {}
    training = info.status == "running"  # the table is drawn once; the live panel above follows the run
    return {"run": info.run_id, "model": info.get("model_title") or info.get("model"), "dataset": info.get("dataset"),
            "status": "training (live above)" if training else info.status,
            "epochs": None if training else info.get("epochs_completed"),
            "test accuracy": final.get("test_accuracy"), "test loss": final.get("test_loss"),
            "time": format_duration(info.get("train_seconds") or 0) if info.meta and not training else "",
            "parameters": info.get("parameters"), "created": (info.get("created_at") or "").replace("T", " ")[:19],
            "problem": info.error or ""}
