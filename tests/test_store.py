import errno
import io
import json
import os
import pickle
import re
import shlex
import shutil
import threading
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors.torch import load_file, save_file

import core.store as store_module
from core.record import RecordedTraining
from core.store import RunError, RunStore, StoreWriteError, load_run_dir
from core.training import EpochEnd, Finished, TrainConfig

REPO = Path(__file__).resolve().parents[1]
QUICK = TrainConfig(model="digits-cnn", dataset="digits", epochs=3, batch_size=100, optimizer="sgd",
                    learning_rate=0.5, loss="bce-one-hot")


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One small run trained once per module; tests get copies to read, change or damage."""
    recorded = RecordedTraining(QUICK, RunStore(tmp_path_factory.mktemp("trained")))
    assert list(recorded.events())[-1].status == "done"
    return recorded.run_dir


def copy_run(trained_run: Path, store: RunStore, run_id: str) -> str:
    shutil.copytree(trained_run, store.root / run_id)
    return run_id


@pytest.fixture
def saved_run(store, trained_run) -> str:
    return copy_run(trained_run, store, trained_run.name)


def test_a_recorded_run_has_weights_and_self_describing_metadata(store, saved_run):
    folder = store.run_dir(saved_run)
    meta = json.loads((folder / "meta.json").read_text())
    for key in ("model", "dataset", "input_format", "normalization", "class_names", "settings", "history", "final",
                "parameters", "train_seconds", "created_at", "status"):
        assert key in meta, key
    assert meta["status"] == "done" and meta["epochs_completed"] == 3 and len(meta["history"]) == 3
    assert meta["parameters"] == 3018 and meta["settings"]["learning_rate"] == 0.5
    assert sorted(p.name for p in folder.iterdir()) == ["events.jsonl", "meta.json", "weights-000003.safetensors"]


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


def weights_path(folder: Path) -> Path:
    return folder / json.loads((folder / "meta.json").read_text())["weights_file"]


def rewrite_meta(folder: Path, change) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    change(meta)
    (folder / "meta.json").write_text(json.dumps(meta))


def rewrite_tensors(folder: Path, change) -> None:
    tensors = load_file(str(weights_path(folder)))
    key = next(k for k in sorted(tensors) if tensors[k].is_floating_point())
    tensors[key] = change(tensors[key])
    save_file(tensors, str(weights_path(folder)))


# how -> (damage it, words of the refusal, whether listing already shows it as damaged)
DAMAGE = {
    "truncated weights": (lambda f: weights_path(f).write_bytes(weights_path(f).read_bytes()[:100]),
                          "damaged or not safetensors", False),
    "empty weights": (lambda f: weights_path(f).write_bytes(b""), "damaged or not safetensors", False),
    "missing weights": (lambda f: weights_path(f).unlink(), "weights-000003.safetensors is missing", False),
    "missing json": (lambda f: (f / "meta.json").unlink(), "meta.json is missing", True),
    "invalid json": (lambda f: (f / "meta.json").write_text("{not json"), "not valid JSON", True),
    "json nested too deep": (lambda f: (f / "meta.json").write_text("[" * 100_000), "not valid JSON", True),
    "json with a 5,000-digit number": (lambda f: (f / "meta.json").write_text('{"pid": ' + "9" * 5000 + "}"),
                                       "not valid JSON", True),
    "foreign json": (lambda f: (f / "meta.json").write_text('{"hello": "world"}'), "not a Digit Studio run", True),
    "different layers": (lambda f: save_file({"0.weight": torch.zeros(3)}, str(weights_path(f))),
                         "different layers", False),
    "wrong shapes": (lambda f: rewrite_tensors(f, lambda t: torch.zeros(t.shape[0] + 1, *t.shape[1:])),
                     "has shape", False),
    "nan weights": (lambda f: rewrite_tensors(f, lambda t: torch.full_like(t, float("nan"))), "NaN or infinite", False),
    "unknown architecture": (lambda f: rewrite_meta(f, lambda m: m.update(model="alexnet")),
                             "not in this app's model zoo", False),
    "class count": (lambda f: rewrite_meta(f, lambda m: m.update(class_names=["a", "b", "c"])), "with 3 classes", False),
    "too many classes": (lambda f: rewrite_meta(f, lambda m: m.update(class_names=[str(i) for i in range(5000)])),
                         "its class_names must be a list of 2 to 1,000", True),
    "nan normalization": (lambda f: rewrite_meta(f, lambda m: m["normalization"].update(std=float("nan"))),
                          "its normalization.std must be a number from 1e-06 to 1e\\+06", True),
    "zero std": (lambda f: rewrite_meta(f, lambda m: m["normalization"].update(std=0)), "normalization.std", True),
    # numbers float32 cannot carry: every prediction NaN, though each is a finite float64
    "tiny std": (lambda f: rewrite_meta(f, lambda m: m["normalization"].update(std=1e-300)), "normalization.std", True),
    "huge mean": (lambda f: rewrite_meta(f, lambda m: m["normalization"].update(mean=1e300)), "normalization.mean",
                  True),
    "tiny pixel scale": (lambda f: rewrite_meta(f, lambda m: m.update(pixel_scale=1e-300)), "its pixel_scale", True),
    "float64 weights past float32": (lambda f: rewrite_tensors(f, lambda t: torch.full(t.shape, 1e300,
                                                                                      dtype=torch.float64)),
                                     "NaN or infinite values \\(as the model's torch.float32", False),
    "mixed input format": (lambda f: rewrite_meta(f, lambda m: m["input_format"].update(max_value=255)),
                           "input_format mixes MNIST's and the digits'", False),
    "float8 weights": (lambda f: rewrite_tensors(f, lambda t: t.to(torch.float8_e4m3fn)),
                       "holds float8_e4m3fn numbers; the model needs float32", False),
    "complex weights": (lambda f: rewrite_tensors(f, lambda t: t.to(torch.complex64)), "holds complex64 numbers", False),
    "history not a list": (lambda f: rewrite_meta(f, lambda m: m.update(history="all good")),
                           "its history must be a list", True),
    "path in weights name": (lambda f: rewrite_meta(f, lambda m: m.update(weights_file="../../etc/passwd")),
                             "its weights_file must be a weights file name this app writes", True),
    "newline in weights name": (lambda f: rewrite_meta(f, lambda m: m.update(weights_file=m["weights_file"] + "\n")),
                                "its weights_file must be", True),
}


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_runs_are_refused_specifically_and_others_still_list_and_load(store, saved_run, trained_run, how):
    healthy = copy_run(trained_run, store, "healthy-run")
    damage, words, listed_as_damaged = DAMAGE[how]
    damage(store.run_dir(saved_run))
    with pytest.raises(RunError, match=words):
        store.load(saved_run)
    listed = {info.run_id: info for info in store.list_runs()}
    assert listed[healthy].status == "done" and store.load(healthy).meta["epochs_completed"] == 3
    assert (listed[saved_run].status == "damaged") == listed_as_damaged
    if listed_as_damaged:
        assert re.search(words, listed[saved_run].error)


def set_field(meta: dict, where: str, value) -> None:
    """Set a field named as the store's messages name it: "pid", "final.test_accuracy", "history[1].test_loss"."""
    *parents, last = re.findall(r"[^.\[\]]+", where)
    for key in parents:
        meta = meta[int(key)] if isinstance(meta, list) else meta[key]
    if isinstance(meta, list):
        meta[int(last)] = value
    elif value is DELETE:
        del meta[last]
    else:
        meta[last] = value


