"""Explore's view of a digit collection (your own digits kept from Predict): its images as the model sees them,
counts per class, how a chosen model reads them (mistakes marked) and deleting a wrong sample.

Session state: explore_collection_sample (the sample shown large, "3/file.png"), explore_collection_confirm (the
sample a Delete click asks about), explore_collection_said (the last delete's outcome, shown once). Widgets keep
their values under explore_collection_* keys.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import streamlit as st

from core.collection import (CLASS_NAMES, CollectionError, CollectionInfo, Sample, collection_samples,
                             collections_root, delete_sample, list_collections, read_sample, scan_folder)
from core.evaluation import confusion_matrix, per_class_accuracy
from core.folder_data import FolderPreview, preview_samples
from core.preprocess import MNIST_FORMAT, InputFormat
from ui.charts import grid_cell_size, image_grid, per_class_accuracy_figure, tile_scale
from ui.explore import ModelChoice, class_counts_figure, model_choices, run_or_error
from ui.tile_grid import clicked_sample, tile_grid
from ui.shared import data_dir, metric_row, shown_path
from ui.text import escape_markdown
from ui.train_format import count, percent

PREFIX = "collection:"  # how the Dataset picker names a collection, beside the registry's datasets
DIGIT_DATASETS = ("folder", "mnist", "digits")  # runs that read the ten digits (fine-tunes first)
NO_MODEL = "none"
GRID_COLUMNS = 10
GRID_WIDTH = 560
GRID_KEY = "explore_collection_grid"
PICKED = "explore_collection_sample"
CONFIRM = "explore_collection_confirm"
SAID = "explore_collection_said"
TEACH_IT = ("On Predict, draw or upload a digit and, under the answer, press *Right, keep it* or pick the right "
            "digit after *Wrong? It's a ...* (Teach it your handwriting).")


def root() -> Path:
    return collections_root(data_dir())


def collection_options() -> dict[str, CollectionInfo]:
    """The Dataset picker's entries for the collections on this machine ("collection:NAME" -> what it holds)."""
    return {PREFIX + info.name: info for info in list_collections(root())}


def option_title(info: CollectionInfo) -> str:
    return f"Your digits: {info.name} ({count(info.size, 'image')})"


def no_collections_note() -> None:
    """Under the Dataset picker when no collection exists yet: how one is made."""
    st.caption(f":material/draw: Your own digits appear here as a dataset once you keep some. {TEACH_IT}")


# ---- data, cached per collection version and input format -------------------------------------------------------

def version(samples: list[Sample]) -> tuple:
    """What the cache is keyed by: every file's name, size and modification time (a delete or an edit shows)."""
    stamps = []
    for sample in samples:
        try:
            stat = sample.path.stat()
            stamps.append((sample.relative, stat.st_size, stat.st_mtime_ns))
        except OSError:
            stamps.append((sample.relative, -1, -1))
    return tuple(stamps)


@st.cache_resource(show_spinner="Reading the collection's images as the model sees them...", max_entries=8)
def cached_preview(folder: str, stamps: tuple, fmt: InputFormat) -> FolderPreview:
    """The collection's images through Predict's preprocessing; `stamps` only keys the cache."""
    return preview_samples(scan_folder(folder).samples, fmt)


def digit_model_choices() -> list[ModelChoice]:
    """Saved runs that read the ten digits (fine-tunes on folders, MNIST and 8x8 digits runs) and the shipped model."""
    return [choice for dataset in DIGIT_DATASETS for choice in model_choices(dataset)]


def readable_probabilities(choice: ModelChoice | None, preview_of) -> tuple[np.ndarray | None, FolderPreview | None]:
    """(probabilities for the readable samples or None, the preview in the model's input format)."""
    run = run_or_error(choice)
    preview = preview_of(run.input_format if run is not None else MNIST_FORMAT)
    if run is None or not preview.readable.any():
        return None, preview
    if tuple(run.class_names) != CLASS_NAMES:
        st.error("This model does not read the ten digits.", icon=":material/error:")
        return None, preview
    from core.inference import predict_proba

    return predict_proba(run, preview.pixels[preview.readable]), preview


# ---- the view -------------------------------------------------------------------------------------------------

