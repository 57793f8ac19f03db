import errno
import json
import os
import pickle
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import core.store as store_module
from core.record import RecordedTraining
from core.store import RunError, RunStore, StoreWriteError, load_run_dir
from core.training import EpochEnd, Finished, TrainConfig

QUICK = TrainConfig(model="digits-cnn", dataset="digits", epochs=3, batch_size=100, optimizer="sgd",
                    learning_rate=0.5, loss="bce-one-hot")


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


@pytest.fixture
def saved_run(store) -> str:
    recorded = RecordedTraining(QUICK, store)
    assert list(recorded.events())[-1].status == "done"
    return recorded.run_id


def test_a_recorded_run_has_weights_and_self_describing_metadata(store, saved_run):
    folder = store.run_dir(saved_run)
    meta = json.loads((folder / "meta.json").read_text())
    for key in ("model", "dataset", "input_format", "normalization", "class_names", "settings", "history", "final",
                "parameters", "train_seconds", "created_at", "status"):
        assert key in meta, key
    assert meta["status"] == "done" and meta["epochs_completed"] == 3 and len(meta["history"]) == 3
    assert meta["parameters"] == 3018 and meta["settings"]["learning_rate"] == 0.5
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "weights-000003.safetensors"]


def test_runs_list_load_and_delete(store, saved_run):
    [info] = store.list_runs()
    assert info.run_id == saved_run and info.status == "done" and info.get("final")["test_accuracy"] > 0.5
    loaded = store.load(saved_run)
    assert loaded.model(torch.zeros(1, 1, 8, 8)).shape == (1, 10) and not loaded.model.training
    store.delete(saved_run)
    assert store.list_runs() == []


def test_loaded_model_gives_the_recorded_accuracy(store, saved_run):
    from core.data import load_dataset
    from core.inference import predict

    data, loaded = load_dataset("digits"), store.load(saved_run)
    accuracy = float((torch.as_tensor(predict(loaded, data.test_images)) == data.test_labels).float().mean())
    assert accuracy == pytest.approx(loaded.meta["final"]["test_accuracy"], abs=1e-6)


def test_a_stopped_run_keeps_its_last_complete_epoch(store):
    stop = threading.Event()
    recorded = RecordedTraining(TrainConfig(**{**QUICK.__dict__, "epochs": 500}), store)
    for event in recorded.events(stop):
        if isinstance(event, EpochEnd) and event.epoch == 2:
            stop.set()
    assert event.status == "stopped"
    info = store.info(recorded.run_id)
    assert info.status == "stopped" and info.get("epochs_completed") == 2
    assert store.load(recorded.run_id).meta["weights_file"] == "weights-000002.safetensors"


def test_a_run_whose_process_died_is_listed_as_interrupted(store, saved_run):
    meta_path = store.run_dir(saved_run) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.update(status="running", pid=2**22 + 12345)  # no such process
    meta_path.write_text(json.dumps(meta))
    assert store.info(saved_run).status == "interrupted"


