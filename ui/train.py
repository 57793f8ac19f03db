"""The Train page's pieces that are not layout: live and comparison figures, progress texts, run rows."""

from __future__ import annotations

import html
import math
import os
from typing import Any, Sequence

import plotly.graph_objects as go

from core.jobs import MAX_TRAIN_POINTS, EpochPoint, JobSnapshot
from core.store import RunInfo
from ui.train_format import duration, is_number, percent, run_name

# Okabe and Ito's colour-blind-safe palette: blue and vermilion stay apart for every kind of colour vision.
RUN_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7F7F7F")
TRAIN_COLOR = "rgba(0, 114, 178, 0.6)"  # the palette's blue, lighter: many noisy points
TEST_COLOR = "#D55E00"  # vermilion, thicker and with markers: the figure that counts
REFERENCE_COLOR = "#009E73"
Reference = tuple[float, str]  # a run's figure to reach and its source, "reported" or "measured"
REFERENCE_WORDS = {"reported": "reported", "measured": "measured here"}
HELD_OUT_COLOR = "#CC79A7"  # reddish purple: a fine-tune's own digits, beside the test curve
FOLLOW_ABOVE_PERCENT = 90.0
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
    """"Epoch 3/10 · step 450/2,230 · 5,120 images/s · 12 s so far · about 42 s left" for the progress bar."""
    progress = snapshot.progress
    if snapshot.status == "queued":
        place = "next to start" if snapshot.queue_position == 1 else f"number {snapshot.queue_position}"
        return f"Waiting in the queue: {place}"
    processes = snapshot.processes
    if progress is None:
        if processes > 1:
            return f"Starting {processes} training processes..."
        return ("Loading the data, then testing the model it starts from (the 'before' of before and after)..."
                if snapshot.config.from_run else "Loading the data and building the model...")
    parts = [*([f"{processes} processes"] if processes > 1 else []), f"Epoch {max(progress.epoch, 1):,}/{progress.epochs:,}",
             f"step {progress.step:,}/{progress.total_steps:,}",
             f"{progress.images_per_second:,.0f} images/s", f"{duration(progress.elapsed_seconds)} so far"]
    last = snapshot.epoch_points[-1] if snapshot.epoch_points else None
    if last is not None and last.collection_accuracy is not None:  # a fine-tune: how it reads the digits held out
        parts.append(f"held-out digits {percent(last.collection_accuracy)}")
    if snapshot.active:
        parts.append(f"about {duration(progress.eta_seconds)} left")
    return " · ".join(parts)


def chart_layout(title: str, y_title: str, *, percent_axis: bool = False, log: bool = False) -> dict[str, Any]:
    """The layout every training-curve chart shares, as plotly JSON: drag to zoom, double-click to see it all."""
    y_axis: dict[str, Any] = {"title": {"text": y_title}, "type": "log" if log else "linear"}
    if log:  # plotly labels a log axis's in-between ticks with their first digit alone ("2", "5"), read as losses
        y_axis["tickformat"] = "~g"  # with a format, every tick reads whole: 0.02, 0.05, 0.1
    if percent_axis:
        y_axis.update(ticksuffix=" %", hoverformat=".2f")
    return {"title": {"text": title, "x": 0.01}, "height": CHART_HEIGHT, "dragmode": "zoom",
            "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "legend": {"orientation": "h", "y": -0.2},
            "hovermode": "x unified", "uirevision": f"keep-{'log' if log else 'linear'}",  # a new scale: a new view
            # the x axis grows with the run: 1,000-epoch recipes stay readable
            "xaxis": {"title": {"text": "epoch"}, "rangemode": "tozero"}, "yaxis": y_axis}


def _plain(values: Sequence[float], scale: float = 1.0) -> list[float | None]:
    """Four significant digits (a smaller message each redraw, and tiny losses stay above 0 on a log axis); NaN and
    infinities (a diverged run) as gaps, since JSON has none."""
    return [float(f"{value * scale:.4g}") if math.isfinite(value) else None for value in values]


