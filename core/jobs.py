"""Training jobs in the background: one worker thread trains one run at a time, the rest wait in a queue.

The manager is plain Python: a page, a test or a script submits settings, polls `snapshot()` and asks
for a stop. The worker consumes `RecordedTraining.events`, so every job is also a run folder on disk.
"""

from __future__ import annotations

import atexit
import itertools
import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol

if TYPE_CHECKING:  # torch is imported by the worker, not by whoever merely looks at jobs
    from core.recipes import Recipe
    from core.training import TrainConfig, TrainingEvent

JobStatus = Literal["queued", "running", "done", "stopped", "failed", "diverged", "cancelled"]
ENDED: frozenset[str] = frozenset({"done", "stopped", "failed", "diverged", "cancelled"})
MAX_QUEUED = 2  # on a 2-core machine a longer queue is hours of waiting: refuse instead
MAX_ENDED_JOBS = 8  # finished jobs stay on disk as runs; memory keeps only the latest few
EXIT_STOP_SECONDS = 10.0  # a stop lands within a step; saving the last epoch's weights takes well under this
MAX_TRAIN_POINTS = 1000  # the live charts resend the whole history on each redraw: ~1k points build in ~2 ms


class JobRefused(RuntimeError):
    """A job that cannot be queued now; str() says why."""


@dataclass(frozen=True)
class TrainPoint:
    """One point of the live training curve."""

    epoch_progress: float  # epochs done, fractional: 2.5 is half-way through the third epoch
    loss: float
    accuracy: float


@dataclass(frozen=True)
class EpochPoint:
    """One epoch's end: train and test metrics."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    collection_accuracy: float | None = None  # a fine-tune's, on the image folder's held-out part


@dataclass(frozen=True)
class Progress:
    """Where a running job stands, for the progress bar."""

    epoch: int
    epochs: int
    step: int
    total_steps: int
    images_per_second: float
    eta_seconds: float
    elapsed_seconds: float

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / max(self.total_steps, 1))


class CurveBuffer:
    """Training-curve points kept under a fixed count by halving the resolution when full."""

    def __init__(self, capacity: int = MAX_TRAIN_POINTS) -> None:
        self.capacity = capacity
        self.points: list[TrainPoint] = []
        self.stride = 1  # keep every `stride`-th point offered
        self._offered = 0

    def add(self, point: TrainPoint) -> None:
        index, self._offered = self._offered, self._offered + 1
        if index % self.stride:
            return
        self.points.append(point)
        if len(self.points) >= self.capacity:
            self.points = self.points[::2]  # uniform coverage of the whole run, at half the density
            self.stride *= 2


EVENT_KINDS = {"Started": "started", "BatchProgress": "batch", "EpochEnd": "epoch", "Finished": "finished"}


@dataclass(frozen=True)
class EventRecord:
    """A training event as plain data: its kind (started, batch, epoch, finished) and its fields, as core.training's
    event of that kind has them. What a run's event log holds, one a line (core.runlog)."""

    kind: str
    fields: dict[str, Any]


def as_record(event: "TrainingEvent | EventRecord") -> EventRecord:
    """The event as plain data (by class name: looking at an event must not import torch). Its fields are numbers and
    text, taken as they are: asdict's deep copy of each cost 6 times as much, on every training step."""
    if isinstance(event, EventRecord):
        return event
    values = {item.name: getattr(event, item.name) for item in dataclass_fields(event)}
    return EventRecord(EVENT_KINDS[type(event).__name__], values)


class LiveState(Protocol):
    """What a page draws of a training as it runs: a job here, or a run followed through its event log."""

    progress: Progress | None
    curve: CurveBuffer
    epochs: list[EpochPoint]
    message: str
    train_size: int  # training images, once started: what the run's figure to reach depends on


def fold_event(state: LiveState, record: EventRecord) -> None:
    """Fold one event into what a page draws: progress, training curve, epoch ends, the final message."""
    fields = record.fields
    if record.kind == "started":
        state.progress = Progress(0, fields["epochs"], 0, fields["total_steps"], 0.0, 0.0, 0.0)
        state.train_size = fields["train_size"]
    elif record.kind == "batch":
        _fold_batch(state, fields)
    elif record.kind == "epoch":
        _fold_epoch(state, fields)
    elif record.kind == "finished":
        state.message = fields["reason"]


def _number(value: float | None) -> float:
    return math.nan if value is None else value  # a diverged run's loss: a gap in the curve


def _fold_batch(state: LiveState, fields: dict[str, Any]) -> None:
    steps_per_epoch = fields["total_steps"] / max(fields["epochs"], 1)
    state.curve.add(TrainPoint(fields["step"] / steps_per_epoch, _number(fields["loss"]), fields["accuracy"]))
    state.progress = Progress(fields["epoch"], fields["epochs"], fields["step"], fields["total_steps"],
                              fields["images_per_second"], fields["eta_seconds"], fields["elapsed_seconds"])


