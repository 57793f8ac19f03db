"""The reference recipes of RECIPES.md as presets: settings exactly as published, with the reported accuracy."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from core.config import TrainConfig  # not core.training: listing presets must not import torch

# Training images of the data each recipe was published on: its steps are epochs x ceil(images / batch).
FULL_MNIST_TRAIN_IMAGES = 60_000
PUBLISHED_TRAIN_IMAGES = {"mnist": FULL_MNIST_TRAIN_IMAGES, "digits": 1_347}


SEED_TOLERANCE = 0.005  # issue 19's "within 0.5 point": how far from a measured mean a run still counts as alike
# Settings that do not change what a run learns (or whose effect is counted otherwise: the training images).
NOT_COMPARED = frozenset({"epochs", "seed", "device", "data_dir", "progress_every", "test_batch_size", "train_limit"})
SETTING_WORDS = {"learning_rate": "learning rate", "batch_size": "batch size", "augment_flip": "flip",
                 "augment_shift": "shift", "augment_rotation": "rotation", "augment_scale": "zoom",
                 "normalize_mean": "normalisation", "normalize_std": "normalisation", "weight_decay": "weight decay",
                 "label_smoothing": "label smoothing", "step_epochs": "step schedule"}


@dataclass(frozen=True)
class Measured:
    """A preset's test accuracy measured here by bench/bench_recipes.py: mean and range over seeds."""

    train_images: int  # 14,262: the offline MNIST subset; 60,000: full MNIST; 1,347: scikit-learn digits
    epochs: int
    mean: float
    low: float
    high: float
    seeds: int


@dataclass(frozen=True)
class Comparison:
    """What a finished run of a preset can fairly be held to: a figure at its own step count, or none and why."""

    accuracy: float | None  # None: nothing published or measured is comparable
    source: str  # "reported" or "measured"; "" when there is no figure
    explanation: str  # one sentence, percentages written "97.72%"
    low: float | None = None  # where a run counts as alike: the seeds' range, widened to the mean +- SEED_TOLERANCE
    high: float | None = None


@dataclass(frozen=True)
class Recipe:
    """A published training setup and what its authors reported."""

    name: str
    title: str
    config: TrainConfig
    reported_accuracy: float | None  # test accuracy as a fraction; None where the source states none
    reported_note: str
    published: bool = True  # False for this project's own presets
    measured: tuple[Measured, ...] = ()  # bench/bench_recipes.py's figures (bench/README.md has the runs)

    @property
    def published_steps(self) -> int | None:
        """Optimizer steps of the published run (None for this project's own presets)."""
        if not self.published:
            return None
        images = PUBLISHED_TRAIN_IMAGES[self.config.dataset]
        return self.config.epochs * math.ceil(images / self.config.batch_size)

    def steps(self, train_images: int, epochs: int) -> int:
        return epochs * math.ceil(train_images / self.config.batch_size)

    def published_text(self) -> str:
        """"reports 97.72% after 4,690 steps on 60,000 training images" (or what the source says instead)."""
        if not self.published:
            return ""
        if self.reported_accuracy is None:
            return f"reports {self.reported_note}"
        images = PUBLISHED_TRAIN_IMAGES[self.config.dataset]
        return f"reports {self.reported_accuracy:.2%} after {self.published_steps:,} steps on {images:,} training images"

    def measured_at(self, train_images: int, epochs: int) -> Measured | None:
        return next((m for m in self.measured if (m.train_images, m.epochs) == (train_images, epochs)), None)

    def measured_text(self, measured: Measured) -> str:
        """"98.93% (98.85-99.01%, 3 seeds) after 4,683 steps (21 epochs) on 14,262 training images"."""
        spread = (f"{measured.low * 100:.2f}-{measured.high:.2%}, {measured.seeds} seeds" if measured.seeds > 1 else "1 seed")
        return (f"{measured.mean:.2%} ({spread}) after {self.steps(measured.train_images, measured.epochs):,} steps "
                f"({measured.epochs:,} epochs) on {measured.train_images:,} training images")

    def note(self) -> str:
        """What the preset promises and what it did here, short enough for a narrow column: "Reported: 97.72% test
        accuracy after 5 epochs; 4,690 steps on 60,000 images. Measured here on 14,262 images: 96.46% (96.30-96.60%)
        after 5 epochs, 97.05% (...) after 21, as many steps as published; 3 seeds."."""
        if self.published:
            images = PUBLISHED_TRAIN_IMAGES[self.config.dataset]
            promised = f"Reported: {self.reported_note}; {self.published_steps:,} steps on {images:,} images."
        else:
            promised = f"Goal: {self.reported_note}."
        if not self.measured:
            return promised
        parts = []
        for images in dict.fromkeys(m.train_images for m in self.measured):
            points = [m for m in self.measured if m.train_images == images]
            like = like_steps_epochs(self, images) if self.published else None
            figures = ", ".join(f"{m.mean:.2%}{f' ({m.low * 100:.2f}-{m.high:.2%})' if m.seeds > 1 else ''} after "
                                f"{m.epochs:,} epochs{', as many steps as published' if m.epochs == like else ''}"
                                for m in points)
            seeds = sorted({m.seeds for m in points})
            parts.append(f"on {images:,} images: {figures}; {' or '.join(map(str, seeds))} "
                         f"seed{'' if seeds == [1] else 's'}")
        return f"{promised} Measured here {'. '.join(parts)}."

    def settings(self, **overrides: object) -> TrainConfig:
        """The recipe's config with some fields replaced (None values are ignored)."""
        return replace(self.config, **{k: v for k, v in overrides.items() if v is not None})


RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (
    Recipe("digits-cnn", "CNN on scikit-learn digits",
           TrainConfig(model="digits-cnn", dataset="digits", epochs=1000, batch_size=100, optimizer="sgd",
                       learning_rate=0.5, loss="bce-one-hot"),
           0.9867, "98.67% test accuracy (a fully connected net: 95.78%); train loss 0.0008 after 1,000 epochs",
           measured=(Measured(1_347, 1000, 0.9830, 0.9756, 0.9867, 3),)),
    Recipe("digit-net", "DigitNet with Adam",
           TrainConfig(model="digit-net", dataset="mnist", epochs=20, batch_size=64, optimizer="adam",
                       learning_rate=1e-3),
           None, "not stated (the text reports about 99%)",
           measured=(Measured(14_262, 20, 0.9839, 0.9797, 0.9862, 3), Measured(14_262, 84, 0.9860, 0.9853, 0.9864, 3))),
    Recipe("lenet5", "LeNet-5 at 32x32",
           TrainConfig(model="lenet5", dataset="mnist", epochs=5, batch_size=64, optimizer="adam",
                       learning_rate=1e-3, test_batch_size=32, augment_flip=True),
           0.9772, "97.72% test accuracy after 5 epochs",
           measured=(Measured(14_262, 5, 0.9594, 0.9510, 0.9646, 3), Measured(14_262, 21, 0.9716, 0.9705, 0.9731, 3))),
    Recipe("cnn-5x5", "CNN 5x5 with SGD+momentum",
           TrainConfig(model="cnn-5x5", dataset="mnist", epochs=10, batch_size=128, optimizer="momentum",
                       learning_rate=1e-3, momentum=0.9, normalize_mean=0.5, normalize_std=0.5),
           None, "not stated",
           measured=(Measured(14_262, 10, 0.9444, 0.9411, 0.9480, 3), Measured(14_262, 42, 0.9791, 0.9787, 0.9798, 3))),
    Recipe("net-10-20", "Net 10-20 with SGD",
           TrainConfig(model="net-10-20", dataset="mnist", epochs=10, batch_size=64, optimizer="momentum",
                       learning_rate=0.01, momentum=0.5),
           0.990, "96.4% after epoch 1, 99.0% after epoch 10 (train 98.88%)",
           measured=(Measured(14_262, 10, 0.9758, 0.9740, 0.9782, 3), Measured(14_262, 42, 0.9814, 0.9802, 0.9828, 3))),
    Recipe("fast-cnn-99", "Fast CNN: 99% in under a minute (ours)",
           TrainConfig(model="fast-cnn", dataset="mnist", epochs=8, batch_size=128, optimizer="adam",
                       learning_rate=3e-3, schedule="one-cycle", augment_shift=0.08, augment_rotation=10,
                       augment_scale=0.1),
           None, "99% MNIST test accuracy in under a minute on a 2-core CPU (this project's own preset)",
           published=False, measured=(Measured(14_262, 8, 0.9912, 0.9906, 0.9919, 3),)),
    Recipe("quick-cnn-99", "Quick CNN: 99% in about 15 s of training (ours)",
           TrainConfig(model="quick-cnn", dataset="mnist", epochs=6, batch_size=128, optimizer="adam",
                       learning_rate=3e-3, schedule="one-cycle", augment_shift=0.08, augment_rotation=10,
                       augment_scale=0.1, label_smoothing=0.1),
           None, "99% MNIST test accuracy in under 15 seconds of training on an otherwise idle 2-core CPU (9.1 s median "
           "from the command line; the open page, the browser and other programs share the cores and slow it) "
           "(this project's own preset: fast-cnn-99 with 16 first filters, 6 epochs and label smoothing 0.1)",
           published=False,
           measured=(Measured(14_262, 6, 0.9911, 0.9907, 0.9918, 3),)),
)}


