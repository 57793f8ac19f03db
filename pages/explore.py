"""Explore: see the data the models learn from, sample by sample, and where a model fails.

Session state (keys the page owns, set once below):
    explore_aug_seed: seed of the augmentation preview's draw ("Draw again" adds one)
    explore_tab: the open tab; only it is drawn, with the Samples tab always (its choices hold for the others)
Widgets keep their own values under explore_* keys; explore_index (the sample shown large) is also set by a click on
the grid, and is dropped whenever the view changes so that the view's first sample opens. The lazily drawn tabs'
widgets (KEPT_WIDGETS) are given their values each run: Streamlit forgets a widget's value when it is not drawn.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.augment import Augmentation
from core.data import DATASETS
from core.evaluation import confusion_matrix, misclassified, per_class_accuracy
from core.explore import augmented_copies, filtered_indices, ordered, page_count, page_of, pixel_features
from ui.charts import (clickable_grid_figure, confusion_figure, grid_cell_size, image_grid, per_class_accuracy_figure,
                       tile_scale)
from ui.explore import (CLASS_COLORS, ModelChoice, both_class_counts, class_counts_figure, class_legend,
                        clicked_cell, dataset_or_error, embedding_figure, guarded, histogram_figure, ink_figure,
                        model_choices, pca_layout, pixel_heatmap, probability_figure, run_or_error,
                        selected_sample_ids, short_class_name, split_images, split_probabilities, split_statistics,
                        tsne_jobs)
from ui.predict_samples import open_in_predict
from ui.shared import available_datasets, data_dir, run_inside_the_frame
from ui.text import escape_markdown
from ui.train_format import count, duration, percent

run_inside_the_frame()
GRID_COLUMNS = 10
GRID_WIDTH = 520  # px: what the grid's column offers in a 1,400 px window; wider grids are shown scaled to it
PER_PAGE_CHOICES = (100, 200, 400)
EMBED_SIZES = (1000, 2000, 3000, 5000)
TSNE_LIMIT = 3000  # exact repulsion is quadratic: beyond this the map takes minutes on a laptop
SELECTION_SHOWN = 100
NO_MODEL = "none"
GRID_KEY = "explore_grid"  # its selection is read only in the click callback, so one key serves every view

KEPT_WIDGETS = {"explore_embed_method": "PCA", "explore_embed_color": "label", "explore_aug_shift": 0.1,
                "explore_aug_rotation": 15, "explore_aug_scale": 0.1}

if "explore_aug_seed" not in st.session_state:
    st.session_state.explore_aug_seed = 0
for kept, initial in KEPT_WIDGETS.items():  # kept while their tab is closed (not drawn)
    st.session_state[kept] = st.session_state.get(kept, initial)


def forget_sample() -> None:
    """A new view: the sample shown large becomes the view's first."""
    st.session_state.pop("explore_index", None)


def forget_view() -> None:
    """A new dataset or split: the sample shown and the page refer to the old one."""
    forget_sample()
    st.session_state.pop("explore_page", None)


# ---- the frame: dataset, split, model -------------------------------------------------------------------------

st.title("Explore")
st.markdown("See the data the models learn from: browse samples, compare classes, map thousands of them in 2-D, "
            "and pick a trained model to see exactly where it fails.")

missing = {name: why for name, why in available_datasets().items() if why}
usable = [name for name in DATASETS if name not in missing]
top = st.columns([2, 1, 3])
dataset_name = top[0].selectbox("Dataset", usable, format_func=lambda name: DATASETS[name].title,
                                key="explore_dataset", on_change=forget_view)
split = top[1].segmented_control("Split", ["train", "test"], default="train", required=True, key="explore_split",
                                 on_change=forget_view)
for why in missing.values():
    st.caption(f":material/info: {escape_markdown(why)}")

data = dataset_or_error(dataset_name, data_dir())
if data is None:
    st.stop()
root = str(data_dir())
images, labels = split_images(data, split)
max_value = data.input_format.max_value
class_names = list(data.class_names)

choices = {choice.path: choice for choice in model_choices(dataset_name)}
model_key = top[2].selectbox(
    "Model (optional)", [NO_MODEL, *choices], format_func=lambda key: "No model: just the data" if key == NO_MODEL
    else choices[key].label, key=f"explore_model_{dataset_name}",
    help="A saved run for this dataset (finished or stopped with weights). Train one on the Train page.")
chosen: ModelChoice | None = choices.get(model_key)
run = run_or_error(chosen)
probabilities: np.ndarray | None = None
if run is not None and chosen is not None:
    probabilities = guarded("The model's predictions")(split_probabilities)(chosen.path, chosen.stamp, dataset_name,
                                                                              root, split)
