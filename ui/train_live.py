"""The Train page's live panel: the running job's progress, curves and queue, redrawn in place; the same place shows
the run's results once it ends, and is brought into view when a run starts or ends.

Session state: `train_loss_log` (the loss chart's log scale), `train_stop_refused` (a Stop the job manager refused),
`train_painted` (the page has run once in this session), `train_rest_armed` (the deferred charts' rerun is due).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.config import FOLDER_DATASET
from core.data import DATASETS
from core.jobs import JobSnapshot
from core.models import model_spec
from core.store import RunError, RunInfo
from ui import train as ui
from ui.jobs import job_manager, may_stop, stop_job
from ui.results import headline, run_results
from ui.shared import run_store
from ui.train_charts import curves
from ui.train_elsewhere import elsewhere_section, running_elsewhere
from ui.text import escape_markdown
from ui.train_format import data_words, percent, run_name

CORES = ui.usable_cores()
LIVE_REFRESH_SECONDS = ui.live_refresh_seconds(CORES)
FIRST_PAINT = "train_painted"  # set by the session's first run of the page
DRAW_THE_REST_SECONDS = 1.0  # after the first paint has had time to draw Start (plotly.js would hold it up)
SLOT_KEY = "train_live"  # the live panel's container: its CSS class is st-key-train_live
TARGETS = {"live": SLOT_KEY, "results": SLOT_KEY, "table_results": "train_table_results"}
# Brings a part of the page under the app's header. "if_seen": only when some of it is on screen already (the end of
# a run must not pull away someone reading further down). Run once: the element is drawn in one script run only.
# On a busy machine what lies below it may not be drawn yet (the live charts' frame sizes itself once plotly.js has
# loaded), so the page cannot scroll that far: it stopped 24 to 240 px short (measured). For KEEP_MS it is brought
# to its place again as the page grows, until the person scrolls, clicks or types, on the page or in a frame of it
# (the live charts' frame is the app's own; a wheel over it reaches only the frame's window).
KEEP_MS = 5000
SCROLL_SCRIPT = """<script>
setTimeout(() => requestAnimationFrame(() => {
  const find = () => document.querySelector(".st-key-%(key)s");
  const target = find();
  if (!target) return;
  const box = target.getBoundingClientRect();
  if (%(if_seen)s && (box.bottom < 0 || box.top > window.innerHeight)) return;
  const bring = (element) => {
    element.style.scrollMarginTop = "4.5rem";
    element.scrollIntoView({block: "start", behavior: "instant"});
  };
  bring(target);
  const margin = parseFloat(getComputedStyle(target).scrollMarginTop);  // bring's 4.5rem, in px
  let person = false;
  const mark = () => { person = true; };
  for (const view of [window, ...Array.from(document.querySelectorAll("iframe"), (frame) => frame.contentWindow)]) {
    for (const name of ["wheel", "touchstart", "keydown", "mousedown"]) {
      try { view.addEventListener(name, mark, {once: true, capture: true}); } catch (error) {}  // another origin's
    }
  }
  const until = performance.now() + %(keep_ms)d;
  const keep = () => {
    if (person || performance.now() > until) return;
    const element = find();  // missing for a moment while a rerun redraws the panel: looked for again next frame
    if (element && Math.abs(element.getBoundingClientRect().top - margin) > 2) bring(element);
    requestAnimationFrame(keep);
  };
  requestAnimationFrame(keep);
}), 60);
</script>"""


def job_title(snapshot: JobSnapshot) -> str:
    """"Digits CNN (recipe) on scikit-learn digits (8x8)"."""
    config = snapshot.config
    folder = Path(config.image_folder).name if config.image_folder else None  # a fine-tune's digits: by folder name
    data = DATASETS[config.dataset].title if config.dataset in DATASETS else config.dataset
    return f"{model_spec(config.model).title} on {data_words(data, folder) if folder else data}"


def kept_epoch(snapshot: JobSnapshot) -> str:
    """The sentence that says which weights a run that ended early keeps."""
    last = snapshot.epoch_points[-1] if snapshot.epoch_points else None
    if last is None:
        return " No epoch had finished, so there are no weights to keep."
    return f" The run keeps epoch {last.epoch}'s weights and can be used in Predict."


def saved_name(run_id: str | None) -> str:
    """The run's readable name (its id when its metadata cannot be read)."""
    try:
        return run_name(run_store().info(run_id)) if run_id else "-"
    except RunError:
        return str(run_id)


def status_line(snapshot: JobSnapshot, own_job: int | None) -> None:
    """How the job ended, one alert per ending (a reason from the run is shown as text); or a note while it waits."""
    last = snapshot.epoch_points[-1] if snapshot.epoch_points else None
    reason = escape_markdown(snapshot.message.rstrip(".")) or "no reason was given"
    if snapshot.status == "done":
        tested = "Accuracy on the held-out digits" if snapshot.config.dataset == FOLDER_DATASET else "Test accuracy"
        score = f" {tested} {percent(last.test_accuracy)} after epoch {last.epoch:,}." if last else ""
        st.success(f"Finished.{score} Saved as {escape_markdown(saved_name(snapshot.run_id))}.",
                   icon=":material/check_circle:")
    elif snapshot.status == "stopped":
        st.warning(f"Stopped.{kept_epoch(snapshot)}", icon=":material/stop_circle:")
    elif snapshot.status == "diverged":  # the loss or the weights became NaN or infinite
        st.warning(f"Diverged: {reason}.{kept_epoch(snapshot)}", icon=":material/trending_up:")
    elif snapshot.status == "failed":
        st.error(f"Failed: {reason}.", icon=":material/error:")
    elif snapshot.status == "cancelled":
        st.info(f"Cancelled: {reason}.", icon=":material/cancel:")
    elif snapshot.status == "running" and own_job not in (None, snapshot.job_id) and waiting(own_job):
        st.caption("Your run waits in the queue behind this one.")


