"""Home: what is here (datasets, saved runs, device) and where to go next."""

from __future__ import annotations

import streamlit as st

from core.data import DATASETS
from core.recipes import RECIPES
from ui.shared import (accuracy_text, available_datasets, data_dir, public_demo, run_inside_the_frame, run_store,
                       shown_path)

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
        with column.container(border=True):
            st.markdown(f"**{spec.title}**")
            st.caption(spec.description)
            if status[name] is None:
                st.success("Ready", icon=":material/check_circle:")
            else:
                st.warning(status[name], icon=":material/cloud_download:")
    st.caption(f"Data folder: `{shown_path(data_dir())}` (set `DIGIT_STUDIO_DATA` to use another).")


def runs_section() -> None:
    st.subheader("Saved runs")
    store = run_store()
    runs = store.list_runs()
    if not runs:
        st.info("No runs yet. A small MNIST model ships with the app, so Predict works already; "
                "train your own on the **Train** page.",
                icon=":material/info:")
        return
    import pandas as pd  # here, not at the top: its ~0.4 s import would delay a first visit with no runs yet

    rows = [{"run": info.run_id, "model": info.get("model_title") or info.get("model"), "dataset": info.get("dataset"),
             "status": info.status, "epochs": info.get("epochs_completed"),
             "test accuracy": (info.get("final") or {}).get("test_accuracy"),
             "seconds": info.get("train_seconds"), "error": info.error or ""} for info in runs]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "test accuracy": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0),
        "seconds": st.column_config.NumberColumn(format="%.1f")})
    best = max((info for info in runs if info.status == "done"), key=lambda i: (i.get("final") or {}).get("test_accuracy") or 0,
               default=None)
    if best is not None:
        st.caption(f"Best finished run: {best.run_id} ({accuracy_text(best)}). Runs live in `{shown_path(store.root)}`.")


def next_steps_section() -> None:
    st.subheader("Where to go next")
    published = sum(1 for item in RECIPES.values() if item.published)
    ours = len(RECIPES) - published
    st.markdown(f"- Presets reproduce {published} published recipes, from the 8x8 digits CNN to LeNet-5, plus "
                f"{'our fast one' if ours == 1 else f'{ours} of our own'}; "
                "`python -m core recipes` lists them with their reported accuracies.\n"
                "- `python -m core predict photo.png` reads a digit from a photo or a drawing.")
    pages = st.session_state.get("nav_pages", {})
    for key in ("train", "explore", "predict"):
        if key in pages:
            st.page_link(pages[key])


datasets_section()
runs_section()
next_steps_section()
