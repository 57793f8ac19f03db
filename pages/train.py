"""Train: choose data and a preset or a model, train in the background, watch it learn, then study the results.

Session state (initialised once below): `train_job` is the job id this session last started; `train_results`
is the run id whose results are shown; `train_seen` maps job ids to the status the live panel last drew.
Widget keys start with `train_`. Jobs live in core.jobs' manager, shared by every session of this process.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from core.config import TrainConfig
from core.data import DATASETS, DatasetUnavailable, download_dataset, load_dataset
from core.jobs import JobRefused, JobSnapshot
from core.models import list_models, model_spec
from core.recipes import RECIPES, Recipe
from ui import train as ui
from ui.jobs import job_manager
from ui.live_chart import live_charts
from ui.results import results_section
from ui.shared import available_datasets, data_dir, device_description, run_inside_the_frame, run_store

run_inside_the_frame()
CUSTOM = "custom"
DEFAULT_PRESETS = {"digits": "digits-cnn", "mnist": "fast-cnn-99"}  # the quickest way to a good model on each
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "momentum": "SGD with momentum", "sgd": "SGD"}
SCHEDULES = {"none": "constant", "step": "step decay (x0.1)", "one-cycle": "one-cycle"}
LOSSES = {"cross-entropy": "cross-entropy", "bce-one-hot": "binary cross-entropy on one-hot targets"}
CORES = ui.usable_cores()
LIVE_REFRESH_SECONDS = ui.live_refresh_seconds(CORES)
INT_FIELDS = ("epochs", "batch_size", "seed")
FLOAT_FIELDS = ("learning_rate", "momentum", "augment_shift", "augment_rotation", "augment_scale", "weight_decay",
                "label_smoothing")
FIELDS = ("model", "optimizer", "schedule", "loss", *INT_FIELDS, *FLOAT_FIELDS)

for key, value in (("train_job", None), ("train_results", None), ("train_seen", {})):
    if key not in st.session_state:
        st.session_state[key] = value


def presets_for(dataset: str) -> dict[str, Recipe]:
    """Recipes whose images have this dataset's shape: MNIST recipes also fit Fashion-MNIST."""
    size = DATASETS[dataset].input_format
    return {name: item for name, item in RECIPES.items() if DATASETS[item.config.dataset].input_format == size}


def fill_widgets(config: TrainConfig) -> None:
    """Put a config's values into the setting widgets."""
    for name in FIELDS:  # number widgets refuse a value of the other numeric type (10 where 10.0 is expected)
        value = getattr(config, name)
        st.session_state[f"train_{name}"] = int(value) if name in INT_FIELDS else float(value) \
            if name in FLOAT_FIELDS else value
    st.session_state["train_limit"] = config.train_limit or 0


def apply_preset() -> None:
    name = st.session_state["train_preset"]
    fill_widgets(RECIPES[name].config if name != CUSTOM else TrainConfig(dataset=st.session_state["train_dataset"]))


def dataset_picker() -> str | None:
    status = available_datasets()
    ready = [name for name, problem in status.items() if problem is None]
    for name, problem in status.items():
        if problem is not None:
            missing_dataset_note(name, problem)
    if not ready:
        return None
    return st.selectbox("Dataset", ready, format_func=lambda name: DATASETS[name].title, key="train_dataset",
                        on_change=lambda: st.session_state.pop("train_preset", None))  # the new data's default


def missing_dataset_note(name: str, problem: str) -> None:
    with st.expander(f"{DATASETS[name].title} is not on this machine", icon=":material/cloud_download:"):
        st.caption(problem)
        if st.button(f"Download {DATASETS[name].title}", key=f"train_download_{name}"):
            with st.spinner(f"Downloading {DATASETS[name].title}..."):
                try:
                    download_dataset(name, data_dir())
                except DatasetUnavailable as error:
                    st.error(str(error), icon=":material/wifi_off:")
                    return
            st.rerun()


