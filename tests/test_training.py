import math
import threading
import time
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from core.augment import Augmentation, augment_batch
from core.data import load_dataset
from core.recipes import RECIPES, recipe
from core.training import (BatchProgress, ConfigError, EpochEnd, Finished, Started, TrainConfig, Training,
                           compute_loss, train, validate)

QUICK = TrainConfig(model="digits-cnn", dataset="digits", epochs=3, batch_size=100, optimizer="sgd",
                    learning_rate=0.5, loss="bce-one-hot", progress_every=5)


def run(config):
    return list(train(config))


def test_event_stream_has_a_start_progress_epochs_and_one_end():
    events = run(QUICK)
    assert isinstance(events[0], Started) and events[0].steps_per_epoch == 14 and events[0].parameters == 3018
    assert isinstance(events[-1], Finished) and events[-1].status == "done"
    assert sum(isinstance(e, Finished) for e in events) == 1
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    progress = [e for e in events if isinstance(e, BatchProgress)]
    assert [p.step for p in progress] == list(range(5, 43, 5))
    assert all(p.images_per_second > 0 and p.eta_seconds >= 0 for p in progress)


def test_a_quick_run_still_reports_its_progress_often_enough_to_draw(monkeypatch):
    monkeypatch.setattr("core.training.PROGRESS_INTERVAL_SECONDS", 3600.0)  # as if every step were instant
    steps = [e.step for e in run(replace(QUICK, progress_every=0)) if isinstance(e, BatchProgress)]
    assert steps == list(range(1, 43))  # 42 steps: each one (a run of 1,000 steps: every 20th)
    long_run = replace(QUICK, progress_every=0, epochs=8, batch_size=10)  # 135 steps an epoch, 1,080 in all
    steps = [e.step for e in run(long_run) if isinstance(e, BatchProgress)]
    assert steps == list(range(21, 1081, 21))  # 50 times


def test_the_live_train_accuracy_is_over_the_latest_steps_whatever_epoch_they_were_in(monkeypatch):
    """Over "this epoch so far", the live curve restarted at each epoch from one or two batches."""
    sizes: list[int] = []

    def scripted_step(self, images, labels, optimizer, generator, weight=1.0):
        sizes.append(len(labels))
        right = len(labels) if len(sizes) <= 14 else 0  # every answer right in epoch 1 (14 steps), none after
        return torch.tensor(0.1), torch.tensor(right)

    monkeypatch.setattr(Training, "_step", scripted_step)
    progress = {e.step: e.accuracy for e in run(replace(QUICK, progress_every=1, epochs=2))
                if isinstance(e, BatchProgress)}
    assert sizes[12:15] == [100, 47, 100]  # 1,347 images in batches of 100
    assert progress[14] == 1.0
    assert progress[15] == pytest.approx(147 / 247)  # the latest fifth of an epoch: 3 steps, two of them epoch 1's
    assert progress[17] == 0.0 and progress[28] == 0.0


def test_digits_cnn_accuracy_rises_past_a_threshold():
    epochs = [e for e in run(QUICK.__class__(**{**QUICK.__dict__, "epochs": 40})) if isinstance(e, EpochEnd)]
    assert epochs[0].test_accuracy < epochs[-1].test_accuracy
    assert epochs[-1].test_accuracy > 0.95


def test_mnist_subset_run_learns(mnist_dir):
    config = TrainConfig(model="fast-cnn", dataset="mnist", data_dir=str(mnist_dir), epochs=1, batch_size=128,
                         optimizer="adam", learning_rate=3e-3, train_limit=4000)
    finished = run(config)[-1]
    assert finished.status == "done" and finished.test_accuracy > 0.93  # on the full 10,000 test images


def test_same_seed_same_result_on_the_cpu():
    first, second = Training(QUICK), Training(QUICK)
    accuracies = [[e.test_accuracy for e in t.events() if isinstance(e, EpochEnd)] for t in (first, second)]
    assert accuracies[0] == accuracies[1]
    for name, tensor in first.last_complete_state.items():
        assert torch.equal(tensor, second.last_complete_state[name]), name
    other = Training(TrainConfig(**{**QUICK.__dict__, "seed": 1}))
    list(other.events())
    assert not torch.equal(other.last_complete_state["0.weight"], first.last_complete_state["0.weight"])


