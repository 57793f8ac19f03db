"""Train's *Fine-tune on your handwriting*: continue a saved run (or the shipped model) on a digit collection, and a
finished fine-tune's accuracy before and after, on the held-out digits and on the original test set.

The form builds a TrainConfig with core.config.fine_tune_config and submits it to the same job manager as Start, so
the run trains with the same live curves. Session state: widgets under train_ft_* keys; train_ft_refused (the last
click's refusal, shown once).
"""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from core.collection import CollectionError, CollectionInfo, collections_root, list_collections, scan_folder
from core.config import DEFAULT_MODEL_RUN, FINE_TUNE_SETTINGS, FOLDER_DATASET, TrainConfig, \
    fine_tune_config
from core.data import is_available
from core.jobs import JobRefused
from core.store import RunError, RunInfo
from ui.jobs import job_manager, visitor_id
from ui.shared import data_dir, public_demo, run_store, shown_path
from ui.text import escape_markdown
from ui.train_format import QUARTERS, count, percent, percent_ticks, run_names, signed_percent

FOLDER_PATH = "__folder__"  # the source choice "a folder path..."
NOTHING_PICKED = "Pick a collection, or type the path of a folder of digit images."
REFUSED = "train_ft_refused"
STARTS_FROM = ("mnist", FOLDER_DATASET)  # runs that read 28x28 digits as Predict makes them: a collection fits them
TEACH_IT = ("Keep some first: on Predict, draw a digit and press *Right, keep it* or pick the right digit after "
            "*Wrong? It's a ...* under the answer.")


def fine_tune_section() -> None:
    """The form, folded under the main settings: one line until opened, and drawn only when open."""
    box = st.expander("Fine-tune on your handwriting: teach a trained model your own digits", icon=":material/draw:",
                      key="train_ft", on_change="rerun")
    if box.open:
        with box:
            fine_tune_form()


def fine_tune_form() -> None:
    st.caption("Start from a model that already reads digits and train it a little more on the digits you kept, so "
               "it reads your handwriting. Part of your digits is held out, never trained on, to measure the change.")
    source, start_from = st.columns(2)
    with source:
        folder = folder_picker()
    with start_from:
        meta = start_picker()
    mix, share, held_out, epochs = st.columns([1.2, 1.4, 1.4, 0.8])
    keep_mnist = mix.toggle("Keep MNIST in the mix", value=True, key="train_ft_mix",
                            help="Each batch also takes images from MNIST, so the model does not forget how others "
                                 "write while it learns your hand.")
    collection_share = share.slider("Share of each batch from your digits", 10, 90, 50, 5, format="%d %%",
                                    key="train_ft_share", disabled=not keep_mnist,
                                    help="The rest of each batch is drawn at random from MNIST.") / 100
    held_out_share = held_out.slider("Held out for testing", 10, 50, 20, 5, format="%d %%", key="train_ft_held_out",
                                     help="This share of each digit's images (at least one of any digit with two) is "
                                          "never trained on: the fine-tune is tested on it, and it stays put as the "
                                          "collection grows.") / 100
    epochs.number_input("Epochs", 1, 50, int(FINE_TUNE_SETTINGS["epochs"]), key="train_ft_epochs",
                        help="One epoch is one pass over your digits' training part.")
    mixing = (f"Each batch: {percent(collection_share, 0)} your digits, the rest MNIST." if keep_mnist
              else "Your digits alone: the model may forget some of MNIST.")
    st.caption(f"{mixing} {percent(held_out_share, 0)} of each digit held out for testing. Adam at "
               f"{FINE_TUNE_SETTINGS['learning_rate']:g} with light shifts, turns and zooms.")
    trained = split_sizes(folder, float(held_out_share)) if folder is not None and meta is not None else None
    config, problem = chosen_fine_tune(folder, meta, trained)
    if folder is None:  # nothing picked yet: what to do, not an error
        st.info(escape_markdown(problem), icon=":material/folder_open:")
    elif problem:
        st.error(escape_markdown(problem), icon=":material/error:")
    st.button("Start fine-tuning", type="primary", key="train_ft_start", icon=":material/play_arrow:",
              disabled=config is None or problem is not None, on_click=start_fine_tune)
    if refused := st.session_state.pop(REFUSED, None):
        st.error(escape_markdown(refused), icon=":material/block:")


def chosen_fine_tune(folder: Path | None, meta: dict | None,
                     trained: int | None = None) -> tuple[TrainConfig | None, str | None]:
    """The fine-tune the form's widgets hold now (read from the session: the button's callback calls it too), from
    this folder and the start's metadata, and why it cannot start (None when it can). `trained`: the folder's
    training images where the form has counted them already (else fitting_batch counts them)."""
    config = None
    if folder is not None and meta is not None:
        from core.folder_data import fitting_batch  # preprocessing's imports only once a folder is picked

        config = fitting_batch(fine_tune_config(
            st.session_state["train_ft_from"], meta, image_folder=str(folder), data_dir=str(data_dir()),
            dataset="mnist" if st.session_state["train_ft_mix"] else FOLDER_DATASET,
            epochs=int(st.session_state["train_ft_epochs"]), collection_share=st.session_state["train_ft_share"] / 100,
            held_out_share=st.session_state["train_ft_held_out"] / 100), trained=trained)
    return config, fine_tune_problem(config, folder)


