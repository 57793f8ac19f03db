"""The Train page's live panel, below the charts' heading: what the job's status means, and the queue with Cancel."""

from __future__ import annotations

import streamlit as st

from core.data import DATASETS
from core.jobs import JobSnapshot
from core.models import model_spec
from ui.jobs import may_stop, stop_job
from ui.text import escape_markdown


def job_title(snapshot: JobSnapshot) -> str:
    """"Digits CNN (recipe) on scikit-learn digits (8x8)"."""
    return f"{model_spec(snapshot.config.model).title} on {DATASETS[snapshot.config.dataset].title}"


def kept_epoch(snapshot: JobSnapshot) -> str:
    """The sentence that says which weights a run that ended early keeps."""
    last = snapshot.epoch_points[-1] if snapshot.epoch_points else None
    if last is None:
        return " No epoch had finished, so there are no weights to keep."
    return f" The run keeps epoch {last.epoch}'s weights and can be used in Predict."


def status_line(snapshot: JobSnapshot, own_job: int | None) -> None:
    """How the job ended, one alert per ending (a reason from the run is shown as text); or a note while it waits."""
    last = snapshot.epoch_points[-1] if snapshot.epoch_points else None
    reason = escape_markdown(snapshot.message.rstrip(".")) or "no reason was given"
    if snapshot.status == "done":
        score = f" Test accuracy {last.test_accuracy:.2%} after epoch {last.epoch}." if last else ""
        st.success(f"Finished.{score} Saved as run {escape_markdown(snapshot.run_id)}.", icon=":material/check_circle:")
    elif snapshot.status == "stopped":
        st.warning(f"Stopped.{kept_epoch(snapshot)}", icon=":material/stop_circle:")
    elif snapshot.status == "diverged":  # the loss or the weights became NaN or infinite
        st.warning(f"Diverged: {reason}.{kept_epoch(snapshot)}", icon=":material/trending_up:")
    elif snapshot.status == "failed":
        st.error(f"Failed: {reason}.", icon=":material/error:")
    elif snapshot.status == "cancelled":
        st.info(f"Cancelled: {reason}.", icon=":material/cancel:")
    elif snapshot.status == "running" and own_job not in (None, snapshot.job_id):
        st.caption("Your run waits in the queue behind this one.")


def queue_line(snapshot: JobSnapshot) -> str:
    """One waiting job in words: position, model, data and the settings that decide how long it takes."""
    config = snapshot.config
    return (f"{snapshot.queue_position}. {job_title(snapshot)} · {config.epochs:,} epoch{'s' if config.epochs != 1 else ''}"
            f" · batch size {config.batch_size:,} · learning rate {config.learning_rate:g}")


def queue_panel(jobs: list[JobSnapshot]) -> None:
    """The trainings waiting for the running one, next first, each with Cancel (one's own only, on a public demo)."""
    waiting = sorted((job for job in jobs if job.status == "queued"), key=lambda job: job.queue_position)
    if not waiting:
        return
    st.markdown(f"**Waiting in the queue ({len(waiting)})**")
    for job in waiting:
        words, button = st.columns([5, 1], vertical_alignment="center")
        words.markdown(escape_markdown(queue_line(job)))
        if may_stop(job):
            button.button("Cancel", key=f"train_cancel_{job.job_id}", icon=":material/cancel:", width="stretch",
                          on_click=stop_job, args=(job.job_id,))