def test_stop_from_another_thread_ends_within_a_second_and_keeps_the_last_epoch():
    training = Training(recipe("digits-cnn").config)
    stop, stopped_at, seen = threading.Event(), [], []

    def press_stop():
        while len(training.history) < 3:
            time.sleep(0.01)
        stopped_at.append(time.perf_counter())
        stop.set()
    threading.Thread(target=press_stop, daemon=True).start()
    for event in training.events(stop):
        seen.append(event)
    finished = seen[-1]
    assert finished.status == "stopped" and time.perf_counter() - stopped_at[0] < 1.0
    assert finished.epochs_completed == len(training.history) >= 3
    assert training.last_complete_state is not None


def test_a_diverging_run_ends_diverged_with_the_reason_and_no_traceback():
    config = TrainConfig(model="mlp", dataset="digits", epochs=2, optimizer="sgd", learning_rate=1e30)
    finished = run(config)[-1]
    assert finished.status == "diverged" and "NaN or infinite" in finished.reason
    assert finished.reason.endswith("learning rate 1e+30: try a lower one, such as 1e+29")


def test_a_diverging_binary_cross_entropy_run_ends_diverged_not_failed():
    """BCE raises on the NaN probabilities of diverged weights: that is divergence, not a crash."""
    config = recipe("digits-cnn").settings(epochs=2, learning_rate=1e30, train_limit=400)
    finished = run(config)[-1]
    assert finished.status == "diverged", finished.reason
    assert "try a lower one" in finished.reason


def finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())


def test_weights_that_turn_infinite_while_the_loss_stays_finite_end_the_run_as_diverged():
    config = TrainConfig(model="fast-cnn", dataset="digits", epochs=3, batch_size=100, optimizer="sgd",
                         learning_rate=1e6, train_limit=300)  # BatchNorm's running variance overflows to inf
    training = Training(config)
    events = list(training.events())
    assert events[-1].status == "diverged" and "try a lower one" in events[-1].reason
    assert events[-1].epochs_completed == len(training.history)
    assert all(math.isfinite(e.test_loss) for e in training.history)
    assert training.last_complete_state is None or finite(training.last_complete_state)


def test_a_run_that_diverges_after_an_epoch_keeps_that_epochs_weights():
    training = Training(TrainConfig(model="fast-cnn", dataset="digits", epochs=3, batch_size=100, train_limit=300))
    for event in training.events():
        if isinstance(event, EpochEnd) and event.epoch == 2:
            kept = {name: tensor.clone() for name, tensor in training.last_complete_state.items()}
            running_var = next(t for name, t in training.model.named_buffers() if name.endswith("running_var"))
            running_var.fill_(float("inf"))  # what lr 1e6 does to BatchNorm, on a run that was learning
    assert event.status == "diverged" and event.epochs_completed == 2 and len(training.history) == 2
    assert all(torch.equal(kept[name], tensor) for name, tensor in training.last_complete_state.items())


@pytest.mark.parametrize("changes, words", [
    ({"learning_rate": 0}, "learning rate"), ({"learning_rate": -1}, "learning rate"),
    ({"batch_size": 0}, "batch size"), ({"epochs": 0}, "epochs"), ({"epochs": 10_001}, "epochs must be at most 10,000"),
    ({"model": "alexnet"}, "Unknown model"),
    ({"dataset": "cifar"}, "Unknown dataset"), ({"optimizer": "rmsprop"}, "optimizer"),
    ({"seed": 2**63}, "seed must be a whole number from 0 to 9,223,372,036,854,775,807, not 9223372036854775808"),
    ({"seed": 2**64}, "seed must be a whole number from 0"), ({"seed": -1}, "seed must be a whole number from 0"),
    ({"weight_decay": float("inf")}, "weight decay must be a finite number"),  # would make its own run unreadable
    ({"normalize_mean": float("nan")}, "normalisation mean must be a number from"),
    ({"normalize_std": float("inf")}, "normalisation std must be a number from"),
])
def test_settings_out_of_range_are_refused(changes, words):
    with pytest.raises(ConfigError, match=words):
        validate(TrainConfig(**{**QUICK.__dict__, **changes}))