predictions = None if probabilities is None else probabilities.argmax(axis=1)
if not choices:
    top[2].caption("No saved model for this dataset yet: train one on the Train page to see its mistakes here.")

if not 0 <= st.session_state.get("explore_index", 0) < len(labels):
    forget_sample()


def tile_name(index: int) -> str:
    return short_class_name(class_names, index)


def describe(index: int) -> str:
    """One line about a sample: its index, label and, with a model, the prediction."""
    text = f"#{index}: {class_names[labels[index]]}"
    if probabilities is not None:
        guess = int(predictions[index])  # type: ignore[index]
        verdict = "right" if guess == labels[index] else "wrong"
        text += f", predicted {class_names[guess]} ({percent(probabilities[index, guess], 0)}, {verdict})"
    return text


def show_mosaic(indices: np.ndarray, columns: int = GRID_COLUMNS) -> None:
    """A plain (non-clickable) mosaic of samples with their labels, wrong predictions marked."""
    if len(indices) == 0:
        return
    wrong = None if predictions is None else predictions[indices] != labels[indices]
    captions = [caption(i) for i in indices]
    st.image(image_grid(images[indices], captions, columns, max_value=max_value, marked=wrong))


def caption(index: int) -> str:
    if predictions is None or predictions[index] == labels[index]:
        return tile_name(int(labels[index]))
    return f"{tile_name(int(labels[index]))} as {tile_name(int(predictions[index]))}"


# ---- 1. samples ---------------------------------------------------------------------------------------------------

def open_tile() -> None:
    """The grid's click callback: the clicked tile's sample opens large."""
    clicked = selected_sample_ids(st.session_state[GRID_KEY].selection.points)
    if clicked:
        st.session_state.explore_index = clicked[0]


@st.fragment
@guarded("The sample grid")
def samples_section() -> None:
    controls = st.columns([4.4, 1.5, 0.9, 0.9])  # the class pills wrap rather than clip their last ones
    chosen_classes = controls[0].pills("Classes", list(range(len(class_names))), selection_mode="multi",
                                       format_func=lambda i: class_names[i], key="explore_classes",
                                       on_change=forget_sample, help="Pick one or more classes; none picked shows all.",
                                       wrap=True)
    order = controls[1].segmented_control("Order", ["index", "shuffled"], default="index", required=True,
                                          format_func=str.capitalize, key="explore_order", on_change=forget_sample)
    seed = controls[2].number_input("Seed", 0, 1_000_000, 0, key="explore_seed", on_change=forget_sample,
                                    disabled=order != "shuffled")
    per_page = controls[3].selectbox("Per page", PER_PAGE_CHOICES, key="explore_per_page", on_change=forget_sample)
    grid_column, detail_column = st.columns([3, 2], gap="medium")
    page_place, wrong_place = grid_column.columns([1.4, 1], vertical_alignment="bottom")
    only_wrong = wrong_place.toggle("Only misclassified", key="explore_only_wrong", on_change=forget_sample,
                                    disabled=predictions is None,
                                    help="Needs a model: pick one above." if predictions is None else None)
    within = misclassified(labels, predictions) if only_wrong and predictions is not None else None
    view = ordered(filtered_indices(labels, chosen_classes, within), order, int(seed))
    pages = page_count(len(view), per_page)
    if st.session_state.get("explore_page", 1) > pages:
        st.session_state.explore_page = pages
    page = page_place.number_input(f"Page (of {pages:,})", 1, pages, key="explore_page", on_change=forget_sample)
    shown = page_of(view, int(page), per_page)
    with detail_column:  # first: a typed index must be highlighted in this very run's grid
        sample_detail(int(shown[0]) if len(shown) else 0)
    with grid_column:
        if len(shown) == 0:
            st.info("No sample matches these filters." + (" The model gets every one of these right."
                                                         if only_wrong else ""), icon=":material/filter_alt_off:")
        else:
            first = (int(page) - 1) * per_page + 1
            st.caption(f"Samples {first:,}-{first + len(shown) - 1:,} of {len(view):,} in this view "
                       f"({len(labels):,} in the {split} split). Click a sample to see it large."
                       + (" Red: the model is wrong." if predictions is not None else ""))
            sample_grid(shown)
            class_legend(class_names)


