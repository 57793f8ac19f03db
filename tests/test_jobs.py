"""The background job manager: one training at a time, a bounded queue, stop, and bounded live history."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.jobs import CurveBuffer, JobManager, JobRefused, TrainPoint
from core.store import RunStore
from core.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]
QUICK = TrainConfig(model="digits-cnn", dataset="digits", epochs=2, batch_size=32, train_limit=320,
                    learning_rate=0.01, optimizer="adam")


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


class Gate:
    """A fake job body that holds the worker until released, counting how many run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()

    def __call__(self, job, manager) -> None:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.release.wait(30)
        with self.lock:
            self.running -= 1
        manager.finish(job, "done", "")


def test_curve_buffer_stays_bounded_and_covers_the_whole_run():
    buffer = CurveBuffer(capacity=100)
    for step in range(10_000):
        buffer.add(TrainPoint(step / 100, 1.0, 0.5))
    assert len(buffer.points) < 100
    assert buffer.points[0].epoch_progress < 1.0 and buffer.points[-1].epoch_progress > 95.0
    gaps = {round(b.epoch_progress - a.epoch_progress, 6) for a, b in zip(buffer.points, buffer.points[1:])}
    assert len(gaps) == 1  # evenly spaced: halving keeps the spacing uniform


def test_a_job_trains_records_its_history_and_saves_a_run(tmp_path):
    manager = JobManager(tmp_path)
    job_id = manager.submit(QUICK)
    assert manager.wait_idle(120)
    snapshot = manager.snapshot(job_id)
    assert snapshot.status == "done", snapshot.message
    assert [point.epoch for point in snapshot.epoch_points] == [1, 2]
    assert snapshot.progress.fraction == 1.0
    info = RunStore(tmp_path).info(snapshot.run_id)
    assert info.status == "done" and info.get("epochs_completed") == 2
    assert RunStore(tmp_path).load(snapshot.run_id).model is not None


def test_stop_ends_a_running_job_quickly_and_keeps_its_last_epoch(tmp_path):
    manager = JobManager(tmp_path)
    job_id = manager.submit(TrainConfig(model="digits-cnn", dataset="digits", epochs=500, batch_size=32))
    wait_for(lambda: len(manager.snapshot(job_id).epoch_points) >= 1)
    asked = time.monotonic()
    assert manager.stop(job_id)
    assert manager.wait_idle(10)
    assert time.monotonic() - asked < 2.0
    snapshot = manager.snapshot(job_id)
    assert snapshot.status == "stopped"
    info = RunStore(tmp_path).info(snapshot.run_id)
    assert info.status == "stopped" and info.get("epochs_completed") >= 1
    RunStore(tmp_path).load(snapshot.run_id)


def test_one_job_runs_at_a_time_and_the_queue_is_bounded(tmp_path):
    gate = Gate()
    manager = JobManager(tmp_path, max_queued=2, run_job=gate)
    first = manager.submit(QUICK)
    wait_for(lambda: manager.snapshot(first).status == "running")
    second = manager.submit(QUICK)
    assert not manager.queue_full()
    third = manager.submit(QUICK)
    assert manager.queue_full()
    assert [manager.snapshot(job).queue_position for job in (first, second, third)] == [0, 1, 2]
    with pytest.raises(JobRefused, match="already waiting"):
        manager.submit(QUICK)
    assert manager.stop(second)
    assert not manager.queue_full()
    assert manager.snapshot(second).status == "cancelled"
    assert manager.snapshot(third).queue_position == 1
    gate.release.set()
    assert manager.wait_idle(10)
    assert gate.most_at_once == 1
    assert [manager.snapshot(job).status for job in (first, second, third)] == ["done", "cancelled", "done"]


def test_an_owner_may_have_only_so_many_jobs_waiting_or_running_and_stops_only_their_own(tmp_path):
    gate = Gate()
    manager = JobManager(tmp_path, max_queued=2, run_job=gate)
    first = manager.submit(QUICK, owner="visitor-a", owner_limit=1)
    wait_for(lambda: manager.snapshot(first).status == "running")
    with pytest.raises(JobRefused, match="You already have 1 training waiting or running"):
        manager.submit(QUICK, owner="visitor-a", owner_limit=1)  # running counts
    assert manager.refusal("visitor-a", 1) is not None and manager.refusal("visitor-b", 1) is None
    second = manager.submit(QUICK, owner="visitor-b", owner_limit=1)
    assert manager.snapshot(second).owner == "visitor-b" and manager.snapshot(second).queue_position == 1
    with pytest.raises(JobRefused, match="someone else"):
        manager.stop(second, owner="visitor-a")  # a visitor cannot cancel another's queued job
    with pytest.raises(JobRefused, match="someone else"):
        manager.stop(first, owner="visitor-b")  # nor stop another's running one
    assert manager.snapshot(second).status == "queued" and manager.snapshot(first).status == "running"
    assert manager.stop(second, owner="visitor-b")
    assert manager.snapshot(second).status == "cancelled"
    assert manager.submit(QUICK, owner="visitor-b", owner_limit=1)  # its cancelled job no longer counts
    gate.release.set()
    assert manager.wait_idle(10)
    assert manager.submit(QUICK, owner="visitor-a", owner_limit=1)  # nor does an ended one
    assert manager.wait_idle(10)


