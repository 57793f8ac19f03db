"""What every page needs: where data and runs live, which datasets are here, and the device line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from core.data import DATASETS, default_data_dir, is_available, missing_message
from core.demo import DemoPolicy, demo_policy
from core.store import RunInfo, RunStore, default_runs_dir
from ui.train_format import RUNNING, run_row

if TYPE_CHECKING:
    import pandas as pd

NUMBERS = st.column_config.TextColumn(alignment="right")
RUNS_COLUMNS = {"Run": st.column_config.TextColumn(width="large"), "Epochs": NUMBERS, "Test accuracy": NUMBERS,
                "Test loss": NUMBERS, "Training time": NUMBERS}  # st.dataframe's column_config for runs_frame

APP_FOLDER = Path(__file__).resolve().parents[1]


def metric_row():
    """A row for st.metric figures that wraps: on a phone two or three a line, where st.columns stacks them one a
    line (Train's five results took a whole screen)."""
    return st.container(horizontal=True, gap="medium")


def run_inside_the_frame() -> None:
    """Rerun inside streamlit_app.py's frame when Streamlit ran this page without it.

    Until some session has run st.navigation, Streamlit serves a pages/ folder the legacy way: a server's first
    request for /train (a tab left open across a restart reconnects so) ran the page alone, with the folder's
    file names for navigation and no page config. The flag is Streamlit's own (1.67, pinned); the browser test
    test_a_page_opened_first_after_a_start_shows_the_frame fails if it stops meaning this.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False  # what st.navigation sets; the rerun runs the frame first
        st.rerun()


def data_dir() -> Path:
    """The data root ($DIGIT_STUDIO_DATA or ./data)."""
    return default_data_dir()


def run_store() -> RunStore:
    """The runs folder ($DIGIT_STUDIO_RUNS or ./runs)."""
    return RunStore(default_runs_dir())


def public_demo() -> DemoPolicy | None:
    """The public demo's limits ($DIGIT_STUDIO_PUBLIC_DEMO), or None when the app runs for its owner."""
    return demo_policy()


def shown_path(path: Path) -> str:
    """A folder as a page shows it: relative to the app's folder when inside it, never the server's full layout.

    Outside the app's folder it is shown as configured (the owner chose it), or by its name alone on a public demo.
    """
    try:
        return str(path.resolve().relative_to(APP_FOLDER)) or "."
    except (ValueError, OSError):
        return path.name if public_demo() else str(path)


def available_datasets() -> dict[str, str | None]:
    """Each dataset name -> None when it can be used now, else the sentence saying how to get it."""
    root = data_dir()
    return {name: None if is_available(name, root) else missing_message(name, Path(shown_path(root)))
            for name in DATASETS}


@st.cache_data(ttl=3600)
def device_description() -> str:
    """The device training will use, in words."""
    import torch

    from core.training import resolve_device

    device = resolve_device()
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(0)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    threads = torch.get_num_threads()
    return f"CPU, {threads} thread{'' if threads == 1 else 's'}"


def runs_frame(runs: list[RunInfo], names: dict[str, str], running: str = RUNNING) -> pd.DataFrame:
    """The runs table as Home and Train show it, a row a run (ui.train_format.run_row, a run in training said as
    `running`), with a "Problem" column only when a run has one."""
    import pandas as pd  # here, not at the top: its ~0.4 s import would delay a first visit with no runs yet

    table = pd.DataFrame([run_row(info, names[info.run_id], running) for info in runs])
    return table if table["Problem"].any() else table.drop(columns="Problem")


@st.cache_resource(show_spinner=False)
def sweep_runs_once(root: str) -> int:
    """Remove temp files that saves killed midway left in `root`; once per process and folder, not every rerun."""
    try:
        return RunStore(root).sweep()
    except OSError:  # an unreadable runs folder is reported where runs are listed, not at start
        return 0
