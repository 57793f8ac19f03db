"""Fine-tuning on a digit collection: starting from a saved run, batches mixed with MNIST, the held-out part and the
original test set evaluated, both recorded before and after; and training from scratch on a folder alone."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import FINE_TUNE_SETTINGS, fine_tune_config
from core.data import DIGIT_NAMES, Dataset
from core.folder_data import load_image_folder
from core.inference import load_default_model, predict
from core.preprocess import MNIST_FORMAT
from core.record import RecordedTraining
from core.store import META_FILE, RunStore, read_meta
from core.training import (ConfigError, EpochEnd, Finished, Started, TrainConfig, Training, resolve_start, train)
from tests.drawn_digits import drawn
from tests.font_digits import available_fonts, write_collection


@pytest.fixture(scope="module")
def font_collection(tmp_path_factory) -> Path:
    """150 digits in italic fonts, stretched wide and slanted back (15 a class): the shipped model reads ~65%."""
    if not available_fonts():
        pytest.skip("no DejaVu or Liberation font under /usr/share/fonts to draw the collection with")
    folder = tmp_path_factory.mktemp("collections") / "wide-hand"
    assert write_collection(folder, per_class=15, seed=0) == 150
    return folder


def drawn_collection(folder: Path, per_class: int = 4) -> Path:
    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True)
        for index in range(per_class):
            drawn(digit, width=12 + 3 * index).save(folder / str(digit) / f"{index}.png")
    return folder


def fake_mnist(count: int = 300, test: int = 50) -> Dataset:
    """MNIST's shape without MNIST: random 28x28 images, enough to check how batches are made."""
    generator = torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, 28, 28), generator=generator, dtype=torch.uint8)  # noqa: E731
    labels = lambda n: torch.arange(n) % 10  # noqa: E731
    return Dataset("mnist", images(count), labels(count), images(test), labels(test), DIGIT_NAMES, 0.1307, 0.3081,
                   MNIST_FORMAT)


def test_a_fine_tune_from_the_shipped_model_learns_the_collection_and_keeps_mnist(font_collection, mnist_dir, tmp_path):
    shipped = load_default_model()
    config = fine_tune_config("default", shipped.meta, str(font_collection), data_dir=str(mnist_dir))
    recorded = RecordedTraining(config, RunStore(tmp_path / "runs"))
    events = list(recorded.events())
    started, finished = events[0], events[-1]
    assert isinstance(started, Started) and isinstance(finished, Finished) and finished.status == "done"
    assert started.before_test_accuracy == pytest.approx(shipped.meta["final"]["test_accuracy"])  # 99.15%
    assert started.before_collection_accuracy < 0.8  # the wide, back-slanted hand is new to the shipped model
    assert finished.collection_accuracy >= started.before_collection_accuracy + 0.15
    assert finished.test_accuracy > started.before_test_accuracy - 0.005  # under half a point lost on MNIST's test set
    tuned = RunStore(tmp_path / "runs").load(recorded.run_id)  # the saved run, read back as Predict would
    folder = load_image_folder(font_collection, seed=config.seed)
    held_out = folder.pixels[folder.held_out], folder.labels[folder.held_out]
    accuracy = lambda run: float((predict(run, held_out[0]) == held_out[1]).mean())  # noqa: E731
    assert accuracy(shipped) == pytest.approx(started.before_collection_accuracy)
    assert accuracy(tuned) == pytest.approx(finished.collection_accuracy)


def test_the_fine_tunes_metadata_records_where_it_started_and_both_test_sets(tmp_path):
    folder = drawn_collection(tmp_path / "mine")
    config = replace(fine_tune_config("default", load_default_model().meta, str(folder)), epochs=2)
    recorded = RecordedTraining(config, RunStore(tmp_path / "runs"), data=fake_mnist())
    events = list(recorded.events())
    meta = read_meta(recorded.run_dir)  # passes the store's schema
    assert meta["from_run"] == "default" and meta["dataset"] == "mnist" and meta["model"] == "fast-cnn"
    assert meta["collection"] == {"name": "mine", "images": 40, "train_images": 30, "held_out_images": 10,
                                  "held_out_share": 0.2, "share": 0.5, "mixed_with": "mnist"}
    assert meta["before"] == {"test_accuracy": events[0].before_test_accuracy,
                              "collection_accuracy": events[0].before_collection_accuracy}
    last = [event for event in events if isinstance(event, EpochEnd)][-1]
    assert meta["final"]["test_accuracy"] == last.test_accuracy  # the original test set, as in every run
    assert meta["final"]["collection_accuracy"] == last.collection_accuracy == meta["history"][-1]["collection_accuracy"]
    assert meta["normalization"] == {"mean": 0.1307, "std": 0.3081}