def test_batch_larger_than_the_dataset_is_refused():
    with pytest.raises(ConfigError, match="larger than the 1347 training images"):
        Training(TrainConfig(**{**QUICK.__dict__, "batch_size": 5000}))


def test_losses_match_pytorch_references():
    logits, labels = torch.randn(16, 10), torch.randint(0, 10, (16,))
    ours = compute_loss(logits, labels, "logits", "cross-entropy", 0.1)
    assert torch.allclose(ours, F.cross_entropy(logits, labels, label_smoothing=0.1), atol=1e-6)
    probs = logits.softmax(1)
    bce = F.binary_cross_entropy(probs, F.one_hot(labels, 10).float())
    assert torch.allclose(compute_loss(probs, labels, "probs", "bce-one-hot", 0.0), bce, atol=1e-6)
    assert torch.allclose(compute_loss(logits.log_softmax(1), labels, "log_probs", "cross-entropy", 0.0),
                          F.cross_entropy(logits, labels), atol=1e-6)


def test_augmentation_transforms_whole_batches():
    images = load_dataset("digits").train_images[:32].unsqueeze(1).float()
    generator = torch.Generator().manual_seed(0)
    assert augment_batch(images, Augmentation(), generator) is images
    moved = augment_batch(images, Augmentation(shift=0.2, rotation=20, scale=0.2), generator)
    assert moved.shape == images.shape and not torch.allclose(moved, images)
    assert torch.equal(augment_batch(torch.zeros(4, 1, 8, 8), Augmentation(rotation=30), generator), torch.zeros(4, 1, 8, 8))
    flipped = augment_batch(images, Augmentation(horizontal_flip=True), torch.Generator().manual_seed(1))
    assert all(torch.equal(f, i) or torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images))


def test_recipes_fill_the_settings_as_published():
    digits = recipe("digits-cnn").config
    assert (digits.loss, digits.optimizer, digits.learning_rate, digits.batch_size, digits.epochs) == \
        ("bce-one-hot", "sgd", 0.5, 100, 1000)
    assert recipe("lenet5").reported_accuracy == 0.9772 and recipe("lenet5").config.augment_flip
    assert recipe("cnn-5x5").config.normalize_mean == 0.5 and recipe("net-10-20").config.momentum == 0.5
    assert {"digits-cnn", "digit-net", "lenet5", "cnn-5x5", "net-10-20"} <= set(RECIPES)
    assert recipe("net-10-20").settings(epochs=1, seed=None).epochs == 1


def test_a_diverged_job_ends_so_pages_stop_polling(tmp_path):
    from core.jobs import JobManager

    manager = JobManager(tmp_path / "runs")
    job = manager.submit(TrainConfig(model="mlp", dataset="digits", epochs=2, optimizer="sgd", learning_rate=1e30))
    assert manager.wait_idle(120)
    snapshot = manager.snapshot(job)
    assert snapshot.status == "diverged" and not snapshot.active and "try a lower one" in snapshot.message


def test_images_per_second_counts_training_not_evaluation(monkeypatch):
    evaluate = Training._evaluate
    pause = 0.5  # several times the two epochs' training (0.1 s here): counted in, it would halve their speed at least

    def slow_evaluation(self, inputs):  # a test set far larger than the training set, as in a fine-tune
        time.sleep(pause)
        return evaluate(self, inputs)

    monkeypatch.setattr(Training, "_evaluate", slow_evaluation)
    finished = run(TrainConfig(**{**QUICK.__dict__, "epochs": 2}))[-1]
    images = 2 * 1347  # two epochs of the digits' training images
    assert finished.elapsed_seconds >= 2 * pause  # the run's time still holds its evaluations
    assert finished.images_per_second > 2 * images / finished.elapsed_seconds  # its speed does not