def _fold_epoch(state: LiveState, fields: dict[str, Any]) -> None:
    state.epochs.append(EpochPoint(fields["epoch"], fields["train_loss"], fields["train_accuracy"],
                                   fields["test_loss"], fields["test_accuracy"], fields.get("collection_accuracy")))
    if state.progress is not None:
        epoch, epochs, elapsed = fields["epoch"], state.progress.epochs, fields["elapsed_seconds"]
        remaining = (epochs - epoch) * elapsed / max(epoch, 1)
        state.progress = Progress(epoch, epochs, fields["step"], state.progress.total_steps,
                                  fields["images_per_second"], remaining, elapsed)


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's state that a page can draw without locks."""

    job_id: int
    status: JobStatus
    config: "TrainConfig"
    recipe: "Recipe | None"
    run_id: str | None
    queue_position: int  # 1 = next to start; 0 when not waiting
    message: str
    progress: Progress | None
    train_points: tuple[TrainPoint, ...]
    epoch_points: tuple[EpochPoint, ...]
    submitted_at: float
    finished_at: float | None
    owner: str | None = None  # who submitted it (a page passes its browser session), None when nobody said
    processes: int = 1  # training processes (torch.distributed)
    train_size: int = 0  # training images, once started

    @property
    def active(self) -> bool:
        """Queued or running: the page should keep polling."""
        return self.status not in ENDED


@dataclass(eq=False)
class Job:
    """One submitted training: its settings, its stop flag, and what the worker has recorded so far."""

    job_id: int
    config: "TrainConfig"
    recipe: "Recipe | None" = None
    status: JobStatus = "queued"
    run_id: str | None = None
    message: str = ""
    progress: Progress | None = None
    curve: CurveBuffer = field(default_factory=CurveBuffer)
    epochs: list[EpochPoint] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    submitted_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    owner: str | None = None
    processes: int = 1  # more: trained by the command line on that many processes (core.launched_job)
    train_size: int = 0