def preset_picker(dataset: str) -> Recipe | None:
    presets = presets_for(dataset)
    if "train_preset" not in st.session_state or st.session_state["train_preset"] not in (CUSTOM, *presets):
        st.session_state["train_preset"] = DEFAULT_PRESETS.get(dataset, CUSTOM)
        apply_preset()
    name = st.selectbox("Start from", [*presets, CUSTOM], key="train_preset", on_change=apply_preset,
                        format_func=lambda n: "Custom settings" if n == CUSTOM else presets[n].title,
                        help="A preset fills every setting with a published recipe; you can still change them.")
    if name == CUSTOM:
        return None
    chosen = presets[name]
    if chosen.config.dataset == dataset:
        st.caption(f"Reported: {chosen.reported_note}.")
    else:
        st.caption(f"A {DATASETS[chosen.config.dataset].title} recipe, used here on {DATASETS[dataset].title}: "
                   "its reported accuracy does not apply.")
    return chosen


def settings_widgets() -> None:
    models = list_models()
    st.selectbox("Model", models, key="train_model", format_func=lambda name: model_spec(name).title)
    st.caption(model_spec(st.session_state["train_model"]).description)
    left, right = st.columns(2)
    left.number_input("Epochs", min_value=None, step=1, key="train_epochs")
    right.number_input("Batch size", min_value=None, step=16, key="train_batch_size")
    left.selectbox("Optimizer", list(OPTIMIZERS), key="train_optimizer", format_func=OPTIMIZERS.get)
    right.number_input("Learning rate", min_value=None, step=0.0005, format="%.5f", key="train_learning_rate")
    if st.session_state["train_optimizer"] == "momentum":
        left.number_input("Momentum", min_value=None, max_value=None, step=0.05, key="train_momentum")
    right.selectbox("Schedule", list(SCHEDULES), key="train_schedule", format_func=SCHEDULES.get)
    with st.expander("Augmentation: random shifts, rotations and zooms of each batch"):
        st.slider("Shift (share of the image)", 0.0, 0.3, step=0.01, key="train_augment_shift")
        st.slider("Rotation (degrees)", 0.0, 45.0, step=1.0, key="train_augment_rotation")
        st.slider("Zoom (share)", 0.0, 0.3, step=0.01, key="train_augment_scale")
    with st.expander("More settings"):
        st.number_input("Seed", min_value=None, step=1, key="train_seed")
        st.number_input("Training images (0: all)", min_value=None, step=500, key="train_limit",
                        help="Train on the first N images only: a quick look before a full run.")
        st.number_input("Weight decay", min_value=None, step=0.0001, format="%.5f", key="train_weight_decay")
        st.number_input("Label smoothing", min_value=None, step=0.05, key="train_label_smoothing")
        st.selectbox("Loss", list(LOSSES), key="train_loss", format_func=LOSSES.get)


def config_from_widgets(dataset: str, recipe: Recipe | None) -> TrainConfig:
    base = recipe.config if recipe is not None else TrainConfig()
    values = {name: st.session_state[f"train_{name}"] for name in FIELDS}
    limit = st.session_state["train_limit"]
    return replace(base, **values, dataset=dataset, data_dir=str(data_dir()), train_limit=int(limit) or None)


def problem_with(config: TrainConfig) -> str | None:
    """The sentence that says why these settings cannot train, or None."""
    from core.training import ConfigError, validate

    try:
        validate(config, load_dataset(config.dataset, config.data_dir))
    except (ConfigError, DatasetUnavailable) as error:
        return str(error)
    return None


@st.cache_data(show_spinner=False, max_entries=32)
def summary_table(model: str, image_size: int, classes: int) -> tuple[pd.DataFrame, int]:
    from core.summary import model_summary

    summary = model_summary(model, image_size, classes)
    rows = [{"layer": row.name, "type": row.kind, "output": " x ".join(map(str, row.output_shape)),
             "parameters": row.parameters} for row in summary.layers]
    return pd.DataFrame(rows), summary.parameters


def model_summary_box(config: TrainConfig) -> None:
    data = DATASETS[config.dataset]
    table, parameters = summary_table(config.model, data.input_format.size, len(data.class_names))
    with st.expander(f"{model_spec(config.model).title}: {parameters:,} parameters, {len(table)} layers"):
        st.dataframe(table, hide_index=True, width="stretch", height=min(36 * (len(table) + 1), 420))


