"""Digit Studio: the frame of the app (page config, navigation, shared sidebar)."""

import streamlit as st

from ui.jobs import sidebar_job_status
from ui.shared import run_store, sweep_runs_once
from ui.train_settings import keep_settings_across_pages

# An emoji icon is drawn in the page: a Material icon as favicon is fetched from Google's font servers.
st.set_page_config(page_title="Digit Studio", page_icon="✍️", layout="wide")
sweep_runs_once(str(run_store().root))  # temp files of saves that a killed process left behind
keep_settings_across_pages()

PAGES = {
    "home": st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    "train": st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    "explore": st.Page("pages/explore.py", title="Explore", icon=":material/grid_view:", url_path="explore"),
    "predict": st.Page("pages/predict.py", title="Predict", icon=":material/draw:", url_path="predict"),
}
st.session_state["nav_pages"] = PAGES  # lets the home page link to whichever pages exist
navigation = st.navigation(list(PAGES.values()))

with st.sidebar:
    if navigation is not PAGES["train"]:  # the Train page shows the job itself, in full
        sidebar_job_status(PAGES["train"])
    st.caption("Digit Studio: train, explore, draw.")

navigation.run()
