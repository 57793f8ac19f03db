"""The process's one training job manager, who may stop which job, and the sidebar line that shows its job on every
page (torch-free)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.jobs import JobManager, JobRefused, JobSnapshot
from core.store import default_runs_dir
from ui.shared import public_demo

SIDEBAR_REFRESH_SECONDS = 2.0


@st.cache_resource(show_spinner=False)
def _manager_for(runs_dir: str) -> JobManager:
    return JobManager(Path(runs_dir))


def job_manager() -> JobManager:
    """The job manager for the current runs folder: every session and tab of this process sees the same jobs."""
    return _manager_for(str(default_runs_dir().resolve()))


def visitor_id() -> str | None:
    """This browser session's id: the owner of the jobs it starts (None outside a served app)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx()
    return context.session_id if context is not None else None


def may_stop(snapshot: JobSnapshot) -> bool:
    """Whether this session is offered Stop or Cancel for a job: always, except another visitor's on a public demo."""
    return public_demo() is None or snapshot.owner == visitor_id()


def stop_job(job_id: int) -> None:
    """A Stop or Cancel button's callback; on a public demo the job manager refuses another visitor's job."""
    try:
        job_manager().stop(job_id, owner=visitor_id() if public_demo() else None)
    except JobRefused as error:
        st.session_state["train_stop_refused"] = str(error)


def sidebar_job_status(train_page: st.Page) -> None:
    """A short line about the running job, kept fresh while one runs, so training is visible from every page."""
    busy = job_manager().busy()
    st.fragment(run_every=SIDEBAR_REFRESH_SECONDS if busy else None)(_job_line)(train_page)


def _job_line(train_page: st.Page) -> None:
    snapshot = job_manager().current()
    if snapshot is None:
        return
    progress = snapshot.progress
    where = f"epoch {max(progress.epoch, 1)}/{progress.epochs}" if progress else "starting"
    waiting = sum(1 for job in job_manager().jobs() if job.status == "queued")
    queued = f", {waiting} waiting" if waiting else ""
    from core.models import model_spec  # torch: loaded already, since a job trains in this process

    title = model_spec(snapshot.config.model).title
    st.progress(progress.fraction if progress else 0.0, text=f"Training {title}: {where}{queued}")
    st.page_link(train_page, label="Watch it on the Train page", icon=":material/monitoring:")
