"""Train: choose data and a preset or a model, train in the background, watch it learn, then study the results.

The first screen holds what starts a run (data, preset, model, the main settings and Start); the live panel comes
under it, is scrolled into view on Start, and turns into the run's results when it ends.

Session state (initialised once below): `train_job` is the job id this session last started; `train_results`
is the saved run whose results are shown under the runs table; `train_seen` maps job ids to the status the live
panel last drew; `train_scroll` names the part of the page to bring into view after this run ("live", "results",
"table_results"). Widget keys start with `train_`; ui.train_settings, ui.train_live and ui.saved_runs list the keys
they keep. Jobs live in core.jobs' manager, shared by every session of this process.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.config import TrainConfig
from core.data import DATASETS, DatasetUnavailable, download_dataset
from core.models import list_models, model_spec
from core.recipes import RECIPES, Recipe
from ui.jobs import job_manager
from ui.saved_runs import runs_section
from ui.shared import available_datasets, data_dir, device_description, public_demo, run_inside_the_frame
from ui.text import escape_markdown
from ui.train_finetune import fine_tune_section
from ui.train_format import spaced_percents
from ui.train_live import first_paint, live_slot, scroll_into_view
from ui.train_settings import config_from_widgets, fill_widgets, notes_for, number_field, processes_setting, \
    refusal_to_show, settings_problem, start

run_inside_the_frame()
CUSTOM = "custom"
DEFAULT_PRESETS = {"digits": "digits-cnn", "mnist": "quick-cnn-99"}  # the quickest way to a good model on each
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "momentum": "SGD + momentum", "sgd": "SGD"}
SCHEDULES = {"none": "constant", "step": "step (x0.1)", "one-cycle": "one-cycle"}
LOSSES = {"cross-entropy": "cross-entropy", "bce-one-hot": "binary cross-entropy on one-hot targets"}

for key, value in (("train_job", None), ("train_results", None), ("train_seen", {}), ("train_scroll", None)):
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
    chosen = st.selectbox("Dataset", ready, format_func=lambda name: DATASETS[name].title, key="train_dataset",
                          on_change=lambda: st.session_state.pop("train_preset", None)) if ready else None
    for name, problem in status.items():
        if problem is not None:
            missing_dataset_note(name, problem)
    return chosen


def missing_dataset_note(name: str, problem: str) -> None:
    with st.expander(f"{DATASETS[name].title} is not on this machine", icon=":material/cloud_download:"):
        st.caption(escape_markdown(problem))
        if st.button(f"Download {DATASETS[name].title}", key=f"train_download_{name}"):
            with st.spinner(f"Downloading {DATASETS[name].title}..."):
                try:
                    download_dataset(name, data_dir())
                except DatasetUnavailable as error:
                    st.error(escape_markdown(error), icon=":material/wifi_off:")
                    return
            st.rerun()


def preset_picker(dataset: str) -> None:
    presets = presets_for(dataset)
    if "train_preset" not in st.session_state or st.session_state["train_preset"] not in (CUSTOM, *presets):
        st.session_state["train_preset"] = DEFAULT_PRESETS.get(dataset, CUSTOM)
        apply_preset()
    name = st.selectbox("Start from", [*presets, CUSTOM], key="train_preset", on_change=apply_preset,
                        format_func=lambda n: "Custom settings" if n == CUSTOM else presets[n].title,
                        help="A preset fills in every setting from a published recipe; you can still change them.")
    if name == CUSTOM:
        return
    chosen = presets[name]
    if chosen.config.dataset == dataset:  # what the recipe promised, and what it did here (bench/bench_recipes.py)
        st.caption(spaced_percents(chosen.note()))
    else:
        st.caption(f"A {DATASETS[chosen.config.dataset].title} recipe, used here on {DATASETS[dataset].title}: "
                   "its reported accuracy does not apply.")


def main_settings() -> None:
    """The settings most runs change, in one row under the pickers."""
    row = st.columns(6)
    number_field(row[0], "epochs")
    number_field(row[1], "batch_size")
    number_field(row[2], "learning_rate")
    row[3].selectbox("Optimizer", list(OPTIMIZERS), key="train_optimizer", format_func=OPTIMIZERS.get)
    row[4].selectbox("Schedule", list(SCHEDULES), key="train_schedule", format_func=SCHEDULES.get,
                     help="How the learning rate changes during the run.")
    if st.session_state["train_optimizer"] == "momentum":
        number_field(row[5], "momentum")
    notes_for("epochs", "batch_size", "learning_rate", "momentum")  # under the row, full width: columns stay aligned


def more_settings(config: TrainConfig | None) -> None:
    """Augmentation, the rarer settings and the model's layers, folded: one line each until opened."""
    augmentation, more, layers = st.columns(3)
    # Keyed: a note appearing or going above them (a refused value) moved them in the page, and Streamlit then drew
    # them anew, closed, with the note about the field just typed in inside
    with augmentation.expander("Augmentation: shifts, rotations, zooms", key="train_augment_box"):
        st.slider("Shift (share of the image)", 0.0, 0.3, step=0.01, key="train_augment_shift")
        st.slider("Rotation (degrees)", 0.0, 45.0, step=1.0, key="train_augment_rotation")
        st.slider("Zoom (share)", 0.0, 0.3, step=0.01, key="train_augment_scale")
    with more.expander("More settings: seed, images, loss", key="train_more_box"):
        for name in ("seed", "limit", "weight_decay", "label_smoothing"):
            number_field(st, name)
            notes_for(name)
        st.selectbox("Loss", list(LOSSES), key="train_loss", format_func=LOSSES.get)
    with more:
        processes_setting()
    if config is not None:
        with layers:
            model_layers(config)


