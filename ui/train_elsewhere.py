"""The Train page's runs trained elsewhere: started from the command line, by torchrun, by another Digit Studio server or
on another machine writing to the same runs folder. Each is followed live through its event log (core.runlog), with
the same progress and curves as this server's own runs, and says how it ended once it has.

Everything a followed run's log says (model title, host name, reason) came from a file: it is shown as text only.

Session state: `train_elsewhere_running` (run ids last drawn running), `train_elsewhere_ended` (runs that ended while
this session watched, newest last), `train_elsewhere_rerun` (ticks until the page redraws its runs table; 0: not due).
"""

from __future__ import annotations

import os
import time

import streamlit as st

from core.data import DATASETS
from core.runlog import FollowedRun, RunFollower
from core.store import default_runs_dir
from ui import train as ui
from ui.jobs import job_manager
from ui.live_chart import live_charts
from ui.train_charts import chart_controls, curves, draw_charts
from ui.text import escape_markdown
from ui.train_format import percent

RUNNING, ENDED, RERUN = "train_elsewhere_running", "train_elsewhere_ended", "train_elsewhere_rerun"
WARM = "train_elsewhere_warm"
ENDED_SHOWN = 3
TABLE_AFTER_TICKS = 3
IDLE_LOOK_SECONDS = 1.0  # with nothing to draw, a look at the runs folder is a few file names: a new run shows soon
SILENT_AFTER_SECONDS = 30.0  # a run quiet for longer is said to be so (a long evaluation, a slow link)
ORIGIN_WORDS = {"command line": "the command line", "torchrun": "torchrun", "app": "another Digit Studio server"}


@st.cache_resource(show_spinner=False)
def _follower_for(runs_dir: str) -> RunFollower:
    return RunFollower(runs_dir)


def follower() -> RunFollower:
    """The runs folder's follower, shared by every session of this server."""
    return _follower_for(str(default_runs_dir().resolve()))


def followed_runs() -> list[FollowedRun]:
    """Runs trained by other processes: running ones, then those that ended lately. This server's jobs are not
    among them (they are drawn from the job manager, with Stop)."""
    own = {job.run_id for job in job_manager().jobs() if job.run_id}
    return follower().runs(skip=own, skip_pid=os.getpid())


def running_elsewhere() -> list[FollowedRun]:
    return [run for run in followed_runs() if run.active]


def track(runs: list[FollowedRun]) -> bool:
    """Note which runs run and which ended since this session last looked; True when that changed."""
    running = {run.run_id for run in runs if run.active}
    before = set(st.session_state.get(RUNNING, ()))
    st.session_state[RUNNING] = sorted(running)
    gone = before - running
    if gone:
        ended = [run_id for run_id in st.session_state.get(ENDED, []) if run_id not in gone]
        st.session_state[ENDED] = (ended + sorted(gone))[-ENDED_SHOWN:]
    return running != before


def elsewhere_section() -> None:
    """The runs of other processes: the ended ones drawn once, the running ones in a fragment that polls the folder
    (so a run started after the page was opened appears by itself)."""
    runs = followed_runs()
    track(runs)
    by_id = {run.run_id: run for run in runs}
    for run_id in reversed(st.session_state.get(ENDED, [])):
        if run_id in by_id and not by_id[run_id].active:
            ended_panel(by_id[run_id])
    drawing = any(run.active for run in runs)  # redrawing charts costs the browser: as often as a job's, then
    st.fragment(run_every=ui.live_refresh_seconds(ui.usable_cores()) if drawing else IDLE_LOOK_SECONDS)(live_elsewhere)()


def live_elsewhere() -> None:
    """Each running run's panel. The whole page is redrawn when a run ends (its result, the runs table) and a few ticks
    after a run appears (its row in the table, and the charts' slower redraw): its curves are drawn at once, and the
    browser draws them before it has the whole page to redraw."""
    runs = followed_runs()
    before = set(st.session_state.get(RUNNING, ()))
    appeared = track(runs)
    countdown = st.session_state.get(RERUN, 0)
    if before - set(st.session_state[RUNNING]) or countdown == 1:
        st.session_state[RERUN] = 0
        st.rerun(scope="app")
    st.session_state[RERUN] = TABLE_AFTER_TICKS if appeared else max(0, countdown - 1)
    running: list[FollowedRun | None] = [run for run in runs if run.active]
    if st.session_state.get(WARM) or running:
        for slot, run in enumerate(running or [None]):
            live_panel(slot, run)
    st.session_state[WARM] = True  # from the first tick after the page's first paint on


