"""Train: choose data and a preset or a model, train in the background, watch it learn, then study the results.

Session state (initialised once below): `train_job` is the job id this session last started; `train_results`
is the run id whose results are shown; `train_seen` maps job ids to the status the live panel last drew.
Widget keys start with `train_`; ui.train_settings and ui.saved_runs list the keys they keep. Jobs live in
core.jobs' manager, shared by every session of this process.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.config import TrainConfig
from core.data import DATASETS, DatasetUnavailable, download_dataset
from core.jobs import JobSnapshot
from core.models import list_models, model_spec
from core.recipes import RECIPES, Recipe
from ui import train as ui
from ui.jobs import job_manager, may_stop, stop_job
from ui.live_chart import live_charts
from ui.results import results_section
from ui.saved_runs import runs_section
from ui.shared import available_datasets, data_dir, device_description, public_demo, run_inside_the_frame
from ui.text import escape_markdown
from ui.train_live import job_title, queue_panel, status_line
from ui.train_settings import config_from_widgets, fill_widgets, notes_for, number_field, refusal_to_show, \
    settings_problem, start

run_inside_the_frame()
CUSTOM = "custom"
DEFAULT_PRESETS = {"digits": "digits-cnn", "mnist": "fast-cnn-99"}  # the quickest way to a good model on each
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "momentum": "SGD with momentum", "sgd": "SGD"}
SCHEDULES = {"none": "constant", "step": "step decay (x0.1)", "one-cycle": "one-cycle"}
LOSSES = {"cross-entropy": "cross-entropy", "bce-one-hot": "binary cross-entropy on one-hot targets"}
CORES = ui.usable_cores()
LIVE_REFRESH_SECONDS = ui.live_refresh_seconds(CORES)

for key, value in (("train_job", None), ("train_results", None), ("train_seen", {})):
    if key not in st.session_state:
        st.session_state[key] = value


def presets_for(dataset: str) -> dict[str, Recipe]:
    """Recipes whose images have this dataset's shape: MNIST recipes also fit Fashion-MNIST."""
    size = DATASETS[dataset].input_format
    return {name: item for name, item in RECIPES.items() if DATASETS[item.config.dataset].input_format == size}


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
    number_field(left, "epochs")
    number_field(right, "batch_size")
    notes_for("epochs", "batch_size")  # under the row, full width: a note in one column would skew the other
    left, right = st.columns(2)
    left.selectbox("Optimizer", list(OPTIMIZERS), key="train_optimizer", format_func=OPTIMIZERS.get)
    number_field(right, "learning_rate")
    if st.session_state["train_optimizer"] == "momentum":
        number_field(left, "momentum")
    right.selectbox("Schedule", list(SCHEDULES), key="train_schedule", format_func=SCHEDULES.get)
    notes_for("learning_rate", "momentum")
    with st.expander("Augmentation: random shifts, rotations and zooms of each batch"):
        st.slider("Shift (share of the image)", 0.0, 0.3, step=0.01, key="train_augment_shift")
        st.slider("Rotation (degrees)", 0.0, 45.0, step=1.0, key="train_augment_rotation")
        st.slider("Zoom (share)", 0.0, 0.3, step=0.01, key="train_augment_scale")
    with st.expander("More settings"):
        for name in ("seed", "limit", "weight_decay", "label_smoothing"):
            number_field(st, name)
            notes_for(name)
        st.selectbox("Loss", list(LOSSES), key="train_loss", format_func=LOSSES.get)


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


def setup_panel() -> None:
    st.subheader("Set up a run")
    dataset = dataset_picker()
    if dataset is None:
        st.error("No dataset can be used here: see the notes above.")
        return
    recipe = preset_picker(dataset)
    settings_widgets()
    config = config_from_widgets(recipe.config if recipe else TrainConfig(), dataset, str(data_dir()))
    problem = settings_problem(config)
    if problem:
        st.error(escape_markdown(problem), icon=":material/error:")
    else:
        model_summary_box(config)
    start_button(config, recipe, problem)
    st.caption(f"Training runs on: **{device_description()}**")


def start_button(config: TrainConfig, recipe: Recipe | None, problem: str | None) -> None:
    policy = public_demo()
    if policy is not None and not policy.training:  # said instead of a button that could only be refused
        st.info(policy.training_problem(config.epochs, 0), icon=":material/block:")
        return
    busy = job_manager().busy()
    st.button("Queue training" if busy else "Start training", type="primary", disabled=problem is not None,
              on_click=start, args=(config, recipe), icon=":material/play_arrow:", width="stretch")
    if refused := refusal_to_show():
        st.error(escape_markdown(refused), icon=":material/block:")
    elif busy:
        st.caption("One run trains at a time on this machine; a new one waits for it in the queue.")


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
    queue_panel(job_manager().jobs())
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
    heading, button = st.columns([4, 1], vertical_alignment="bottom")
    heading.subheader(job_title(snapshot))
    if snapshot.status == "running" and may_stop(snapshot):  # a waiting job's Cancel is in the queue below
        button.button("Stop", key=f"train_stop_{snapshot.job_id}", icon=":material/stop_circle:", width="stretch",
                      on_click=stop_job, args=(snapshot.job_id,))
    fraction = snapshot.progress.fraction if snapshot.progress else 0.0
    st.progress(fraction, text=ui.progress_text(snapshot))
    status_line(snapshot, st.session_state["train_job"])
    if refused := st.session_state.pop("train_stop_refused", None):
        st.error(escape_markdown(refused), icon=":material/block:")


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
