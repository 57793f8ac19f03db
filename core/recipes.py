"""The reference recipes of RECIPES.md as presets: settings exactly as published, with the reported accuracy."""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.config import TrainConfig  # not core.training: listing presets must not import torch


@dataclass(frozen=True)
class Recipe:
    """A published training setup and what its authors reported."""

    name: str
    title: str
    config: TrainConfig
    reported_accuracy: float | None  # test accuracy as a fraction; None where the source states none
    reported_note: str
    published: bool = True  # False for this project's own presets

    def settings(self, **overrides: object) -> TrainConfig:
        """The recipe's config with some fields replaced (None values are ignored)."""
        return replace(self.config, **{k: v for k, v in overrides.items() if v is not None})


RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (
    Recipe("digits-cnn", "CNN on scikit-learn digits",
           TrainConfig(model="digits-cnn", dataset="digits", epochs=1000, batch_size=100, optimizer="sgd",
                       learning_rate=0.5, loss="bce-one-hot"),
           0.9867, "98.67% test accuracy (a fully connected net: 95.78%); train loss 0.0008 after 1,000 epochs"),
    Recipe("digit-net", "DigitNet with Adam",
           TrainConfig(model="digit-net", dataset="mnist", epochs=20, batch_size=64, optimizer="adam",
                       learning_rate=1e-3),
           None, "not stated (the text reports about 99%)"),
    Recipe("lenet5", "LeNet-5 at 32x32",
           TrainConfig(model="lenet5", dataset="mnist", epochs=5, batch_size=64, optimizer="adam",
                       learning_rate=1e-3, test_batch_size=32, augment_flip=True),
           0.9772, "97.72% test accuracy after 5 epochs"),
    Recipe("cnn-5x5", "CNN 5x5 with SGD+momentum",
           TrainConfig(model="cnn-5x5", dataset="mnist", epochs=10, batch_size=128, optimizer="momentum",
                       learning_rate=1e-3, momentum=0.9, normalize_mean=0.5, normalize_std=0.5),
           None, "not stated"),
    Recipe("net-10-20", "Net 10-20 with SGD",
           TrainConfig(model="net-10-20", dataset="mnist", epochs=10, batch_size=64, optimizer="momentum",
                       learning_rate=0.01, momentum=0.5),
           0.990, "96.4% after epoch 1, 99.0% after epoch 10 (train 98.88%)"),
    Recipe("fast-cnn-99", "Fast CNN: 99% in under a minute (ours)",
           TrainConfig(model="fast-cnn", dataset="mnist", epochs=8, batch_size=128, optimizer="adam",
                       learning_rate=3e-3, schedule="one-cycle", augment_shift=0.08, augment_rotation=10,
                       augment_scale=0.1),
           None, "99% MNIST test accuracy in under a minute on a 2-core CPU (this project's own preset)",
           published=False),
)}


def recipe(name: str) -> Recipe:
    """The preset called `name`, or ValueError listing the known ones."""
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}.")
    return RECIPES[name]
