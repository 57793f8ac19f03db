"""An ImageFolder of digits as training data: each image decoded safely and preprocessed exactly as Predict does
(cropped, centred, brought to MNIST's stroke width, 28x28), then split into a training and a held-out part."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from core.collection import CollectionError, Sample, stays_inside, collections_root, read_sample, scan_folder
from core.data import DATASETS, DIGIT_NAMES, Dataset
from core.preprocess import MNIST_FORMAT, InputFormat, preprocess

if TYPE_CHECKING:
    from core.config import TrainConfig

FOLDER_DATASET = "folder"  # TrainConfig.dataset of a run trained on its image folder alone
HELD_OUT_SHARE = 0.2  # of each class, rounded, and at least one image of every class that has two


@dataclass(frozen=True)
class FolderData:
    """A folder's digits as the model sees them, labelled, with the held-out ones marked."""

    name: str  # the folder's own name (a collection's name)
    pixels: np.ndarray  # uint8 (N, 28, 28), white on black, as preprocess makes them
    labels: np.ndarray  # int64 (N,)
    files: tuple[str, ...]  # "3/file.png", relative to the folder
    held_out: np.ndarray  # bool (N,)
    held_out_share: float
    seed: int
    notices: tuple[str, ...]  # what was left out: files that are not images, images holding no readable digit

    @property
    def size(self) -> int:
        return len(self.labels)

    @property
    def train_size(self) -> int:
        return int((~self.held_out).sum())

    @property
    def held_out_size(self) -> int:
        return int(self.held_out.sum())

    def as_dataset(self) -> Dataset:
        """The folder as a Dataset: its training part to learn from, its held-out part as the test set."""
        import torch

        train, test = ~self.held_out, self.held_out
        mnist = DATASETS["mnist"]  # the same normalisation as MNIST, whose style preprocess imitates
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        return Dataset(FOLDER_DATASET, as_tensor(self.pixels[train]), as_tensor(self.labels[train]),
                       as_tensor(self.pixels[test]), as_tensor(self.labels[test]), DIGIT_NAMES, mnist.mean, mnist.std,
                       MNIST_FORMAT)


def _rank(seed: int, file: str) -> bytes:
    """A seeded order that does not change when other files come or go: the held-out part stays put as a
    collection grows."""
    return hashlib.sha256(f"{seed}:{file}".encode("utf-8", "surrogateescape")).digest()


def held_out_count(images: int, share: float) -> int:
    """How many of a class's `images` are held out: round(share x n), at least 1 when n >= 2, none when 1."""
    return min(images - 1, max(1, round(share * images)))


def split_counts(folder: Path | str, held_out_share: float) -> tuple[int, int]:
    """(images, held out) of the folder, without decoding any; (0, 0) when it cannot be read."""
    try:
        counts = scan_folder(folder).counts
    except (CollectionError, OSError):
        return 0, 0
    return sum(counts.values()), sum(held_out_count(images, held_out_share) for images in counts.values())


def fitting_batch(config: "TrainConfig", trained: int | None = None) -> "TrainConfig":
    """A run on its image folder alone whose default batch is larger than the folder's training part (`trained`
    images; counted here when not given) trains on the whole part each step instead of being refused: a collection
    of 30 digits is a normal one."""
    if config.dataset != FOLDER_DATASET or not config.image_folder:
        return config
    if trained is None:
        total, held = split_counts(config.image_folder, config.held_out_share)
        trained = total - held
    return replace(config, batch_size=min(config.batch_size, trained)) if trained else config


def held_out_mask(labels: np.ndarray, files: tuple[str, ...], share: float, seed: int) -> np.ndarray:
    """Which images are held out: held_out_count of each class, chosen by a seeded rank of their file names."""
    held_out = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = held_out_count(len(members), share)
        ranked = sorted(members, key=lambda index: _rank(seed, files[index]))
        held_out[ranked[:count]] = True
    return held_out


def _preprocessed(samples: tuple[Sample, ...], fmt: InputFormat) -> tuple[list[np.ndarray], list[Sample], list[str],
                                                                          list[str]]:
    """Each sample through Predict's preprocessing. Left out: the ones with no readable digit (named), and those that
    cannot be opened (empty, cut short, too large; each with its sentence): one bad file must not stop a folder."""
    pixels, kept, unread, broken = [], [], [], []
    for sample in samples:
        try:
            processed = preprocess(read_sample(sample), fmt)
        except CollectionError as error:
            broken.append(str(error).rstrip("."))
            continue
        if processed.blank:
            unread.append(sample.relative)
        else:
            pixels.append(processed.pixels)
            kept.append(sample)
    return pixels, kept, unread, broken


