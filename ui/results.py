"""A finished run's results: headline figures, confusion matrix, per-class accuracy and the test images it got wrong.

Everything a run's metadata says (its id, model title, class names, device) is shown as text: escaped where Streamlit
reads Markdown, and as HTML entities in chart labels, which plotly.js reads as a little HTML (<b>, <a href>).
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import streamlit as st

from core.jobs import JobSnapshot
from core.progress import format_duration
from core.store import RunError, RunInfo
from ui.charts import confusion_figure, image_grid, per_class_accuracy_figure
from ui.explore import clicked_cell
from ui.shared import data_dir, run_store
from ui.text import escape_markdown

GALLERY_SIZE = 60
GALLERY_COLUMNS = 12


@st.cache_resource(show_spinner=False, max_entries=8)
def loaded_run(run_dir: str, weights_file: str):
    """A run's model, loaded once per weights version (a re-saved run has a new weights file)."""
    from core.store import load_run_dir

    return load_run_dir(Path(run_dir))


@st.cache_data(show_spinner="Predicting the test images...", max_entries=8)
def test_predictions(run_dir: str, weights_file: str, data_root: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predicted labels) of the run's dataset's test split."""
    from core.data import load_dataset
    from core.evaluation import predict_split

    run = loaded_run(run_dir, weights_file)
    data = load_dataset(run.meta["dataset"], data_root)
    return data.test_labels.numpy(), predict_split(run, data, "test").argmax(axis=1)


def shown_run(latest: JobSnapshot | None, key: str) -> RunInfo | None:
    """The run to show: the one chosen in this session, else the latest job's once it has ended."""
    run_id = st.session_state.get(key) or (latest.run_id if latest is not None and not latest.active else None)
    if not run_id:
        return None
    try:
        info = run_store().info(run_id)
    except RunError:
        return None
    return info if info.has_weights else None


def results_section(latest: JobSnapshot | None, key: str) -> None:
    """The results of the chosen run, or nothing when there is none."""
    info = shown_run(latest, key)
    if info is None:
        return
    st.divider()
    st.subheader(f"Results: {escape_markdown(info.get('model_title') or info.get('model'))} on "
                 f"{escape_markdown(info.get('dataset'))}")
    headline(info)
    try:
        labels, predicted = test_predictions(str(info.path), str(info.get("weights_file")), str(data_dir()))
    except (RunError, OSError, ValueError) as error:
        st.error(f"The results cannot be computed: {escape_markdown(error)}", icon=":material/error:")
        return
    class_names = list(info.get("class_names") or [])
    mistakes_view(info, labels, predicted, class_names)


def versus_reported(accuracy: float | None, reported: float | None) -> dict[str, str | None]:
    """The metric's delta against the recipe's reported accuracy (short: a metric's column is narrow), with the
    reported figure in its help; a tie (to the 0.01% shown) in grey, not a red -0.00%."""
    if accuracy is None or not reported:
        return {"delta": None}
    difference, source = round(accuracy - reported, 4), {"help": f"The recipe reports {reported:.2%}."}
    if difference == 0:
        return {"delta": "same as reported", "delta_color": "off", "delta_arrow": "off", **source}
    return {"delta": f"{difference:+.2%} vs reported", **source}


def headline(info: RunInfo) -> None:
    final = info.get("final") or {}
    accuracy, loss, reported = final.get("test_accuracy"), final.get("test_loss"), info.get("reported_accuracy")
    columns = st.columns(5)
    columns[0].metric("Test accuracy", f"{accuracy:.2%}" if accuracy is not None else "-",
                      **versus_reported(accuracy, reported))
    columns[1].metric("Test loss", f"{loss:.4f}" if loss is not None else "-")
    columns[2].metric("Epochs", f"{info.get('epochs_completed')} of {(info.get('settings') or {}).get('epochs')}")
    columns[3].metric("Training time", format_duration(info.get("train_seconds") or 0))
    speed = info.get("images_per_second")
    columns[4].metric("Speed (images/s)", f"{speed:,.0f}" if speed else "-")
    st.caption(escape_markdown(f"Run {info.run_id} · status {info.status} · {info.get('parameters') or 0:,} "
                               f"parameters · {info.get('train_size') or 0:,} training images · {info.get('device')}"))


def mistakes_view(info: RunInfo, labels: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> None:
    from core.evaluation import cell_indices, confusion_matrix, misclassified, per_class_accuracy

    confusion = confusion_matrix(labels, predicted, len(class_names))
    chart_names = [html.escape(name) for name in class_names]  # plotly.js decodes the entities back to the text
    left, right = st.columns([3, 2])
    with left:
        event = st.plotly_chart(confusion_figure(confusion, chart_names), on_select="rerun", selection_mode="points",
                                key=f"results_confusion_{info.run_id}")
    right.plotly_chart(per_class_accuracy_figure(per_class_accuracy(confusion), chart_names),
                       key=f"results_per_class_{info.run_id}")
    cell = clicked_cell(event)
    if cell and all(0 <= index < len(class_names) for index in cell):  # indices the browser sent: checked
        true_class, predicted_class = cell
        indices = cell_indices(labels, predicted, true_class, predicted_class)
        title = f"Test images labelled {class_names[true_class]}, predicted {class_names[predicted_class]}"
    else:
        indices = misclassified(labels, predicted)
        title = "Test images the model got wrong (click a cell of the matrix to see only those)"
    gallery(info, indices, labels, predicted, class_names, title)


def gallery(info: RunInfo, indices: np.ndarray, labels: np.ndarray, predicted: np.ndarray, class_names: list[str],
            title: str) -> None:
    from core.data import load_dataset

    shown_part = f", the first {GALLERY_SIZE} shown" if len(indices) > GALLERY_SIZE else ""
    st.markdown(f"**{escape_markdown(title)}:** {len(indices):,}{shown_part}")
    if len(indices) == 0:
        st.caption("None.")
        return
    shown = indices[:GALLERY_SIZE]
    data = load_dataset(info.get("dataset"), data_dir())
    images = data.test_images[shown].numpy()
    captions = [f"{class_names[labels[i]]}→{class_names[predicted[i]]}" for i in shown]
    wrong = labels[shown] != predicted[shown]
    st.image(image_grid(images, captions, GALLERY_COLUMNS, max_value=data.input_format.max_value, marked=wrong),
             caption="true→predicted; red: wrong")