def start(config: TrainConfig, recipe: Recipe | None) -> None:
    try:
        st.session_state["train_job"] = job_manager().submit(config, recipe)
        st.session_state["train_results"] = None
        st.session_state["train_refused"] = None
    except JobRefused as error:
        st.session_state["train_refused"] = str(error)


def setup_panel() -> None:
    st.subheader("Set up a run")
    dataset = dataset_picker()
    if dataset is None:
        st.error("No dataset can be used here: see the notes above.")
        return
    recipe = preset_picker(dataset)
    settings_widgets()
    config = config_from_widgets(dataset, recipe)
    problem = problem_with(config)
    if problem:
        st.error(problem, icon=":material/error:")
    else:
        model_summary_box(config)
    busy = job_manager().busy()
    st.button("Queue training" if busy else "Start training", type="primary", disabled=problem is not None,
              on_click=start, args=(config, recipe), icon=":material/play_arrow:", width="stretch")
    # kept until the queue has room: a rerun right after the click (the running job's first save) must not hide it
    refused = st.session_state.get("train_refused")
    if refused and not job_manager().queue_full():
        refused = st.session_state["train_refused"] = None
    if refused:
        st.error(refused, icon=":material/block:")
    elif busy:
        st.caption("One run trains at a time on this machine; a new one waits for it in the queue.")
    st.caption(f"Training runs on: **{device_description()}**")


def live_panel() -> None:
    # The bar's slide animation after each update tripled its cost in the browser (bench/bench_live_chart.py).
    st.html("<style>[data-testid='stProgress'] * { transition: none !important; }</style>")
    shown = job_manager().latest()
    active = shown is not None and shown.active
    st.fragment(run_every=LIVE_REFRESH_SECONDS if active else None)(live_view)()


def live_view() -> None:
    snapshot = job_manager().latest()
    if snapshot is None:
        st.subheader("Live training")
        st.info("Nothing is training. Choose a preset on the left and press **Start training**: the loss and "
                f"accuracy curves appear here and update {ui.refresh_words(LIVE_REFRESH_SECONDS)}.",
                icon=":material/monitoring:")
        return
    redraw_page_on_change(snapshot)
    job_header(snapshot)
    reference = snapshot.recipe.reported_accuracy if snapshot.recipe and \
        snapshot.recipe.config.dataset == snapshot.config.dataset else None
    live_charts(ui.loss_figure(snapshot), ui.accuracy_figure(snapshot, reference), height=ui.CHART_HEIGHT,
                key="train_live_charts")
    if snapshot.active and (note := ui.redraw_note(LIVE_REFRESH_SECONDS, CORES)):
        st.caption(note)


def redraw_page_on_change(snapshot: JobSnapshot) -> None:
    """Rerun the whole page when the job's run appears (runs table) or ends (results, and polling stops)."""
    seen = st.session_state["train_seen"]
    state = (snapshot.status, snapshot.run_id)
    before = seen.get(snapshot.job_id, state)
    seen[snapshot.job_id] = state
    if before != state and (not snapshot.active or before[1] != snapshot.run_id):
        if not snapshot.active:
            st.session_state["train_results"] = snapshot.run_id
        st.rerun(scope="app")


def job_header(snapshot: JobSnapshot) -> None:
    title = f"{model_spec(snapshot.config.model).title} on {DATASETS[snapshot.config.dataset].title}"
    heading, button = st.columns([4, 1], vertical_alignment="bottom")
    heading.subheader(title)
    if snapshot.active:
        label = "Cancel" if snapshot.status == "queued" else "Stop"
        button.button(label, key=f"train_stop_{snapshot.job_id}", icon=":material/stop_circle:", width="stretch",
                      on_click=job_manager().stop, args=(snapshot.job_id,))
    fraction = snapshot.progress.fraction if snapshot.progress else 0.0
    st.progress(fraction, text=ui.progress_text(snapshot))
    status_line(snapshot)