def folder_picker() -> Path | None:
    """The digits to learn: a collection under the data folder, or any folder in the same layout."""
    collections = collections_here()
    names = [*collections, FOLDER_PATH]
    chosen = st.selectbox("Your digits", names, key="train_ft_source",
                          format_func=lambda name: "A folder path..." if name == FOLDER_PATH
                          else f"{name} ({count(collections[name].size, 'image')})")
    if not collections:
        st.caption(f"No collection yet. {TEACH_IT}")
    if chosen == FOLDER_PATH:
        st.text_input("Folder of digit images", key="train_ft_folder", placeholder="FOLDER with 0/*.png ... 9/*.png",
                      help="torchvision's ImageFolder layout: one folder per digit, named 0 to 9.")
    return picked_folder(collections)


def collections_here() -> dict[str, CollectionInfo]:
    return {info.name: info for info in list_collections(collections_root(data_dir()))}


def picked_folder(collections: dict[str, CollectionInfo]) -> Path | None:
    """The folder the picker names now: a collection's, or the typed path (None while nothing usable is named)."""
    chosen = st.session_state.get("train_ft_source")
    if chosen != FOLDER_PATH:
        return collections[chosen].path if chosen in collections else None
    typed = str(st.session_state.get("train_ft_folder") or "").strip()
    return Path(typed).expanduser() if typed else None


def start_picker() -> dict | None:
    """The model to continue: a saved run that reads 28x28 digits, or the shipped model; its metadata (None when it
    cannot be read, said here)."""
    finished = finished_runs()
    runs = startable(finished)
    names = run_names(runs.values())
    run_id = st.selectbox("Start from", [DEFAULT_MODEL_RUN, *runs], key="train_ft_from",
                          format_func=lambda key: "The model shipped with the app (Fast CNN, 99.15 % on MNIST)"
                          if key == DEFAULT_MODEL_RUN else f"{names[key]}: {percent(runs[key].get('final', {}).get('test_accuracy'))}",
                          help="Its weights, model and normalisation are where the fine-tune starts.")
    if note := left_out_note(finished):
        st.caption(note)
    try:
        return start_meta(run_id, runs)
    except (RunError, KeyError) as error:
        st.error(f"This model cannot be continued: {escape_markdown(error)}", icon=":material/error:")
        return None


def finished_runs() -> list[RunInfo]:
    """The saved runs that ended with weights to continue from."""
    return [info for info in run_store().list_runs() if info.status in ("done", "stopped") and info.has_weights]


def startable(finished: list[RunInfo]) -> dict[str, RunInfo]:
    """The finished runs a fine-tune can start from, by run id."""
    return {info.run_id: info for info in finished if info.get("dataset") in STARTS_FROM}


def start_meta(run_id: str, runs: dict[str, RunInfo]) -> dict:
    """The metadata of the model a fine-tune starts from (RunError or KeyError when it cannot be read)."""
    if run_id == DEFAULT_MODEL_RUN:
        from core.inference import DEFAULT_MODEL_DIR
        from core.store import read_meta

        return read_meta(DEFAULT_MODEL_DIR)
    return runs[run_id].meta


def left_out_note(finished: list[RunInfo]) -> str | None:
    """Why some saved runs are not offered as a start, in one line (None when none is left out)."""
    eight = sum(info.get("dataset") == "digits" for info in finished)
    clothes = sum(info.get("dataset") == "fashion-mnist" for info in finished)
    reasons = ([f"{count(eight, 'run')} on the 8x8 digits (they read 8x8 pictures; yours are made 28x28, as "
                "Predict makes them)"] if eight else []) + \
        ([f"{count(clothes, 'run')} on Fashion-MNIST (they know clothes, not digits)"] if clothes else [])
    return f"Not offered: {' and '.join(reasons)}." if reasons else None


def split_sizes(folder: Path, held_out_share: float) -> int:
    """How many of the folder's images are trained on (the rest held out), said under the form; 0 when unreadable."""
    from core.folder_data import split_counts

    total, held = split_counts(folder, held_out_share)
    if total:
        st.caption(f"{folder.name}: {count(total, 'image')}, {total - held:,} to train on and {held:,} held out.")
    return total - held


