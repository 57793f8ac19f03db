"""Digit Studio: the frame of the app (page config, navigation, shared sidebar)."""

import streamlit as st

from ui.shared import run_store, sweep_runs_once

st.set_page_config(page_title="Digit Studio", page_icon=":material/draw:", layout="wide")
sweep_runs_once(str(run_store().root))  # temp files of saves that a killed process left behind

PAGES = {
    "home": st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
}
st.session_state["nav_pages"] = PAGES  # lets the home page link to whichever pages exist
navigation = st.navigation(list(PAGES.values()))

with st.sidebar:
    st.caption("Digit Studio: train, explore, draw.")

navigation.run()
