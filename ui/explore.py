"""The Explore page's cached data, model choices, figures and background t-SNE jobs."""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.data import Dataset, DatasetUnavailable, load_dataset
from core.explore import class_counts, class_mean_images, embedding_subset, pca, pixel_features, pixel_statistics, tsne
from core.store import RunError, RunInfo, load_run_dir
from ui.shared import run_store
from ui.text import escape_markdown
from ui.train_format import duration, percent, run_names

if TYPE_CHECKING:
    from core.explore import PixelStatistics
    from core.store import LoadedRun

Section = TypeVar("Section", bound=Callable[..., Any])
LOGGER = logging.getLogger(__name__)
USABLE_STATUSES = ("done", "stopped")
CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # plotly's D3 palette: ten distinct classes


def guarded(what: str) -> Callable[[Section], Section]:
    """Decorate a page section so that a fault in it becomes one sentence there (logged in full), never a traceback."""
    def decorate(section: Section) -> Section:
        @functools.wraps(section)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return section(*args, **kwargs)
            except Exception as error:  # Streamlit's rerun and stop signals are BaseExceptions: they pass
                LOGGER.exception("%s failed", what)
                st.error(f"{what} could not be shown: {type(error).__name__}: {escape_markdown(error)}",
                         icon=":material/error:")
                return None
        return run  # type: ignore[return-value]
    return decorate


def selected_sample_ids(points: Sequence[dict[str, Any]]) -> list[int]:
    """Sample ids (ascending, unique) of the points a plotly selection event reports; points without one are skipped."""
    ids = {values[0] for values in map(customdata_of, points) if values}
    return sorted(ids)


def clicked_cell(event: Any) -> tuple[int, int] | None:
    """(true class, predicted class) of the confusion-matrix cell a selection event reports, or None."""
    points = event.selection.points if event and event.selection else []
    cell = customdata_of(points[0])[:2] if points else []
    return (cell[0], cell[1]) if len(cell) == 2 else None


def customdata_of(point: dict[str, Any]) -> list[int]:
    """A selected point's customdata as whole numbers ([] when it has none or it is not numeric).

    Plotly reports it as a list, or as {"0": ..., "1": ...} when the figure was given a numpy array.
    """
    custom = point.get("customdata")
    if isinstance(custom, dict):
        custom = [custom[key] for key in sorted(custom, key=lambda k: int(k) if str(k).isdigit() else -1)]
    if not isinstance(custom, (list, tuple)) or not custom:
        return []
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in custom):
        return []
    return [int(v) for v in custom]


def short_class_name(class_names: Sequence[str], index: int) -> str:
    """A class's name for a grid caption: digits as they are, long names by number (listed under the grid)."""
    return class_names[index] if max(map(len, class_names)) <= 3 else str(index)


def class_legend(class_names: Sequence[str]) -> None:
    """Under a grid captioned by class numbers, which name each number stands for."""
    if max(map(len, class_names)) > 3:
        st.caption("Classes: " + escape_markdown(", ".join(f"{i} {name}" for i, name in enumerate(class_names))))


# ---- data and models, cached per process ------------------------------------------------------------------------

@st.cache_resource(show_spinner="Loading the dataset (once per process)...")
def cached_dataset(name: str, root: str) -> Dataset:
    """The dataset, loaded once per process and shared by every session: never mutate it."""
    return load_dataset(name, root)


def dataset_or_error(name: str, root: Path) -> Dataset | None:
    """The dataset, or None after showing why it cannot be read."""
    try:
        return cached_dataset(name, str(root))
    except (DatasetUnavailable, OSError, ValueError) as error:
        st.error(f"The {name} dataset could not be read: {escape_markdown(error)}", icon=":material/error:")
        return None


@st.cache_resource(show_spinner="Loading the model...", max_entries=8)
def cached_run(path: str, stamp: float) -> "LoadedRun":
    """A run loaded for inference, keyed by its folder and its metadata's modification time."""
    return load_run_dir(Path(path))


@dataclass(frozen=True)
class ModelChoice:
    """A model the page can use on the chosen dataset."""

    path: str
    label: str

    @property
    def stamp(self) -> float:
        meta = Path(self.path) / "meta.json"
        return meta.stat().st_mtime if meta.exists() else 0.0


