"""A finished run's results: headline figures, confusion matrix, per-class accuracy and the test images it got wrong.

Everything a run's metadata says (its id, model title, class names, device) is shown as text: escaped where Streamlit
reads Markdown, and as HTML entities in chart labels, which plotly.js reads as a little HTML (<b>, <a href>).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import streamlit as st

from core.data import DatasetUnavailable
from core.recipes import RECIPES, Comparison, compare_run
from core.config import FOLDER_DATASET
from core.store import RunError, RunInfo
from ui.charts import confusion_figure, framed_tiles, per_class_accuracy_figure
from ui.explore import clicked_cell
from ui.shared import data_dir, metric_row
from ui.text import escape_markdown
from ui.train_finetune import before_after
from ui.train_format import MISSING, STATUS_WORDS, duration, is_number, percent, signed_percent, spaced_percents

if TYPE_CHECKING:
    from core.data import Dataset

DEVICE_WORDS = {"cpu": "the CPU", "cuda": "a GPU", "mps": "Apple's GPU"}
GALLERY_SIZE = 60
GALLERY_TILE = 64  # px: an image and its caption under it


@st.cache_resource(show_spinner=False, max_entries=8)
def loaded_run(run_dir: str, weights_file: str):
    """A run's model, loaded once per weights version (a re-saved run has a new weights file)."""
    from core.store import load_run_dir

    return load_run_dir(Path(run_dir))


@st.cache_resource(show_spinner="Reading the test images...", max_entries=4)
def run_test_data(run_dir: str, weights_file: str, data_root: str) -> "Dataset":
    """The data a run is tested on: its dataset's; for a run trained on an image folder alone, that folder's held-out
    part as it was split for the run (its share and seed; images added since may join it)."""
    from core.data import load_dataset
    from core.folder_data import trained_folder
    from core.training import FOLDER_DATASET

    meta = loaded_run(run_dir, weights_file).meta
    if meta["dataset"] != FOLDER_DATASET:
        return load_dataset(meta["dataset"], data_root)
    return trained_folder(meta, data_root).as_dataset()


@st.cache_data(show_spinner="Predicting the test images...", max_entries=8)
def test_predictions(run_dir: str, weights_file: str, data_root: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predicted labels) of the run's test split (a folder's held-out part for a run on a folder alone)."""
    from core.evaluation import predict_split

    data = run_test_data(run_dir, weights_file, data_root)
    return data.test_labels.numpy(), predict_split(loaded_run(run_dir, weights_file), data, "test").argmax(axis=1)


def run_results(info: RunInfo, *, key: str, curves: Callable[[], None] | None = None) -> None:
    """A run's results: its headline figures, `curves` when given, then its confusion matrix and mistakes."""
    headline(info)
    before_after(info)
    if curves is not None:
        curves()
    try:
        labels, predicted = test_predictions(str(info.path), str(info.get("weights_file")), str(data_dir()))
    except (RunError, OSError, ValueError, DatasetUnavailable) as error:  # a folder's CollectionError included
        st.error(f"The results cannot be computed: {escape_markdown(error)}", icon=":material/error:")
        return
    class_names = list(info.get("class_names") or [])
    mistakes_view(info, labels, predicted, class_names, key)


def run_comparison(info: RunInfo) -> Comparison | None:
    """What the run can fairly be compared with: its recipe's figure at the run's own step count (None without a
    known recipe, or with metadata too damaged to tell)."""
    recipe = RECIPES.get(str(info.get("recipe")))
    settings, images, epochs = info.get("settings"), info.get("train_size"), info.get("epochs_completed")
    if recipe is None or not isinstance(settings, dict) or not is_number(images) or not is_number(epochs):
        return None
    return compare_run(recipe, settings, int(images), int(epochs))


def versus_reported(accuracy: float | None, comparison: Comparison | None) -> dict[str, str | None]:
    """The metric's delta against the figure the run can be held to (short: a metric's column is narrow), the
    figure and where it comes from in its help. Grey, never red, when nothing is comparable at the run's step count
    (a run a quarter as long as the published one is expected to fall short), when it is a tie to the 0.01 % shown,
    or when it lies within the seeds' range measured here."""
    if accuracy is None or comparison is None:
        return {"delta": None}
    explanation = spaced_percents(comparison.explanation)
    if comparison.accuracy is None:
        return {"delta": "not comparable", "delta_color": "off", "delta_arrow": "off", "help": explanation}
    difference = round(accuracy - comparison.accuracy, 4)
    if difference == 0:
        return {"delta": f"same as {comparison.source}", "delta_color": "off", "delta_arrow": "off",
                "help": explanation}
    delta = f"{signed_percent(difference)} vs {comparison.source}"
    if comparison.low is not None and comparison.high is not None and comparison.low <= accuracy <= comparison.high:
        return {"delta": delta, "delta_color": "off", "help": f"{explanation} This run is within that."}
    return {"delta": delta, "help": explanation}