def sample_grid(shown: np.ndarray) -> None:
    """The page of samples as one clickable image."""
    highlighted = np.flatnonzero(shown == st.session_state.get("explore_index"))
    wrong = None if predictions is None else predictions[shown] != labels[shown]
    scale = tile_scale(data.image_size)
    mosaic = image_grid(images[shown], [caption(i) for i in shown], GRID_COLUMNS, max_value=max_value, scale=scale,
                        marked=wrong, highlighted=int(highlighted[0]) if len(highlighted) else None)
    figure = clickable_grid_figure(mosaic, GRID_COLUMNS, len(shown), grid_cell_size(images.shape[1:], scale),
                                   shown, [describe(int(i)) for i in shown], width=min(mosaic.width, GRID_WIDTH))
    st.plotly_chart(figure, key=GRID_KEY, on_select=open_tile, selection_mode="points",
                    width="content", config={"displayModeBar": False})


def sample_detail(default: int) -> None:
    """The chosen sample (else the view's first), large, with its pixel values."""
    if "explore_index" not in st.session_state:
        st.session_state.explore_index = default
    index = st.number_input("Sample index", 0, len(labels) - 1, key="explore_index",
                            help="Click a sample in the grid, or type its index in this split.")
    st.markdown(f"**Sample {escape_markdown(describe(int(index)))}**")
    if st.button("Open in Predict", key="explore_open_in_predict", icon=":material/draw:",
                     help="See what a model reads in this sample, why, and what each of its layers sees."):
        open_in_predict(dataset_name, split, int(index))
    st.plotly_chart(pixel_heatmap(images[index].astype(np.int64), max_value), key="explore_pixels",
                    config={"displayModeBar": False})
    st.caption(f"Pixel values from 0 to {max_value} ({data.image_size}x{data.image_size} pixels): "
               + ("each counts the ink in a 4x4 block of the scanned digit." if max_value == 16 else
                  f"{max_value} is full ink."))
    if probabilities is not None:
        st.plotly_chart(probability_figure(probabilities[index], class_names, int(labels[index])),
                        key="explore_probabilities", config={"displayModeBar": False})


# ---- 2. statistics ------------------------------------------------------------------------------------------------

@guarded("The statistics")
def statistics_section() -> None:
    counts = both_class_counts(dataset_name, root)
    stats, means = split_statistics(dataset_name, root, split)
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("**Samples per class**")
        st.plotly_chart(class_counts_figure(counts, class_names), key="explore_counts")
        balance = counts[split].max() / max(1, counts[split].min())
        st.caption(f"The largest class of the {split} split has {balance:.2f} times as many samples as the smallest.")
    with right:
        st.markdown(f"**Mean image of each class** ({split})")
        scaled = np.clip(np.rint(means), 0, max_value).astype(np.uint8)
        st.image(image_grid(scaled, class_names, 5, max_value=max_value, scale=tile_scale(data.image_size, 84)))
        st.caption("Every sample of a class averaged: the shape the class has in common, blurred where writers differ.")
    st.markdown(f"**Pixel intensities** ({split}, {len(labels):,} images)")
    metrics = st.columns(4)
    metrics[0].metric("Mean pixel value", f"{stats.mean:.1f} of {max_value}")
    metrics[1].metric("Standard deviation", f"{stats.std:.1f}")
    metrics[2].metric("Background (value 0)", percent(stats.background_share, 1))
    metrics[3].metric(f"Full ink (value {max_value})", percent(stats.saturated_share, 1))
    charts = st.columns([2, 2, 1, 1])
    charts[0].plotly_chart(histogram_figure(stats), key="explore_histogram")
    charts[1].plotly_chart(ink_figure(stats.ink_per_image), key="explore_ink")
    with charts[2]:
        st.caption("Mean: where the ink is")
        st.plotly_chart(pixel_heatmap(stats.mean_image, max_value, values=False, height=200), key="explore_mean")
    with charts[3]:
        st.caption("Spread: where they differ")
        st.plotly_chart(pixel_heatmap(stats.std_image, float(stats.std_image.max()) or 1, values=False, height=200,
                                      colorscale="viridis"), key="explore_std")


# ---- 3. embedding -------------------------------------------------------------------------------------------------