def collection_view(name: str, model_place) -> None:
    """A collection as Explore shows a dataset; `model_place` is the frame's column for the model picker."""
    try:
        samples = collection_samples(root(), name)
    except (CollectionError, OSError) as error:
        st.error(f"This collection cannot be read: {escape_markdown(error)}", icon=":material/error:")
        return
    show_outcome()
    if not samples:
        st.info(f"The collection {escape_markdown(name)} has no images yet. {TEACH_IT}", icon=":material/draw:")
        return
    folder = root() / name
    scan = scan_folder(folder)
    if scan.problem:
        st.warning(f"{escape_markdown(scan.problem)} Fine-tuning needs that fixed; every image still shows below.",
                   icon=":material/warning:")
    choice = model_picker(model_place)
    stamps = version(samples)
    probabilities, preview = readable_probabilities(choice, lambda fmt: cached_preview(str(folder), stamps, fmt))
    predictions = np.full(len(preview.samples), -1, dtype=np.int64)  # -1: not asked (unreadable or no model)
    if probabilities is not None:
        predictions[preview.readable] = probabilities.argmax(axis=1)
    st.caption(f"{count(len(samples), 'image')} in {escape_markdown(shown_path(folder))}, shown as the model sees "
               "them: cropped, centred and brought to MNIST's stroke width, exactly as Predict does."
               + (" Red: the model reads it wrong." if probabilities is not None else ""))
    overview(preview, predictions, probabilities is not None)
    grid_column, detail_column = st.columns([3, 2], gap="medium")
    with grid_column:
        sample_grid(preview, predictions)
    with detail_column:
        sample_detail(name, preview, predictions, probabilities)


def model_picker(place) -> ModelChoice | None:
    choices = {choice.path: choice for choice in digit_model_choices()}
    keys = [NO_MODEL, *choices]
    key = place.selectbox("Model (optional)", keys, index=min(1, len(keys) - 1), key="explore_collection_model",
                          format_func=lambda k: "No model: just the data" if k == NO_MODEL else choices[k].label,
                          help="Any saved model of the ten digits, or the shipped one: see how it reads your digits.")
    return choices.get(key)


def overview(preview: FolderPreview, predictions: np.ndarray, with_model: bool) -> None:
    """Counts per class, and with a model its accuracy overall and per class."""
    labels = preview.labels
    counts = np.bincount(labels, minlength=10)[:10]
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("**Images per class**")
        st.plotly_chart(class_counts_figure({"collection": counts}, list(CLASS_NAMES)), key="explore_collection_counts")
        if missing := [str(d) for d in range(10) if counts[d] == 0]:
            st.caption(f"No image yet of {', '.join(missing)}.")
    unread = int((~preview.readable).sum())
    with right:
        if not with_model:
            st.info("Pick a model at the top to see how it reads these digits.", icon=":material/model_training:")
        else:
            asked = predictions >= 0
            confusion = confusion_matrix(labels[asked], predictions[asked], 10)
            right_count = int(np.trace(confusion))
            metrics = metric_row()
            metrics.metric("Read right", percent(right_count / max(1, int(asked.sum()))))
            metrics.metric("Mistakes", f"{int(asked.sum()) - right_count:,} of {int(asked.sum()):,}")
            present = counts > 0
            accuracy = per_class_accuracy(confusion)[present]
            st.plotly_chart(per_class_accuracy_figure(accuracy, [CLASS_NAMES[d] for d in np.flatnonzero(present)]),
                            key="explore_collection_per_class")
    if unread:
        st.warning(f"{count(unread, 'image')} with no readable digit: training leaves "
                   f"{'it' if unread == 1 else 'them'} out (marked 'unread' in the grid).", icon=":material/warning:")


def caption(preview: FolderPreview, predictions: np.ndarray, index: int) -> str:
    label = int(preview.labels[index])
    if not preview.readable[index]:
        return f"{label} unread"
    return f"{label} as {predictions[index]}" if predictions[index] not in (-1, label) else str(label)