def tested_on(info: RunInfo) -> str:
    """What the run's test figures measure: a run on an image folder alone is tested on that folder's held-out
    digits, not on a dataset's test set."""
    return "held-out digits" if info.get("dataset") == FOLDER_DATASET else "test set"


def headline(info: RunInfo) -> None:
    final = info.get("final") or {}
    held_out = tested_on(info) == "held-out digits"
    accuracy, loss = final.get("test_accuracy"), final.get("test_loss")
    epochs, planned = info.get("epochs_completed"), (info.get("settings") or {}).get("epochs")
    comparison = versus_reported(accuracy if is_number(accuracy) else None, run_comparison(info))
    row = metric_row()
    explained = {"help": "On the folder's held-out digits, never trained on."} if held_out else {}
    row.metric("Held-out accuracy" if held_out else "Test accuracy", percent(accuracy), **{**explained, **comparison})
    row.metric("Held-out loss" if held_out else "Test loss", f"{loss:.4f}" if is_number(loss) else MISSING)
    row.metric("Epochs", f"{epochs:,} of {planned:,}" if is_number(epochs) and is_number(planned) else MISSING)
    row.metric("Training time", duration(info.get("train_seconds")))
    speed = info.get("images_per_second")
    row.metric("Images per second", f"{speed:,.0f}" if is_number(speed) and speed else MISSING)
    if comparison["delta"]:
        st.caption(escape_markdown(comparison["help"]))  # what the run is compared with: said, not only in a tooltip
    st.caption(escape_markdown(" · ".join(run_facts(info))))


def run_facts(info: RunInfo) -> list[str]:
    """The line under the headline: the run's id (what the command line takes), status, size, data and device."""
    facts = [f"Run id {info.run_id}", STATUS_WORDS.get(info.status, info.status)]
    parameters, images = info.get("parameters"), info.get("train_size")
    if is_number(parameters):
        facts.append(f"{parameters:,} parameters")
    if is_number(images):
        facts.append(f"{images:,} training images")
    device = str(info.get("device") or "")
    return [*facts, f"trained on {DEVICE_WORDS.get(device.split(':')[0], device or 'an unknown device')}"]


def mistakes_view(info: RunInfo, labels: np.ndarray, predicted: np.ndarray, class_names: list[str], key: str) -> None:
    from core.evaluation import cell_indices, confusion_matrix, misclassified, per_class_accuracy

    confusion = confusion_matrix(labels, predicted, len(class_names))
    chart_names = [html.escape(name) for name in class_names]  # plotly.js decodes the entities back to the text
    left, right = st.columns([3, 2])
    with left:
        st.markdown(f"**Confusion matrix** of the {tested_on(info)} (click a cell to see its images)")
        event = st.plotly_chart(confusion_figure(confusion, chart_names), on_select="rerun", selection_mode="points",
                                key=f"{key}_confusion_{info.run_id}")
    right.markdown("**Accuracy per class** (the hardest in red)")
    right.plotly_chart(per_class_accuracy_figure(per_class_accuracy(confusion), chart_names),
                       key=f"{key}_per_class_{info.run_id}")
    cell = clicked_cell(event)
    images_word = "Held-out digits" if tested_on(info) == "held-out digits" else "Test images"
    if cell and all(0 <= index < len(class_names) for index in cell):  # indices the browser sent: checked
        true_class, predicted_class = cell
        indices = cell_indices(labels, predicted, true_class, predicted_class)
        title = f"{images_word} labelled {class_names[true_class]}, predicted {class_names[predicted_class]}"
    else:
        indices = misclassified(labels, predicted)
        title = f"{images_word} the model got wrong (click a cell of the matrix to see only those)"
    gallery(info, indices, labels, predicted, class_names, title)


def gallery(info: RunInfo, indices: np.ndarray, labels: np.ndarray, predicted: np.ndarray, class_names: list[str],
            title: str) -> None:
    """The test images of `indices`, each with "true 6 → predicted 1" written as text under it (a font drawn into the
    image lacked the arrow), wrong ones framed in red."""
    shown_part = f", the first {GALLERY_SIZE} shown" if len(indices) > GALLERY_SIZE else ""
    st.markdown(f"**{escape_markdown(title)}:** {len(indices):,}{shown_part}")
    if len(indices) == 0:
        st.caption("Not one: the model gets every one of these right.")
        return
    shown = indices[:GALLERY_SIZE]
    data = run_test_data(str(info.path), str(info.get("weights_file")), str(data_dir()))
    images = data.test_images[shown].numpy()
    wrong = labels[shown] != predicted[shown]
    tiles = framed_tiles(images, data.input_format.max_value, wrong)
    captions = [f"{class_names[labels[i]]} → {class_names[predicted[i]]}" for i in shown]
    st.image(tiles, caption=captions, width=GALLERY_TILE)
    st.caption("Under each image: its true class → what the model predicted; a red frame marks a wrong answer.")
