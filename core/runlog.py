"""A run's event log: its training events appended one JSON line at a time to `events.jsonl` in the run folder, so
that any process can follow a run live, wherever it was started (the command line, torchrun, another server or
machine writing to the same runs folder).

The writer (RecordedTraining) writes each line with one append and no buffering, and keeps the log small: batch
progress at most every BATCH_INTERVAL (growing with the run's length, so 1,000 epochs stay a few thousand lines),
every epoch end, and the start and the end. The reader tails it by byte offset: a torn last line waits for its end,
every line is checked (the file is untrusted: a bad line is skipped, never fatal), and neither the log nor its
folder is read through a link.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from core.jobs import (EpochPoint, EventRecord, CurveBuffer, Progress, TrainPoint, as_record, fold_event)
from core.store import (COUNT, EPOCH_SCHEMA, EVENTS_FILE, FRACTION, MAX_HOST_CHARS, MAX_SAFE_INTEGER, PID_MAX,
                        RATE, RUN_ID_PATTERN, Field, _finite_number, _number_in, _one_of, _or_none, _text, _whole,
                        record_problem, run_alive, this_host)

MAX_LINE_BYTES = 4096  # a line the writer writes is under 1 KB: a longer one is not the app's
MAX_READ_BYTES = 1024 * 1024  # per poll: a huge log is read over several polls, never in one long stall
MAX_LOG_BYTES = 64 * 1024 * 1024  # a log past this is not one the app writes (a 10,000-epoch run's is ~4 MB)
MAX_REASON_CHARS = 1000
MIN_BATCH_INTERVAL, MAX_BATCH_INTERVAL = 0.25, 10.0  # seconds between batch lines: smooth at first, then sparser
BATCH_LINES_SCALE = 500  # the interval grows as elapsed / this: ~500 lines per e-fold of the run's length
RECENT_SECONDS = 600.0  # a log untouched for this long is not looked at again (it is heard from every 10 s at most)
ENDED_KEPT = 8  # runs that ended while followed, kept so a page can say how they ended
FOLLOW_AT_MOST = 16  # runs followed at once: more are a runs folder no page could show anyway
POLL_CACHE_SECONDS = 0.25  # sessions polling together share one look at the folder
ORIGINS = ("command line", "torchrun", "app")
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # NONBLOCK: a FIFO never hangs
APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)


def _text_up_to(longest: int) -> Field:
    return Field(f"text of at most {longest:,} characters", _text(longest), required=True)


MAYBE_FRACTION = Field("a fraction from 0 to 1, or null", _or_none(_number_in(0, 1)))
WHOLE_FROM_1 = Field(f"a whole number from 1 to {MAX_SAFE_INTEGER:,}", _whole(1, MAX_SAFE_INTEGER), required=True)
REQUIRED_COUNT = Field(COUNT.must_be, COUNT.check, required=True)
SCHEMAS: dict[str, dict[str, Field]] = {  # what each kind of line must hold; extra keys are ignored
    "started": {
        "model": _text_up_to(64), "dataset": _text_up_to(64), "parameters": REQUIRED_COUNT, "epochs": WHOLE_FROM_1,
        "steps_per_epoch": REQUIRED_COUNT, "total_steps": REQUIRED_COUNT, "train_size": REQUIRED_COUNT,
        "test_size": REQUIRED_COUNT, "device": _text_up_to(64), "host": _text_up_to(MAX_HOST_CHARS),
        "pid": Field(f"a process id (a whole number from 1 to {PID_MAX:,})", _whole(1, PID_MAX), required=True),
        "pid_started": Field("text of at most 64 characters or null", _or_none(_text(64))),
        "origin": Field(f"one of {', '.join(ORIGINS)}", _one_of(*ORIGINS), required=True),
        "model_title": _text_up_to(200),
        "reported_accuracy": MAYBE_FRACTION,  # the figure the run is held to (core.recipes.planned_reference)
        "reference_source": Field("reported, measured or null", _or_none(_one_of("reported", "measured"))),
        "processes": Field("a whole number from 1 to 65,536", _whole(1, 65_536)),  # torch.distributed's world size
        "before_test_accuracy": MAYBE_FRACTION, "before_collection_accuracy": MAYBE_FRACTION,
        "collection_size": Field(COUNT.must_be + " or null", _or_none(COUNT.check))},
    "batch": {
        "epoch": WHOLE_FROM_1, "epochs": WHOLE_FROM_1, "step": REQUIRED_COUNT, "total_steps": WHOLE_FROM_1,
        "loss": Field("a finite number or null", _or_none(_finite_number), required=True), "accuracy": FRACTION,
        "images_per_second": RATE, "eta_seconds": RATE, "elapsed_seconds": RATE},
    "epoch": {**EPOCH_SCHEMA, "epochs": WHOLE_FROM_1, "step": REQUIRED_COUNT},
    "finished": {
        "status": Field("done, stopped, failed or diverged", _one_of("done", "stopped", "failed", "diverged"),
                        required=True),
        "reason": _text_up_to(MAX_REASON_CHARS), "epochs_completed": REQUIRED_COUNT,
        "test_accuracy": MAYBE_FRACTION, "test_loss": Field("a finite number or null", _or_none(_finite_number)),
        "elapsed_seconds": RATE, "images_per_second": RATE, "collection_accuracy": MAYBE_FRACTION},
}


# ---- writing ------------------------------------------------------------------------------------------------------

def launch_origin() -> str:
    """Who started this process's training, as far as it can tell: torchrun sets its workers' environment."""
    return "torchrun" if "TORCHELASTIC_RUN_ID" in os.environ else "command line"


def batch_interval(elapsed_seconds: float) -> float:
    """Seconds between two batch lines at this point of a run: 4 a second at first, one every 10 s on long runs."""
    return min(MAX_BATCH_INTERVAL, max(MIN_BATCH_INTERVAL, elapsed_seconds / BATCH_LINES_SCALE))


def _plain(value: Any) -> Any:
    """JSON has no NaN or infinity (a diverged run's loss): they are written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def encode(record: EventRecord) -> bytes:
    """One line of the log: {"event": kind, ...fields}, with a newline."""
    fields = {key: _plain(value) for key, value in record.fields.items()}
    if isinstance(fields.get("reason"), str):
        fields["reason"] = fields["reason"][:MAX_REASON_CHARS]
    return json.dumps({"event": record.kind, **fields}, allow_nan=False, separators=(",", ":")).encode() + b"\n"


class EventLogWriter:
    """Appends a run's events to its log, one write a line, batch progress downsampled by time.

    A log that cannot be written is given up (the run itself is still saved): following it live is a convenience,
    the run's metadata and weights are what matter.
    """

    def __init__(self, run_dir: Path, about: Mapping[str, Any]) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.about = dict(about)  # added to the started line: who writes the run (pid, host, origin, model title)
        self._descriptor: int | None = None
        self._failed = False
        self._last_batch: float | None = None  # the elapsed seconds of the last batch line written

    def write(self, event: Any) -> None:
        """Log one training event (a batch progress only when due)."""
        record = as_record(event)
        if record.kind == "batch" and not self._batch_due(record.fields["elapsed_seconds"]):
            return
        if record.kind == "started":
            record = EventRecord("started", {**record.fields, **self.about})
        self._append(encode(record))
        if record.kind == "finished":
            self.close()

    def _batch_due(self, elapsed: float) -> bool:
        if self._last_batch is not None and elapsed - self._last_batch < batch_interval(elapsed):
            return False
        self._last_batch = elapsed
        return True

    def _append(self, line: bytes) -> None:
        if self._failed:
            return
        try:
            if self._descriptor is None:  # O_NOFOLLOW: a link put in the log's place is never written through
                self._descriptor = os.open(self.path, APPEND_FLAGS, 0o644)
            os.write(self._descriptor, line)  # one write per line, O_APPEND: readers never see two lines mixed
        except OSError:
            self._failed = True
            self.close()

    def close(self) -> None:
        if self._descriptor is not None:
            with contextlib.suppress(OSError):
                os.close(self._descriptor)
            self._descriptor = None


# ---- reading ------------------------------------------------------------------------------------------------------

def decode(line: bytes) -> EventRecord | None:
    """One line of a log as a checked record; None for anything else (torn, foreign, too long, out of range)."""
    if len(line) > MAX_LINE_BYTES:
        return None
    try:
        data = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("event") not in SCHEMAS:
        return None
    schema = SCHEMAS[data["event"]]
    if record_problem(data, schema) is not None:
        return None
    return EventRecord(data["event"], {key: data.get(key) for key in schema})


class UnreadableLog(OSError):
    """The log is not a plain file of its run's own folder (a link, a FIFO, a hard-linked file), or is too large."""


def _open_log(run_dir: Path) -> tuple[int, os.stat_result]:
    """The log, opened without following a link in its folder's place or its own, with what was opened."""
    folder = os.open(run_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0))
    try:
        descriptor = os.open(EVENTS_FILE, OPEN_FLAGS, dir_fd=folder)
    finally:
        os.close(folder)
    opened = os.fstat(descriptor)
    if not stat.S_ISREG(opened.st_mode) or opened.st_nlink > 1 or opened.st_size > MAX_LOG_BYTES:
        os.close(descriptor)
        raise UnreadableLog(f"{run_dir.name}: its {EVENTS_FILE} is not a plain file of its own, or is too large")
    return descriptor, opened