def recipe(name: str) -> Recipe:
    """The preset called `name`, or ValueError listing the known ones."""
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}.")
    return RECIPES[name]


def like_steps_epochs(recipe: Recipe, train_size: int) -> int:
    """Epochs on `train_size` images that take as many steps as the published run (its own epochs when unpublished):
    on the 14,262-image MNIST subset about 4.2 times the published epochs, on full MNIST the published ones."""
    published = recipe.published_steps
    if published is None:
        return recipe.config.epochs
    return max(1, round(published / math.ceil(train_size / recipe.config.batch_size)))


def changed_settings(recipe: Recipe, settings: dict) -> list[str]:
    """The recipe's settings a run changed, in words ("learning rate"); ["settings"] when they cannot be read."""
    try:
        run = TrainConfig.from_dict(settings).to_dict()
    except (TypeError, ValueError, AttributeError):  # a damaged meta.json: nothing to compare
        return ["settings"]
    own = recipe.config.to_dict()
    changed = [SETTING_WORDS.get(f.name, f.name) for f in fields(TrainConfig)
               if f.name not in NOT_COMPARED and run[f.name] != own[f.name]]
    return list(dict.fromkeys(changed))


def planned_reference(recipe: Recipe | None, config: TrainConfig, train_images: int) -> Comparison | None:
    """The figure a run with these settings will be held to if it ends as planned (its live chart draws it), or None
    when no published or measured figure is at its step count: a subset run of a full-MNIST recipe, changed settings."""
    if recipe is None or train_images <= 0:
        return None
    comparison = compare_run(recipe, config.to_dict(), train_images, config.epochs)
    return comparison if comparison.accuracy is not None else None


def _as_published(recipe: Recipe, measured: Measured | None) -> Comparison:
    """A run as long as the published one, on its data: held to the published figure; where seeds were measured here
    at the same steps, a run inside their range is as good as the recipe gives (one seed is no range)."""
    said = f"The recipe {recipe.published_text()}, as this run did."
    if measured is None or measured.seeds < 2:
        return Comparison(recipe.reported_accuracy, "reported", said)
    return Comparison(recipe.reported_accuracy, "reported", f"{said} Measured here with the same settings: "
                      f"{recipe.measured_text(measured)}.", measured.low, measured.high)


def compare_run(recipe: Recipe, settings: dict, train_images: int, epochs: int) -> Comparison:
    """The figure a run of `recipe` (its saved settings, training images and completed epochs) is held to: the
    published one at the published step count on the published data, else the one measured here at the same steps
    on the same images, else none, with the reason."""
    changed = changed_settings(recipe, settings)
    if changed:
        return Comparison(None, "", f"This run changed the recipe's {', '.join(changed)}, so no published or measured "
                          "figure applies.")
    planned = settings.get("epochs")
    if recipe.config.schedule != "none" and planned != epochs:  # a schedule shaped for more epochs, cut short
        return Comparison(None, "", f"This run stopped after {epochs:,} of its {planned} epochs, before its "
                          "learning-rate schedule ended, so no published or measured figure applies.")
    steps = recipe.steps(train_images, epochs)
    published_data = PUBLISHED_TRAIN_IMAGES.get(recipe.config.dataset)
    measured = recipe.measured_at(train_images, epochs)
    if recipe.published and recipe.reported_accuracy is not None and (train_images, epochs) == (
            published_data, recipe.config.epochs):
        return _as_published(recipe, measured)
    published = f"The recipe {recipe.published_text()}. " if recipe.published else ""
    if measured is not None:
        # Three seeds understate the spread (and another thread count moves a run by as much), and one seed tells
        # nothing of it: a run within the tolerance of the mean counts as alike too.
        low = min(measured.low, measured.mean - SEED_TOLERANCE)
        high = max(measured.high, measured.mean + SEED_TOLERANCE)
        band = (f" (one seed, so a run within {SEED_TOLERANCE:.1%} of it counts as alike)" if measured.seeds == 1 else
                f" (a run inside that range or within {SEED_TOLERANCE:.1%} of the mean counts as alike)")
        return Comparison(measured.mean, "measured", f"{published}Measured here with the same settings: "
                          f"{recipe.measured_text(measured)}, as this run did{band}.", low, high)
    nearest = "; ".join(recipe.measured_text(m) for m in recipe.measured if m.train_images == train_images)
    known = f"{published}Measured here: {nearest}. " if nearest else published
    return Comparison(None, "", f"{known}This run took {steps:,} steps ({epochs:,} epochs) on {train_images:,} "
                      "training images: no published or measured figure is at that step count.")
