"""The training engine: `train(config)` yields a stream of small frozen events that any consumer can read."""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Iterator, Literal, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core import optimizers
from core.augment import augment_batch
from core.config import (DEFAULT_MODEL_RUN, EVALUATION_BATCH, FOLDER_DATASET, FOLDER_MIXES_WITH, LOSSES,  # noqa: F401
                         MAX_EPOCHS, OPTIMIZERS, SCHEDULES, SETTING_BOUNDS, ConfigError, LossName, OptimizerName,
                         ScheduleName, TrainConfig)  # re-exported: core.training stays the engine's entry point
from core.data import Dataset, dataset_spec, ensure_dataset, pixel_scale_for
from core.formats import NORMALIZATION_LIMIT
from core.models import Output, build_model, count_parameters, leading_resize, model_spec, to_log_probs, to_probs

if TYPE_CHECKING:
    from core.distributed import Group
    from core.folder_data import FolderData
    from core.store import LoadedRun, RunStore

PROGRESS_INTERVAL_SECONDS = 0.2
LIVE_ACCURACY_SHARE = 0.2  # of an epoch's steps: the live train accuracy is over this many latest steps, carried
#                            across epochs (over "this epoch so far" its curve restarted at each epoch from a few batches)
MIN_PROGRESS_POINTS = 50  # a run this many steps long or longer reports at least this often, however quick:
#                           a run of one second drew a train curve of a point or two
PREPARE_CHUNK = 4096  # images resized at a time when a dataset is prepared: bounds the temporary memory
CHANNELS_LAST_DEVICES = ("cpu",)  # oneDNN's convolutions run faster on NHWC weights here, measured (bench/README)
AUTOCAST_OUTPUTS = ("logits",)  # bfloat16 autocast on CUDA, for models whose loss reads logits (in float32):
# a softmax or log-softmax computed in bfloat16 loses the small probabilities BCE and NLL train on. Unmeasured here.
SYNC_STEPS = 16  # several processes agree every this many steps whether to stop (a request, or a NaN loss)


def _range_errors(config: TrainConfig) -> list[str]:
    checks = [
        (config.epochs >= 1, "epochs must be at least 1"),
        (config.epochs <= MAX_EPOCHS, f"epochs must be at most {MAX_EPOCHS:,} (each adds a row to the run's history)"),
        (config.batch_size >= 1, "batch size must be at least 1"),
        (math.isfinite(config.learning_rate) and config.learning_rate > 0, "learning rate must be a positive number"),
        (0 <= config.momentum < 1, "momentum must be in [0, 1)"),
        (all(0 <= b < 1 for b in config.betas), "Adam betas must be in [0, 1)"),
        (math.isfinite(config.weight_decay) and config.weight_decay >= 0,
         "weight decay must be a finite number, not negative"),
        (0 <= config.label_smoothing < 1, "label smoothing must be in [0, 1)"),
        (0 <= config.augment_shift <= 0.5, "shift must be between 0 and 0.5 of the image"),
        (0 <= config.augment_rotation <= 180, "rotation must be between 0 and 180 degrees"),
        (0 <= config.augment_scale < 1, "scale must be in [0, 1)"),
        (config.test_batch_size >= 1, "test batch size must be at least 1"),
        (config.step_epochs >= 0, "step epochs must not be negative"),
        (config.progress_every >= 0, "progress every must not be negative"),
        (config.normalize_std is None or 1 / NORMALIZATION_LIMIT <= config.normalize_std <= NORMALIZATION_LIMIT,
         f"normalisation std must be a number from {1 / NORMALIZATION_LIMIT:g} to {NORMALIZATION_LIMIT:g}"),
        (config.normalize_mean is None or -NORMALIZATION_LIMIT <= config.normalize_mean <= NORMALIZATION_LIMIT,
         f"normalisation mean must be a number from {-NORMALIZATION_LIMIT:g} to {NORMALIZATION_LIMIT:g}"),
        (config.train_limit is None or config.train_limit >= 1, "train limit must be at least 1"),
        (_whole_in_bounds(config.seed, "seed"), f"seed must be {SETTING_BOUNDS['seed'].describe()}, not "
                                                f"{str(config.seed)[:40]}"),  # torch's seeds are 64-bit
    ]
    return [message for ok, message in checks + _folder_checks(config) if not ok]


def _folder_checks(config: TrainConfig) -> list[tuple[bool, str]]:
    """The image folder's settings: its shares, and data it can be mixed with."""
    share, held_out = SETTING_BOUNDS["collection_share"], SETTING_BOUNDS["held_out_share"]
    return [
        (share.problem(config.collection_share) is None, f"collection share must be {share.describe()}"),
        (held_out.problem(config.held_out_share) is None, f"held-out share must be {held_out.describe()}"),
        (config.image_folder is not None or config.dataset != FOLDER_DATASET,
         f"dataset {FOLDER_DATASET!r} needs an image folder"),
        (config.image_folder is None or config.dataset in (FOLDER_DATASET, *FOLDER_MIXES_WITH),
         f"an image folder of digits trains alone or mixed with {', '.join(FOLDER_MIXES_WITH)}, not with "
         f"{config.dataset!r}"),
    ]