DELETE = object()
# field -> a malformed value; the first four are the issue's, then each kind of rule of the schema
MALFORMED = [("pid", 2**70), ("created_at", 1700000000), ("final.test_accuracy", "0.99"), ("train_seconds", "12.5"),
             ("pid", "1234"), ("pid", True), ("pid_started", [1]), ("updated_at", "yesterday"), ("status", "exploded"),
             ("reason", None), ("history[1].test_loss", float("nan")), ("history[0].epoch", "1"), ("history[2]", []),
             ("epochs_completed", -1), ("parameters", 2**70), ("train_size", 1.5), ("images_per_second", float("inf")),
             ("final.train_loss", 1e400), ("final", []), ("settings", {"epochs": {"nested": 1}}),
             ("reported_accuracy", 1.5), ("recipe", 7), ("device", ["cpu"]), ("model_title", {"x": 1}),
             ("input_format.size", True), ("normalization.mean", "0.1"), ("model", DELETE), ("status", DELETE),
             ("dataset", ""), ("format_version", "1"),
             ("class_names[3]", "three\n"), ("class_names[3]", ""), ("class_names[3]", "x" * 33), ("class_names[3]", 3),
             ("class_names[3]", "\x1b[31mred"), ("class_names[3]", "   "), ("class_names", ["only one"]),
             # text that would stop a listing (a lone surrogate UTF-8 cannot encode) or forge lines of it
             ("dataset", "\ud800"), ("model", "fast-cnn\n20991231-000000-spoof  done  99.99%"),
             ("host", "\x1b[31mred\x1b[0m"), ("reason", "x" * 5000), ("reason", "bad \ud800"),
             ("settings", {"image_folder": "a\nb"}), ("devices[0]", "cpu\r")]


