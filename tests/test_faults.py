"""Faults a demo meets on laptops: kills mid-save, full or read-only disks, a training process that dies, reused pids."""

import builtins
import errno
import io
import itertools
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import core.record as record_module
import core.store as store_module
from core.cli import main
from core.inference import DEFAULT_MODEL_DIR
from core.record import RecordedTraining
from core.store import RunStore, StoreWriteError, process_start_time
from core.training import Finished, TrainConfig

REPO = Path(__file__).resolve().parents[1]
DEAD_PID = 2**22 + 12345  # above Linux's pid_max: no such process
TINY = TrainConfig(model="digits-cnn", dataset="digits", epochs=2, batch_size=100, train_limit=300)

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL and fork are POSIX")


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


def copy_default_model(store: RunStore, run_id: str) -> str:
    shutil.copytree(DEFAULT_MODEL_DIR, store.root / run_id)
    return run_id


def temp_files(store: RunStore) -> list[Path]:
    return sorted(store.root.glob("*/.*.tmp"))


# --- killed while saving -------------------------------------------------------------------------------------------

def save_version(store: RunStore, run_id: str, meta: dict, shapes: dict, version: int) -> None:
    """Save version `version` of a run: every weight equals `version`."""
    weights = {k: torch.from_numpy(np.full(shape, version, np.float32)) for k, shape in shapes.items()}
    store.save(run_id, {**meta, "epochs_completed": version, "status": "running"}, weights)


def save_versions_until_killed(root: str, run_id: str, meta: dict, shapes: dict, first: int) -> None:
    """In a forked child: save versions first, first+1, ... of one run (numpy, not torch ops: no thread pools)."""
    for version in itertools.count(first):
        save_version(RunStore(root), run_id, meta, shapes, version)


def loaded_version(store: RunStore, run_id: str) -> int:
    """The version a run loads as, checking that its metadata and all its weights belong to that one version."""
    run = store.load(run_id)
    version = run.meta["epochs_completed"]
    assert all(bool((tensor == version).all()) for tensor in run.model.state_dict().values()), "mixed versions"
    return version


def test_sigkill_at_random_moments_while_saving_always_leaves_a_complete_version(store):
    run_id = copy_default_model(store, "killed-mid-save")
    meta = json.loads((store.run_dir(run_id) / "meta.json").read_text())
    shapes = {k: tuple(v.shape) for k, v in load_file(str(store.run_dir(run_id) / meta["weights_file"])).items()}
    save_version(store, run_id, meta, shapes, 8)
    fork, chance = multiprocessing.get_context("fork"), random.Random(7)
    version, kills_mid_write = 8, 0
    for _ in range(30):
        child = fork.Process(target=save_versions_until_killed, args=(str(store.root), run_id, meta, shapes, version + 1))
        child.start()
        time.sleep(chance.uniform(0.01, 0.12))
        child.kill()
        child.join()
        assert child.exitcode == -signal.SIGKILL, "the saver died on its own instead of being killed"
        now = loaded_version(store, run_id)
        assert now >= version  # never an older version, never a mix
        version, kills_mid_write = now, kills_mid_write + bool(temp_files(store))
        store.sweep()
        assert temp_files(store) == []
    assert version > 8 + 10 and kills_mid_write >= 3, (version, kills_mid_write)  # saves went on; kills hit mid-write


def test_the_app_sweeps_temp_files_once_per_process_at_start(store, monkeypatch):
    from streamlit.testing.v1 import AppTest

    run_id = copy_default_model(store, "swept")
    left_by_a_killed_save = store.run_dir(run_id) / f".meta.json.{DEAD_PID}.0badc0de.tmp"
    left_by_a_killed_save.write_bytes(b"half a file")
    monkeypatch.setenv("DIGIT_STUDIO_RUNS", str(store.root))
    app = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60).run()
    assert not left_by_a_killed_save.exists()
    left_by_a_killed_save.write_bytes(b"half a file")
    app.run()
    assert left_by_a_killed_save.exists()  # a rerun does not walk the runs folder again


