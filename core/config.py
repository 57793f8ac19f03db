"""Training settings as a plain dataclass: importing it costs no torch, so pages list presets without the 2 s import."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from core.augment import Augmentation

OptimizerName = Literal["sgd", "momentum", "adam", "adamw"]
ScheduleName = Literal["none", "step", "one-cycle"]
LossName = Literal["cross-entropy", "bce-one-hot"]
OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adam", "adamw")
SCHEDULES: tuple[str, ...] = ("none", "step", "one-cycle")
LOSSES: tuple[str, ...] = ("cross-entropy", "bce-one-hot")
# Each epoch adds a row (~200 bytes) to the run's history in meta.json, which the store refuses past 8 MB.
MAX_EPOCHS = 10_000
MAX_SEED = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer
DEFAULT_MODEL_RUN = "default"  # from_run naming the model shipped in core/default_model
FOLDER_DATASET = "folder"  # dataset of a run trained on its image folder alone
FOLDER_MIXES_WITH = ("mnist",)  # a folder of digits in MNIST's style mixes with MNIST only


class ConfigError(ValueError):
    """Training settings that cannot work; str() says which and why."""


# Images a forward pass takes at a time when a model only reads (each epoch's test, Explore's model tab):
# small enough that each layer's output stays in the CPU's caches for the next. Against batches of 1,000: the
# convolutional models with wide early layers read MNIST's test set 1.5-3.3x sooner (fast-cnn 503 -> 269 ms on 2
# threads), the others within 10% (bench/README.md, "AppTest's component scan, evaluation in batches of 256").
EVALUATION_BATCH = 256


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; built from CLI arguments, page widgets or a recipe."""

    model: str = "fast-cnn"
    dataset: str = "digits"
    epochs: int = 10
    batch_size: int = 64
    optimizer: OptimizerName = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9  # for "momentum" (SGD with momentum)
    betas: tuple[float, float] = (0.9, 0.999)  # for Adam and AdamW
    weight_decay: float = 0.0
    schedule: ScheduleName = "none"
    step_epochs: int = 0  # "step": epochs between x0.1 decays; 0 means a third of the run
    loss: LossName = "cross-entropy"
    label_smoothing: float = 0.0
    augment_shift: float = 0.0
    augment_rotation: float = 0.0
    augment_scale: float = 0.0
    augment_flip: bool = False
    normalize_mean: float | None = None  # None: the dataset's own
    normalize_std: float | None = None
    test_batch_size: int = EVALUATION_BATCH
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    train_limit: int | None = None  # use only the first N training images (quick runs, tests)
    progress_every: int = 0  # emit batch progress every N steps; 0: about five times a second, and 50 times a run
    image_folder: str | None = None  # an ImageFolder of digits (FOLDER/0/*.png ...): trained on, its held-out part tested
    collection_share: float = 0.5  # with dataset "mnist": the share of each batch taken from the image folder
    held_out_share: float = 0.2  # of each class of the image folder, held out as its test set (seeded by `seed`)
    from_run: str | None = None  # start from this run's weights instead of random ones; "default": the shipped model

    @property
    def mixes_folder(self) -> bool:
        """Whether training batches mix the image folder with the original dataset (a fine-tune that keeps MNIST)."""
        return self.image_folder is not None and self.dataset != FOLDER_DATASET

    @property
    def augmentation(self) -> Augmentation:
        from core.augment import Augmentation  # core.augment imports torch

        return Augmentation(self.augment_shift, self.augment_rotation, self.augment_scale, self.augment_flip)

    def to_dict(self) -> dict:
        """Plain JSON-ready settings."""
        settings = asdict(self)
        settings["betas"] = list(self.betas)
        return settings

    @classmethod
    def from_dict(cls, settings: dict) -> "TrainConfig":
        """Settings back from JSON; unknown keys are ignored so older runs still load."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in settings.items() if k in known}
        if isinstance(values.get("betas"), list):
            values["betas"] = tuple(values["betas"])  # anything else is left for validate() to name
        return cls(**values)


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


@dataclass(frozen=True)
class Bounds:
    """The allowed range of one numeric setting, for forms to show and check before validation sees the value."""

    low: float
    high: float | None = None  # None: no upper limit
    low_open: bool = False  # the low end itself is not allowed (a learning rate of 0)
    high_open: bool = False
    whole: bool = False

    def describe(self) -> str:
        """The range in words: "a whole number from 1 to 10,000"."""
        kind = "a whole number" if self.whole else "a number"
        low = f"more than {_number(self.low)}" if self.low_open else f"at least {_number(self.low)}"
        if self.high is None:
            return f"{kind}, {low}"
        high = f"less than {_number(self.high)}" if self.high_open else f"at most {_number(self.high)}"
        if not (self.low_open or self.high_open):
            return f"{kind} from {_number(self.low)} to {_number(self.high)}"
        return f"{kind}, {low} and {high}"

    def problem(self, value: float) -> str | None:
        """What is wrong with `value` ("is above the maximum 10,000"), or None when it is in range."""
        if isinstance(value, float) and not math.isfinite(value):  # an int of any size compares exactly
            return "is not a finite number"
        if self.whole and value != int(value):
            return "is not a whole number"
        if value < self.low or (self.low_open and value == self.low):
            return f"is not more than {_number(self.low)}" if self.low_open else f"is below the minimum {_number(self.low)}"
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return f"is not less than {_number(self.high)}" if self.high_open else \
                f"is above the maximum {_number(self.high)}"
        return None


# The ranges validation (core.training) enforces for each numeric setting that a person types.
SETTING_BOUNDS: dict[str, Bounds] = {
    "epochs": Bounds(1, MAX_EPOCHS, whole=True),
    "batch_size": Bounds(1, whole=True),  # and at most the training images: checked against the data
    "learning_rate": Bounds(0, low_open=True),
    "momentum": Bounds(0, 1, high_open=True),
    "weight_decay": Bounds(0),
    "label_smoothing": Bounds(0, 1, high_open=True),
    "seed": Bounds(0, MAX_SEED, whole=True),
    "train_limit": Bounds(1, whole=True),
    "collection_share": Bounds(0, 1, low_open=True),
    "held_out_share": Bounds(0, 0.5, low_open=True),
}

FINE_TUNE_SETTINGS: dict[str, object] = dict(  # measured on a 150-image collection: see bench/README.md
    epochs=8, batch_size=64, optimizer="adam", learning_rate=3e-4, schedule="none",
    augment_shift=0.08, augment_rotation=10.0, augment_scale=0.1)


def fine_tune_config(from_run: str, run_meta: dict, image_folder: str | None = None, **settings) -> TrainConfig:
    """Settings that continue training run `from_run` (its metadata `run_meta`): its model, dataset and normalisation,
    FINE_TUNE_SETTINGS unless `settings` say otherwise, mixed with `image_folder` when one is given."""
    normalization = run_meta.get("normalization") or {}
    values = {**FINE_TUNE_SETTINGS, "model": run_meta.get("model"), "dataset": run_meta.get("dataset"),
              "normalize_mean": normalization.get("mean"), "normalize_std": normalization.get("std"),
              **{k: v for k, v in settings.items() if v is not None}}
    return TrainConfig(**values, from_run=from_run, image_folder=image_folder)