def _whole_in_bounds(value: object, setting: str) -> bool:
    return _whole_number(value) and SETTING_BOUNDS[setting].problem(value) is None


def _choice_errors(config: TrainConfig) -> list[str]:
    errors = []
    for value, allowed, what in ((config.optimizer, OPTIMIZERS, "optimizer"), (config.schedule, SCHEDULES, "schedule"),
                                 (config.loss, LOSSES, "loss")):
        if value not in allowed:
            errors.append(f"unknown {what} {value!r} (choose {', '.join(allowed)})")
    for lookup in (model_spec, dataset_spec):
        try:
            if lookup is model_spec or config.dataset != FOLDER_DATASET:
                lookup(config.model if lookup is model_spec else config.dataset)
        except ValueError as error:
            errors.append(str(error).rstrip("."))
    return errors


def _whole_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _real_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text_setting(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 4096 and value.isprintable()


def _optional(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: value is None or check(value)


# What each setting's value must be, checked before any range (settings come from JSON: "--settings", a saved run)
SETTING_KINDS: dict[str, tuple[Callable[[object], bool], str]] = {
    **{name: (_whole_number, "a whole number") for name in ("epochs", "batch_size", "step_epochs", "test_batch_size",
                                                           "seed", "progress_every")},
    **{name: (_real_number, "a number") for name in ("learning_rate", "momentum", "weight_decay", "label_smoothing",
                                                    "augment_shift", "augment_rotation", "augment_scale",
                                                    "collection_share", "held_out_share")},
    **{name: (_text_setting, "one line of text") for name in ("model", "dataset", "optimizer", "schedule", "loss")},
    **{name: (_optional(_real_number), "a number or null") for name in ("normalize_mean", "normalize_std")},
    **{name: (_optional(_text_setting), "one line of text or null") for name in ("data_dir", "image_folder",
                                                                                "from_run")},
    "train_limit": (_optional(_whole_number), "a whole number or null"),
    "augment_flip": (lambda value: isinstance(value, bool), "true or false"),
    "betas": (lambda value: isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_real_number, value)),
              "two numbers"),
    "device": (lambda value: isinstance(value, str) and DEVICE_PATTERN.match(value) is not None,
               "auto, cpu, cuda, cuda:N or mps"),
}
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,3})?)\Z")


def _kind_errors(config: TrainConfig) -> list[str]:
    return [f"{name.replace('_', ' ')} must be {words}, not {str(getattr(config, name))[:40]!r}"
            for name, (check, words) in SETTING_KINDS.items() if not check(getattr(config, name))]


def _device_errors(config: TrainConfig) -> list[str]:
    """A device this machine does not have, said before training starts rather than as a failed run."""
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        return [f"device {config.device!r} needs a CUDA GPU, and this machine has none (use auto or cpu)"]
    if config.device.startswith("cuda:") and int(config.device[5:]) >= torch.cuda.device_count():
        return [f"device {config.device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0"]
    mps = getattr(torch.backends, "mps", None)
    if config.device == "mps" and not (mps and mps.is_available()):
        return ["device 'mps' needs an Apple GPU, and this machine has none (use auto or cpu)"]
    return []


def validate(config: TrainConfig, data: Dataset | None = None) -> None:
    """Raise ConfigError naming every setting that cannot work (with `data`: also against its size)."""
    if errors := _kind_errors(config):  # ranges compare numbers: a text "1" would raise TypeError there
        raise ConfigError("Invalid settings: " + "; ".join(errors) + ".")
    errors = _range_errors(config) + _choice_errors(config) + _device_errors(config)
    if data is not None and not errors:
        train_size = _train_size(config, data)
        if config.batch_size > train_size:
            errors.append(f"batch size {config.batch_size} is larger than the {train_size} training images")
    if errors:
        raise ConfigError("Invalid settings: " + "; ".join(errors) + ".")


def _train_size(config: TrainConfig, data: Dataset) -> int:
    size = len(data.train_labels)
    return min(size, config.train_limit) if config.train_limit else size


def resolve_start(from_run: str | None, store: RunStore | None = None) -> LoadedRun | None:
    """The run whose weights training starts from: DEFAULT_MODEL_RUN is the shipped model, else a run id in `store`
    (default: the runs folder); None for random weights. RunError says why a run cannot be used."""
    if from_run is None:
        return None
    from core.inference import load_default_model  # core.inference imports this module
    from core.store import RunStore

    return load_default_model() if from_run == DEFAULT_MODEL_RUN else (store or RunStore()).load(from_run)