def sample_grid(preview: FolderPreview, predictions: np.ndarray) -> None:
    """Every sample, clickable, the wrong and unreadable ones in red, the one shown large in blue."""
    relatives = [sample.relative for sample in preview.samples]
    picked = st.session_state.get(PICKED)
    highlighted = relatives.index(picked) if picked in relatives else None
    marked = (~preview.readable) | ((predictions >= 0) & (predictions != preview.labels))
    scale = tile_scale(preview.pixels.shape[-1])
    captions = [caption(preview, predictions, i) for i in range(len(relatives))]
    mosaic = image_grid(preview.pixels, captions, GRID_COLUMNS, max_value=preview.fmt.max_value, scale=scale,
                        marked=marked, highlighted=highlighted)
    tile_grid(mosaic, GRID_COLUMNS, grid_cell_size(preview.pixels.shape[1:], scale), range(len(relatives)),
              [f"{relative}: {text}" for relative, text in zip(relatives, captions)], width=GRID_WIDTH, key=GRID_KEY,
              on_click=functools.partial(pick_tile, relatives))
    st.caption("Click a sample to see it large, and delete it if its label is wrong.")


def pick_tile(relatives: list[str]) -> None:
    clicked = clicked_sample(GRID_KEY)
    if clicked is not None and 0 <= clicked < len(relatives):
        st.session_state[PICKED] = relatives[clicked]
        st.session_state.pop(CONFIRM, None)


def sample_detail(name: str, preview: FolderPreview, predictions: np.ndarray, probabilities: np.ndarray | None) -> None:
    """The picked sample: the kept picture, what the model sees, its answer, and Delete (asked once)."""
    relatives = [sample.relative for sample in preview.samples]
    if st.session_state.get(PICKED) not in relatives:
        st.session_state[PICKED] = relatives[0]
    relative = st.selectbox("Sample", relatives, key=PICKED, on_change=lambda: st.session_state.pop(CONFIRM, None))
    index = relatives.index(relative)
    label = int(preview.labels[index])
    kept, seen = st.columns(2)
    try:
        kept.image(read_sample(preview.samples[index]), caption=f"Kept as a {label}", width=150)
    except CollectionError:  # preview.problems says why: once is enough
        kept.markdown(f":material/broken_image: Kept as a {label}, but it cannot be shown.")
    if preview.readable[index]:
        seen.image(image_grid(preview.pixels[index:index + 1], ["what the model sees"], 1,
                              max_value=preview.fmt.max_value, scale=tile_scale(preview.fmt.size, 140)))
    if problem := preview.problems[index]:
        st.warning(f"{escape_markdown(problem)} Training leaves it out.", icon=":material/warning:")
    elif probabilities is not None:
        row = probabilities[int(preview.readable[:index].sum())]
        guess = int(predictions[index])
        verdict = "right" if guess == label else "wrong"
        st.markdown(f"The model reads a **{guess}** ({percent(row[guess], 0)}): **{verdict}**.")
    delete_controls(name, relative)


def delete_controls(name: str, relative: str) -> None:
    if st.session_state.get(CONFIRM) != relative:
        st.button("Delete this sample", key="explore_collection_delete", icon=":material/delete:",
                  on_click=lambda: st.session_state.update({CONFIRM: relative}),
                  help="For a picture kept under the wrong digit, or one that is no digit at all.")
        return
    st.warning(f"Delete {escape_markdown(relative)} from {escape_markdown(name)}? The file is removed for good.",
               icon=":material/delete:")
    yes, no = st.columns(2)
    yes.button("Delete", type="primary", key="explore_collection_delete_yes", on_click=delete, args=(name,))
    no.button("Cancel", key="explore_collection_delete_no", on_click=lambda: st.session_state.pop(CONFIRM, None))


def delete(name: str) -> None:
    """Delete the sample the confirmation names; a bad or vanished name deletes nothing and says why."""
    relative = str(st.session_state.pop(CONFIRM, ""))
    label, _, file_name = relative.partition("/")
    try:
        delete_sample(root(), name, int(label) if label in CLASS_NAMES else label, file_name)
    except (CollectionError, OSError) as error:
        st.session_state[SAID] = ("error", f"Nothing was deleted: {escape_markdown(error)}")
        return
    st.session_state.pop(PICKED, None)
    st.session_state[SAID] = ("success", f"Deleted {escape_markdown(relative)} from {escape_markdown(name)}.")


def show_outcome() -> None:
    if said := st.session_state.pop(SAID, None):
        kind, text = said
        (st.error if kind == "error" else st.success)(text)