def _images(count: int) -> str:
    return f"{count} image{'s' if count != 1 else ''}"


def _unread_notice(unread: list[str]) -> str:
    shown = ", ".join(unread[:3]) + (", ..." if len(unread) > 3 else "")
    return f"{_images(len(unread))} left out: no digit could be read in {shown}."


def _broken_notice(broken: list[str]) -> str:
    return f"{_images(len(broken))} left out: {'; '.join(broken[:3])}{'; ...' if len(broken) > 3 else ''}."


def load_image_folder(folder: Path | str, *, held_out_share: float = HELD_OUT_SHARE, seed: int = 0,
                      fmt: InputFormat = MNIST_FORMAT) -> FolderData:
    """Load an ImageFolder of digits (FOLDER/0/*.png ... FOLDER/9/*.png) as preprocessed pixels with a seeded
    held-out part; CollectionError (one sentence) for a folder that cannot be trained on."""
    scan = scan_folder(folder)
    if scan.problem:
        raise CollectionError(scan.problem)
    pixels, kept, unread, broken = _preprocessed(scan.samples, fmt)
    labels = np.array([sample.label for sample in kept], dtype=np.int64)
    files = tuple(sample.relative for sample in kept)
    held_out = held_out_mask(labels, files, held_out_share, seed)
    notices = tuple(note for note in (scan.notice, _unread_notice(unread) if unread else None,
                                      _broken_notice(broken) if broken else None) if note)
    if not held_out.any():
        raise CollectionError(f"{scan.folder.name} has too few readable images to hold any out for testing: "
                              "it needs at least two of some digit.")
    stacked = np.stack(pixels) if pixels else np.zeros((0, fmt.size, fmt.size), dtype=np.uint8)
    return FolderData(scan.folder.name, stacked, labels, files, held_out, held_out_share, seed, notices)


def trained_folder(meta: Mapping[str, Any], data_dir: Path | str) -> FolderData:
    """The image folder a run trained on alone, split as it was for the run (its held-out share and seed; images
    added since may join it). A run's metadata is untrusted, and the folder it names could be any of the server's:
    only a collection of this app's data folder is read back; CollectionError (one sentence) for anything else."""
    settings = meta.get("settings") or {}
    folder, share, seed = (settings.get(key) for key in ("image_folder", "held_out_share", "seed"))
    if not isinstance(folder, str) or not folder:
        raise CollectionError("This run trained on an image folder but does not say which.")
    root = collections_root(data_dir)
    if not stays_inside(Path(folder), root):
        raise CollectionError(f"This run trained on {folder}, outside this app's collections folder ({root}): only "
                              "collections there are read back. Copy the folder into it to see the run's test images.")
    share = HELD_OUT_SHARE if share is None else share
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
        raise CollectionError(f"This run's held-out share {str(share)[:20]!r} is not a fraction between 0 and 1.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CollectionError(f"This run's seed {str(seed)[:20]!r} is not a whole number.")
    return load_image_folder(folder, held_out_share=float(share), seed=seed)


@dataclass(frozen=True)
class FolderPreview:
    """Every image of a folder as a model sees it, for browsing: the unreadable ones are kept (blank) and said, so
    that one bad file never hides the others and can be found and deleted."""

    samples: tuple[Sample, ...]
    pixels: np.ndarray  # uint8 (N, size, size) in fmt's range; zeros where nothing could be read
    readable: np.ndarray  # bool (N,): a digit was read, so training uses it and a model can be asked about it
    problems: tuple[str | None, ...]  # per sample: why it is not readable, one sentence; None when it is
    fmt: InputFormat  # the input format the pixels are in

    @property
    def labels(self) -> np.ndarray:
        return np.array([sample.label for sample in self.samples], dtype=np.int64)


def preview_samples(samples: tuple[Sample, ...] | list[Sample], fmt: InputFormat = MNIST_FORMAT) -> FolderPreview:
    """Each sample decoded safely and preprocessed exactly as Predict does in `fmt` (a run's input format)."""
    pixels = np.zeros((len(samples), fmt.size, fmt.size), dtype=np.uint8)
    readable = np.zeros(len(samples), dtype=bool)
    problems: list[str | None] = []
    for index, sample in enumerate(samples):
        try:
            processed = preprocess(read_sample(sample), fmt)
        except CollectionError as error:  # damaged, oversized or not an image after all
            problems.append(str(error))
            continue
        if processed.blank:
            problems.append(processed.refusal or "No digit could be read in it.")
            continue
        pixels[index], readable[index] = processed.pixels, True
        problems.append(None)
    return FolderPreview(tuple(samples), pixels, readable, tuple(problems), fmt)