def test_stop_all_cancels_the_queue_and_stops_the_running_job(tmp_path):
    manager = JobManager(tmp_path)
    running = manager.submit(TrainConfig(model="digits-cnn", dataset="digits", epochs=5000))
    queued = manager.submit(QUICK)
    wait_for(lambda: bool(manager.snapshot(running).epoch_points))
    assert manager.stop_all(30)
    assert manager.snapshot(running).status == "stopped"
    assert manager.snapshot(queued).status == "cancelled"
    assert RunStore(tmp_path).list_runs()[0].status == "stopped"


def test_leaving_the_interpreter_while_a_job_trains_saves_it_as_stopped_and_exits_cleanly(tmp_path):
    """A daemon thread inside torch at finalization aborts the process; the manager stops its job first."""
    code = ("import sys, time\n"
            "from core.jobs import JobManager\n"
            "from core.training import TrainConfig\n"
            "manager = JobManager(sys.argv[1])\n"
            "job = manager.submit(TrainConfig(model='digits-cnn', dataset='digits', epochs=5000))\n"
            "while not manager.snapshot(job).epoch_points:\n"
            "    time.sleep(0.05)\n"
            "print('leaving while it trains', flush=True)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "leaving while it trains" in done.stdout and "terminate called" not in done.stderr
    (info,) = RunStore(tmp_path).list_runs()
    assert info.status == "stopped" and info.has_weights


def test_the_worker_survives_a_job_that_raises(tmp_path):
    calls = []

    def explode_once(job, manager):
        calls.append(job.job_id)
        if len(calls) == 1:
            raise RuntimeError("boom")
        manager.finish(job, "done", "")

    manager = JobManager(tmp_path, run_job=explode_once)
    broken, fine = manager.submit(QUICK), manager.submit(QUICK)
    assert manager.wait_idle(10)
    assert manager.snapshot(broken).status == "failed" and "boom" in manager.snapshot(broken).message
    assert manager.snapshot(fine).status == "done"


def test_settings_that_cannot_work_fail_the_job_with_the_reason(tmp_path):
    manager = JobManager(tmp_path)
    job_id = manager.submit(TrainConfig(model="digits-cnn", dataset="digits", epochs=1, batch_size=5000))
    assert manager.wait_idle(30)
    snapshot = manager.snapshot(job_id)
    assert snapshot.status == "failed" and "larger than" in snapshot.message
    assert RunStore(tmp_path).list_runs() == []


def test_stopping_an_unknown_or_ended_job_says_so(tmp_path):
    gate = Gate()
    gate.release.set()
    manager = JobManager(tmp_path, run_job=gate)
    job_id = manager.submit(QUICK)
    assert manager.wait_idle(10)
    assert not manager.stop(job_id)
    assert not manager.stop(999)
    assert manager.latest().job_id == job_id


def test_half_an_hour_of_events_keeps_the_job_in_bounded_memory(tmp_path):
    """A 30-minute run sends ~9,000 progress events (5 a second): the job's memory must stop growing."""
    import tracemalloc

    from core.jobs import MAX_TRAIN_POINTS
    from core.training import BatchProgress, EpochEnd, Finished, Started

    steps_per_epoch, epochs, usage = 300, 30, []

    def long_run(job, manager):
        manager.record(job, Started("fast-cnn", "mnist", 1, epochs, steps_per_epoch, steps_per_epoch * epochs,
                                    60_000, 10_000, "cpu"))
        for step in range(1, steps_per_epoch * epochs + 1):
            epoch = (step - 1) // steps_per_epoch + 1
            manager.record(job, BatchProgress(epoch, epochs, step, steps_per_epoch * epochs, 0.1, 0.9, 3000.0,
                                              1.0, step / 5))
            if step % steps_per_epoch == 0:
                manager.record(job, EpochEnd(epoch, epochs, step, 0.1, 0.9, 0.1, 0.9, step / 5, 3000.0))
                manager.snapshot(job.job_id)  # the page reads it once a second
                usage.append(tracemalloc.get_traced_memory()[0])
        manager.record(job, Finished("done", "", epochs, 0.9, 0.1, 1800.0, 3000.0))
        manager.finish(job, "done", "")

    tracemalloc.start()
    try:
        manager = JobManager(tmp_path, run_job=long_run)
        job_id = manager.submit(QUICK)
        assert manager.wait_idle(60)
    finally:
        tracemalloc.stop()
    snapshot = manager.snapshot(job_id)
    assert len(snapshot.train_points) < MAX_TRAIN_POINTS and len(snapshot.epoch_points) == epochs
    assert snapshot.train_points[-1].epoch_progress > epochs - 1  # the newest points are kept, not dropped
    growth = max(usage[len(usage) // 3:]) - usage[len(usage) // 3]
    assert growth < 100_000, f"memory grew by {growth} bytes over the last two thirds of the run"