def damage(folder: Path, how: str) -> None:
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text())
    weights = folder / meta["weights_file"]
    if how == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif how == "missing json":
        meta_path.unlink()
    elif how == "invalid json":
        meta_path.write_text("{not json")
    elif how == "wrong shapes":
        tensors = {k: torch.zeros(3) for k in ("0.weight",)}
        save_file(tensors, str(weights))
    elif how == "unknown architecture":
        meta["model"] = "alexnet"
    elif how == "class count":
        meta["class_names"] = ["a", "b", "c"]
    elif how == "nan normalization":
        meta["normalization"]["std"] = float("nan")
    elif how == "foreign json":
        meta = {"hello": "world"}
    elif how == "path in weights name":
        meta["weights_file"] = "../../etc/passwd"
    if how in ("unknown architecture", "class count", "nan normalization", "foreign json", "path in weights name"):
        meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize("how, words", [
    ("truncated weights", "damaged or not safetensors"), ("missing json", "meta.json is missing"),
    ("invalid json", "not valid JSON"), ("wrong shapes", "do not match"),
    ("unknown architecture", "not in this app's model zoo"), ("class count", "with 3 classes"),
    ("nan normalization", "normalisation"), ("foreign json", "not a Digit Studio run"),
    ("path in weights name", "not one this app writes"),
])
def test_damaged_runs_are_refused_specifically_and_others_still_load(store, saved_run, how, words):
    healthy = RecordedTraining(QUICK, store)
    list(healthy.events())
    damage(store.run_dir(saved_run), how)
    with pytest.raises(RunError, match=words):
        store.load(saved_run)
    statuses = {info.run_id: info.status for info in store.list_runs()}
    assert statuses[healthy.run_id] == "done" and store.load(healthy.run_id)
    if how in ("missing json", "invalid json", "foreign json", "nan normalization", "path in weights name"):
        assert statuses[saved_run] == "damaged"


def test_an_oversized_weights_file_is_refused_before_parsing(store, saved_run, monkeypatch):
    monkeypatch.setattr(store_module, "MAX_WEIGHTS_BYTES", 1000)
    with pytest.raises(RunError, match="too large"):
        store.load(saved_run)


class _CreatesAFile:
    def __reduce__(self):
        return (open, ("/tmp/digit-studio-pwned-by-pickle", "w"))


def test_a_pickle_placed_as_weights_is_refused_and_never_run(store, saved_run):
    marker = Path("/tmp/digit-studio-pwned-by-pickle")
    marker.unlink(missing_ok=True)
    folder = store.run_dir(saved_run)
    weights = folder / json.loads((folder / "meta.json").read_text())["weights_file"]
    weights.write_bytes(pickle.dumps(_CreatesAFile()))
    with pytest.raises(RunError):
        store.load(saved_run)
    assert not marker.exists()


@pytest.mark.parametrize("bad_id", ["../etc", "/etc/passwd", "a/../../b", "..", "", "x" * 200, "runs/inner"])
def test_run_ids_cannot_reach_outside_the_runs_folder(store, bad_id):
    with pytest.raises(RunError, match="not a valid run id"):
        store.run_dir(bad_id)
    with pytest.raises(RunError):
        store.delete(bad_id)


def test_a_failed_save_is_visible_and_leaves_the_previous_version(store, saved_run, monkeypatch):
    before = (store.run_dir(saved_run) / "meta.json").read_bytes()

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(StoreWriteError, match="No space left"):
        store.save(saved_run, json.loads(before), store.load(saved_run).model.state_dict())
    monkeypatch.undo()
    assert (store.run_dir(saved_run) / "meta.json").read_bytes() == before
    assert not list(store.run_dir(saved_run).glob(".*.tmp"))
    assert store.load(saved_run)


def test_training_whose_run_cannot_be_saved_ends_as_failed(store, monkeypatch):
    def read_only(*args):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(os, "replace", read_only)
    finished = list(RecordedTraining(QUICK, store).events())[-1]
    assert isinstance(finished, Finished) and finished.status == "failed" and "Read-only" in finished.reason


def test_sweep_removes_temp_files_of_dead_writers_only(store, saved_run):
    folder = store.run_dir(saved_run)
    dead = folder / f".meta.json.{2**22 + 12345}.abcd1234.tmp"
    live = folder / f".meta.json.{os.getpid()}.abcd1234.tmp"
    dead.write_bytes(b"partial")
    live.write_bytes(b"partial")
    assert store.sweep() == 1 and not dead.exists() and live.exists()


def test_the_shipped_default_model_loads():
    from core.inference import DEFAULT_MODEL_DIR

    run = load_run_dir(DEFAULT_MODEL_DIR)
    assert run.meta["dataset"] == "mnist" and run.input_format.size == 28
    assert (DEFAULT_MODEL_DIR / "README.md").read_text().count("python -m core train") >= 1
