"""A run's event log: written as it trains, bounded, and tailed by any process without trusting what it reads."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from core.jobs import EventRecord, JobManager
from core.record import RecordedTraining
from core.runlog import (MAX_LINE_BYTES, EventLogWriter, RunFollower, RunLogTail, decode, encode)
from core.store import EVENTS_FILE, SILENT_HOST_SECONDS, RunStore, process_start_time, this_host
from core.training import BatchProgress, EpochEnd, Finished, Started, TrainConfig

# progress_every=1: a batch line is due whatever the speed (timed progress may send none in a 20-step run)
QUICK = TrainConfig(model="digits-cnn", dataset="digits", epochs=2, batch_size=32, train_limit=320,
                    learning_rate=0.01, optimizer="adam", progress_every=1)


def started(**changes) -> dict:
    fields = {"model": "digits-cnn", "dataset": "digits", "parameters": 3018, "epochs": 3, "steps_per_epoch": 10,
              "total_steps": 30, "train_size": 320, "test_size": 450, "device": "cpu", "host": this_host(),
              "pid": os.getpid(), "pid_started": process_start_time(os.getpid()), "origin": "command line",
              "model_title": "Digits CNN (recipe)"}
    return {"event": "started", **fields, **changes}


def batch(step: int, **changes) -> dict:
    return {"event": "batch", "epoch": 1 + (step - 1) // 10, "epochs": 3, "step": step, "total_steps": 30,
            "loss": 1.0 / step, "accuracy": 0.5, "images_per_second": 100.0, "eta_seconds": 3.0,
            "elapsed_seconds": step * 0.1, **changes}


def epoch_end(epoch: int) -> dict:
    return {"event": "epoch", "epoch": epoch, "epochs": 3, "step": epoch * 10, "train_loss": 0.5, "train_accuracy": 0.8,
            "test_loss": 0.4, "test_accuracy": 0.85, "elapsed_seconds": epoch * 1.0, "images_per_second": 100.0}


def line(record: dict) -> bytes:
    return json.dumps(record).encode() + b"\n"


def run_folder(root: Path, name: str = "20261202-070000-digits-cnn-digits-abcd") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    return folder


def append(folder: Path, data: bytes) -> None:
    with open(folder / EVENTS_FILE, "ab") as stream:
        stream.write(data)


def test_a_recorded_run_logs_its_start_every_epoch_and_its_end(tmp_path):
    recorded = RecordedTraining(QUICK, RunStore(tmp_path))
    events = list(recorded.events())
    tail = RunLogTail(recorded.run_dir)
    records = tail.poll()
    assert [r.kind for r in records][0] == "started" and records[-1].kind == "finished"
    assert tail.started["pid"] == os.getpid() and tail.started["host"] == this_host()
    assert tail.started["origin"] == "command line"
    assert [p.epoch for p in tail.epochs] == [1, 2]
    assert [p.test_accuracy for p in tail.epochs] == [e.test_accuracy for e in events if isinstance(e, EpochEnd)]
    assert tail.finished["status"] == "done" and tail.skipped == 0
    assert any(r.kind == "batch" for r in records) and tail.curve.points
    assert tail.progress.epoch == 2


def fake_long_run(writer: EventLogWriter, hours: float, epochs: int = 1000) -> None:
    """A run's events as the engine emits them (a batch progress every 0.2 s), without training."""
    seconds, steps = hours * 3600, int(hours * 3600 / 0.2)
    per_epoch = steps // epochs
    writer.write(Started("digits-cnn", "digits", 3018, epochs, per_epoch, steps, 1347, 450, "cpu"))
    for step in range(1, steps + 1):
        elapsed = step * seconds / steps
        epoch = min(epochs, 1 + (step - 1) // per_epoch)
        writer.write(BatchProgress(epoch, epochs, step, steps, 0.1, 0.9, 500.0, seconds - elapsed, elapsed))
        if step % per_epoch == 0:
            writer.write(EpochEnd(epoch, epochs, step, 0.1, 0.9, 0.1, 0.9, elapsed, 500.0))
    writer.write(Finished("done", "", epochs, 0.9, 0.1, seconds, 500.0))


def test_a_ten_hour_thousand_epoch_run_keeps_a_small_log(tmp_path):
    folder = run_folder(tmp_path)
    fake_long_run(EventLogWriter(folder, {"pid": 1, "pid_started": None, "host": "h", "origin": "command line",
                                          "model_title": "Digits CNN"}), hours=10)
    lines = (folder / EVENTS_FILE).read_bytes().splitlines()
    batches = sum(1 for item in lines if b'"batch"' in item)
    assert batches < 6000  # 180,000 progress events: about one in 30 is kept, more at the start
    assert (folder / EVENTS_FILE).stat().st_size < 2_000_000
    tail = RunLogTail(folder)
    while tail.poll():
        pass
    assert len(tail.epochs) == 1000 and tail.finished["status"] == "done"
    assert tail.curve.points[-1].epoch_progress > 999  # the curve covers the whole run


def test_a_torn_last_line_waits_for_its_end(tmp_path):
    folder = run_folder(tmp_path)
    whole = line(started()) + line(batch(1))
    append(folder, whole[:-30])  # the batch line's end is not written yet
    tail = RunLogTail(folder)
    assert [r.kind for r in tail.poll()] == ["started"]
    append(folder, whole[-30:])
    assert [r.kind for r in tail.poll()] == ["batch"]
    assert tail.skipped == 0 and len(tail.curve.points) == 1


def test_the_log_is_read_from_where_the_last_read_stopped_as_it_grows(tmp_path):
    folder = run_folder(tmp_path)
    append(folder, line(started()))
    tail = RunLogTail(folder)
    tail.poll()
    for step in range(1, 31):
        append(folder, line(batch(step)))
        if step % 10 == 0:
            append(folder, line(epoch_end(step // 10)))
        assert len(tail.poll()) == (2 if step % 10 == 0 else 1)  # only what was added since
        assert tail.offset == (folder / EVENTS_FILE).stat().st_size
    assert len(tail.curve.points) == 30 and [p.epoch for p in tail.epochs] == [1, 2, 3]
    assert tail.progress.step == 30


BAD_LINES = [
    b"not json at all",
    b"[1, 2, 3]",
    json.dumps({"event": "launch-missiles"}).encode(),
    json.dumps({**batch(2), "loss": "lots"}).encode(),
    json.dumps({**batch(2), "accuracy": 7}).encode(),  # not a fraction
    json.dumps({**batch(2), "step": -1}).encode(),
    json.dumps({**batch(2), "total_steps": True}).encode(),  # a bool is not a number here
    json.dumps({**batch(2), "images_per_second": 1e400}).encode(),  # inf: JSON's 1e400
    b'{"event": "batch", "loss": NaN}',
    json.dumps({k: v for k, v in batch(2).items() if k != "eta_seconds"}).encode(),
    json.dumps({**epoch_end(1), "test_accuracy": None}).encode(),
    json.dumps({**batch(2), "pad": "x" * MAX_LINE_BYTES}).encode(),  # too long to be ours
    b"\xff\xfe\x00 not utf-8",
    b"[" * 100_000,  # nested too deep, and too long
]


def test_bad_lines_are_skipped_and_the_good_ones_around_them_still_read(tmp_path):
    folder = run_folder(tmp_path)
    append(folder, line(started()) + b"\n".join(BAD_LINES) + b"\n" + line(batch(1)) + line(epoch_end(1)))
    tail = RunLogTail(folder)
    while tail.poll():
        pass
    assert tail.skipped == len(BAD_LINES)
    assert len(tail.curve.points) == 1 and [p.epoch for p in tail.epochs] == [1]


def test_a_line_without_end_is_dropped_and_reading_resumes_after_it(tmp_path):
    folder = run_folder(tmp_path)
    append(folder, line(started()) + b"x" * (3 * MAX_LINE_BYTES))
    tail = RunLogTail(folder)
    tail.poll()
    append(folder, b"x" * 100 + b"\n" + line(batch(1)))
    tail.poll()
    assert tail.skipped == 1 and len(tail.curve.points) == 1 and tail.pending == b""


def test_a_second_start_or_progress_after_the_end_is_not_taken(tmp_path):
    folder = run_folder(tmp_path)
    finished = {"event": "finished", "status": "done", "reason": "", "epochs_completed": 0, "test_accuracy": None,
                "test_loss": None, "elapsed_seconds": 1.0, "images_per_second": 1.0}
    append(folder, line(batch(1)) + line(started()) + line(started(model="other")) + line(finished) + line(batch(2)))
    tail = RunLogTail(folder)
    tail.poll()
    assert tail.skipped == 3 and tail.started["model"] == "digits-cnn" and not tail.curve.points


def test_a_log_that_is_a_link_is_refused(tmp_path):
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(line(started()) + line(batch(1)))
    folder = run_folder(tmp_path / "runs")
    (folder / EVENTS_FILE).symlink_to(outside)
    with pytest.raises(OSError):
        RunLogTail(folder).poll()
    (folder / EVENTS_FILE).unlink()
    os.link(outside, folder / EVENTS_FILE)  # a hard link to another file is refused too
    with pytest.raises(OSError):
        RunLogTail(folder).poll()


def test_the_follower_never_reads_a_run_folder_that_is_a_link(tmp_path):
    elsewhere = run_folder(tmp_path / "elsewhere")
    append(elsewhere, line(started()) + line(batch(1)))
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / elsewhere.name).symlink_to(elsewhere, target_is_directory=True)
    assert RunFollower(runs).runs() == []
    with pytest.raises(OSError):  # nor does a tail given that folder
        RunLogTail(runs / elsewhere.name).poll()


def test_a_replaced_log_is_read_again_from_its_start(tmp_path):
    folder = run_folder(tmp_path)
    append(folder, line(started()) + line(batch(1)) + line(batch(2)))
    tail = RunLogTail(folder)
    tail.poll()
    replacement = folder / "new.jsonl"  # a new file moved into the log's name, longer than what was read
    replacement.write_bytes(line(started(model="lenet5")) + b"".join(line(batch(step)) for step in range(1, 6)))
    os.replace(replacement, folder / EVENTS_FILE)
    tail.poll()
    assert tail.started["model"] == "lenet5" and len(tail.curve.points) == 5


def test_the_follower_shows_live_runs_and_ends_the_dead_and_finished(tmp_path):
    live, dead, remote, silent = (run_folder(tmp_path, f"2026120{n}-070000-digits-cnn-digits-abcd") for n in range(1, 5))
    append(live, line(started()) + line(batch(1)))
    append(dead, line(started(pid_started="0")) + line(batch(1)))  # the pid is now another process's
    append(remote, line(started(host="gpu-box-1", pid=2)) + line(batch(1)))
    append(silent, line(started(host="gpu-box-2", pid=2)) + line(batch(1)))
    old = time.time() - SILENT_HOST_SECONDS - 60
    os.utime(silent / EVENTS_FILE, (old, old))
    follower = RunFollower(tmp_path)
    runs = {run.run_id: run for run in follower.runs()}
    assert runs[live.name].status == "running" and runs[live.name].on_this_host
    assert runs[remote.name].status == "running" and not runs[remote.name].on_this_host
    assert runs[dead.name].status == "interrupted" and runs[silent.name].status == "interrupted"
    assert follower.runs(skip=[live.name]) and live.name not in {r.run_id for r in follower.runs(skip=[live.name])}
    assert live.name not in {r.run_id for r in follower.runs(skip_pid=os.getpid())}  # this process's own runs
    append(live, line(epoch_end(1)) + line({"event": "finished", "status": "stopped", "reason": "stopped by you",
                                            "epochs_completed": 1, "test_accuracy": 0.85, "test_loss": 0.4,
                                            "elapsed_seconds": 2.0, "images_per_second": 100.0}))
    time.sleep(0.6)  # past the shared poll's cache
    ended = {run.run_id: run for run in follower.runs()}[live.name]
    assert ended.status == "stopped" and ended.message == "stopped by you" and len(ended.epoch_points) == 1


def test_one_bad_run_never_hides_the_others(tmp_path):
    good, bad, empty = (run_folder(tmp_path, f"2026120{n}-070000-digits-cnn-digits-abcd") for n in range(1, 4))
    append(good, line(started()) + line(batch(1)))
    append(bad, b"\x00" * 5000 + b"\n{]\n")
    (empty / EVENTS_FILE).write_bytes(b"")
    (tmp_path / "not a run id!").mkdir()
    assert [run.run_id for run in RunFollower(tmp_path).runs()] == [good.name]


def test_a_job_of_this_server_follows_a_run_of_another_process_through_its_log(tmp_path):
    folder = run_folder(tmp_path)
    append(folder, line(started()) + line(batch(1)) + line(epoch_end(1)))

    def follow(job, manager):  # what a job that launches `python -m core train` does with the run's log
        for record in RunLogTail(folder).poll():
            manager.record(job, record)
        manager.finish(job, "done", "")

    manager = JobManager(tmp_path / "unused", run_job=follow)
    job_id = manager.submit(QUICK)
    assert manager.wait_idle(30)
    snapshot = manager.snapshot(job_id)
    assert len(snapshot.train_points) == 1 and [p.epoch for p in snapshot.epoch_points] == [1]


def test_records_round_trip_and_non_finite_numbers_become_gaps():
    record = EventRecord("batch", {k: v for k, v in batch(1, loss=float("nan")).items() if k != "event"})
    decoded = decode(encode(record).rstrip(b"\n"))
    assert decoded is not None and decoded.fields["loss"] is None


def test_a_run_of_another_machine_is_running_while_it_writes_and_interrupted_once_silent(tmp_path):
    store = RunStore(tmp_path)
    recorded = RecordedTraining(QUICK, store)
    list(recorded.events())
    meta_path = recorded.run_dir / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["host"] == this_host()
    meta_path.write_text(json.dumps({**meta, "status": "running", "host": "gpu-box-1"}))  # its pid means nothing here
    assert store.info(recorded.run_id).status == "running"
    old = time.time() - SILENT_HOST_SECONDS - 60
    for name in ("meta.json", EVENTS_FILE):
        os.utime(recorded.run_dir / name, (old, old))
    assert store.info(recorded.run_id).status == "interrupted"