def title(run: FollowedRun) -> str:
    """"Digits CNN (recipe) on scikit-learn digits (8x8)", from what the run's log says."""
    dataset = DATASETS[run.dataset].title if run.dataset in DATASETS else run.dataset
    return f"{run.model_title or run.model} on {dataset}"


def where(run: FollowedRun) -> str:
    """Who trains it and where: "Started from the command line on this machine (process 1234)"."""
    machine = "on this machine" if run.on_this_host else f"on {escape_markdown(run.host)}"  # the log's words: text
    return f"Started from {ORIGIN_WORDS.get(run.origin, run.origin)} {machine} (process {run.pid})"


def how_to_stop(run: FollowedRun) -> str:
    """Stop is for this server's runs: the others are stopped where they were started."""
    kept = "it keeps its last complete epoch"
    if not run.on_this_host:
        return f"Stop it where it runs, on {escape_markdown(run.host)}: Ctrl-C in its terminal; {kept}."
    if run.origin == "app":
        return f"Stop it from the Train page of the server that started it; {kept}."
    if run.origin == "torchrun":
        return f"Stop it with Ctrl-C in the terminal that launched it (every process stops); {kept}."
    return f"Stop it with Ctrl-C in its terminal, or `kill -INT {run.pid}`; {kept}."


def live_panel(slot: int, run: FollowedRun | None) -> None:
    """A running run's heading, progress and curves. The charts keep their place (and their frame, with plotly.js
    loaded) from one run to the next: with no run, slot 0 holds them empty and out of sight, so that a run started
    elsewhere has its curves drawn at once, not after plotly.js's first load (seconds on a busy machine)."""
    with st.container(key=f"train_elsewhere_slot_{slot}"):
        heading = st.container(key=f"train_elsewhere_slot_{slot}_heading")  # the same blocks with or without a run
        charts = st.container(key=f"train_elsewhere_slot_{slot}_chart_box")
    if run is None:
        with charts:
            live_charts(None, None, height=0, key=f"train_elsewhere_slot_{slot}_charts")
        return
    with heading, st.container(key=f"train_elsewhere_{run.run_id}"):
        st.subheader(escape_markdown(title(run)))
        st.caption(f"{where(run)}. {how_to_stop(run)}")
        fraction = run.progress.fraction if run.progress else 0.0
        st.progress(fraction, text=ui.progress_text(run))
        quiet = time.time() - run.last_heard
        if quiet > SILENT_AFTER_SECONDS:
            st.caption(f"Not heard from for {quiet:,.0f} s.")
        log = chart_controls(f"train_elsewhere_slot_{slot}")
    with charts:
        draw_charts(run, log=log, key=f"train_elsewhere_slot_{slot}")


def ended_panel(run: FollowedRun) -> None:
    with st.container(key=f"train_elsewhere_ended_{run.run_id}", border=True):
        st.subheader(escape_markdown(f"Ended elsewhere: {title(run)}"))
        ended_line(run)
        st.caption(f"{where(run)}. Tick it in the saved runs table below to see its confusion matrix and mistakes.")
        followed_curves(run)


def ended_line(run: FollowedRun) -> None:
    last = run.epoch_points[-1] if run.epoch_points else None
    kept = f" It keeps epoch {last.epoch:,}'s weights." if last else " No epoch had finished, so it has no weights."
    reason = escape_markdown(run.message.rstrip(".")) or "no reason was given"
    if run.status == "done":
        score = f" Test accuracy {percent(last.test_accuracy)} after epoch {last.epoch:,}." if last else ""
        st.success(f"Finished.{score}", icon=":material/check_circle:")
    elif run.status in ("stopped", "diverged"):
        st.warning(f"{run.status.capitalize()}: {reason}.{kept}", icon=":material/stop_circle:")
    elif run.status == "failed":
        st.error(f"Failed: {reason}.", icon=":material/error:")
    else:  # interrupted: its process is gone, or its machine went quiet
        st.warning(f"Interrupted: its process ended without saying how.{kept}", icon=":material/warning:")


def followed_curves(run: FollowedRun) -> None:
    curves(run, key=f"train_elsewhere_{'live' if run.active else 'ended'}_{run.run_id}")