def model_choices(dataset: str) -> list[ModelChoice]:
    """Saved runs for `dataset` that finished or stopped with weights, newest first; the shipped model for MNIST."""
    from core.inference import DEFAULT_MODEL_DIR

    runs = [info for info in run_store().list_runs()
            if info.get("dataset") == dataset and info.status in USABLE_STATUSES and info.has_weights]
    names = run_names(runs)
    choices = [ModelChoice(str(info.path), _run_label(info, names[info.run_id])) for info in runs]
    if dataset == "mnist" and DEFAULT_MODEL_DIR.is_dir():
        choices.append(ModelChoice(str(DEFAULT_MODEL_DIR), "Default model shipped with the app (Fast CNN)"))
    return choices


def _run_label(info: RunInfo, name: str) -> str:
    """"Digits CNN · digits · 3 epochs · 2 Dec 14:05: 98.22 % test accuracy": what it is, not its folder's id."""
    stopped = ", stopped early" if info.status == "stopped" else ""
    return f"{name}: {percent((info.get('final') or {}).get('test_accuracy'))} test accuracy{stopped}"


def run_or_error(choice: ModelChoice | None) -> "LoadedRun | None":
    """The chosen model, or None after saying why it cannot be used."""
    if choice is None:
        return None
    try:
        return cached_run(choice.path, choice.stamp)
    except (RunError, OSError) as error:
        st.error(f"This model cannot be used: {escape_markdown(error)}", icon=":material/error:")
        return None


@st.cache_data(show_spinner="Asking the model about every sample of the split...", max_entries=16)
def split_probabilities(run_path: str, stamp: float, dataset: str, root: str, split: str) -> np.ndarray:
    """Class probabilities for a whole split (cached per run version, dataset and split)."""
    from core.evaluation import predict_split

    return predict_split(cached_run(run_path, stamp), cached_dataset(dataset, root), split)  # type: ignore[arg-type]