def waiting(job_id: int) -> bool:
    """Whether the job still waits its turn (not cancelled from the queue since it was submitted)."""
    own = job_manager().snapshot(job_id)
    return own is not None and own.status == "queued"


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


# ---- the slot: live while a job runs or waits, results once it has ended with weights -------------------------------

def first_paint() -> bool:
    """Whether this is the session's first run of the Train page (a fresh visit: nothing of the page loaded yet)."""
    first = FIRST_PAINT not in st.session_state
    st.session_state[FIRST_PAINT] = True
    return first


def live_slot(first: bool = False) -> None:
    """The live panel, or the results of the job that just ended, in one place on the page (st-key-train_live)."""
    with st.container(key=SLOT_KEY):
        snapshot = job_manager().latest()
        info = ended_run(snapshot)
        if snapshot is not None and info is not None:
            ended_view(snapshot, info, first)
            return
        # The bar's slide animation after each update tripled its cost in the browser (bench/bench_live_chart.py).
        st.html("<style>[data-testid='stProgress'] * { transition: none !important; }</style>")
        active = snapshot is not None and snapshot.active
        st.fragment(run_every=LIVE_REFRESH_SECONDS if active else None)(live_view)()
    elsewhere_section()


def ended_run(snapshot: JobSnapshot | None) -> RunInfo | None:
    """The saved run of a job that has ended with weights, or None (still going, failed early, unreadable)."""
    if snapshot is None or snapshot.active or not snapshot.run_id:
        return None
    try:
        info = run_store().info(snapshot.run_id)
    except RunError:
        return None
    return info if info.has_weights else None


def live_view() -> None:
    snapshot = job_manager().latest()
    if snapshot is None:
        if running_elsewhere():  # drawn under this, by ui.train_elsewhere
            return
        st.subheader("Live training")
        st.info("Nothing is training. Press **Start training** above, or **Start fine-tuning** to teach a trained "
                "model your digits: the loss and accuracy curves appear here and "
                f"update {ui.refresh_words(LIVE_REFRESH_SECONDS)}.", icon=":material/monitoring:")
        return
    redraw_page_on_change(snapshot)
    job_header(snapshot)
    queue_panel(job_manager().jobs())
    curves(snapshot)
    if snapshot.active and (note := ui.redraw_note(LIVE_REFRESH_SECONDS, CORES)):
        st.caption(note)


def ended_view(snapshot: JobSnapshot, info: RunInfo, quick: bool) -> None:
    """Where the live panel was: the run's results, its status first and its final curves among them.

    On a session's first run of the page only the headline is drawn, and the charts a moment later: plotly.js's
    first load kept Start from being clickable for 2 s more (bench/bench_page_load.py --after-a-run)."""
    st.subheader(f"Results: {job_title(snapshot)}")
    status_line(snapshot, st.session_state["train_job"])
    queue_panel(job_manager().jobs())
    if quick:
        headline(info)
        st.caption("Drawing the curves, the confusion matrix and the mistakes...")
        st.fragment(run_every=DRAW_THE_REST_SECONDS)(draw_the_rest)()
        return
    run_results(info, curves=lambda: st.fragment(curves)(snapshot), key="train_live")


def draw_the_rest() -> None:
    """Rerun the page once the first paint is on screen (this fragment's first tick after the run that drew it)."""
    if st.session_state.pop("train_rest_armed", False):
        st.rerun(scope="app")
    st.session_state["train_rest_armed"] = True


def redraw_page_on_change(snapshot: JobSnapshot) -> None:
    """Rerun the whole page when the job's run appears (runs table) or ends (results, and polling stops)."""
    seen = st.session_state["train_seen"]
    state = (snapshot.status, snapshot.run_id)
    before = seen.get(snapshot.job_id, state)
    seen[snapshot.job_id] = state
    if before != state and (not snapshot.active or before[1] != snapshot.run_id):
        if not snapshot.active:
            st.session_state["train_scroll"] = "results"
        st.rerun(scope="app")


def job_header(snapshot: JobSnapshot) -> None:
    heading, button = st.columns([4, 1], vertical_alignment="bottom")
    heading.subheader(job_title(snapshot))
    if snapshot.status == "running" and may_stop(snapshot):  # a waiting job's Cancel is in the queue below
        button.button("Stop", key=f"train_stop_{snapshot.job_id}", icon=":material/stop_circle:", width="stretch",
                      on_click=stop_job, args=(snapshot.job_id,))
    fraction = snapshot.progress.fraction if snapshot.progress else 0.0
    st.progress(fraction, text=ui.progress_text(snapshot))
    status_line(snapshot, st.session_state["train_job"])
    if refused := st.session_state.pop("train_stop_refused", None):
        st.error(escape_markdown(refused), icon=":material/block:")


def scroll_into_view(target: str) -> None:
    """Bring a part of the page into view once, from this script run ("live", "results" or "table_results")."""
    if target in TARGETS:
        st.html(SCROLL_SCRIPT % {"key": TARGETS[target], "if_seen": "true" if target == "results" else "false",
                                 "keep_ms": KEEP_MS},
                unsafe_allow_javascript=True)  # our constant script: nothing from a run or the browser is in it