@pytest.mark.parametrize("where, value", MALFORMED, ids=[f"{w}={str(v)[:12]!r}" for w, v in MALFORMED])
def test_a_malformed_field_makes_its_run_damaged_with_one_sentence_naming_it(store, saved_run, trained_run, where,
                                                                             value):
    healthy = copy_run(trained_run, store, "healthy-run")
    rewrite_meta(store.run_dir(saved_run), lambda meta: set_field(meta, where, value))
    listed = {info.run_id: info for info in store.list_runs()}
    assert listed[healthy].status == "done" and store.load(healthy).meta["epochs_completed"] == 3
    damaged = listed[saved_run]
    assert damaged.status == "damaged" and damaged.meta is None
    assert f"its {where} " in damaged.error, damaged.error
    assert "\n" not in damaged.error and damaged.error.endswith(".") and damaged.error.count(". ") == 0
    with pytest.raises(RunError, match=re.escape(f"its {where} ")):
        store.load(saved_run)


def test_a_run_as_first_saved_passes_the_schema(store):
    recorded = RecordedTraining(QUICK, store)
    next(recorded.events())  # Started: saved with no history, no weights and null final metrics
    info = store.info(recorded.run_id)
    assert info.status == "running" and info.meta is not None and info.get("final")["test_accuracy"] is None


@pytest.mark.parametrize("pid", [2**70, -(2**70), 2**31, 0, -1, "1234", True, None, 1.0, [1]])
def test_any_recorded_pid_is_safe_to_ask_about(pid):
    assert store_module.pid_alive(pid) is False
    assert store_module.process_running(pid, None) is False


@pytest.mark.parametrize("limit, parser, words", [
    ("MAX_WEIGHTS_BYTES", (safetensors.torch, "load"), "weights file is too large"),
    ("MAX_META_BYTES", (json, "loads"), "meta.json is too large"),
])
def test_oversized_files_are_refused_before_parsing(store, saved_run, monkeypatch, limit, parser, words):
    monkeypatch.setattr(store_module, limit, 1000)
    parse = getattr(*parser)

    def parse_unless_huge(data, *args, **kwargs):
        assert len(data) <= 1000, "an oversized file reached the parser"
        return parse(data, *args, **kwargs)
    monkeypatch.setattr(*parser, parse_unless_huge)
    with pytest.raises(RunError, match=words):
        store.load(saved_run)