def split_images(data: Dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's uint8 images and int64 labels as numpy views of the shared tensors (read-only use)."""
    from core.evaluation import split_arrays

    images, labels = split_arrays(data, split)  # type: ignore[arg-type]
    return images.numpy(), labels.numpy()


# ---- statistics and embeddings, cached per dataset and split --------------------------------------------------

@st.cache_data(show_spinner=False, max_entries=8)
def split_statistics(dataset: str, root: str, split: str) -> tuple["PixelStatistics", np.ndarray]:
    """Pixel statistics and the mean image of each class for one split."""
    data = cached_dataset(dataset, root)
    images, labels = split_images(data, split)
    return (pixel_statistics(images, data.input_format.max_value),
            class_mean_images(images, labels, len(data.class_names)))


@st.cache_data(show_spinner=False, max_entries=8)
def both_class_counts(dataset: str, root: str) -> dict[str, np.ndarray]:
    """Class counts of the train and the test split."""
    data = cached_dataset(dataset, root)
    classes = len(data.class_names)
    return {split: class_counts(split_images(data, split)[1], classes) for split in ("train", "test")}


@st.cache_data(show_spinner="Projecting the samples on their principal components...", max_entries=8)
def pca_layout(dataset: str, root: str, split: str, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sample indices, 2-D PCA coordinates, explained variance) for a reproducible subset of a split."""
    data = cached_dataset(dataset, root)
    images, _ = split_images(data, split)
    subset = embedding_subset(len(images), size, seed)
    result = pca(pixel_features(images[subset], data.input_format.max_value), 2)
    return subset, result.coordinates, result.explained


# ---- t-SNE in the background: the page polls, the server stays responsive ------------------------------------------

# Seconds per squared sample of a whole t-SNE map (its repulsion is quadratic), measured on the shared 2-core machine
# of bench/README.md: 1,000 MNIST samples in 7.6 s, 2,000 in 18.5 to 31.7 s, 3,000 in 77 s, as busy as it was.
# Replaced by this process's own figure once it has made a map.
TSNE_SECONDS_PER_SQUARED_SAMPLE = 31.7 / 2000**2


@dataclass
class TsneJob:
    """One t-SNE computation: its progress, then its layout or its error, and when it started and ended."""

    size: int = 0
    fraction: float = 0.0
    message: str = "starting"
    layout: np.ndarray | None = None
    error: str | None = None
    started: float | None = None  # time.monotonic() when computing began (after any map before it)
    seconds: float | None = None  # how long computing took, once done
    done: threading.Event = field(default_factory=threading.Event)

    def progress_words(self) -> str:
        """"iteration 250 of 500 · 8 s so far, about 24 s left", from the time this map has taken so far."""
        if self.started is None:
            return self.message
        elapsed = time.monotonic() - self.started
        words = f"{self.message} · {duration(elapsed)} so far"
        if self.fraction >= 0.1:  # before that, the neighbour search makes the rate a poor guide
            words += f", about {duration(elapsed / self.fraction * (1 - self.fraction))} left"
        return words


class TsneJobs:
    """t-SNE layouts by (dataset, split, size, seed), computed one at a time in worker threads and kept."""

    def __init__(self, keep: int = 8) -> None:
        self.jobs: dict[tuple, TsneJob] = {}
        self.seconds_per_squared_sample = TSNE_SECONDS_PER_SQUARED_SAMPLE  # this machine's, after its first map
        self.keep = keep
        self.lock = threading.Lock()
        self.one_at_a_time = threading.Lock()  # two maps at once would only halve each one's speed on 2 cores

    def get(self, key: tuple) -> TsneJob | None:
        with self.lock:
            return self.jobs.get(key)

    def start(self, key: tuple, features: np.ndarray) -> TsneJob:
        """Start computing `key` unless it is already done or under way; returns its job."""
        with self.lock:
            if key in self.jobs and self.jobs[key].error is None:
                return self.jobs[key]
            job = self.jobs[key] = TsneJob(size=len(features))
            while len(self.jobs) > self.keep:
                self.jobs.pop(next(iter(self.jobs)))
        threading.Thread(target=self._work, args=(job, features), name="tsne", daemon=True).start()
        return job

    def _work(self, job: TsneJob, features: np.ndarray) -> None:
        def report(fraction: float, message: str) -> None:
            job.fraction, job.message = fraction, message

        if not self.one_at_a_time.acquire(blocking=False):
            job.message = "waiting for the map being computed to finish"
            self.one_at_a_time.acquire()
        try:
            job.started = time.monotonic()
            job.layout = tsne(features, progress=report)
            job.seconds = time.monotonic() - job.started
            self.seconds_per_squared_sample = job.seconds / max(1, job.size) ** 2
        except Exception as error:  # shown on the page as a sentence, never as a traceback
            job.error = f"{type(error).__name__}: {error}"
        finally:
            self.one_at_a_time.release()
            job.done.set()

    def estimate(self, size: int) -> float:
        """Seconds a map of `size` samples should take here: the last map's rate, else the benchmark's."""
        return self.seconds_per_squared_sample * size**2


@st.cache_resource
def tsne_jobs() -> TsneJobs:
    """The process's t-SNE jobs, shared by every session (a map computed once serves everyone)."""
    return TsneJobs()


# ---- figures ------------------------------------------------------------------------------------------------------

def class_counts_figure(counts: dict[str, np.ndarray], class_names: Sequence[str]) -> go.Figure:
    """Grouped bars: samples per class in each split."""
    figure = go.Figure([go.Bar(name=f"{split} ({int(values.sum()):,})", x=list(class_names), y=values, text=values,
                               textposition="outside", hovertemplate="%{x}: %{y:,} samples<extra>" + split + "</extra>")
                        for split, values in counts.items()])
    figure.update_layout(barmode="group", height=330, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         legend={"orientation": "h", "y": 1.12}, yaxis_title="samples")
    figure.update_xaxes(type="category", title="class")
    return figure


WRITTEN_VALUES_UP_TO = 16  # px a side: a larger image's values (28x28's "253"s) overlap in their cells and hide it


def values_written(side: int) -> bool:
    """Whether pixel_heatmap writes each value in its cell for an image of `side` px (else they show on hover)."""
    return side <= WRITTEN_VALUES_UP_TO


def pixel_values_caption(side: int, max_value: int) -> str:
    """What the sample's pixel_heatmap shows, said under it."""
    where = "" if values_written(side) else "; point at a pixel for its value"
    scale = ("each counts the ink in a 4x4 block of the scanned digit." if max_value == 16 else
             f"{max_value} is full ink.")
    return f"Pixel values from 0 to {max_value} ({side}x{side} pixels{where}): {scale}"


def pixel_heatmap(pixels: np.ndarray, max_value: int) -> go.Figure:
    """An image as a heatmap (white ink on black, as the model sees it), each pixel's value on hover and, when the
    image is small enough (values_written), written in its cell."""
    pixels = np.asarray(pixels)
    side = pixels.shape[0]
    written = values_written(side)
    text = np.rint(pixels).astype(int).astype(str) if written else None
    figure = go.Figure(go.Heatmap(z=pixels, zmin=0, zmax=max_value, colorscale="gray", text=text,
                                  texttemplate="%{text}" if written else None,
                                  textfont={"size": 13 if side <= 8 else 9},
                                  hovertemplate="row %{y}, column %{x}: %{z}<extra></extra>", showscale=False))
    labelled = side <= 8  # each row and column numbered; a 28x28's numbers would crowd
    figure.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", showticklabels=labelled,
                        ticks="", showgrid=False, zeroline=False)
    figure.update_xaxes(constrain="domain", showticklabels=labelled, ticks="", showgrid=False, zeroline=False)
    figure.update_layout(height=360, margin={"l": 0, "r": 0, "t": 0, "b": 0})  # about the column's width: the square
    return figure  # fills it, with no band of blank page above and below