@dataclass(eq=False)
class RunLogTail:
    """A run's log read so far: new lines are read from where the last read stopped.

    Holds what a page draws of the run (the same state a job of this process has: progress, a bounded curve, epoch
    ends, the final message) and the log's started and finished records.
    """

    run_dir: Path
    offset: int = 0
    pending: bytes = b""  # a line whose end has not been written yet
    skipping: bool = False  # inside a line already too long: dropped up to its end
    identity: tuple[int, int] | None = None  # (device, inode) of the file read: a replaced log is read anew
    modified: float = 0.0
    started: dict[str, Any] | None = None
    finished: dict[str, Any] | None = None
    skipped: int = 0  # lines that were not valid records
    progress: Progress | None = None
    curve: CurveBuffer = field(default_factory=CurveBuffer)
    epochs: list[EpochPoint] = field(default_factory=list)
    message: str = ""
    train_size: int = 0

    def poll(self) -> list[EventRecord]:
        """The records written since the last poll (at most MAX_READ_BYTES of them), folded into the state too.

        UnreadableLog or OSError (gone, a link) leave the state as it was."""
        descriptor, opened = _open_log(Path(self.run_dir))
        try:
            if self.identity != (opened.st_dev, opened.st_ino) or opened.st_size < self.offset:
                self._restart((opened.st_dev, opened.st_ino))  # a new file under the same name: from its start
            self.modified = opened.st_mtime
            data = os.pread(descriptor, min(MAX_READ_BYTES, opened.st_size - self.offset), self.offset)
        finally:
            os.close(descriptor)
        self.offset += len(data)
        records = [record for record in self._lines(data) if record is not None]
        for record in records:
            self._fold(record)
        return records

    def _restart(self, identity: tuple[int, int]) -> None:
        fresh = RunLogTail(self.run_dir)
        self.__dict__.update(fresh.__dict__)
        self.identity = identity

    def _lines(self, data: bytes) -> Iterable[EventRecord | None]:
        *complete, rest = (self.pending + data).split(b"\n")
        for line in complete:
            if self.skipping:  # the end of a line that was too long
                self.skipping = False
                continue
            record = decode(line)
            self.skipped += record is None and bool(line.strip())
            yield record
        self.pending = rest
        if len(self.pending) > MAX_LINE_BYTES:  # no end in sight: not a line of ours, dropped up to its newline
            self.pending, self.skipping = b"", True
            self.skipped += 1

    def _fold(self, record: EventRecord) -> None:
        if record.kind == "started":
            if self.started is not None:  # one run, one start: a second is not the app's
                self.skipped += 1
                return
            self.started = record.fields
        elif self.started is None or self.finished is not None:  # progress before a start, or after the end
            self.skipped += 1
            return
        if record.kind == "finished":
            self.finished = record.fields
        fold_event(self, record)


