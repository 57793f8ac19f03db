"""The Train page's saved-runs table: a selection that follows run ids, the chosen runs' curves side by side, their
results, a zip built when asked for, and deleting with one confirmation that names the runs.

st.dataframe reports its selection as row positions, which stay put when the rows under them change: after a delete
the next run slid into the deleted one's row and was still selected. So the picked run ids are kept here, and the
table's key changes with its list of runs (and after every delete): a stale row selection never meets another run.

Runs are named by what they are (model · dataset · epochs · when), every value is text (a table shows a missing
number as "None"), and the picked run's results open under the table, where the eye already is.

Session state: `train_selected` (run ids picked), `train_delete_pending` (run ids a Delete click asks to confirm),
`train_table_version` (bumped by each delete), `train_download` (run id, zip bytes or None, refusal or None),
`train_results` (the run whose results are open under the table), `train_compare_log` (log-scale loss chart).
"""

from __future__ import annotations

import hashlib

import streamlit as st

from core.store import RunError, RunInfo
from ui import train as ui
from ui.jobs import job_manager
from ui.results import run_results
from ui.shared import RUNS_COLUMNS, public_demo, run_store, runs_frame
from ui.text import escape_markdown
from ui.train_format import run_names

SELECTED, PENDING, VERSION, DOWNLOAD = "train_selected", "train_delete_pending", "train_table_version", "train_download"
RESULTS = "train_results"


def table_key(run_ids: list[str]) -> str:
    """The table's widget key: a new one whenever the listed runs change, or a delete happened."""
    digest = hashlib.sha256("\n".join(run_ids).encode()).hexdigest()[:16]
    return f"train_runs_{digest}_{st.session_state.get(VERSION, 0)}"


def plural(count: int, word: str = "run") -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def picked_runs(runs: list[RunInfo], names: dict[str, str]) -> list[RunInfo]:
    """The runs table, returning the runs picked in it (by id, whatever rows they now take)."""
    run_ids = [info.run_id for info in runs]
    picked = [run_id for run_id in st.session_state.get(SELECTED, []) if run_id in run_ids]
    default = {"selection": {"rows": [run_ids.index(run_id) for run_id in picked]}} if picked else None
    event = st.dataframe(runs_frame(runs, names), hide_index=True, width="stretch",
                         on_select="rerun", selection_mode="multi-row", key=table_key(run_ids), column_config=RUNS_COLUMNS,
                         selection_default=default)
    rows = sorted({row for row in event.selection.rows if 0 <= row < len(runs)})
    st.session_state[SELECTED] = [run_ids[row] for row in rows]
    return [runs[row] for row in rows]


def runs_section() -> None:
    """The saved runs: a table to pick from, then what can be done with the picked ones."""
    st.divider()
    st.subheader("Saved runs")
    runs = run_store().list_runs()
    if not runs:
        st.info("Runs you train are saved here, with their curves and weights.", icon=":material/folder_open:")
        return
    names = run_names(runs)  # one name a run, here and in the table, made unique among them all
    chosen = picked_runs(runs, names)
    if message := st.session_state.pop("train_delete_message", None):
        st.warning(message, icon=":material/block:")
    if not chosen:
        st.caption("Tick runs in the table's first column to compare their curves; tick one for the buttons that "
                   "show its results, download it or delete it.")
        return
    run_actions(chosen, names)
    table_results(chosen, names)
    compare_runs(chosen, names)


def run_actions(chosen: list[RunInfo], names: dict[str, str]) -> None:
    columns = st.columns(3)
    single = chosen[0] if len(chosen) == 1 and chosen[0].has_weights else None
    if single is not None:
        columns[0].button("Show results", icon=":material/analytics:", width="stretch",
                          on_click=st.session_state.update,
                          kwargs={RESULTS: single.run_id, "train_scroll": "table_results"})
        with columns[1]:
            download(single, names[single.run_id])
    if (prepared := st.session_state.get(DOWNLOAD)) and (single is None or prepared[0] != single.run_id):
        del st.session_state[DOWNLOAD]  # a zip is kept only while its run stays the one picked
    if public_demo() is not None:
        columns[2].caption("Deleting runs is switched off on this public demo.")
    else:
        columns[2].button(f"Delete {plural(len(chosen))}", icon=":material/delete:", width="stretch",
                          on_click=st.session_state.update, kwargs={PENDING: [info.run_id for info in chosen]})
        confirm_delete({info.run_id: names[info.run_id] for info in chosen})