class TouchesAFile:
    """Unpickling this creates `marker`: if the marker exists, something unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class RunsAShellCommand(TouchesAFile):
    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def torch_save_bytes(payload) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def torch_load_unsafely(data: bytes):
    return torch.load(io.BytesIO(data), weights_only=False)


@pytest.fixture(params=[(TouchesAFile, pickle.dumps, pickle.loads), (RunsAShellCommand, pickle.dumps, pickle.loads),
                        (TouchesAFile, torch_save_bytes, torch_load_unsafely)],
                ids=["pickle-Path.touch", "pickle-os.system", "torch.save-Path.touch"])
def malicious_pickle(request, tmp_path) -> tuple[bytes, Path]:
    """A checkpoint whose loading would create a file, and that file (checked live here, then removed)."""
    payload_class, dump, unsafe_load = request.param
    marker = tmp_path / "created-by-a-pickle"
    data = dump(payload_class(marker))
    unsafe_load(data)
    assert marker.exists(), "the payload must be live for the test to mean anything"
    marker.unlink()
    return data, marker


def plant(data: bytes, place: str, store: RunStore, run_id: str) -> str:
    """Put a malicious checkpoint where a run is expected; returns the run id to load."""
    folder = store.run_dir(run_id)
    if place == "as weights":
        weights_path(folder).write_bytes(data)
    elif place == "as meta":
        (folder / "meta.json").write_bytes(data)
    elif place == "beside the run":
        for name in ("model.pt", "checkpoint.pth", "weights.pkl"):
            (folder / name).write_bytes(data)
    else:
        run_id = "pickled-run"
        store.run_dir(run_id).mkdir()
        (store.run_dir(run_id) / "model.pt").write_bytes(data)
    return run_id


@pytest.mark.parametrize("place", ["as weights", "as meta", "beside the run", "as a run of its own"])
def test_a_malicious_checkpoint_is_refused_and_never_run(store, saved_run, malicious_pickle, place):
    data, marker = malicious_pickle
    run_id = plant(data, place, store, saved_run)
    listed = {info.run_id: info for info in store.list_runs()}
    if place == "beside the run":
        assert store.load(run_id).meta["epochs_completed"] == 3  # stray .pt/.pth files are never read
    else:
        with pytest.raises(RunError):
            store.load(run_id)
    assert listed[run_id].status == ("damaged" if place in ("as meta", "as a run of its own") else "done")
    store.sweep()
    assert not marker.exists()


def test_nothing_in_the_app_can_unpickle():
    unsafe = re.compile(r"import pickle|from pickle|torch\.load\(|allow_pickle=True|weights_only=False|joblib")
    sources = [*REPO.glob("core/*.py"), *REPO.glob("ui/*.py"), *REPO.glob("pages/*.py"), REPO / "streamlit_app.py"]
    assert [p.name for p in sources if unsafe.search(p.read_text(encoding="utf-8"))] == []


def test_a_run_folder_linking_outside_is_refused_and_deleting_it_removes_only_the_link(store, saved_run, trained_run,
                                                                                        tmp_path):
    victim = tmp_path / "outside" / "victim"
    shutil.copytree(trained_run, victim)
    (store.root / "linked").symlink_to(victim, target_is_directory=True)
    stray_temp = victim / f".meta.json.{2**22 + 12345}.abcd1234.tmp"
    stray_temp.write_bytes(b"not ours to sweep")
    with pytest.raises(RunError, match="outside"):
        store.load("linked")
    with pytest.raises(RunError, match="outside"):
        store.save("linked", {"model": "digits-cnn"}, None)
    listed = {info.run_id: info for info in store.list_runs()}
    assert listed["linked"].status == "damaged" and "outside" in listed["linked"].error
    assert listed[saved_run].status == "done" and store.load(saved_run)
    assert store.sweep() == 0 and stray_temp.exists()
    store.delete("linked")
    assert not (store.root / "linked").exists() and (victim / "meta.json").is_file()


@pytest.mark.parametrize("link", ["itself", "a missing folder"])
def test_a_run_folder_that_is_a_broken_link_is_listed_damaged_and_refused_in_one_sentence(store, saved_run, link):
    (store.root / "broken").symlink_to("broken" if link == "itself" else "no-such-run")
    listed = {info.run_id: info for info in store.list_runs()}
    assert listed["broken"].status == "damaged" and listed["broken"].error.endswith(".")
    assert listed[saved_run].status == "done"
    with pytest.raises(RunError):
        store.load("broken")
    store.delete("broken")
    assert not (store.root / "broken").is_symlink() and store.load(saved_run)


@pytest.mark.parametrize("which", ["meta.json", "weights"])
def test_files_linking_outside_the_run_folder_are_refused(store, saved_run, tmp_path, which):
    folder = store.run_dir(saved_run)
    target = folder / "meta.json" if which == "meta.json" else weights_path(folder)
    outside = tmp_path / "outside-file"
    shutil.copy(target, outside)  # the same bytes: only the link is wrong
    target.unlink()
    target.symlink_to(outside)
    with pytest.raises(RunError, match="link to a file outside"):
        store.load(saved_run)


@pytest.mark.parametrize("bad_id", ["../etc", "/etc/passwd", "a/../../b", "..", "", "x" * 200, "runs/inner", "abc\n",
                                    "a\nb", "..\\x", "C:\\Windows", "~root", ".hidden", None, 7])
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
    with pytest.raises(StoreWriteError, match="No space left") as raised:
        store.save(saved_run, json.loads(before), store.load(saved_run).model.state_dict())
    monkeypatch.undo()
    assert str(store.root.resolve()) not in str(raised.value)  # pages show it: no server paths
    assert (store.run_dir(saved_run) / "meta.json").read_bytes() == before
    assert not list(store.run_dir(saved_run).glob(".*.tmp"))
    assert store.load(saved_run)


def test_training_whose_run_cannot_be_saved_ends_as_failed(store, monkeypatch):
    def read_only(*args):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(os, "replace", read_only)
    finished = list(RecordedTraining(QUICK, store).events())[-1]
    assert isinstance(finished, Finished) and finished.status == "failed" and "Read-only" in finished.reason


def test_a_diverged_run_is_saved_as_diverged_with_its_last_finite_epoch_and_loads(store):
    config = TrainConfig(model="fast-cnn", dataset="digits", epochs=3, batch_size=100, train_limit=300)
    recorded = RecordedTraining(config, store)
    for event in recorded.events():
        if isinstance(event, EpochEnd) and event.epoch == 2:  # BatchNorm's running variance overflows, as at lr 1e6
            next(t for n, t in recorded.training.model.named_buffers() if n.endswith("running_var")).fill_(float("inf"))
    assert event.status == "diverged"
    info = store.info(recorded.run_id)
    assert info.status == "diverged" and info.get("reason") == event.reason and "lower" in event.reason
    loaded = store.load(recorded.run_id)
    assert loaded.meta["epochs_completed"] == 2 and loaded.meta["weights_file"] == "weights-000002.safetensors"
    assert all(bool(torch.isfinite(t).all()) for t in loaded.model.state_dict().values() if t.is_floating_point())


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