def _check_start(start: LoadedRun | None, config: TrainConfig, data: Dataset | None = None) -> None:
    """ConfigError when `config` cannot continue `start` (on `data`, when given): another model, input size or
    classes."""
    if start is None:
        return
    name = config.from_run
    checks = [(start.meta["model"] == config.model, f"run {name} is a {start.meta['model']} model, not {config.model}")]
    if data is not None:
        checks += [
            (start.input_format == data.input_format,
             f"run {name} reads {start.input_format.size}x{start.input_format.size} images, the data is "
             f"{data.input_format.size}x{data.input_format.size}"),
            (start.class_names == data.class_names, f"run {name}'s classes are not the data's")]
    if problems := [message for ok, message in checks if not ok]:
        raise ConfigError("Cannot continue that run: " + "; ".join(problems) + ".")


def resolve_device(requested: str = "auto") -> torch.device:
    """The device to train on: "auto" picks CUDA, then Apple's MPS, then the CPU."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


FinishedStatus = Literal["done", "stopped", "failed", "diverged"]  # as core.store.RUN_STATUSES, less "running"


@dataclass(frozen=True)
class Started:
    """Training is about to take its first step."""

    model: str
    dataset: str
    parameters: int
    epochs: int
    steps_per_epoch: int
    total_steps: int
    train_size: int
    test_size: int
    device: str
    before_test_accuracy: float | None = None  # a run continued from saved weights: their accuracy before training
    before_collection_accuracy: float | None = None  # ... on the image folder's held-out part
    collection_size: int | None = None  # the image folder's held-out images, when there is one
    processes: int = 1  # training processes (torch.distributed): each takes its share of every batch
    backend: str | None = None  # their torch.distributed backend, gloo or nccl; None for one process
    batch_size: int = 0  # the global batch: every process's share together, as one process would take it
    learning_rate: float = 0.0


@dataclass(frozen=True)
class BatchProgress:
    """Emitted every few batches: the loss is the mean since the previous progress event."""

    epoch: int
    epochs: int
    step: int
    total_steps: int
    loss: float
    accuracy: float  # over the latest steps (LIVE_ACCURACY_SHARE of an epoch), across epochs
    images_per_second: float
    eta_seconds: float
    elapsed_seconds: float


@dataclass(frozen=True)
class EpochEnd:
    """An epoch finished and the model was evaluated on the test split."""

    epoch: int
    epochs: int
    step: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    elapsed_seconds: float
    images_per_second: float
    collection_loss: float | None = None  # on the image folder's held-out part, when there is one
    collection_accuracy: float | None = None


@dataclass(frozen=True)
class Finished:
    """The end: status "done", "stopped", "failed" or "diverged" (NaN or infinite loss or weights), with the reason."""

    status: FinishedStatus
    reason: str
    epochs_completed: int
    test_accuracy: float | None
    test_loss: float | None
    elapsed_seconds: float
    images_per_second: float
    collection_accuracy: float | None = None  # the last complete epoch's, on the image folder's held-out part


TrainingEvent = Union[Started, BatchProgress, EpochEnd, Finished]


def normalized(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Scaled pixels (N, 1, H, W) to the model's input: the one normalisation used by training and inference
    (normalized_array: the same steps for an array)."""
    return (images - mean) / std


def scaled_pixels(images: torch.Tensor, pixel_scale: float) -> torch.Tensor:
    """uint8 images (N, H, W) to floats (N, 1, H, W) in 0..1 (or raw 0..16 for digits)."""
    return images.unsqueeze(1).float().div_(pixel_scale)


def normalized_array(pixels: np.ndarray, pixel_scale: float, mean: float, std: float) -> np.ndarray:
    """normalized(scaled_pixels(...)) of an array of images (N, H, W), bit for bit, as float32 (N, 1, H, W): the same
    float32 steps in the same order, by numpy on one copy, without three small torch calls (0.10 -> 0.03 ms right
    after a drawing's preprocessing). The settings are taken as Python floats: numpy would do float64 sums with
    numpy's own float64 scalars, and round differently."""
    values = np.array(pixels, dtype=np.float32)[:, None]  # a copy: read-only arrays (mmap, frombuffer) ok
    values /= float(pixel_scale)
    values -= float(mean)
    values /= float(std)
    return values


def compute_loss(output: torch.Tensor, labels: torch.Tensor, kind: Output, loss: str, smoothing: float) -> torch.Tensor:
    """The configured loss on whatever the model emits (logits, log-probabilities or probabilities)."""
    if loss == "bce-one-hot":
        targets = F.one_hot(labels, output.shape[1]).float()
        targets = targets * (1 - smoothing) + smoothing / output.shape[1]
        return F.binary_cross_entropy(to_probs(output, kind).clamp(0, 1), targets)
    log_probs = to_log_probs(output, kind)
    nll = F.nll_loss(log_probs, labels)
    return nll if not smoothing else (1 - smoothing) * nll - smoothing * log_probs.mean(dim=1).mean()