def download(info: RunInfo, name: str) -> None:
    """"Prepare download" builds the run's zip (never on a mere rerun); then the download button offers it, with the
    run's name (as the table names it: too long for a button) and its file name (the run's id, as the command line's
    export names it) under it."""
    prepared = st.session_state.get(DOWNLOAD)
    if prepared is None or prepared[0] != info.run_id:
        st.button("Prepare download (.zip)", icon=":material/folder_zip:", width="stretch", on_click=prepare_download,
                  args=(info.run_id,), help="Zips the run's metadata and safetensors weights.")
    elif prepared[2] is not None:
        st.error(escape_markdown(prepared[2]), icon=":material/error:")
    else:
        st.download_button("Download the .zip", prepared[1], file_name=f"{info.run_id}.zip", mime="application/zip",
                           icon=":material/download:", width="stretch", on_click="ignore")
        st.caption(f"{escape_markdown(name)}, saved as {escape_markdown(info.run_id)}.zip")  # the name whole, wrapped


def prepare_download(run_id: str) -> None:
    """Build one run's zip, read from disk now; a refusal is kept to be shown in its place."""
    from core.archive import run_archive

    try:
        st.session_state[DOWNLOAD] = (run_id, run_archive(run_store().info(run_id)), None)
    except RunError as error:
        st.session_state[DOWNLOAD] = (run_id, None, str(error))
    except OSError as error:  # its reason, not its path: the server's folders are not the visitor's business
        st.session_state[DOWNLOAD] = (run_id, None, f"Run {run_id} cannot be read: {error.strerror or error}.")


def confirm_delete(chosen: dict[str, str]) -> None:
    """The one question before deleting: it lists the runs by name (their ids after), and Delete removes exactly
    those. `chosen` maps each picked run's id to its name."""
    pending = st.session_state.get(PENDING)
    if not pending:
        return
    if pending != list(chosen):  # the selection moved on since Delete was pressed: ask again for the new one
        del st.session_state[PENDING]
        return
    listed = "\n".join(f"- {escape_markdown(chosen[run_id])} (run id {escape_markdown(run_id)})" for run_id in pending)
    whose = "Their folders" if len(pending) > 1 else "Its folder"
    st.warning(f"Delete {plural(len(pending))} for good? {whose} and weights are removed:\n\n{listed}",
               icon=":material/delete_forever:")
    yes, no = st.columns(2)
    yes.button(f"Delete {plural(len(pending))} for good", type="primary", key="train_delete_confirm",
               on_click=delete_runs, args=(list(pending),), width="stretch")
    no.button("Keep them", key="train_delete_keep", on_click=st.session_state.pop, args=(PENDING, None),
              width="stretch")


def delete_runs(run_ids: list[str]) -> None:
    """Delete these runs (never one still training, nor any on a public demo), then clear the selection."""
    st.session_state.pop(PENDING, None)
    st.session_state[SELECTED] = []
    st.session_state[VERSION] = st.session_state.get(VERSION, 0) + 1  # a fresh table: no row stays selected
    if public_demo() is not None:
        st.session_state["train_delete_message"] = "Deleting runs is switched off on this public demo."
        return
    running = {snapshot.run_id for snapshot in job_manager().jobs() if snapshot.active}
    store, problems = run_store(), []
    for run_id in run_ids:
        try:
            if run_id in running:
                raise RunError(f"{run_id} is still training: stop it before deleting it.")
            store.delete(run_id)
        except RunError as error:  # one that cannot go (training, or gone already) leaves the others to go
            problems.append(str(error))
    if st.session_state.get(RESULTS) in run_ids:
        st.session_state[RESULTS] = None
    if problems:
        st.session_state["train_delete_message"] = escape_markdown(" ".join(problems))


def table_results(chosen: list[RunInfo], names: dict[str, str]) -> None:
    """The results of the run "Show results" opened, under the buttons, while that run stays the one picked."""
    shown = st.session_state.get(RESULTS)
    if len(chosen) != 1 or chosen[0].run_id != shown:
        return
    with st.container(key="train_table_results", border=True):
        st.subheader(f"Results: {escape_markdown(names[shown])}")
        run_results(chosen[0], key="train_table")


def compare_runs(chosen: list[RunInfo], names: dict[str, str]) -> None:
    readable = [info for info in chosen if info.meta and info.get("history")]
    if not readable:
        return
    words, scale = st.columns([3, 1], vertical_alignment="center")
    words.markdown("**Curves of the picked runs**, a colour each; drag to zoom, double-click to see them whole."
                   if len(readable) > 1 else "**Curves of this run**: drag to zoom, double-click to see it whole.")
    log = scale.toggle("Log-scale loss", key="train_compare_log")
    left, right = st.columns(2)
    left.plotly_chart(ui.comparison_figure(readable, "test_accuracy", "Test accuracy by epoch", True),
                      key="train_compare_accuracy", config={"displayModeBar": False})
    right.plotly_chart(ui.comparison_figure(readable, "train_loss", "Training loss by epoch", False, log=log),
                       key="train_compare_loss", config={"displayModeBar": False})
    for group in ui.same_curves(readable):
        runs = ui.in_words([f"**{escape_markdown(names.get(info.run_id, info.run_id))}**" for info in group])
        st.caption(f"{runs} have the same curves (the same settings and seed train the same run): their lines lie "
                   "one on top of another.")