def test_the_command_line_sweeps_temp_files_of_dead_writers_before_it_trains(store):
    run_id = copy_default_model(store, "swept")
    left_by_a_killed_save = store.run_dir(run_id) / f".meta.json.{DEAD_PID}.0badc0de.tmp"
    being_written_now = store.run_dir(run_id) / f".meta.json.{os.getpid()}.0badc0de.tmp"  # a live writer's
    for temp in (left_by_a_killed_save, being_written_now):
        temp.write_bytes(b"half a file")
    code = main(["train", "--recipe", "digits-cnn", "--epochs", "1", "--runs-dir", str(store.root)], out=io.StringIO())
    assert code == 0 and not left_by_a_killed_save.exists() and being_written_now.exists()


# --- disk full, read-only ------------------------------------------------------------------------------------------

class FullDiskFile:
    """A file opened for writing whose writes fail as on a full disk."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.stream.close()

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def open_on_full_disk(file, mode="r", *args, **kwargs):
    stream = builtins.open(file, mode, *args, **kwargs)
    return FullDiskFile(stream) if "w" in mode else stream


def mount_read_only(monkeypatch, root: Path) -> None:
    """Creating files or folders under `root` fails as on a read-only mount (root's chmod 555 stops nothing)."""
    real_open, real_mkdir = builtins.open, os.mkdir

    def refuse_under_root(path) -> None:
        if Path(path).resolve().is_relative_to(root.resolve()):
            raise OSError(errno.EROFS, "Read-only file system", str(path))

    def open_read_only(path, mode="r", *args, **kwargs):
        if "w" in mode:
            refuse_under_root(path)
        return real_open(path, mode, *args, **kwargs)

    def mkdir_read_only(path, *args, **kwargs):
        refuse_under_root(path)
        return real_mkdir(path, *args, **kwargs)
    monkeypatch.setattr(store_module, "open", open_read_only, raising=False)
    monkeypatch.setattr(os, "mkdir", mkdir_read_only)


@pytest.fixture(params=["disk full", "read-only (chmod)", "read-only (mount)"])
def broken_runs_folder(request, store, monkeypatch):
    """A runs folder holding one run, where saving now fails; yields the run id and the words of the failure."""
    run_id = copy_default_model(store, "saved-before")
    if request.param == "disk full":
        monkeypatch.setattr(store_module, "open", open_on_full_disk, raising=False)
        yield run_id, "No space left on device"
    elif request.param == "read-only (chmod)":
        if os.geteuid() == 0:
            pytest.skip("root writes through chmod 555; the simulated read-only mount covers this case")
        for folder in (store.root, store.run_dir(run_id)):
            folder.chmod(0o555)
        yield run_id, "Permission denied"
        for folder in (store.root, store.run_dir(run_id)):
            folder.chmod(0o755)
    else:
        mount_read_only(monkeypatch, store.root)
        yield run_id, "Read-only file system"


def test_saving_over_a_run_fails_visibly_and_keeps_the_previous_version(store, broken_runs_folder):
    run_id, words = broken_runs_folder
    before = (store.run_dir(run_id) / "meta.json").read_bytes()
    loaded = store.load(run_id)
    with pytest.raises(StoreWriteError, match=words):
        store.save(run_id, {**loaded.meta, "epochs_completed": 9}, loaded.model.state_dict())
    assert (store.run_dir(run_id) / "meta.json").read_bytes() == before
    assert temp_files(store) == [] and store.load(run_id).meta["epochs_completed"] == 8


def test_training_into_a_broken_runs_folder_ends_failed_with_the_reason(store, broken_runs_folder):
    run_id, words = broken_runs_folder
    events = list(RecordedTraining(TINY, store).events())
    assert isinstance(events[-1], Finished) and events[-1].status == "failed" and words in events[-1].reason
    assert [info.run_id for info in store.list_runs()] == [run_id]  # no half-made run left behind


def test_the_cli_exits_1_with_one_line_when_the_run_cannot_be_saved(store, broken_runs_folder, capsys):
    _, words = broken_runs_folder
    code = main(["train", "--model", "digits-cnn", "--epochs", "2", "--train-limit", "300", "--batch-size", "100",
                 "--runs-dir", str(store.root)], out=io.StringIO())
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and words in err, err


REAL_ATOMIC_WRITE = store_module.atomic_write


class DiskFillsUp:
    """Saving fails as on a full disk for the files `refuse` picks, once or from then on; others save normally."""

    def __init__(self, monkeypatch, refuse, once: bool) -> None:
        self.refuse, self.once, self.written, self.failures = refuse, once, [], 0
        monkeypatch.setattr(store_module, "atomic_write", self.write)
        monkeypatch.setattr(record_module, "SAVE_INTERVAL_SECONDS", 0.0)  # every epoch saves: the failing one is known

    def write(self, path: Path, data: bytes) -> None:
        if self.refuse(path, self.written) and not (self.once and self.failures):
            self.failures += 1
            raise StoreWriteError(errno.ENOSPC, f"Could not save {path.name} in folder {path.parent.name}: No space left on device")
        REAL_ATOMIC_WRITE(path, data)
        self.written.append(path.name)


def meta_after_epoch_2(path: Path, written: list[str]) -> bool:
    """The metadata that would point to epoch 2's weights, just written."""
    return path.name == "meta.json" and "weights-000002.safetensors" in written


THREE_EPOCHS = TrainConfig(model="digits-cnn", dataset="digits", epochs=3, batch_size=100, train_limit=300)


def files_of(store: RunStore) -> list[str]:
    return sorted(path.name for path in store.root.glob("*/*"))


def test_a_failed_metadata_save_removes_the_weights_it_would_have_named_and_marks_the_run_failed(store, monkeypatch):
    disk = DiskFillsUp(monkeypatch, meta_after_epoch_2, once=True)  # epoch 2's metadata fails, the next write works
    recorded = RecordedTraining(THREE_EPOCHS, store)
    finished = list(recorded.events())[-1]
    assert disk.failures == 1 and finished.status == "failed" and finished.epochs_completed == 1
    assert "No space left on device" in finished.reason and finished.reason.endswith("epoch 1 stays saved")
    assert files_of(store) == ["events.jsonl", "meta.json", "weights-000001.safetensors"]  # no stray weights-000002
    info = store.info(recorded.run_id)
    assert info.status == "failed" and info.get("reason") == finished.reason  # not "running", nor "interrupted"
    assert info.get("epochs_completed") == len(info.get("history")) == 1
    assert store.load(recorded.run_id).meta["weights_file"] == "weights-000001.safetensors"


def test_when_even_the_failed_status_cannot_be_saved_only_the_last_good_version_stays(store, monkeypatch):
    DiskFillsUp(monkeypatch, meta_after_epoch_2, once=False)
    recorded = RecordedTraining(THREE_EPOCHS, store)
    finished = list(recorded.events())[-1]
    assert finished.status == "failed" and finished.reason.endswith("epoch 1 stays saved")
    assert files_of(store) == ["events.jsonl", "meta.json", "weights-000001.safetensors"]
    assert store.load(recorded.run_id).meta["epochs_completed"] == 1


def test_a_run_whose_first_weights_cannot_be_saved_leaves_no_folder(store, monkeypatch):
    DiskFillsUp(monkeypatch, lambda path, written: path.name.startswith("weights-"), once=False)
    events = list(RecordedTraining(THREE_EPOCHS, store).events())
    assert events[-1].status == "failed" and events[-1].reason.endswith("nothing was saved")
    assert not store.root.exists() or list(store.root.iterdir()) == []


@pytest.mark.parametrize("refuse, saved", [(lambda path, written: path.name.startswith("weights-"), 0),
                                           (meta_after_epoch_2, 1)], ids=["nothing saved", "epoch 1 saved"])
def test_the_cli_says_what_stays_saved_when_a_save_fails(store, monkeypatch, capsys, refuse, saved):
    train = ["train", "--model", "digits-cnn", "--epochs", "3", "--train-limit", "300", "--batch-size", "100",
             "--runs-dir", str(store.root)]
    for as_json in (True, False):
        DiskFillsUp(monkeypatch, refuse, once=False)
        out = io.StringIO()
        assert main(train + ["--json"] * as_json, out=out) == 1
        words = "epoch 1 stays saved" if saved else "nothing was saved"
        assert words in capsys.readouterr().err
        if as_json:
            summary = json.loads(out.getvalue())
            assert summary["status"] == "failed" and summary["saved_epochs"] == saved and words in summary["reason"]
            assert (summary["run_dir"] is None) == (not saved) and summary["epochs"] == saved
        else:
            assert out.getvalue().startswith("failed: ") and words in out.getvalue()
            assert ("->" in out.getvalue()) == bool(saved)  # a folder is named only when one stays


# --- the training process dies ------------------------------------------------------------------------------------

def first_saved_epoch(runs: Path) -> dict | None:
    for path in runs.glob("*/meta.json"):
        meta = json.loads(path.read_text())
        if meta.get("weights_file"):
            return meta
    return None


def test_a_training_killed_after_its_first_epoch_is_listed_as_interrupted_with_its_history(tmp_path):
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "core", "train", "--recipe", "digits-cnn", "--epochs", "10000", "--runs-dir",
               str(runs)]
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while (meta := first_saved_epoch(runs)) is None and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        assert meta is not None, "the training never saved an epoch"
        assert meta["pid"] == child.pid and meta["pid_started"] == process_start_time(child.pid)
        assert RunStore(runs).list_runs()[0].status == "running"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    store = RunStore(runs)
    [info] = store.list_runs()
    history = info.get("history")
    assert info.status == "interrupted" and len(history) == info.get("epochs_completed") >= 1
    assert [epoch["epoch"] for epoch in history] == list(range(1, len(history) + 1))
    assert store.load(info.run_id).meta["weights_file"] == f"weights-{len(history):06d}.safetensors"
    store.sweep()
    assert temp_files(store) == []


