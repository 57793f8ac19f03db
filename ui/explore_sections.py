"""Explore's tabs other than Samples (statistics, the 2-D map, the model's results, the augmentation preview), and
the view they all draw from: the dataset and split on screen and, when a model is picked, its predictions.

The cached data functions are called through ui.explore (explore.both_class_counts...), so tests can replace them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import plotly.colors
import streamlit as st

import ui.explore as explore
from core.augment import Augmentation
from core.evaluation import cell_indices, confusion_matrix, per_class_accuracy
from core.explore import augmented_copies, pixel_features
from ui.charts import confusion_figure, image_grid, map_image, per_class_accuracy_figure, tile_scale
from ui.explore import (CLASS_COLORS, ModelChoice, class_counts_figure, clicked_cell, embedding_figure, guarded,
                        histogram_figure, ink_figure, selected_sample_ids, short_class_name)
from ui.shared import metric_row
from ui.text import escape_markdown
from ui.train_format import count, duration, percent

if TYPE_CHECKING:
    from core.data import Dataset
    from core.store import LoadedRun

GRID_COLUMNS = 10
EMBED_SIZES = (1000, 2000, 3000, 5000)
TSNE_LIMIT = 3000  # exact repulsion is quadratic: beyond this the map takes minutes on a laptop
SELECTION_SHOWN = 100
MAP_WIDTH = 220  # px at most: the column's width on a laptop, a screen's half on a phone, not all of it


@dataclass(frozen=True)
class View:
    """What Explore shows now: a dataset's split (numpy views of the shared tensors: read only) and, with a model,
    its probabilities for every sample of the split."""

    dataset_name: str
    split: str
    root: str
    data: "Dataset"
    images: np.ndarray
    labels: np.ndarray
    chosen: ModelChoice | None
    run: "LoadedRun | None"
    probabilities: np.ndarray | None

    @property
    def predictions(self) -> np.ndarray | None:
        return None if self.probabilities is None else self.probabilities.argmax(axis=1)

    @property
    def class_names(self) -> list[str]:
        return list(self.data.class_names)

    @property
    def max_value(self) -> int:
        return self.data.input_format.max_value

    def tile_name(self, index: int) -> str:
        return short_class_name(self.class_names, index)

    def describe(self, index: int) -> str:
        """One line about a sample: its index, label and, with a model, the prediction."""
        text = f"#{index}: {self.class_names[self.labels[index]]}"
        if self.probabilities is not None:
            guess = int(self.probabilities[index].argmax())
            verdict = "right" if guess == self.labels[index] else "wrong"
            text += f", predicted {self.class_names[guess]} ({percent(self.probabilities[index, guess], 0)}, {verdict})"
        return text

    def caption(self, index: int) -> str:
        """A grid tile's caption: its label, and what the model read instead when it is wrong."""
        label = int(self.labels[index])
        if self.probabilities is None or int(self.probabilities[index].argmax()) == label:
            return self.tile_name(label)
        return f"{self.tile_name(label)} as {self.tile_name(int(self.probabilities[index].argmax()))}"

    def show_mosaic(self, indices: np.ndarray, columns: int = GRID_COLUMNS) -> None:
        """A plain (non-clickable) mosaic of samples with their labels, wrong predictions marked."""
        if len(indices) == 0:
            return
        predictions = self.predictions
        wrong = None if predictions is None else predictions[indices] != self.labels[indices]
        st.image(image_grid(self.images[indices], [self.caption(int(i)) for i in indices], columns,
                            max_value=self.max_value, marked=wrong))


# ---- 2. statistics ------------------------------------------------------------------------------------------------

@guarded("The statistics")
def statistics_section(view: View) -> None:
    counts = explore.both_class_counts(view.dataset_name, view.root)
    stats, means = explore.split_statistics(view.dataset_name, view.root, view.split)
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("**Samples per class**")
        st.plotly_chart(class_counts_figure(counts, view.class_names), key="explore_counts")
        balance = counts[view.split].max() / max(1, counts[view.split].min())
        st.caption(f"The largest class of the {view.split} split has {balance:.2f} times as many samples as the smallest.")
    with right:
        st.markdown(f"**Mean image of each class** ({view.split})")
        scaled = np.clip(np.rint(means), 0, view.max_value).astype(np.uint8)
        st.image(image_grid(scaled, view.class_names, 5, max_value=view.max_value, scale=tile_scale(view.data.image_size, 84)))
        st.caption("Every sample of a class averaged: the shape the class has in common, blurred where writers differ.")
    st.markdown(f"**Pixel intensities** ({view.split}, {len(view.labels):,} images)")
    metrics = metric_row()
    metrics.metric("Mean pixel value", f"{stats.mean:.1f} of {view.max_value}")
    metrics.metric("Standard deviation", f"{stats.std:.1f}")
    metrics.metric("Background (value 0)", percent(stats.background_share, 1))
    metrics.metric(f"Full ink (value {view.max_value})", percent(stats.saturated_share, 1))
    charts = st.columns([2, 2, 1, 1], vertical_alignment="bottom")  # the two maps level, whatever their captions
    charts[0].plotly_chart(histogram_figure(stats), key="explore_histogram")
    charts[1].plotly_chart(ink_figure(stats.ink_per_image), key="explore_ink")
    with charts[2]:  # pictures, not heatmaps: square and whole in a narrow column (a heatmap there was cut off)
        st.caption("Mean: where the ink is")
        st.container(key="explore_mean").image(map_image(stats.mean_image, view.max_value), width=MAP_WIDTH)
    with charts[3]:
        st.caption("Spread: where they differ")
        st.container(key="explore_std").image(map_image(stats.std_image, float(stats.std_image.max()),
                                                        plotly.colors.sequential.Viridis), width=MAP_WIDTH)