# ---- following the runs of a folder ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FollowedRun:
    """A run trained by another process, as a page draws it: the same fields a job's snapshot has for its charts and
    progress, and who trains it."""

    run_id: str
    status: str  # running, or how it ended: done, stopped, failed, diverged, interrupted (its process is gone)
    model: str
    model_title: str
    dataset: str
    host: str
    pid: int
    origin: str
    on_this_host: bool
    message: str
    progress: Progress | None
    train_points: tuple[TrainPoint, ...]
    epoch_points: tuple[EpochPoint, ...]
    last_heard: float  # when its log last changed (seconds since the epoch)
    reported_accuracy: float | None  # the figure it is held to at its planned end (core.recipes.planned_reference)
    processes: int  # how many processes train it (torchrun's world size)
    reference_source: str  # where that figure comes from: "reported" (published) or "measured" (here)
    queue_position: int = 0  # as a queued job's: a followed run never waits here
    config: None = None  # as a job's: its settings are in its meta.json, not its log (so no held-out digits curve)

    @property
    def active(self) -> bool:
        return self.status == "running"


def followed(run_id: str, tail: RunLogTail, alive: bool, here: str) -> FollowedRun:
    """What a page shows of a tailed run."""
    started = tail.started or {}
    status = tail.finished["status"] if tail.finished else ("running" if alive else "interrupted")
    return FollowedRun(run_id, status, started["model"], started["model_title"], started["dataset"],
                       started["host"], started["pid"], started["origin"], started["host"] == here, tail.message,
                       tail.progress, tuple(tail.curve.points), tuple(tail.epochs), tail.modified,
                       started.get("reported_accuracy"), started.get("processes") or 1,
                       started.get("reference_source") or "reported")  # a log from before the source was written