def thinned(epochs: Sequence[EpochPoint], most: int = MAX_TRAIN_POINTS) -> Sequence[EpochPoint]:
    """At most about `most` epoch ends, evenly spread, the last always in: a 10,000-epoch run redraws lightly."""
    if len(epochs) <= most:
        return epochs
    stride = -(-len(epochs) // most)
    kept = list(epochs[::stride])
    return kept if kept[-1] is epochs[-1] else [*kept, epochs[-1]]


def _curves(snapshot: JobSnapshot, metric: str, train_name: str, scale: float) -> list[dict[str, Any]]:
    """The train curve (every few steps) and the test curve (each epoch's end) of one metric, as plotly traces."""
    points, epochs = snapshot.train_points, thinned(snapshot.epoch_points)
    test_mode = "lines+markers" if len(epochs) <= MARKED_EPOCHS else "lines"
    return [{"type": "scatter", "mode": "lines", "name": train_name, "line": {"color": TRAIN_COLOR, "width": 1.5},
             "x": _plain([p.epoch_progress for p in points]), "y": _plain([getattr(p, metric) for p in points], scale)},
            {"type": "scatter", "mode": test_mode, "name": "test (end of each epoch)",
             "line": {"color": TEST_COLOR, "width": 2.5}, "marker": {"color": TEST_COLOR, "size": 6},
             "x": [e.epoch for e in epochs], "y": _plain([getattr(e, f"test_{metric}") for e in epochs], scale)}]


def loss_figure(snapshot: JobSnapshot, log: bool = False) -> dict[str, Any]:
    """Training loss every few steps and test loss at each epoch's end, on one chart (plotly JSON)."""
    title = "Loss (log scale)" if log else "Loss"
    return {"data": _curves(snapshot, "loss", "train (recent batches)", 1.0),
            "layout": chart_layout(title, "loss", log=log)}


def followed_floor(test: Sequence[float | None], train: Sequence[float | None]) -> float | None:
    """Where the accuracy axis starts once the test accuracy is above 90 %: a little under what the second half of the
    run shows, so the last percents fill the chart; None before that (the axis then shows everything)."""
    test_values = [value for value in test if value is not None]
    if not test_values or test_values[-1] < FOLLOW_ABOVE_PERCENT:
        return None
    recent_test = [value for value in test_values[len(test_values) // 2:] if value >= FOLLOW_ABOVE_PERCENT]
    recent_train = sorted(value for value in train[len(train) // 2:] if value is not None)
    train_low = recent_train[len(recent_train) // 20] if recent_train else 100.0  # 5th percentile: one odd batch
    return max(FOLLOW_ABOVE_PERCENT - 10, math.floor(min(train_low, *recent_test) - 0.5))


def accuracy_figure(snapshot: JobSnapshot, reference: Reference | None) -> dict[str, Any]:
    """Training accuracy as it runs, test accuracy per epoch, and the figure the run is held to (published or measured
    here, core.recipes.planned_reference) as a dashed line, in percent; once above 90 % the axis follows the data."""
    layout = chart_layout("Accuracy", "accuracy", percent_axis=True)
    data = _curves(snapshot, "accuracy", "train (recent batches)", 100.0)
    if reference is not None:
        figure, source = reference
        layout["shapes"] = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": figure * 100,
                             "y1": figure * 100, "line": {"color": REFERENCE_COLOR, "dash": "dash"}}]
        layout["annotations"] = [{"xref": "paper", "x": 0.01, "y": figure * 100, "yanchor": "bottom",
                                  "xanchor": "left", "showarrow": False,  # above the line, left: the curve still climbs
                                  "text": f"{REFERENCE_WORDS.get(source, source)} {percent(figure)}",
                                  "font": {"color": REFERENCE_COLOR}}]
    held_out = held_out_curve(snapshot)
    floor = followed_floor(data[1]["y"], data[0]["y"])
    if held_out is not None:
        data.append(held_out)
        lowest = min((value for value in held_out["y"] if value is not None), default=None)
        if floor is not None and lowest is not None:  # the held-out digits start lower: keep their curve in view
            floor = min(floor, math.floor(lowest / 5) * 5)
    if floor is not None:  # autorange within bounds: a double-click (reset) comes back to this view
        layout["yaxis"].update(autorange=True, autorangeoptions={"clipmin": floor, "clipmax": 100.5})
        layout["title"]["text"] = f"Accuracy (axis from {floor:g} %)"
    return {"data": data, "layout": layout}


def held_out_curve(snapshot: JobSnapshot) -> dict[str, Any] | None:
    """A fine-tune mixed with MNIST: its held-out digits' accuracy at each epoch's end, beside the MNIST test curve
    (a run on a folder alone has them as its test curve already)."""
    epochs = thinned(snapshot.epoch_points)
    mixed = snapshot.config is not None and snapshot.config.mixes_folder
    if not mixed or not any(e.collection_accuracy is not None for e in epochs):
        return None
    return {"type": "scatter", "mode": "lines+markers" if len(epochs) <= MARKED_EPOCHS else "lines",
            "name": "your held-out digits", "line": {"color": HELD_OUT_COLOR, "width": 2.5, "dash": "dot"},
            "marker": {"color": HELD_OUT_COLOR, "size": 6}, "x": [e.epoch for e in epochs],
            "y": _plain([math.nan if e.collection_accuracy is None else e.collection_accuracy for e in epochs], 100.0)}


def run_label(info: RunInfo) -> str:
    """A run's readable name with its test accuracy, for legends: "Digits CNN · digits · 3 epochs · 2 Dec 14:05 ·
    98.22 %"."""
    final = (info.get("final") or {}).get("test_accuracy")
    return f"{run_name(info)} · {percent(final)}" if is_number(final) else run_name(info)


COMPARED = ("test_accuracy", "train_loss")  # what the picked runs' curves show
WHOLE_EPOCH_TICKS = 12  # up to this many epochs, a tick at each: left to itself plotly marked 0.5 and 1.5 of 1 epoch


def comparison_figure(runs: Sequence[RunInfo], metric: str, title: str, percent_axis: bool,
                      log: bool = False) -> go.Figure:
    """One metric of each run's epoch history, overlaid in a colour each: the curves of the selected runs."""
    figure = go.Figure()
    scale = 100.0 if percent_axis else 1.0
    for position, info in enumerate(runs):
        history = info.get("history") or []
        color, dash = run_style(position)
        values = [row.get(metric) for row in history]
        figure.add_scatter(x=[row.get("epoch") for row in history],
                           y=[value * scale if is_number(value) else None for value in values],
                           mode="lines+markers", line={"color": color, "dash": dash, "width": 2},
                           marker={"color": color, "size": 5},
                           name=html.escape(run_label(info)))  # plotly.js reads HTML
    longest = max((len(info.get("history") or []) for info in runs), default=1)
    figure.update_layout(chart_layout(title, metric.replace("_", " "), percent_axis=percent_axis, log=log))
    figure.update_layout(legend={"orientation": "h", "y": -0.25, "x": 0})
    figure.update_xaxes(range=[0.5, longest + 0.5], **({"dtick": 1} if longest <= WHOLE_EPOCH_TICKS else {}))
    return figure


def same_curves(runs: Sequence[RunInfo]) -> list[list[RunInfo]]:
    """Groups of two or more runs whose comparison curves coincide (test accuracy and training loss at every epoch),
    in their order: the same settings and seed train the same run, and one line then hides the others."""
    groups: dict[str, list[RunInfo]] = {}
    for info in runs:
        points = [[row.get(name) if is_number(row.get(name)) else None for name in ("epoch", *COMPARED)]
                  for row in info.get("history") or [] if isinstance(row, dict)]
        groups.setdefault(repr(points), []).append(info)
    return [group for group in groups.values() if len(group) > 1]


def in_words(names: Sequence[str]) -> str:
    """"A", "A and B", "A, B and C"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def run_style(position: int) -> tuple[str, str]:
    """The colour and dash of the n-th compared run: the palette's colours first, then again dashed."""
    rounds, index = divmod(position, len(RUN_COLORS))
    return RUN_COLORS[index], ("solid", "dash", "dot", "dashdot")[rounds % 4]