# ---- 3. embedding -------------------------------------------------------------------------------------------------

@st.fragment
@guarded("The embedding")
def embedding_section(view: View) -> None:
    controls = st.columns([1.4, 1.4, 2])
    method = controls[0].segmented_control("Map", ["PCA", "t-SNE"], required=True,
                                           key="explore_embed_method",
                                           help="PCA: the two directions of largest variance, instant. t-SNE: keeps "
                                                "neighbours together, so classes form islands; takes a while.")
    sizes = [size for size in EMBED_SIZES if size < len(view.labels)] + [len(view.labels)]
    if method == "t-SNE":
        sizes = [size for size in sizes if size <= TSNE_LIMIT] or [min(len(view.labels), TSNE_LIMIT)]
    size = controls[1].selectbox("Samples", sizes, index=min(1, len(sizes) - 1), format_func=lambda n: f"{n:,}",
                                 key=f"explore_embed_size_{method}")
    color_options = ["label"] + (["correctness"] if view.predictions is not None else [])
    if st.session_state["explore_embed_color"] not in color_options:  # kept from a model no longer picked
        st.session_state["explore_embed_color"] = "label"
    if view.predictions is None:  # one choice is no choice: said, not offered
        controls[2].caption("Coloured by label. Pick a model at the top to colour by right and wrong instead.")
        color_by = "label"
    else:
        color_by = controls[2].segmented_control("Colour by", color_options, required=True, key="explore_embed_color")
    subset, coordinates, explained = explore.pca_layout(view.dataset_name, view.root, view.split, size, 0)
    if method == "t-SNE":
        coordinates = tsne_coordinates(view, subset, size)
        if coordinates is None:
            return
    else:
        st.caption(f"The first two principal components explain {percent(explained.sum(), 0)} of the pixel variance.")
    if color_by == "correctness" and view.predictions is not None:
        groups = (view.predictions[subset] != view.labels[subset]).astype(np.int64)
        names, colors = ["right", "wrong"], ["#9bb7d4", "#d62728"]
    else:
        groups, names, colors = view.labels[subset], view.class_names, CLASS_COLORS
    figure = embedding_figure(coordinates, subset, groups, names, colors, [view.describe(int(i)) for i in subset])
    event = st.plotly_chart(figure, key=f"explore_embedding_{view.dataset_name}_{view.split}_{method}_{size}", on_select="rerun",
                            selection_mode=("lasso", "box", "points"))
    picked = selected_sample_ids(event.selection.points)
    if picked:
        shown = np.asarray(picked[:SELECTION_SHOWN])
        more = f" (the first {SELECTION_SHOWN} shown)" if len(picked) > SELECTION_SHOWN else ""
        st.markdown(f"**{count(len(picked), 'selected sample')}**{more}")
        view.show_mosaic(shown)
    else:
        st.caption("Draw a lasso (or a box: see the chart's toolbar) around points to see their images; "
                   "click a legend entry to hide a group.")


def tsne_coordinates(view: View, subset: np.ndarray, size: int) -> np.ndarray | None:
    """The t-SNE layout when it is ready; otherwise a button to start it, or its progress."""
    key = (view.dataset_name, view.root, view.split, size, 0)
    job = explore.tsne_jobs().get(key)
    if job is None or job.error is not None:
        if job is not None:
            st.error(f"The t-SNE map could not be computed: {escape_markdown(job.error)}", icon=":material/error:")
        st.info(f"t-SNE places similar images near each other, so classes form islands. For {size:,} samples it "
                f"takes about {duration(explore.tsne_jobs().estimate(size))} on this machine; a bar shows its progress, and "
                "the other tabs stay usable meanwhile.", icon=":material/scatter_plot:")
        st.button("Compute the t-SNE map", type="primary", key="explore_tsne_start", on_click=start_tsne,
                  args=(key, view, subset))
        return None
    if job.layout is None:
        tsne_progress(key)
        return None
    st.caption(f"t-SNE map of {size:,} samples, computed in {duration(job.seconds)}. Points close together are "
               "images that look alike; distances between islands mean little.")
    return job.layout


def start_tsne(key: tuple, view: View, subset: np.ndarray) -> None:
    explore.tsne_jobs().start(key, pixel_features(view.images[subset], view.max_value))


@st.fragment(run_every=0.5)
def tsne_progress(key: tuple) -> None:
    job = explore.tsne_jobs().get(key)
    if job is None or job.done.is_set():
        st.rerun()  # the map is ready (or gone): draw the section again
    st.progress(job.fraction, text=f"Computing the t-SNE map of {job.size:,} samples: {job.progress_words()}")