class RunFollower:
    """Follows every run of a runs folder that another process is training, by tailing their event logs.

    One per runs folder and server process (pages share it): `runs()` is cheap to call every second.
    """

    def __init__(self, root: Path | str, *, clock=time.time) -> None:
        self.root = Path(root)
        self._clock = clock
        self._lock = threading.Lock()
        self._tails: dict[str, RunLogTail] = {}
        self._ended: dict[str, FollowedRun] = {}  # run id -> how it ended, oldest first
        self._last: tuple[float, list[FollowedRun]] | None = None

    def runs(self, *, skip: Iterable[str] = (), skip_pid: int | None = None) -> list[FollowedRun]:
        """Runs being trained elsewhere, and those that ended while followed (most recent last), newest start first.

        `skip`: run ids not to show (the jobs of this server); `skip_pid`: runs written by this process on this host.
        """
        with self._lock:
            if self._last is None or time.monotonic() - self._last[0] > POLL_CACHE_SECONDS:
                self._last = (time.monotonic(), self._poll())
            everything = self._last[1]
        skipped = set(skip)
        return [run for run in everything if run.run_id not in skipped and
                not (skip_pid is not None and run.on_this_host and run.pid == skip_pid)]

    def _poll(self) -> list[FollowedRun]:
        here = this_host()
        for run_id in self._candidates():
            self._tails.setdefault(run_id, RunLogTail(self.root / run_id))
        shown: list[FollowedRun] = []
        for run_id, tail in list(self._tails.items()):
            with contextlib.suppress(OSError):  # gone, replaced by a link, unreadable: as it was last read
                tail.poll()
            if tail.started is None:  # not a run's log (yet): looked at again while it is recent
                if self._clock() - tail.modified > RECENT_SECONDS:
                    del self._tails[run_id]
                continue
            run = followed(run_id, tail, tail.finished is None and self._alive(tail), here)
            if run.active:
                shown.append(run)
            else:
                self._end(run_id, run)
        return sorted(shown, key=lambda run: run.run_id, reverse=True) + list(self._ended.values())

    def _alive(self, tail: RunLogTail) -> bool:
        started = tail.started or {}
        meta = {"host": started.get("host"), "pid": started.get("pid"), "pid_started": started.get("pid_started")}
        return run_alive(meta, Path(tail.run_dir))

    def _end(self, run_id: str, run: FollowedRun) -> None:
        del self._tails[run_id]
        self._ended.pop(run_id, None)
        self._ended[run_id] = run
        while len(self._ended) > ENDED_KEPT:
            del self._ended[next(iter(self._ended))]

    def _candidates(self) -> list[str]:
        """Run folders whose log changed recently and is not followed yet (nor known to have ended)."""
        found: list[tuple[float, str]] = []
        now = self._clock()
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return []
        for entry in entries:
            if entry.name in self._tails or not RUN_ID_PATTERN.match(entry.name):
                continue
            with contextlib.suppress(OSError):
                if not entry.is_dir(follow_symlinks=False):  # a link to a folder elsewhere is never read
                    continue
                changed = os.lstat(Path(entry.path) / EVENTS_FILE).st_mtime
                ended = self._ended.get(entry.name)
                if ended is not None and (ended.status != "interrupted" or changed <= ended.last_heard):
                    continue  # ended, and not heard from since (a silent machine's run may come back)
                if now - changed <= RECENT_SECONDS:
                    found.append((changed, entry.name))
        room = max(0, FOLLOW_AT_MOST - len(self._tails))
        return [name for _, name in sorted(found, reverse=True)[:room]]