class JobManager:
    """Runs submitted trainings one after another in a single daemon worker thread."""

    def __init__(self, runs_dir: Path | str, *, max_queued: int = MAX_QUEUED,
                 run_job: "Callable[[Job, JobManager], None] | None" = None) -> None:
        self.runs_dir = Path(runs_dir)
        self.max_queued = max_queued
        self._run_job = run_job or _record_training
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: deque[Job] = deque()
        self._current: Job | None = None
        self._ended: deque[Job] = deque(maxlen=MAX_ENDED_JOBS)
        self._wake = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="digit-studio-trainer", daemon=True)
        self._worker.start()
        # A daemon thread still inside torch when the interpreter finalizes aborts the process ("terminate
        # called without an active exception"); stopping first also saves the run as stopped, not interrupted.
        atexit.register(self.stop_all, EXIT_STOP_SECONDS)

    def submit(self, config: "TrainConfig", recipe: "Recipe | None" = None, *, owner: str | None = None,
               owner_limit: int | None = None, processes: int = 1) -> int:
        """Queue a training; returns its job id. JobRefused when the queue is full, or when `owner` already has
        `owner_limit` jobs waiting or running (a public demo's one run per visitor)."""
        with self._lock:
            if reason := self._refusal(owner, owner_limit):
                raise JobRefused(reason)
            job = Job(next(self._ids), config, recipe, owner=owner, processes=processes)
            self._waiting.append(job)
        self._wake.put(job.job_id)
        return job.job_id

    def refusal(self, owner: str | None = None, owner_limit: int | None = None) -> str | None:
        """Why a submit with these arguments would be refused now, or None when it would be queued."""
        with self._lock:
            return self._refusal(owner, owner_limit)

    def stop(self, job_id: int, *, owner: str | None = None) -> bool:
        """Stop a running job (it keeps its last complete epoch) or cancel a queued one; False if unknown or ended.

        With `owner`, only that owner's job: JobRefused for anyone else's (visitors of a public demo).
        """
        with self._lock:
            if owner is not None and any(job.job_id == job_id and job.owner != owner for job in self._all_jobs()):
                raise JobRefused("This training was started by someone else: only they can stop it.")
            if self._current is not None and self._current.job_id == job_id:
                self._current.stop_requested.set()
                return True
            for job in self._waiting:
                if job.job_id == job_id:
                    self._waiting.remove(job)
                    self._end(job, "cancelled", "cancelled before it started")
                    return True
        return False

    def stop_all(self, timeout: float) -> bool:
        """Cancel every queued job, stop the running one and wait for it to end; False if it did not in time."""
        with self._lock:
            waiting = list(self._waiting)
            running = self._current
        for job in waiting:
            self.stop(job.job_id)
        if running is not None:
            self.stop(running.job_id)
        return self.wait_idle(timeout)

    def snapshot(self, job_id: int) -> JobSnapshot | None:
        """The job's current state, or None when it is unknown (or long forgotten)."""
        with self._lock:
            for job in self._all_jobs():
                if job.job_id == job_id:
                    return self._snapshot(job)
        return None

    def jobs(self) -> list[JobSnapshot]:
        """Every job still in memory, newest first: waiting, then running, then recently ended."""
        with self._lock:
            return sorted((self._snapshot(job) for job in self._all_jobs()), key=lambda s: -s.job_id)

    def current(self) -> JobSnapshot | None:
        """The running job, if any."""
        with self._lock:
            return self._snapshot(self._current) if self._current is not None else None

    def latest(self) -> JobSnapshot | None:
        """The job a page should show: the running one, else the next queued, else the last ended."""
        with self._lock:
            job = self._current or (self._waiting[0] if self._waiting else None) or \
                (self._ended[-1] if self._ended else None)
            return self._snapshot(job) if job is not None else None

    def queue_full(self) -> bool:
        """Whether a submit now would be refused."""
        with self._lock:
            return self._queue_full()

    def busy(self) -> bool:
        """Whether a job is running or waiting."""
        with self._lock:
            return self._current is not None or bool(self._waiting)

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing runs or waits (tests, scripts); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.busy():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    # ---- called by the worker --------------------------------------------------------------------------------

    def record(self, job: Job, event: "TrainingEvent | EventRecord") -> None:
        """Fold one training event into the job's state: an event of this process's training, or one read from a
        run's event log (core.runlog), as a job that trains in another process follows its run."""
        with self._lock:
            fold_event(job, as_record(event))

    def set_run(self, job: Job, run_id: str) -> None:
        """The run folder the job writes to, known once its training is built."""
        with self._lock:
            job.run_id = run_id

    def finish(self, job: Job, status: JobStatus, message: str) -> None:
        """Mark the running job ended."""
        with self._lock:
            self._current = None
            self._end(job, status, message)

    # ---- internals ------------------------------------------------------------------------------------------

    def _queue_full(self) -> bool:  # the caller holds the lock
        return len(self._waiting) >= self.max_queued

    def _refusal(self, owner: str | None, owner_limit: int | None) -> str | None:  # the caller holds the lock
        if self._queue_full():
            return (f"{len(self._waiting)} trainings are already waiting behind the one running; "
                    "stop one or wait for it to finish.")
        running = [self._current] if self._current is not None else []
        owned = sum(1 for job in [*self._waiting, *running] if job.owner == owner)
        if owner is not None and owner_limit is not None and owned >= owner_limit:
            return (f"You already have {owned} training{'s' if owned != 1 else ''} waiting or running, the most "
                    "allowed here: wait for it to end, or stop it.")
        return None

    def _all_jobs(self) -> list[Job]:
        running = [self._current] if self._current is not None else []
        return [*self._waiting, *running, *self._ended]

    def _end(self, job: Job, status: JobStatus, message: str) -> None:
        job.status, job.message, job.finished_at = status, message, time.time()
        self._ended.append(job)

    def _snapshot(self, job: Job) -> JobSnapshot:
        position = next((i + 1 for i, waiting in enumerate(self._waiting) if waiting is job), 0)
        return JobSnapshot(job.job_id, job.status, job.config, job.recipe, job.run_id, position, job.message,
                           job.progress, tuple(job.curve.points), tuple(job.epochs), job.submitted_at,
                           job.finished_at, job.owner, job.processes, job.train_size)

    def _next_job(self) -> Job | None:
        with self._lock:
            if not self._waiting:
                return None
            job = self._current = self._waiting.popleft()
            job.status = "running"
            return job

    def _work(self) -> None:
        while True:
            self._wake.get()
            while (job := self._next_job()) is not None:
                try:
                    self._run_job(job, self)
                except Exception as error:  # the worker must survive anything a job does
                    self.finish(job, "failed", f"{type(error).__name__}: {error}")
                if job.status == "running":  # a run_job that forgot to finish its job
                    self.finish(job, "failed", "training ended without reporting how")


def _record_training(job: Job, manager: JobManager) -> None:
    """The real job: train with the run saved as it goes, folding every event into the job."""
    from core.data import DatasetUnavailable
    from core.record import RecordedTraining
    from core.store import RunError, RunStore
    from core.training import ConfigError, Finished

    if job.processes > 1:
        from core.launched_job import run_launched

        run_launched(job, manager)
        return
    try:
        recorded = RecordedTraining(job.config, RunStore(manager.runs_dir), recipe=job.recipe, origin="app")
    except (ConfigError, DatasetUnavailable, RunError) as error:  # RunError: a run to continue that cannot be loaded
        manager.finish(job, "failed", str(error))
        return
    for event in recorded.events(job.stop_requested):
        if job.run_id is None:  # the run folder exists once the first event has been saved
            manager.set_run(job, recorded.run_id)
        manager.record(job, event)
        if isinstance(event, Finished):
            manager.finish(job, event.status, event.reason)