def test_training_starts_from_the_runs_weights(tmp_path):
    shipped = load_default_model()
    config = replace(fine_tune_config("default", shipped.meta, str(drawn_collection(tmp_path / "d"))), epochs=1)
    training = Training(config, fake_mnist())
    for name, tensor in shipped.model.state_dict().items():
        assert torch.equal(training.model.state_dict()[name].cpu(), tensor), name
    scratch = Training(replace(config, from_run=None), fake_mnist())
    first = next(iter(shipped.model.state_dict()))
    assert not torch.equal(scratch.model.state_dict()[first].cpu(), shipped.model.state_dict()[first])


def test_each_mixed_batch_takes_its_share_from_the_folder_and_one_epoch_passes_over_it_once(tmp_path):
    folder = drawn_collection(tmp_path / "d", per_class=5)  # 40 to train on, 10 held out
    config = replace(fine_tune_config("default", load_default_model().meta, str(folder)), batch_size=16,
                     collection_share=0.25)
    training = Training(config, fake_mnist())
    batches = training._epoch_batches(40 + 300, torch.Generator().manual_seed(0))
    assert training.folder_per_batch == 4 and training.steps_per_epoch == len(batches) == 10
    from_folder = torch.cat([batch[batch < 40] for batch in batches])
    assert sorted(from_folder.tolist()) == list(range(40))  # every training image of the folder once
    assert all(len(batch) == 16 and int((batch < 40).sum()) == 4 for batch in batches)
    assert training.train_size == 40 + 10 * 12


def test_the_held_out_digits_are_never_trained_on(tmp_path):
    folder_path = drawn_collection(tmp_path / "d")
    config = replace(fine_tune_config("default", load_default_model().meta, str(folder_path)), augment_shift=0.0,
                     augment_rotation=0.0, augment_scale=0.0)
    training = Training(config, fake_mnist())
    train_x = training._tensors()[0]
    held_x = training._held_out()[0]
    trained = {tuple(row.flatten().tolist()) for row in train_x}
    assert len(held_x) == 10 and not any(tuple(row.flatten().tolist()) in trained for row in held_x)


def test_training_from_scratch_on_a_folder_alone_tests_on_its_held_out_part(tmp_path):
    folder = drawn_collection(tmp_path / "d")
    config = TrainConfig(model="mlp", dataset="folder", image_folder=str(folder), epochs=3, batch_size=10)
    recorded = RecordedTraining(config, RunStore(tmp_path / "runs"))
    events = list(recorded.events())
    assert events[0].test_size == 10 and events[0].train_size == 30 and events[0].before_test_accuracy is None
    last = [event for event in events if isinstance(event, EpochEnd)][-1]
    assert last.collection_accuracy == last.test_accuracy and events[-1].status == "done"
    meta = read_meta(recorded.run_dir)
    assert meta["dataset"] == "folder" and meta["from_run"] is None and meta["before"] is None
    assert meta["collection"]["mixed_with"] is None and meta["collection"]["share"] == 1.0


def test_runs_without_a_folder_record_what_they_always_did(tmp_path):
    config = TrainConfig(model="digits-cnn", dataset="digits", epochs=2, batch_size=100)
    recorded = RecordedTraining(config, RunStore(tmp_path))
    list(recorded.events())
    meta = read_meta(recorded.run_dir)
    assert "collection_accuracy" not in meta["history"][0] and "collection_accuracy" not in meta["final"]
    assert meta["from_run"] is None and meta["collection"] is None and meta["before"] is None