def status_line(snapshot: JobSnapshot) -> None:
    last = snapshot.epoch_points[-1] if snapshot.epoch_points else None
    score = f" Test accuracy {last.test_accuracy:.2%} after epoch {last.epoch}." if last else ""
    if snapshot.status == "done":
        st.success(f"Finished.{score} Saved as run `{snapshot.run_id}`.", icon=":material/check_circle:")
    elif snapshot.status == "stopped":
        kept = f" The run keeps epoch {last.epoch}'s weights and can be used in Predict." if last else \
            " No epoch had finished, so there are no weights to keep."
        st.warning(f"Stopped.{kept}", icon=":material/stop_circle:")
    elif snapshot.status in ("failed", "cancelled"):
        st.error(f"{snapshot.status.capitalize()}: {snapshot.message}", icon=":material/error:")
    elif snapshot.status == "running" and st.session_state["train_job"] not in (None, snapshot.job_id):
        st.caption("Your run waits in the queue behind this one.")


def runs_section() -> None:
    st.divider()
    st.subheader("Saved runs")
    store = run_store()
    runs = store.list_runs()
    if not runs:
        st.info("Runs you train are saved here, with their curves and weights.", icon=":material/folder_open:")
        return
    table = pd.DataFrame([ui.run_row(info) for info in runs])
    event = st.dataframe(table, hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row",
                         key="train_runs_table", column_config={
                             "test accuracy": st.column_config.ProgressColumn(format="percent", min_value=0.0,
                                                                              max_value=1.0),
                             "test loss": st.column_config.NumberColumn(format="%.4f"),
                             "parameters": st.column_config.NumberColumn(format="localized")})
    chosen = [runs[row] for row in event.selection.rows if row < len(runs)]
    if not chosen:
        st.caption("Select runs in the table to compare their curves, see one's results, download or delete them.")
        return
    run_actions(chosen)
    compare_runs(chosen)


def run_actions(chosen: list) -> None:
    from core.archive import run_archive
    from core.store import RunError

    columns = st.columns(3)
    if len(chosen) == 1 and chosen[0].has_weights:
        info = chosen[0]
        columns[0].button("Show results", icon=":material/analytics:", width="stretch",
                          on_click=st.session_state.update, kwargs={"train_results": info.run_id})
        try:
            columns[1].download_button("Download weights (.zip)", run_archive(info), file_name=f"{info.run_id}.zip",
                                       mime="application/zip", icon=":material/download:", width="stretch")
        except (RunError, OSError) as error:
            columns[1].error(str(error))
    with columns[2].popover(f"Delete {len(chosen)} run{'s' if len(chosen) > 1 else ''}", icon=":material/delete:",
                            width="stretch"):
        st.write("Deleting removes the run folder and its weights for good.")
        st.button("Delete", type="primary", key="train_delete", on_click=delete_runs,
                  args=([info.run_id for info in chosen],))
    if message := st.session_state.pop("train_delete_message", None):
        st.warning(message)


def delete_runs(run_ids: list[str]) -> None:
    running = {snapshot.run_id for snapshot in job_manager().jobs() if snapshot.active}
    kept = [run_id for run_id in run_ids if run_id in running]
    store = run_store()
    for run_id in run_ids:
        if run_id not in running:
            store.delete(run_id)
    if st.session_state.get("train_results") in run_ids:
        st.session_state["train_results"] = None
    if kept:
        st.session_state["train_delete_message"] = f"{', '.join(kept)} is still training: stop it before deleting it."


def compare_runs(chosen: list) -> None:
    readable = [info for info in chosen if info.meta and info.get("history")]
    if not readable:
        return
    left, right = st.columns(2)
    left.plotly_chart(ui.comparison_figure(readable, "test_accuracy", "Test accuracy by epoch", True),
                      key="train_compare_accuracy")
    right.plotly_chart(ui.comparison_figure(readable, "train_loss", "Training loss by epoch", False),
                       key="train_compare_loss")


st.title("Train")
st.caption("Train a network in the background and watch it learn. Training carries on while you use other pages, "
           "and every run is saved with its curves and weights.")
setup_column, live_column = st.columns([1, 2], gap="large")
with setup_column:
    setup_panel()
with live_column:
    live_panel()
results_section(job_manager().latest(), "train_results")
runs_section()
