"""A Train-page job on several processes: the command line trains it in a child process that the job manager
follows and stops."""

from __future__ import annotations

import time

import pytest

from core.jobs import JobManager
from core.launched_job import outcome, train_command
from core.recipes import recipe
from core.store import RunStore

DIGITS = recipe("digits-cnn")


def wait_for(condition, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_job_on_two_processes_trains_one_run_and_shows_its_epochs(tmp_path):
    manager = JobManager(tmp_path / "runs")
    job_id = manager.submit(DIGITS.settings(epochs=12), DIGITS, processes=2)
    assert manager.wait_idle(600)
    snapshot = manager.snapshot(job_id)
    assert snapshot.status == "done", snapshot.message
    assert snapshot.processes == 2 and [point.epoch for point in snapshot.epoch_points] == list(range(1, 13))
    assert snapshot.train_points  # the batch progress of the run's event log, not only its epochs
    meta = RunStore(tmp_path / "runs").load(snapshot.run_id).meta
    assert meta["world_size"] == 2 and meta["recipe"] == "digits-cnn" and meta["epochs_completed"] == 12
    assert snapshot.epoch_points[-1].test_accuracy == meta["final"]["test_accuracy"]


def test_stop_ends_every_process_and_keeps_the_last_complete_epoch(tmp_path):
    manager = JobManager(tmp_path / "runs")
    job_id = manager.submit(DIGITS.config, DIGITS, processes=2)  # 1,000 epochs: minutes, unless stopped
    wait_for(lambda: len(manager.snapshot(job_id).epoch_points) >= 2)
    manager.stop(job_id)
    assert manager.wait_idle(120)
    snapshot = manager.snapshot(job_id)
    assert snapshot.status == "stopped"
    run = RunStore(tmp_path / "runs").load(snapshot.run_id)
    assert run.meta["status"] == "stopped" and run.meta["epochs_completed"] >= 2


def test_the_command_is_the_command_lines_with_every_setting(tmp_path):
    config = DIGITS.settings(epochs=3, weight_decay=0.25)
    command = train_command(config, DIGITS, 2, tmp_path, "run-1")
    assert command[1:5] == ["-m", "core", "train", "--processes"] and command[5] == "2"
    assert '"weight_decay": 0.25' in command[command.index("--settings") + 1]
    assert command[command.index("--run-id") + 1] == "run-1" and command[-2:] == ["--recipe", "digits-cnn"]


@pytest.mark.parametrize("stdout, stderr, code, expected", [
    ('{"status": "stopped", "reason": "stopped by request"}\n', "", 1, ("stopped", "stopped by request")),
    ("", "training ...\nerror: training process 1 of 2 was killed by SIGKILL; run r keeps its last saved epoch.\n", 1,
     ("failed", "training process 1 of 2 was killed by SIGKILL; run r keeps its last saved epoch.")),
    ("not json\n", "", -9, ("failed", "the training ended with code -9")),
])
def test_the_job_ends_as_the_run_did(stdout, stderr, code, expected):
    assert outcome(stdout, stderr, code) == expected