@st.cache_data(show_spinner=False, max_entries=32)
def summary_table(model: str, image_size: int, classes: int) -> tuple[pd.DataFrame, int]:
    from core.summary import model_summary

    summary = model_summary(model, image_size, classes)
    rows = [{"Layer": row.name, "Type": row.kind, "Output shape": " x ".join(map(str, row.output_shape)),
             "Parameters": f"{row.parameters:,}"} for row in summary.layers]
    return pd.DataFrame(rows), summary.parameters


def model_layers(config: TrainConfig) -> None:
    """The model's size in the label; its layer table is built only when opened (a fresh visit draws no table)."""
    data = DATASETS[config.dataset]
    table, parameters = summary_table(config.model, data.input_format.size, len(data.class_names))
    layers = st.expander(f"Layers: {parameters:,} parameters in {len(table)} layers", key="train_layers",
                         on_change="rerun")
    if layers.open:
        layers.dataframe(table, hide_index=True, width="stretch", height=min(36 * (len(table) + 1), 420))


def setup_panel() -> None:
    dataset_column, preset_column, model_column = st.columns(3)
    with dataset_column:
        dataset = dataset_picker()
    if dataset is None:
        st.error("No dataset can be used here: see the notes above.", icon=":material/error:")
        return
    with preset_column:
        preset_picker(dataset)
    with model_column:
        st.selectbox("Model", list_models(), key="train_model", format_func=lambda name: model_spec(name).title)
        st.caption(model_spec(st.session_state["train_model"]).description)
    main_settings()
    config, _ = chosen_setup()
    problem = settings_problem(config)
    more_settings(None if problem else config)
    if problem:
        st.error(escape_markdown(problem), icon=":material/error:")
    start_button(config, problem)


def chosen_setup() -> tuple[TrainConfig, Recipe | None]:
    """The run the pickers and fields describe now: the preset's settings (or the defaults) under the fields'."""
    dataset = st.session_state["train_dataset"]
    recipe = presets_for(dataset).get(st.session_state["train_preset"])
    return config_from_widgets(recipe.config if recipe else TrainConfig(), dataset, str(data_dir())), recipe


def start_button(config: TrainConfig, problem: str | None) -> None:
    policy = public_demo()
    if policy is not None and not policy.training:  # said instead of a button that could only be refused
        st.info(policy.training_problem(config.epochs, 0), icon=":material/block:")
        return
    busy = job_manager().busy()
    button, words = st.columns([1, 2], vertical_alignment="center")
    button.button("Queue training" if busy else "Start training", type="primary", disabled=problem is not None,
                  on_click=start, args=(chosen_setup,), icon=":material/play_arrow:", width="stretch")
    where = f"Training runs on: **{device_description()}**."
    words.caption(f"{where} One run trains at a time; a new one waits for it in the queue." if busy else where)
    if refused := refusal_to_show():
        st.error(escape_markdown(refused), icon=":material/block:")


st.title("Train")
st.caption("Set up a run and start it: it trains in the background, carries on while you use other pages, and is "
           "saved with its curves and weights. Its charts appear below as it learns.")
first = first_paint()
setup_panel()
fine_tune_section()
live_slot(first)
runs_section()
if target := st.session_state.pop("train_scroll", None):
    scroll_into_view(target)