def test_a_run_id_is_continued_from_the_runs_folder(tmp_path):
    store = RunStore(tmp_path)
    first = RecordedTraining(TrainConfig(model="digits-cnn", dataset="digits", epochs=2, batch_size=100), store)
    list(first.events())
    start = resolve_start(first.run_id, store)
    assert start.run_id == first.run_id and resolve_start(None, store) is None
    config = TrainConfig(model="digits-cnn", dataset="digits", epochs=1, batch_size=100, from_run=first.run_id)
    second = RecordedTraining(config, store)
    events = list(second.events())
    assert events[0].before_test_accuracy == pytest.approx(first.training.history[-1].test_accuracy)
    assert read_meta(second.run_dir)["from_run"] == first.run_id


@pytest.mark.parametrize("changes, words", [
    (dict(model="lenet5"), "run default is a fast-cnn model, not lenet5"),
    (dict(dataset="digits", image_folder=None), "reads 28x28 images, the data is 8x8"),
])
def test_a_run_that_cannot_be_continued_on_that_data_is_refused(changes, words):
    config = replace(fine_tune_config("default", load_default_model().meta), **changes)
    with pytest.raises(ConfigError, match=words):
        Training(config, fake_mnist() if config.dataset == "mnist" else None)


@pytest.mark.parametrize("changes, words", [
    (dict(collection_share=0.0), "collection share must be a number, more than 0 and at most 1"),
    (dict(collection_share=1.5), "collection share must be"),
    (dict(collection_share=math.nan), "collection share must be"),
    (dict(held_out_share=0.6), "held-out share must be a number, more than 0 and at most 0.5"),
    (dict(dataset="folder", image_folder=None), "dataset 'folder' needs an image folder"),
    (dict(dataset="fashion-mnist"), "trains alone or mixed with mnist, not with 'fashion-mnist'"),
])
def test_folder_settings_out_of_range_are_refused_before_anything_loads(changes, words):
    config = replace(TrainConfig(dataset="mnist", image_folder="/nonexistent"), **changes)
    with pytest.raises(ConfigError, match=words):
        list(train(config))


def test_fine_tune_config_takes_the_runs_model_data_and_normalisation():
    meta = load_default_model().meta
    config = fine_tune_config("default", meta, "/some/folder", epochs=3, seed=None)
    assert (config.model, config.dataset, config.normalize_mean, config.normalize_std) == ("fast-cnn", "mnist",
                                                                                          0.1307, 0.3081)
    assert config.epochs == 3 and config.learning_rate == FINE_TUNE_SETTINGS["learning_rate"] and config.seed == 0
    assert config.from_run == "default" and config.image_folder == "/some/folder" and config.mixes_folder


@pytest.mark.parametrize("field, value, words", [
    ("collection", {"name": "", "images": 3}, "its collection.name must be text of 1 to 64 characters"),
    ("collection", "mine", "its collection must be an object naming the image folder, or null"),
    ("before", {"test_accuracy": 1.5}, "its before.test_accuracy must be a fraction from 0 to 1, or null"),
    ("from_run", 7, "its from_run must be a run id"),
    ("final", {"collection_accuracy": -1}, "its final.collection_accuracy must be a fraction"),
])
def test_the_store_refuses_damaged_fine_tune_fields(tmp_path, field, value, words):
    source = Path(load_default_model().path) / META_FILE
    meta = {**json.loads(source.read_text()), field: value}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=words):
        read_meta(tmp_path / "run")


def test_held_out_pixels_are_those_the_training_evaluates(tmp_path):
    folder = drawn_collection(tmp_path / "d")
    config = replace(fine_tune_config("default", load_default_model().meta, str(folder)), epochs=1)
    training = Training(config, fake_mnist())
    data = load_image_folder(folder)
    expected = ((torch.from_numpy(data.pixels[data.held_out]).float() / 255 - 0.1307) / 0.3081).unsqueeze(1)
    assert torch.allclose(training._held_out()[0], expected) and np.array_equal(training._held_out()[1].numpy(),
                                                                                 data.labels[data.held_out])


def test_a_continued_run_keeps_the_normalisation_its_weights_expect():
    other_mean = replace(fake_mnist(), mean=0.5, std=0.2)  # a dataset normalised otherwise
    config = TrainConfig(model="fast-cnn", dataset="mnist", from_run="default", epochs=1)
    assert (Training(config, other_mean).mean, Training(config, other_mean).std) == (0.1307, 0.3081)
    assert Training(replace(config, from_run=None), other_mean).mean == 0.5
