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

from core.data import DATASETS
from core.evaluation import misclassified
from core.explore import filtered_indices, ordered, page_count, page_of
from ui.charts import grid_cell_size, image_grid, settle_pandas, tile_scale
from ui.explore import (ModelChoice, class_legend, dataset_or_error, guarded, model_choices, pixel_heatmap,
                        pixel_values_caption, probability_figure, run_or_error, split_images, split_probabilities)
from ui.explore_collection import PREFIX, collection_options, collection_view, no_collections_note, option_title
from ui.explore_sections import (View, augmentation_section, embedding_section, model_section,
                                 statistics_section)
from ui.predict_samples import open_in_predict
from ui.shared import available_datasets, data_dir, run_inside_the_frame
from ui.text import escape_markdown
from ui.tile_grid import clicked_sample, tile_grid

run_inside_the_frame()
GRID_COLUMNS = 10
GRID_WIDTH = 520  # px: what the grid's column offers in a 1,400 px window; wider grids are shown scaled to it
PER_PAGE_CHOICES = (100, 200, 400)
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
settle_pandas()  # a previous run still importing it would break this run's figures
st.markdown("See the data the models learn from: browse samples, compare classes, map thousands of them in 2-D, "
            "and pick a trained model to see exactly where it fails.")

missing = {name: why for name, why in available_datasets().items() if why}
usable = [name for name in DATASETS if name not in missing]
collections = collection_options()
top = st.columns([2, 1, 3])
dataset_name = top[0].selectbox("Dataset", usable + list(collections), key="explore_dataset", on_change=forget_view,
                                format_func=lambda name: DATASETS[name].title if name in DATASETS
                                else option_title(collections[name]))
for why in missing.values():
    st.caption(f":material/info: {escape_markdown(why)}")
if not collections:
    no_collections_note()
if dataset_name in collections:  # your own digits: their own view, no split
    guarded("The collection")(collection_view)(dataset_name.removeprefix(PREFIX), top[2])
    st.stop()
split = top[1].segmented_control("Split", ["train", "test"], default="train", required=True, key="explore_split",
                                 on_change=forget_view)

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
view = View(dataset_name, split, root, data, images, labels, chosen, run, probabilities)
predictions = view.predictions
describe, caption = view.describe, view.caption
if not choices:
    top[2].caption("No saved model for this dataset yet: train one on the Train page to see its mistakes here.")

if not 0 <= st.session_state.get("explore_index", 0) < len(labels):
    forget_sample()


# ---- 1. samples ---------------------------------------------------------------------------------------------------

def open_tile() -> None:
    """The grid's click callback: the clicked tile's sample opens large."""
    clicked = clicked_sample(GRID_KEY)
    if clicked is not None and 0 <= clicked < len(labels):
        st.session_state.explore_index = clicked


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
    matching = ordered(filtered_indices(labels, chosen_classes, within), order, int(seed))
    pages = page_count(len(matching), per_page)
    if st.session_state.get("explore_page", 1) > pages:
        st.session_state.explore_page = pages
    page = page_place.number_input(f"Page (of {pages:,})", 1, pages, key="explore_page", on_change=forget_sample)
    shown = page_of(matching, int(page), per_page)
    with detail_column:  # first: a typed index must be highlighted in this very run's grid
        sample_detail(int(shown[0]) if len(shown) else 0)
    with grid_column:
        if len(shown) == 0:
            st.info("No sample matches these filters." + (" The model gets every one of these right."
                                                         if only_wrong else ""), icon=":material/filter_alt_off:")
        else:
            first = (int(page) - 1) * per_page + 1
            st.caption(f"Samples {first:,}-{first + len(shown) - 1:,} of {len(matching):,} in this view "
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
    tile_grid(mosaic, GRID_COLUMNS, grid_cell_size(images.shape[1:], scale), shown, [describe(int(i)) for i in shown],
              width=GRID_WIDTH, key=GRID_KEY, on_click=open_tile)


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
    st.caption(pixel_values_caption(data.image_size, max_value))
    if probabilities is not None:
        st.plotly_chart(probability_figure(probabilities[index], class_names, int(labels[index])),
                        key="explore_probabilities", config={"displayModeBar": False})


# Only the open tab is drawn (Streamlit's lazy tabs): drawing every tab's charts at once kept a first visit's grid
# waiting 3 s in the browser (bench/bench_page_load.py), and a tab drawn on opening shows the sample chosen now.
SECTIONS = {"Samples": samples_section, "Statistics": statistics_section, "Embedding": embedding_section,
            "Model": model_section, "Augmentation": augmentation_section}  # each but Samples draws from the view
for tab, section in zip(st.tabs(list(SECTIONS), key="explore_tab", on_change="rerun"), SECTIONS.values()):
    if tab.open or section is samples_section:  # the samples' widgets (and the chosen sample) must stay drawn
        with tab:
            if section is samples_section:  # a statement: an expression here is written on the page ("None")
                section()
            else:
                section(view)