@pytest.mark.parametrize("recorded, status", [
    ({"pid": "self", "pid_started": "self"}, "running"),
    ({"pid": "self", "pid_started": "12345"}, "interrupted"),  # this pid now belongs to a process started later
    ({"pid": "self"}, "running"),  # runs saved before start times were recorded keep working
    ({"pid": DEAD_PID, "pid_started": "12345"}, "interrupted"),
    ({}, "interrupted"),  # a missing pid is not a running process
    ({"pid": "1234"}, "damaged"), ({"pid": 2**70}, "damaged"),  # a malformed one breaks the schema (2**70: os.kill overflowed)
])
def test_a_running_run_is_running_only_while_its_own_process_lives(store, recorded, status):
    run_id = copy_default_model(store, "running-run")
    me = {"pid": os.getpid(), "pid_started": process_start_time(os.getpid())}
    meta_path = store.run_dir(run_id) / "meta.json"
    meta = {k: v for k, v in json.loads(meta_path.read_text()).items() if k not in ("pid", "pid_started")}
    meta.update({k: me[k] if v == "self" else v for k, v in recorded.items()}, status="running")
    meta_path.write_text(json.dumps(meta))
    assert store.info(run_id).status == status


@pytest.mark.skipif(shutil.which("ps") is None, reason="no ps on this system")
def test_the_portable_start_time_tells_processes_apart(store, monkeypatch):
    monkeypatch.setattr(store_module, "process_start_time", store_module._ps_start_time)  # as on macOS
    me = store_module._ps_start_time(os.getpid())
    assert me and me == store_module._ps_start_time(os.getpid()) and store_module._ps_start_time(DEAD_PID) is None
    assert store_module.process_running(os.getpid(), me)
    assert not store_module.process_running(os.getpid(), "Mon Jan  1 00:00:00 2001")