@st.fragment
@guarded("The embedding")
def embedding_section() -> None:
    controls = st.columns([1.4, 1.4, 2])
    method = controls[0].segmented_control("Map", ["PCA", "t-SNE"], required=True,
                                           key="explore_embed_method",
                                           help="PCA: the two directions of largest variance, instant. t-SNE: keeps "
                                                "neighbours together, so classes form islands; takes a while.")
    sizes = [size for size in EMBED_SIZES if size < len(labels)] + [len(labels)]
    if method == "t-SNE":
        sizes = [size for size in sizes if size <= TSNE_LIMIT] or [min(len(labels), TSNE_LIMIT)]
    size = controls[1].selectbox("Samples", sizes, index=min(1, len(sizes) - 1), format_func=lambda n: f"{n:,}",
                                 key=f"explore_embed_size_{method}")
    color_options = ["label"] + (["correctness"] if predictions is not None else [])
    if st.session_state["explore_embed_color"] not in color_options:  # kept from a model no longer picked
        st.session_state["explore_embed_color"] = "label"
    if predictions is None:  # one choice is no choice: said, not offered
        controls[2].caption("Coloured by label. Pick a model at the top to colour by right and wrong instead.")
        color_by = "label"
    else:
        color_by = controls[2].segmented_control("Colour by", color_options, required=True, key="explore_embed_color")
    subset, coordinates, explained = pca_layout(dataset_name, root, split, size, 0)
    if method == "t-SNE":
        coordinates = tsne_coordinates(subset, size)
        if coordinates is None:
            return
    else:
        st.caption(f"The first two principal components explain {percent(explained.sum(), 0)} of the pixel variance.")
    if color_by == "correctness" and predictions is not None:
        groups = (predictions[subset] != labels[subset]).astype(np.int64)
        names, colors = ["right", "wrong"], ["#9bb7d4", "#d62728"]
    else:
        groups, names, colors = labels[subset], class_names, CLASS_COLORS
    figure = embedding_figure(coordinates, subset, groups, names, colors, [describe(int(i)) for i in subset])
    event = st.plotly_chart(figure, key=f"explore_embedding_{dataset_name}_{split}_{method}_{size}", on_select="rerun",
                            selection_mode=("lasso", "box", "points"))
    picked = selected_sample_ids(event.selection.points)
    if picked:
        shown = np.asarray(picked[:SELECTION_SHOWN])
        more = f" (the first {SELECTION_SHOWN} shown)" if len(picked) > SELECTION_SHOWN else ""
        st.markdown(f"**{count(len(picked), 'selected sample')}**{more}")
        show_mosaic(shown)
    else:
        st.caption("Draw a lasso (or a box: see the chart's toolbar) around points to see their images; "
                   "click a legend entry to hide a group.")


def tsne_coordinates(subset: np.ndarray, size: int) -> np.ndarray | None:
    """The t-SNE layout when it is ready; otherwise a button to start it, or its progress."""
    key = (dataset_name, root, split, size, 0)
    job = tsne_jobs().get(key)
    if job is None or job.error is not None:
        if job is not None:
            st.error(f"The t-SNE map could not be computed: {escape_markdown(job.error)}", icon=":material/error:")
        st.info(f"t-SNE places similar images near each other, so classes form islands. For {size:,} samples it "
                f"takes about {duration(tsne_jobs().estimate(size))} on this machine; a bar shows its progress, and "
                "the other tabs stay usable meanwhile.", icon=":material/scatter_plot:")
        st.button("Compute the t-SNE map", type="primary", key="explore_tsne_start", on_click=start_tsne,
                  args=(key, subset))
        return None
    if job.layout is None:
        tsne_progress(key)
        return None
    st.caption(f"t-SNE map of {size:,} samples, computed in {duration(job.seconds)}. Points close together are "
               "images that look alike; distances between islands mean little.")
    return job.layout


def start_tsne(key: tuple, subset: np.ndarray) -> None:
    tsne_jobs().start(key, pixel_features(images[subset], max_value))


@st.fragment(run_every=0.5)
def tsne_progress(key: tuple) -> None:
    job = tsne_jobs().get(key)
    if job is None or job.done.is_set():
        st.rerun()  # the map is ready (or gone): draw the section again
    st.progress(job.fraction, text=f"Computing the t-SNE map of {job.size:,} samples: {job.progress_words()}")


# ---- 4. with a model ---------------------------------------------------------------------------------------------

@guarded("The model's results")
def model_section() -> None:
    if predictions is None:
        if run is None and chosen is None:
            st.info("Pick a model at the top of the page to see its confusion matrix, its accuracy per class and, "
                    "in the other sections, which samples it gets wrong.", icon=":material/model_training:")
        return
    confusion = confusion_matrix(labels, predictions, len(class_names))
    accuracy = per_class_accuracy(confusion)
    wrong = int(len(labels) - np.trace(confusion))
    metrics = st.columns(3)
    metrics[0].metric(f"Accuracy on {split}", percent(np.trace(confusion) / max(1, len(labels))))
    metrics[1].metric("Misclassified", f"{wrong:,} of {len(labels):,}")
    hardest = f"{class_names[int(accuracy.argmin())]} ({percent(accuracy.min(), 1)})" \
        if accuracy.min() < accuracy.max() else f"none: all {percent(accuracy.min(), 1)}"  # a tie has no hardest
    metrics[2].metric("Hardest class", hardest)
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.markdown("**Confusion matrix** (click a cell to see its samples)")
        event = st.plotly_chart(confusion_figure(confusion, class_names), key=f"explore_confusion_{split}",
                                on_select="rerun", selection_mode="points")
    with right:
        st.markdown("**Accuracy per class**")
        st.plotly_chart(per_class_accuracy_figure(accuracy, class_names), key="explore_per_class")
    cell_samples(confusion, clicked_cell(event))


