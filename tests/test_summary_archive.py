"""The layer summary shown before training, and the downloadable zip of a run."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from safetensors.torch import load as load_safetensors

from core.archive import run_archive
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
