"""Home: what is here (datasets, saved runs, device) and where to go next."""

from __future__ import annotations

import streamlit as st

from core.data import DATASETS, split_sizes_on_disk
from core.recipes import RECIPES
from core.store import RunInfo
from ui.shared import (RUNS_COLUMNS, available_datasets, data_dir, public_demo, run_inside_the_frame, run_store,
                       runs_frame, shown_path)
from ui.text import escape_markdown
from ui.train_format import is_number, percent, run_names

NEXT_STEPS = {"train": "Pick a preset, press Start and watch a network learn, live.",
              "explore": "Browse the digits, see how augmentation changes them and map them in 2-D.",
              "predict": "Draw or upload a digit and see what each model answers, and why."}

run_inside_the_frame()
st.title("Digit Studio")
st.markdown("Learn handwritten-digit recognition by doing it: **train** a network and watch it learn, "
            "**explore** the data it learns from, then **draw** a digit and see what each model thinks and why.")
if (policy := public_demo()) is not None:
    allowed = (f"you can train small runs (up to {policy.max_epochs} epochs, one at a time)" if policy.training
               else "training is switched off")
    st.info(f"This is a public demo on a shared server: explore the data and predict with the saved models; {allowed}. "
            "Saved runs cannot be deleted here.", icon=":material/public:")


def datasets_section() -> None:
    st.subheader("Datasets on this machine")
    status = available_datasets()
    columns = st.columns(len(DATASETS))
    for column, (name, spec) in zip(columns, DATASETS.items()):
        with column.container(border=True, height="stretch", key=f"home_dataset_{name}"):  # as high as the highest
            st.markdown(f"**{spec.title}**")
            st.caption(spec.description)
            if status[name] is None:
                sizes = split_sizes_on_disk(name, data_dir())
                here = f": {sizes[0]:,} to train on, {sizes[1]:,} to test here" if sizes else ""
                st.success(f"Ready{here}", icon=":material/check_circle:")  # a subset of MNIST says its own size
            else:
                st.warning(status[name], icon=":material/cloud_download:")
    st.caption(f"Datasets are read from `{shown_path(data_dir())}` (set `DIGIT_STUDIO_DATA` to use another folder).")


def runs_section() -> None:
    st.subheader("Saved runs")
    store = run_store()
    runs = store.list_runs()
    if not runs:
        st.info("No runs yet. A small MNIST model ships with the app, so Predict works already; "
                "train your own on the **Train** page.",
                icon=":material/info:")
        return
    names = run_names(runs)
    st.dataframe(runs_frame(runs, names, running="training (see the Train page)"), hide_index=True, width="stretch",
                 column_config=RUNS_COLUMNS)
    st.caption(f"{best_runs(runs, names)}Runs are saved in `{shown_path(store.root)}`.")


def best_runs(runs: list[RunInfo], names: dict[str, str]) -> str:
    """The best finished run of each dataset, in words: accuracies on different test sets are not compared."""
    best: dict[str, RunInfo] = {}
    for info in runs:
        dataset = str(info.get("dataset"))
        if info.status == "done" and is_number(test_accuracy(info)) and (
                dataset not in best or test_accuracy(info) > test_accuracy(best[dataset])):
            best[dataset] = info
    said = [f"{escape_markdown(names[info.run_id])}, with {percent(test_accuracy(info))} test accuracy"
            for info in best.values()]
    if len(said) == 1:
        return f"The best finished run is {said[0]}. "
    return f"The best finished run of each dataset: {'; '.join(said)}. " if said else ""


def test_accuracy(info: RunInfo) -> object:
    """A run's final test accuracy as its metadata has it (maybe missing, maybe not a number)."""
    return (info.get("final") or {}).get("test_accuracy")


def next_steps_section() -> None:
    st.subheader("Where to go next")
    pages = st.session_state.get("nav_pages", {})
    for key, what in NEXT_STEPS.items():
        if key in pages:  # a link's label stays on one line: what the page does goes under it, where it wraps
            st.page_link(pages[key])
            st.caption(what)
    published = sum(1 for item in RECIPES.values() if item.published)
    ours = len(RECIPES) - published
    st.caption(f"From a terminal: `python -m core recipes` lists the presets ({published} published recipes, from the "
               f"scikit-learn digits CNN to LeNet-5, and {'one' if ours == 1 else ours} of our own) with what "
               "each reports; `python -m core predict photo.png` reads the digit in a photo or a drawing.")


datasets_section()
runs_section()
next_steps_section()