# ---- 4. with a model ---------------------------------------------------------------------------------------------

@guarded("The model's results")
def model_section(view: View) -> None:
    if view.predictions is None:
        if view.run is None and view.chosen is None:
            st.info("Pick a model at the top of the page to see its confusion matrix, its accuracy per class and, "
                    "in the other sections, which samples it gets wrong.", icon=":material/model_training:")
        return
    confusion = confusion_matrix(view.labels, view.predictions, len(view.class_names))
    accuracy = per_class_accuracy(confusion)
    wrong = int(len(view.labels) - np.trace(confusion))
    metrics = metric_row()
    metrics.metric(f"Accuracy on {view.split}", percent(np.trace(confusion) / max(1, len(view.labels))))
    metrics.metric("Misclassified", f"{wrong:,} of {len(view.labels):,}")
    hardest = f"{view.class_names[int(accuracy.argmin())]} ({percent(accuracy.min(), 1)})" \
        if accuracy.min() < accuracy.max() else f"none: all {percent(accuracy.min(), 1)}"  # a tie has no hardest
    metrics.metric("Hardest class", hardest)
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.markdown("**Confusion matrix** (click a cell to see its samples)")
        event = st.plotly_chart(confusion_figure(confusion, view.class_names), key=f"explore_confusion_{view.split}",
                                on_select="rerun", selection_mode="points")
    with right:
        st.markdown("**Accuracy per class**")
        st.plotly_chart(per_class_accuracy_figure(accuracy, view.class_names), key="explore_per_class")
    cell_samples(view, confusion, clicked_cell(event))


def cell_samples(view: View, confusion: np.ndarray, clicked: tuple[int, int] | None) -> None:
    """The samples of the clicked cell, or of the most frequent mistake."""
    if clicked is None:
        off_diagonal = confusion - np.diag(np.diag(confusion))
        true_class, predicted_class = (int(i) for i in np.unravel_index(np.argmax(off_diagonal), confusion.shape))
        if off_diagonal[true_class, predicted_class] == 0:  # not one mistake: argmax fell on the diagonal
            st.success("No mistakes at all on this split.", icon=":material/check_circle:")
            return
        heading = "The most frequent mistake"
    else:
        (true_class, predicted_class), heading = clicked, "Chosen cell"
    indices = cell_indices(view.labels, view.predictions, true_class, predicted_class)  # type: ignore[arg-type]
    pair = escape_markdown(f"{view.class_names[true_class]} predicted as {view.class_names[predicted_class]}")
    st.markdown(f"**{heading}: {pair}**, "
                f"{count(len(indices), 'sample')}" + (f" (the first {SELECTION_SHOWN} shown)" if len(indices) > SELECTION_SHOWN else ""))
    view.show_mosaic(indices[:SELECTION_SHOWN])


# ---- 5. augmentation preview ------------------------------------------------------------------------------------

@guarded("The augmentation preview")
def augmentation_section(view: View) -> None:
    st.caption("Training can shift, rotate and zoom every image a little, differently each epoch, so the model "
               "learns digits rather than positions. Here is what it would see.")
    controls = st.columns([1, 1, 1, 1, 1])
    chosen_sample = st.session_state.get("explore_index", 0)
    index = controls[0].number_input("Sample index", 0, len(view.labels) - 1, value=chosen_sample,
                                     key=f"explore_aug_index_{chosen_sample}", help="Follows the sample shown large.")
    shift = controls[1].slider("Shift (share of the side)", 0.0, 0.3, step=0.01, key="explore_aug_shift")
    rotation = controls[2].slider("Rotation (degrees)", 0, 45, key="explore_aug_rotation")
    scale = controls[3].slider("Zoom (±, share of the size)", 0.0, 0.3, step=0.01, key="explore_aug_scale")
    with controls[4]:
        st.write("")
        if st.button("Draw again", icon=":material/casino:", key="explore_aug_redraw"):
            st.session_state.explore_aug_seed += 1
    copies = augmented_copies(view.images[index], Augmentation(shift, rotation, scale), 15, view.max_value,
                              seed=st.session_state.explore_aug_seed)
    tiles = np.concatenate([view.images[index][None], copies])
    captions = ["original"] + [f"draw {i}" for i in range(1, len(copies) + 1)]
    marked = None
    if view.run is not None and view.probabilities is not None:
        from core.inference import predict

        guesses = predict(view.run, tiles)
        captions = [f"{name}: {view.tile_name(int(guess))}" for name, guess in zip(captions, guesses)]
        marked = guesses != view.labels[index]
        truth = escape_markdown(view.class_names[int(view.labels[index])])
        st.caption(f"Under each picture, what the model reads it as: {int((~marked).sum())} of {len(tiles)} right "
                   f"(the sample is a {truth}); red ones it gets wrong.")
    st.image(image_grid(tiles, captions, 8, max_value=view.max_value, scale=tile_scale(view.data.image_size, 84), marked=marked))
    st.caption(f"Sample {escape_markdown(view.describe(int(index)))}.")