def fine_tune_problem(config: TrainConfig | None, folder: Path | None) -> str | None:
    """Why this fine-tune cannot start, in one sentence, or None. Cheap: no image is decoded here."""
    if folder is None:
        return NOTHING_PICKED
    try:
        scan = scan_folder(folder)
    except (CollectionError, OSError) as error:
        return str(error)
    if scan.problem:
        return scan.problem
    if config is None:
        return None
    if config.mixes_folder and not is_available("mnist", data_dir()):
        return (f"Keeping MNIST in the mix needs MNIST, which is not in {shown_path(data_dir())}: "
                "turn the mix off, or get MNIST on the Train page's dataset list.")
    from core.training import ConfigError, validate

    try:
        validate(config)
    except ConfigError as error:
        return str(error)
    policy = public_demo()
    return policy.training_problem(config.epochs, len(scan.samples)) if policy else None


def start_fine_tune() -> None:
    """The button's callback: the fine-tune the widgets hold at the click, not the one they held when the button was
    drawn (a value changed just before the click reaches the server in the click's own rerun: see
    ui.train_settings.start). Checked again here, queued like Start, then shown in the live panel."""
    finished = finished_runs()
    try:
        meta = start_meta(st.session_state["train_ft_from"], startable(finished))
    except (RunError, KeyError) as error:
        st.session_state[REFUSED] = f"This model cannot be continued: {error}"
        return
    config, problem = chosen_fine_tune(picked_folder(collections_here()), meta)
    if config is None or problem is not None:
        st.session_state[REFUSED] = problem or NOTHING_PICKED
        return
    policy = public_demo()
    try:
        st.session_state["train_job"] = job_manager().submit(
            config, None, owner=visitor_id(), owner_limit=policy.queued_per_visitor if policy else None)
        st.session_state["train_scroll"] = "live"
    except JobRefused as error:
        st.session_state[REFUSED] = str(error)


# ---- a finished fine-tune: before and after ----------------------------------------------------------------------

def before_after(info: RunInfo) -> None:
    """Accuracy before and after the fine-tune on the held-out digits and (mixed with MNIST) the original test set."""
    before, collection, final = info.get("before"), info.get("collection"), info.get("final") or {}
    if not isinstance(before, dict) or not isinstance(collection, dict):
        return  # not a fine-tune: a run from scratch has no "before"
    held = collection.get("held_out_images")
    rows = [(f"Your held-out digits ({count(held, 'image')})" if isinstance(held, int) else "Your held-out digits",
             before.get("collection_accuracy"), final.get("collection_accuracy"))]
    if info.get("dataset") != FOLDER_DATASET:
        rows.append(("MNIST test set", before.get("test_accuracy"), final.get("test_accuracy")))
    st.markdown(f"**Before and after fine-tuning on {escape_markdown(collection.get('name') or 'your digits')}** "
                f"(started from {escape_markdown(start_name(info.get('from_run')))})")
    figures, chart = st.columns([2, 3], vertical_alignment="center")
    for label, was, now in rows:
        figures.metric(label, percent(now), **change(was, now))
    chart.plotly_chart(before_after_figure(rows), key=f"train_before_after_{info.run_id}",
                       config={"displayModeBar": False})


def change(was: object, now: object) -> dict[str, str | None]:
    """A before/after metric's delta: "+20.00 % (was 70.00 %)", green up or red down; grey with no arrow when the
    figure did not move at the 0.01 % shown (an up arrow on "+0.00 %" read as a gain)."""
    if not isinstance(was, float | int) or not isinstance(now, float | int):
        return {"delta": None}
    if round(now - was, 4) == 0:
        return {"delta": f"no change (was {percent(was)})", "delta_color": "off", "delta_arrow": "off"}
    return {"delta": f"{signed_percent(now - was)} (was {percent(was)})"}


def start_name(run_id: object) -> str:
    """The run a fine-tune started from, by its readable name."""
    if run_id == DEFAULT_MODEL_RUN:
        return "the shipped model"
    try:
        return run_names([run_store().info(str(run_id))]).popitem()[1]
    except RunError:
        return f"run {run_id}"


def before_after_figure(rows: list[tuple[str, float | None, float | None]]) -> go.Figure:
    """Bars: each test set's accuracy before (grey) and after (blue) the fine-tune."""
    labels = [label for label, _, _ in rows]
    figure = go.Figure()
    for name, index, color in (("before", 1, "#aab4c3"), ("after", 2, "#0072B2")):
        values = [row[index] * 100 if isinstance(row[index], float | int) else None for row in rows]
        figure.add_trace(go.Bar(name=name, x=labels, y=values, marker_color=color, textposition="outside",
                                text=[f"{v:.1f} %" if v is not None else "" for v in values],
                                hovertemplate="%{x}: %{y:.2f} %<extra>" + name + "</extra>"))
    figure.update_layout(barmode="group", height=260, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         legend={"orientation": "h", "y": 1.15})
    figure.update_yaxes(range=[0, 112], **percent_ticks(QUARTERS, 100))
    return figure