def histogram_figure(stats: "PixelStatistics") -> go.Figure:
    """How many pixels have each intensity, ink only (the background share is reported beside it)."""
    levels = np.arange(1, stats.max_value + 1)
    figure = go.Figure(go.Bar(x=levels, y=stats.histogram[1:], marker_color="#1f77b4",
                              hovertemplate="value %{x}: %{y:,} pixels<extra></extra>"))
    figure.update_layout(height=280, margin={"l": 10, "r": 10, "t": 10, "b": 10}, bargap=0,
                         xaxis_title="pixel value (0 left out)", yaxis_title="pixels (log scale)")
    figure.update_yaxes(type="log",  # MNIST's near-white strokes outnumber the grey edge pixels a hundredfold
                        tickformat="~s")  # every tick in full (2k, 5k, 10k): plotly's own log labels read "2, 10k, 5"
    return figure


def ink_figure(ink_per_image: np.ndarray) -> go.Figure:
    """How much ink each image carries: thin or small digits on the left, bold ones on the right."""
    figure = go.Figure(go.Histogram(x=np.asarray(ink_per_image) * 100, nbinsx=40, marker_color="#2ca02c",
                                    hovertemplate="%{x:.0f} %: %{y} images<extra></extra>"))
    figure.update_layout(height=280, margin={"l": 10, "r": 10, "t": 10, "b": 10}, bargap=0.05,
                         xaxis_title="mean intensity of an image", yaxis_title="images")
    figure.update_xaxes(ticksuffix=" %")
    return figure


def embedding_figure(coordinates: np.ndarray, sample_ids: np.ndarray, groups: np.ndarray, group_names: Sequence[str],
                     colors: Sequence[str], hover: Sequence[str]) -> go.Figure:
    """A scatter of the 2-D map, one trace per group (click the legend to hide one); points carry their sample id.

    With st.plotly_chart(on_select="rerun", selection_mode=("box", "lasso", "points")), each selected point has
    customdata == [sample_id].
    """
    hover = np.asarray(hover, dtype=object)
    traces = []
    for group, name in enumerate(group_names):
        members = np.flatnonzero(groups == group)
        if len(members) == 0:
            continue
        traces.append(go.Scattergl(
            x=coordinates[members, 0], y=coordinates[members, 1], mode="markers", name=f"{name} ({len(members):,})",
            marker={"size": 5, "color": colors[group % len(colors)], "opacity": 0.75},
            customdata=[[int(i)] for i in sample_ids[members]], hovertext=list(hover[members]), hoverinfo="text"))
    figure = go.Figure(traces)
    figure.update_layout(height=560, margin={"l": 10, "r": 10, "t": 36, "b": 10}, dragmode="lasso",
                         legend={"itemsizing": "constant"}, plot_bgcolor="#fafafa")
    figure.update_xaxes(showticklabels=False, zeroline=False)
    figure.update_yaxes(showticklabels=False, zeroline=False, scaleanchor="x")
    return figure


def probability_figure(probabilities: np.ndarray, class_names: Sequence[str], label: int) -> go.Figure:
    """The model's probability for each class; the true class in green, a wrong top answer in red."""
    top = int(np.argmax(probabilities))
    colors = ["#2ca02c" if i == label else "#d62728" if i == top else "#aab4c3" for i in range(len(class_names))]
    figure = go.Figure(go.Bar(x=list(class_names), y=np.asarray(probabilities) * 100, marker_color=colors,
                              text=[f"{p * 100:.0f} %" if p >= 0.01 else "" for p in probabilities],
                              textposition="outside", hovertemplate="%{x}: %{y:.2f} %<extra></extra>"))
    figure.update_layout(height=250, margin={"l": 10, "r": 10, "t": 40, "b": 10}, yaxis={"range": [0, 115],
                         "ticksuffix": " %", "tickvals": [0, 50, 100]},
                         title={"text": "What the model reads: each class's probability", "font": {"size": 14}})
    figure.update_xaxes(type="category")
    return figure
