"""The layer summary shown before training, and the downloadable zip of a run."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from safetensors.torch import load as load_safetensors

import core.archive as archive_module
from core.archive import run_archive
from core.inference import DEFAULT_MODEL_DIR
from core.models import build_model, count_parameters, list_models
from core.record import RecordedTraining
from core.store import RunError, RunStore
from core.summary import model_summary
from core.training import TrainConfig


@pytest.mark.parametrize("name", list_models())
def test_the_summary_counts_every_parameter_and_ends_in_one_score_per_class(name):
    summary = model_summary(name, 28, 10)
    assert summary.parameters == count_parameters(build_model(name, image_size=28, num_classes=10))
    assert summary.layers[-1].output_shape == (10,)


def test_lenet5_layers_match_the_published_shapes():
    shapes = [(row.kind, row.output_shape) for row in model_summary("lenet5", 28, 10).layers]
    assert ("Conv2d", (6, 28, 28)) in shapes and ("Conv2d", (16, 10, 10)) in shapes and ("Linear", (120,)) in shapes


def test_a_run_downloads_as_a_zip_of_its_metadata_and_weights(tmp_path):
    store = RunStore(tmp_path)
    recorded = RecordedTraining(TrainConfig(model="digits-cnn", dataset="digits", epochs=1, train_limit=200), store)
    list(recorded.events())
    info = store.info(recorded.run_id)
    with zipfile.ZipFile(io.BytesIO(run_archive(info))) as archive:
        names = sorted(archive.namelist())
        assert names == sorted([f"{info.run_id}/meta.json", f"{info.run_id}/{info.get('weights_file')}"])
        assert json.loads(archive.read(f"{info.run_id}/meta.json"))["status"] == "done"
        weights = load_safetensors(archive.read(f"{info.run_id}/{info.get('weights_file')}"))
    assert weights.keys() == store.load(recorded.run_id).model.state_dict().keys()


def test_a_run_without_weights_cannot_be_downloaded(tmp_path):
    store = RunStore(tmp_path)
    recorded = RecordedTraining(TrainConfig(model="digits-cnn", dataset="digits", epochs=1, train_limit=200), store)
    next(recorded.events())  # Started: the run folder exists, its first epoch has not ended
    with pytest.raises(RunError, match="no saved weights"):
        run_archive(store.info(recorded.run_id))


@pytest.fixture
def shipped_run(tmp_path) -> tuple[RunStore, str, Path]:
    """A copy of the shipped model as a run: its store, id and weights path, and a secret file outside the runs."""
    store = RunStore(tmp_path / "runs")
    folder = shutil.copytree(DEFAULT_MODEL_DIR, store.root / "shipped")
    (tmp_path / "secret").write_text("root:x:0:0:the server's own file\n")
    return store, "shipped", folder / json.loads((folder / "meta.json").read_text())["weights_file"]


def replace_with(path: Path, how: str, secret: Path) -> None:
    """Put something other than the run's own file at `path`."""
    path.unlink()
    if how == "symlink to a secret":
        path.symlink_to(secret)
    elif how == "symlink to /dev/urandom":
        path.symlink_to("/dev/urandom")
    elif how == "hard link to a secret":
        os.link(secret, path)
    else:
        os.mkfifo(path)  # opening a pipe for reading would wait for a writer forever


LEAKS = ["symlink to a secret", "symlink to /dev/urandom", "hard link to a secret", "named pipe"]


@pytest.mark.parametrize("which", ["weights", "meta.json"])
@pytest.mark.parametrize("how", LEAKS)
def test_an_archive_holds_only_the_run_folders_own_regular_files(shipped_run, tmp_path, which, how):
    store, run_id, weights = shipped_run
    info = store.info(run_id)  # listed while the run was whole
    replace_with(weights if which == "weights" else store.run_dir(run_id) / "meta.json", how, tmp_path / "secret")
    with pytest.raises(RunError, match="not a plain file of its own folder"):
        run_archive(info)


def test_weights_whose_size_differs_from_their_header_are_refused(shipped_run, tmp_path):
    store, run_id, weights = shipped_run
    with open(weights, "ab") as stream:
        stream.write((tmp_path / "secret").read_bytes())  # the right header, with a file smuggled after the tensors
    with pytest.raises(RunError, match="not the size its safetensors header gives"):
        run_archive(store.info(run_id))
    weights.write_bytes((tmp_path / "secret").read_bytes() * 100)  # not safetensors at all
    with pytest.raises(RunError, match="not the size its safetensors header gives"):
        run_archive(store.info(run_id))


def test_weights_over_the_size_limit_are_refused_before_reading(shipped_run, monkeypatch):
    store, run_id, _ = shipped_run
    monkeypatch.setattr(archive_module, "MAX_WEIGHTS_BYTES", 1000)
    with pytest.raises(RunError, match="too large"):
        run_archive(store.info(run_id))


def test_a_link_swapped_in_between_the_check_and_the_read_is_refused(shipped_run, tmp_path, monkeypatch):
    store, run_id, weights = shipped_run
    real_open = os.open

    def swap_then_open(path, flags, *args, **kwargs):
        if path == weights.name:  # the check has passed: an attacker swaps the file for a link now
            weights.unlink()
            weights.symlink_to(tmp_path / "secret")
        return real_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(os, "open", swap_then_open)
    with pytest.raises(RunError, match="not a plain file of its own folder"):
        run_archive(store.info(run_id))


def test_a_run_folder_that_links_to_another_run_says_so_when_downloaded(shipped_run):
    store, run_id, _ = shipped_run
    (store.root / "alias").symlink_to(store.root / run_id, target_is_directory=True)  # inside the runs: it loads
    assert store.load("alias").run_id == "alias"
    with pytest.raises(RunError, match="its folder is a link.*download the run it links to instead"):
        run_archive(store.info("alias"))  # it said "cannot be opened (Not a directory)"