@dataclass
class _Meter:
    """Running sums of loss and correct answers, kept as tensors: only reading them waits for the device."""

    loss_sum: torch.Tensor | float = 0.0
    correct: torch.Tensor | int = 0
    seen: int = 0
    batches: int = 0

    def add(self, loss: torch.Tensor, correct: torch.Tensor, count: int) -> None:
        self.loss_sum = self.loss_sum + loss
        self.correct = self.correct + correct
        self.seen += count
        self.batches += 1

    @property
    def loss(self) -> float:
        return float(self.loss_sum) / max(self.batches, 1)

    @property
    def accuracy(self) -> float:
        return float(self.correct) / max(self.seen, 1)


class _LatestSteps:
    """Correct answers and images of the latest `steps` training steps, whatever epoch they were in."""

    def __init__(self, steps: int) -> None:
        self.steps: deque[tuple[torch.Tensor | int, int]] = deque(maxlen=max(1, steps))

    def add(self, correct: torch.Tensor | int, count: int) -> None:
        self.steps.append((correct, count))

    @property
    def accuracy(self) -> float:
        seen = sum(count for _, count in self.steps)
        return float(sum(correct for correct, _ in self.steps)) / max(seen, 1)


def evaluate(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, kind: Output, loss: str,
             batch_size: int = EVALUATION_BATCH) -> tuple[float, float]:
    """Mean loss and accuracy of `model` on already normalised inputs, in batches of `batch_size`."""
    total_loss, correct = evaluation_sums(model, inputs, labels, kind, loss, batch_size)
    return total_loss / max(len(labels), 1), correct / max(len(labels), 1)


def evaluation_sums(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, kind: Output, loss: str,
                    batch_size: int = EVALUATION_BATCH) -> tuple[float, int]:
    """The summed loss and the count of right answers of `model` on already normalised inputs (sums: several
    processes add theirs up)."""
    model.eval()
    total_loss, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            x, y = inputs[start:start + batch_size], labels[start:start + batch_size]
            output = model(x)
            total_loss += float(compute_loss(output, y, kind, loss, 0.0)) * len(y)
            correct += int((output.argmax(1) == y).sum())
    model.train()
    return total_loss, correct