def cell_samples(confusion: np.ndarray, clicked: tuple[int, int] | None) -> None:
    """The samples of the clicked cell, or of the most frequent mistake."""
    from core.evaluation import cell_indices

    if clicked is None:
        off_diagonal = confusion - np.diag(np.diag(confusion))
        true_class, predicted_class = (int(i) for i in np.unravel_index(np.argmax(off_diagonal), confusion.shape))
        if off_diagonal[true_class, predicted_class] == 0:  # not one mistake: argmax fell on the diagonal
            st.success("No mistakes at all on this split.", icon=":material/check_circle:")
            return
        heading = "The most frequent mistake"
    else:
        (true_class, predicted_class), heading = clicked, "Chosen cell"
    indices = cell_indices(labels, predictions, true_class, predicted_class)  # type: ignore[arg-type]
    pair = escape_markdown(f"{class_names[true_class]} predicted as {class_names[predicted_class]}")
    st.markdown(f"**{heading}: {pair}**, "
                f"{count(len(indices), 'sample')}" + (f" (the first {SELECTION_SHOWN} shown)" if len(indices) > SELECTION_SHOWN else ""))
    show_mosaic(indices[:SELECTION_SHOWN])


# ---- 5. augmentation preview ------------------------------------------------------------------------------------

@guarded("The augmentation preview")
def augmentation_section() -> None:
    st.caption("Training can shift, rotate and zoom every image a little, differently each epoch, so the model "
               "learns digits rather than positions. Here is what it would see.")
    controls = st.columns([1, 1, 1, 1, 1])
    chosen_sample = st.session_state.get("explore_index", 0)
    index = controls[0].number_input("Sample index", 0, len(labels) - 1, value=chosen_sample,
                                     key=f"explore_aug_index_{chosen_sample}", help="Follows the sample shown large.")
    shift = controls[1].slider("Shift (share of the side)", 0.0, 0.3, step=0.01, key="explore_aug_shift")
    rotation = controls[2].slider("Rotation (degrees)", 0, 45, key="explore_aug_rotation")
    scale = controls[3].slider("Zoom (±, share of the size)", 0.0, 0.3, step=0.01, key="explore_aug_scale")
    with controls[4]:
        st.write("")
        if st.button("Draw again", icon=":material/casino:", key="explore_aug_redraw"):
            st.session_state.explore_aug_seed += 1
    copies = augmented_copies(images[index], Augmentation(shift, rotation, scale), 15, max_value,
                              seed=st.session_state.explore_aug_seed)
    tiles = np.concatenate([images[index][None], copies])
    captions = ["original"] + [f"draw {i}" for i in range(1, len(copies) + 1)]
    marked = None
    if run is not None and probabilities is not None:
        from core.inference import predict

        guesses = predict(run, tiles)
        captions = [f"{name}: {tile_name(int(guess))}" for name, guess in zip(captions, guesses)]
        marked = guesses != labels[index]
        st.caption(f"The model reads {int((~marked).sum())} of {len(tiles)} right; red ones it gets wrong.")
    st.image(image_grid(tiles, captions, 8, max_value=max_value, scale=tile_scale(data.image_size, 84), marked=marked))
    st.caption(f"Sample {escape_markdown(describe(int(index)))}.")


# Only the open tab is drawn (Streamlit's lazy tabs): drawing every tab's charts at once kept a first visit's grid
# waiting 3 s in the browser (bench/bench_page_load.py), and a tab drawn on opening shows the sample chosen now.
SECTIONS = {"Samples": samples_section, "Statistics": statistics_section, "Embedding": embedding_section,
            "Model": model_section, "Augmentation": augmentation_section}
for tab, section in zip(st.tabs(list(SECTIONS), key="explore_tab", on_change="rerun"), SECTIONS.values()):
    if tab.open or section is samples_section:  # the samples' widgets (and the chosen sample) must stay drawn
        with tab:
            section()