class Training:
    """One training run: builds the model and data, then `events()` trains it, yielding progress.

    After an EpochEnd, `last_complete_state` holds that epoch's weights: a stop or failure
    mid-epoch keeps them, never a half-updated model.

    With an image folder (config.image_folder, or `folder` already loaded), the folder's held-out part is evaluated
    every epoch; dataset FOLDER_DATASET trains on the folder alone, "mnist" mixes each batch: config.collection_share
    of it from the folder, the rest drawn at random from MNIST, one epoch being one pass over the folder's training
    part. With config.from_run (or `start`), training continues that run's weights.

    With a `group` of several processes (core.distributed), every process builds the same Training: each global
    batch of config.batch_size images is shared out over the processes (DistributedDataParallel averages their
    gradients, weighted so that the step is the one a single process takes on the whole batch), they agree every
    SYNC_STEPS steps whether to stop, and the evaluation is split over them and summed, so the test accuracy covers
    the test set once. Only the group's leader (rank 0) reports progress and keeps the epoch's weights.
    """

    def __init__(self, config: TrainConfig, data: Dataset | None = None, *, start: LoadedRun | None = None,
                 folder: FolderData | None = None, group: Group | None = None) -> None:
        validate(config)
        self.config = config
        self.group = group
        self.start = start or resolve_start(config.from_run)
        _check_start(self.start, config)  # another model is refused before any data loads
        self.folder = folder or _load_folder(config)
        self.data = data or (self.folder.as_dataset() if config.dataset == FOLDER_DATASET else
                             ensure_dataset(config.dataset, config.data_dir))
        config = self.config = self._whole_folder_batch(config)
        validate(config, self.data)
        _check_start(self.start, config, self.data)
        self.device = resolve_device(config.device) if group is None else group.device(resolve_device(config.device))
        self._check_shares()
        self.backend = group.join(self.device) if group is not None else None
        self.devices = self._device_names()
        self.output: Output = model_spec(config.model).output
        self.autocast = self.device.type == "cuda" and self.output in AUTOCAST_OUTPUTS and \
            torch.cuda.is_bf16_supported()  # GPUs before Ampere have no fast bfloat16
        self.model = self._model()
        self.trained_model = self._wrapped()  # what the steps run: DDP around the model with several processes
        self.parameters = count_parameters(self.model)
        self.mean, self.std = self._normalization()
        self.pixel_scale = pixel_scale_for(self.data.input_format)
        self.augmentation = config.augmentation
        self.last_complete_state: dict[str, torch.Tensor] | None = None
        self.history: list[EpochEnd] = []
        self.before: dict[str, float | None] | None = None  # the start's accuracies, once measured

    def _model(self) -> nn.Module:
        torch.manual_seed(self.config.seed)  # weight init and dropout
        model = build_model(self.config.model, image_size=self.data.image_size, num_classes=len(self.data.class_names))
        if self.start is not None:
            model.load_state_dict(self.start.model.state_dict())
        return model.to(self.device, memory_format=self._layout())

    def _whole_folder_batch(self, config: TrainConfig) -> TrainConfig:
        """A run on an image folder alone whose batch is larger than the folder's training part trains on the whole
        part each step, and says so: the part is known only once the images are read (some may be left out), and a
        collection of 30 digits is a normal one."""
        if config.dataset != FOLDER_DATASET or self.folder is None:
            return config
        trained = _train_size(config, self.data)
        if not 0 < trained < config.batch_size:
            return config
        note = (f"Each step trains on the folder's whole training part, a batch of {trained} images, "
                f"not {config.batch_size}.")
        self.folder = replace(self.folder, notices=(*self.folder.notices, note))
        return replace(config, batch_size=trained)

    def _wrapped(self) -> nn.Module:
        if self.group is None:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    @property
    def processes(self) -> int:
        return self.group.world_size if self.group is not None else 1

    def _check_shares(self) -> None:
        """Every process needs a share of every batch: ConfigError for a batch smaller than the processes."""
        if self.config.batch_size < self.processes:
            raise ConfigError(f"Invalid settings: batch size {self.config.batch_size} is smaller than the "
                              f"{self.processes} processes, each of which trains on its share of every batch.")

    def _device_names(self) -> list[str]:
        """Each process's device, in rank order ("cpu on host-a" with several)."""
        if self.group is None:
            return [str(self.device)]
        import socket

        from core.distributed import gather_device_names

        return gather_device_names(f"{self.device} on {socket.gethostname()}", self.device)

    def _normalization(self) -> tuple[float, float]:
        """The config's, else the start run's (its weights expect it), else the dataset's."""
        own = self.start if self.start is not None else self.data
        mean, std = self.config.normalize_mean, self.config.normalize_std
        return (own.mean if mean is None else mean), (own.std if std is None else std)

    @property
    def mixes_folder(self) -> bool:
        return self.folder is not None and self.config.dataset != FOLDER_DATASET

    @property
    def folder_per_batch(self) -> int:
        """Images of each mixed batch taken from the folder: the collection share of the batch, at least one."""
        return max(1, min(self.config.batch_size, round(self.config.batch_size * self.config.collection_share)))

    @property
    def steps_per_epoch(self) -> int:
        """Batches in an epoch; with several processes, less a last batch too small to give each one image."""
        if self.mixes_folder:
            steps = math.ceil(self.folder.train_size / self.folder_per_batch)
            last = self.folder.train_size - (steps - 1) * self.folder_per_batch + \
                self.config.batch_size - self.folder_per_batch
        else:
            size = _train_size(self.config, self.data)
            steps = math.ceil(size / self.config.batch_size)
            last = size - (steps - 1) * self.config.batch_size
        return steps - 1 if last < self.processes else steps

    @property
    def train_size(self) -> int:
        """How many training images this run uses in an epoch (mixed: the folder's plus those drawn from MNIST)."""
        if self.mixes_folder:
            return self.folder.train_size + self.steps_per_epoch * (self.config.batch_size - self.folder_per_batch)
        return _train_size(self.config, self.data)

    def _tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training and test inputs prepared once; training ones stay unnormalised when augmented (zero background).
        Mixed, the folder's training images come first, then the dataset's."""
        limit = _train_size(self.config, self.data)
        images, labels = self.data.train_images[:limit], self.data.train_labels[:limit]
        if self.mixes_folder:
            own = self.folder.as_dataset()
            images, labels = torch.cat([own.train_images, images]), torch.cat([own.train_labels, labels])
        train_x = self._inputs(images, normalize=not self.augmentation.active)
        test_x = self._inputs(self.data.test_images, normalize=True)
        return train_x, labels.to(self.device), test_x, self.data.test_labels.to(self.device)

    def _held_out(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The folder's held-out inputs and labels, evaluated apart from the test set; None without one, or when
        the folder is the whole dataset (its held-out part is then the test set)."""
        if not self.mixes_folder:
            return None
        own = self.folder.as_dataset()
        return self._inputs(own.test_images, normalize=True), own.test_labels.to(self.device)

    def _epoch_batches(self, count: int, generator: torch.Generator) -> list[torch.Tensor]:
        """One epoch's batches of indices into the training tensors (`count` images)."""
        size = self.config.batch_size
        if not self.mixes_folder:
            return list(torch.randperm(count, generator=generator).to(self.device).split(size))
        own, per_batch = self.folder.train_size, self.folder_per_batch
        chunks = torch.randperm(own, generator=generator).split(per_batch)
        drawn = torch.randint(own, count, (len(chunks), size - per_batch), generator=generator)  # MNIST's share
        return [torch.cat([chunk, extra]).to(self.device) for chunk, extra in zip(chunks, drawn)]

    def _shared_batches(self, count: int, generator: torch.Generator) -> list[tuple[torch.Tensor, int]]:
        """This process's share of each of the epoch's batches, with the batch's whole size. Every process draws the
        same batches (the same generator, seeded alike) and takes every world_size-th image of each, from its rank:
        the shards of a DistributedSampler, shuffled anew every epoch, and together the batches of one process."""
        batches = self._epoch_batches(count, generator)
        if self.group is None:
            return [(batch, len(batch)) for batch in batches]
        rank, world = self.group.rank, self.group.world_size
        return [(batch[rank::world], len(batch)) for batch in batches if len(batch) >= world]

    def _augment_generator(self, generator: torch.Generator) -> torch.Generator:
        """One process draws batches and augmentations from one generator, as before; several draw augmentations
        from their own (a process's share differs in size, and the batch order must stay the same on all)."""
        if self.group is None:
            return generator
        return torch.Generator().manual_seed((self.config.seed * 1_000_003 + self.group.rank + 1) % 2**63)

    def _inputs(self, images: torch.Tensor, normalize: bool) -> torch.Tensor:
        """uint8 images (N, H, W) scaled, resized to the model's own input size and normalised, for the whole run."""
        pixels = scaled_pixels(images, self.pixel_scale).to(self.device)
        resize = leading_resize(self.model)
        if resize is not None:  # here once, not in every forward pass: the model's Resize then passes inputs through
            with torch.no_grad():
                pixels = torch.cat([resize(chunk) for chunk in pixels.split(PREPARE_CHUNK)])
        return normalized(pixels, self.mean, self.std) if normalize else pixels

    def _layout(self) -> torch.memory_format:
        return torch.channels_last if self.device.type in CHANNELS_LAST_DEVICES else torch.contiguous_format

    def _snapshot(self) -> dict[str, torch.Tensor]:
        """The weights as plain contiguous CPU copies, whatever layout training used."""
        return {name: tensor.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
                for name, tensor in self.model.state_dict().items()}

    def events(self, stop: threading.Event | None = None) -> Iterator[TrainingEvent]:
        """Train, yielding Started, BatchProgress, EpochEnd and exactly one Finished; never raises for training faults."""
        clock = _Clock()
        try:
            yield from self._loop(stop or threading.Event(), clock)
        except Exception as error:  # reported as an event: consumers must never see a traceback
            yield self._finished("failed", self._failure(error), clock)

    def _failure(self, error: Exception) -> str:
        """The reason a run failed; with several processes, a lost peer is said as such, in one line."""
        text = f"{type(error).__name__}: {error}"[:1000]  # the store keeps reasons of at most 4,000 characters
        if self.group is None or not isinstance(error, RuntimeError):
            return text
        kept = f"epoch {len(self.history)} is kept" if self.history else "no epoch was complete"
        cause = re.search(r"connection [a-z ]+|timed out|timeout", text, re.IGNORECASE)
        return (f"another training process ended or stopped answering"
                f"{f' ({cause.group(0).strip()})' if cause else ''}; {kept}")

    def _loop(self, stop: threading.Event, clock: "_Clock") -> Iterator[TrainingEvent]:
        config = self.config
        train_x, train_y, test_x, test_y = self._tensors()
        held_out = self._held_out()
        steps_per_epoch = self.steps_per_epoch
        total_steps = steps_per_epoch * config.epochs
        optimizer = optimizers.make_optimizer(config, self.model, self.device)
        schedule, per_batch = optimizers.make_schedule(config, optimizer, steps_per_epoch)
        generator = torch.Generator().manual_seed(config.seed)
        augment_generator = self._augment_generator(generator)
        yield self._started(steps_per_epoch, test_x, test_y, held_out)
        if self.before is not None:
            clock.restart()  # measuring the start's accuracy took time that is not training's
        step, latest = 0, _LatestSteps(round(steps_per_epoch * LIVE_ACCURACY_SHARE))
        for epoch in range(1, config.epochs + 1):
            epoch_meter, recent = _Meter(), _Meter()
            for index, whole in self._shared_batches(len(train_y), generator):
                if halt := self._halt(stop, step, epoch_meter):
                    yield self._diverged(clock) if halt == "diverged" else \
                        self._finished("stopped", "stopped by request", clock)
                    return
                try:
                    loss, correct = self._step(train_x[index], train_y[index], optimizer, augment_generator,
                                               len(index) * self.processes / whole)
                except RuntimeError:  # binary cross-entropy refuses the NaN probabilities of diverged weights
                    if self._weights_finite():
                        raise
                    yield self._diverged(clock)
                    return
                if schedule is not None and per_batch:
                    schedule.step()
                step += 1
                clock.trained(whole)
                epoch_meter.add(loss, correct, len(index))
                recent.add(loss, correct, len(index))
                latest.add(correct, len(index))
                if self._progress_due(step, total_steps, clock):
                    if self.group is None and not math.isfinite(epoch_meter.loss):  # checked when read: reading waits
                        yield self._diverged(clock)
                        return
                    yield self._progress(epoch, step, total_steps, recent, latest, clock)
                    recent = _Meter()
            epoch_meter = self._gathered(epoch_meter)
            if not math.isfinite(epoch_meter.loss):
                yield self._diverged(clock)
                return
            if schedule is not None and not per_batch:
                schedule.step()
            end = self._end_epoch(epoch, step, epoch_meter, (test_x, test_y), held_out, clock)
            if end is None:
                yield self._diverged(clock)
                return
            yield end
        yield self._finished("done", "", clock)

    def _halt(self, stop: threading.Event, step: int, meter: _Meter) -> str | None:
        """"stopped" or "diverged" when training must end before this step, else None. Several processes decide
        together every SYNC_STEPS steps: one that stopped alone would leave the others waiting for it."""
        if self.group is None:
            return "stopped" if stop.is_set() else None
        if step % SYNC_STEPS:
            return None
        from core.distributed import any_true

        stopping, diverging = any_true([stop.is_set(), not math.isfinite(meter.loss)], self.device)
        return "diverged" if diverging else "stopped" if stopping else None

    def _gathered(self, meter: _Meter) -> _Meter:
        """The epoch's meter summed over the processes (the same on all: they take the same decisions from it)."""
        if self.group is None:
            return meter
        from core.distributed import all_sum

        loss_sum, correct, seen, batches = all_sum([float(meter.loss_sum), float(meter.correct), meter.seen,
                                                    meter.batches], self.device)
        return _Meter(loss_sum, int(correct), int(seen), int(batches))

    def _step(self, images: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer,
              generator: torch.Generator, weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; the loss and the count of right answers stay tensors (no wait for the device).
        `weight` scales this process's loss by its share of the batch (DDP averages the processes' gradients)."""
        if self.augmentation.active:  # augmented pixels are fresh tensors: normalise them in place
            images = augment_batch(images, self.augmentation, generator).sub_(self.mean).div_(self.std)
        output = self._forward(images)
        loss = compute_loss(output, labels, self.output, self.config.loss, self.config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        (loss if weight == 1.0 else loss * weight).backward()
        optimizers.step(optimizer)
        return loss.detach(), (output.argmax(1) == labels).sum()

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.autocast:
            return self.trained_model(images)
        with torch.autocast("cuda", dtype=torch.bfloat16):  # the loss is computed in float32, outside
            return self.trained_model(images).float()

    def _progress_due(self, step: int, total_steps: int, clock: "_Clock") -> bool:
        if self.group is not None and not self.group.leader:  # only rank 0 reports
            return False
        if self.config.progress_every:
            return step % self.config.progress_every == 0
        spacing = max(1, total_steps // MIN_PROGRESS_POINTS)
        return clock.since_progress() >= PROGRESS_INTERVAL_SECONDS or step % spacing == 0

    def _progress(self, epoch: int, step: int, total_steps: int, recent: _Meter, latest: _LatestSteps,
                  clock: "_Clock") -> BatchProgress:
        clock.mark_progress()
        elapsed = clock.elapsed()
        eta = elapsed / step * (total_steps - step)
        return BatchProgress(epoch, self.config.epochs, step, total_steps, recent.loss, latest.accuracy,
                             clock.images_per_second(), eta, elapsed)

    def _evaluate(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
        """Mean loss and accuracy; several processes each evaluate a slice with rank 0's weights and add them up."""
        if self.group is None:
            return evaluate(self.model, *inputs, self.output, self.config.loss, self.config.test_batch_size)
        from core.distributed import all_sum, share_buffers

        share_buffers(self.model)
        images, labels = inputs
        rank, world, count = self.group.rank, self.group.world_size, len(labels)
        mine = slice(count * rank // world, count * (rank + 1) // world)
        loss_sum, correct = evaluation_sums(self.model, images[mine], labels[mine], self.output, self.config.loss,
                                            self.config.test_batch_size)
        loss_sum, correct = all_sum([loss_sum, correct], self.device)
        return loss_sum / max(count, 1), correct / max(count, 1)

    def _started(self, steps_per_epoch: int, test_x: torch.Tensor, test_y: torch.Tensor,
                 held_out: tuple[torch.Tensor, torch.Tensor] | None) -> Started:
        """The Started event; continuing a run, with that run's accuracies before any training."""
        config = self.config
        if self.start is not None:
            test = self._evaluate((test_x, test_y))[1]
            own = self._evaluate(held_out)[1] if held_out is not None else (test if self.folder else None)
            self.before = {"test_accuracy": test, "collection_accuracy": own}
        before = self.before or {}
        return Started(config.model, config.dataset, self.parameters, config.epochs, steps_per_epoch,
                       steps_per_epoch * config.epochs, self.train_size, len(test_y), str(self.device),
                       before.get("test_accuracy"), before.get("collection_accuracy"),
                       self.folder.held_out_size if self.folder else None, self.processes, self.backend,
                       config.batch_size, config.learning_rate)

    def _end_epoch(self, epoch: int, step: int, meter: _Meter, test: tuple[torch.Tensor, torch.Tensor],
                   held_out: tuple[torch.Tensor, torch.Tensor] | None, clock: "_Clock") -> EpochEnd | None:
        """The epoch's end with its test metrics (and the folder's held-out ones); None when the test loss or any
        weight is NaN or infinite."""
        began = time.perf_counter()
        test_loss, test_accuracy = self._evaluate(test)
        if not (math.isfinite(test_loss) and self._weights_finite()):  # e.g. BatchNorm's running variance at inf
            return None  # the previous epoch stays the last complete one: non-finite weights are never kept
        own_loss, own_accuracy = self._evaluate(held_out) if held_out is not None else (
            (test_loss, test_accuracy) if self.folder else (None, None))  # the folder alone: its test set is its own
        clock.evaluated_since(began)
        if self.group is None or self.group.leader:  # only rank 0 saves weights
            self.last_complete_state = self._snapshot()
        event = EpochEnd(epoch, self.config.epochs, step, meter.loss, meter.accuracy, test_loss, test_accuracy,
                         clock.elapsed(), clock.images_per_second(), own_loss, own_accuracy)
        self.history.append(event)
        return event

    def _weights_finite(self) -> bool:
        return all(bool(torch.isfinite(tensor).all()) for tensor in self.model.state_dict().values()
                   if tensor.is_floating_point())

    def _diverged(self, clock: "_Clock") -> Finished:
        rate = self.config.learning_rate
        return self._finished("diverged", f"the training diverged (its loss or weights became NaN or infinite) at "
                              f"learning rate {rate:g}: try a lower one, such as {rate / 10:g}", clock)

    def _finished(self, status: FinishedStatus, reason: str, clock: "_Clock") -> Finished:
        last = self.history[-1] if self.history else None
        return Finished(status, reason, len(self.history), last.test_accuracy if last else None,
                        last.test_loss if last else None, clock.elapsed(), clock.images_per_second(),
                        last.collection_accuracy if last else None)


@dataclass
class _Clock:
    """Wall time since the start, the part of it spent evaluating, and images trained."""

    started: float = field(default_factory=time.perf_counter)
    last_progress: float = field(default_factory=time.perf_counter)
    images: int = 0
    evaluating: float = 0.0

    def trained(self, count: int) -> None:
        self.images += count

    def evaluated_since(self, began: float) -> None:
        self.evaluating += time.perf_counter() - began

    def restart(self) -> None:
        self.started = self.last_progress = time.perf_counter()
        self.evaluating = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def since_progress(self) -> float:
        return time.perf_counter() - self.last_progress

    def mark_progress(self) -> None:
        self.last_progress = time.perf_counter()

    def images_per_second(self) -> float:
        """The training's speed: a fine-tune evaluating 10,000 MNIST test images after each epoch on 150 digits of
        its own would otherwise report a fraction of it."""
        return self.images / max(self.elapsed() - self.evaluating, 1e-9)


def _load_folder(config: TrainConfig) -> FolderData | None:
    if config.image_folder is None:
        return None
    from core.folder_data import load_image_folder  # decoding images: only runs that have a folder pay for it

    return load_image_folder(config.image_folder, held_out_share=config.held_out_share, seed=config.seed)


def train(config: TrainConfig, *, stop: threading.Event | None = None, data: Dataset | None = None) -> Iterator[TrainingEvent]:
    """Train `config`'s model on its dataset, yielding events; ConfigError, DatasetUnavailable (a CollectionError for
    a bad image folder) or RunError (a run to continue that cannot be loaded) before the first."""
    return Training(config, data).events(stop)
